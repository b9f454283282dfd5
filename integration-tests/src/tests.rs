//! Tests of the harness against real servers (Prosody and ejabberd, every
//! kind in [`ServerKind::ALL`], whatever `XBUS_TEST_SERVERS` says: the
//! harness must work for each kind it offers), with a tiny raw XMPP client.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use crate::{
    Account, Ejabberd, HarnessError, Prosody, ServerKind, Storage, XmppServer, process,
    require_binary,
};

/// Upper bound for every wait in these tests.
const STEP: Duration = Duration::from_secs(10);

const HEADER: &str = "<?xml version='1.0'?><stream:stream to='localhost' xmlns='jabber:client' \
    xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>";

/// A raw c2s connection that reads text until a marker shows up.
struct Raw {
    stream: TcpStream,
    buffer: String,
}

impl Raw {
    fn connect(addr: SocketAddr) -> Raw {
        let stream = TcpStream::connect_timeout(&addr, STEP).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        Raw {
            stream,
            buffer: String::new(),
        }
    }

    fn send(&mut self, text: &str) {
        self.stream.write_all(text.as_bytes()).expect("send");
    }

    /// Everything up to and including the first `marker`; keeps the rest.
    fn read_until(&mut self, marker: &str) -> String {
        let deadline = Instant::now() + STEP;
        loop {
            if let Some(at) = self.buffer.find(marker) {
                let rest = self.buffer.split_off(at + marker.len());
                return std::mem::replace(&mut self.buffer, rest);
            }
            assert!(
                Instant::now() < deadline,
                "no {marker:?} within {STEP:?}; got {:?}",
                self.buffer
            );
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => panic!("stream closed before {marker:?}; got {:?}", self.buffer),
                Ok(n) => self.buffer.push_str(&String::from_utf8_lossy(&chunk[..n])),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => panic!("read: {e}"),
            }
        }
    }

    /// Logs in with SASL PLAIN (no TLS) and binds resource `r`.
    fn login(addr: SocketAddr, account: &Account) -> Raw {
        let mut raw = Raw::connect(addr);
        raw.send(HEADER);
        raw.read_until("</stream:features>");
        let token = base64(&format!("\0{}\0{}", account.username(), account.password));
        raw.send(&format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>"
        ));
        let reply = raw.read_until("xmlns='urn:ietf:params:xml:ns:xmpp-sasl'");
        assert!(
            reply.contains("<success"),
            "login of {} failed: {reply}",
            account.jid
        );
        raw.send(HEADER);
        raw.read_until("</stream:features>");
        raw.send("<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>r</resource></bind></iq>");
        let bound = raw.read_until("</iq>");
        assert!(bound.contains(&format!("{}/r", account.jid)), "{bound}");
        raw
    }

    /// Sends a pubsub IQ to `pubsub.localhost` and returns the answer.
    fn pubsub(&mut self, id: &str, body: &str) -> String {
        self.send(&format!(
            "<iq type='set' id='{id}' to='pubsub.localhost'>\
             <pubsub xmlns='http://jabber.org/protocol/pubsub'>{body}</pubsub></iq>"
        ));
        let mut reply = self.read_until(&format!("id='{id}'"));
        reply += &self.read_until(">");
        if !reply.ends_with("/>") {
            reply += &self.read_until("</iq>");
        }
        reply
    }
}

fn base64(text: &str) -> String {
    const TABLE: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in text.as_bytes().chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(TABLE[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Asserts that the c2s port answers a stream header with features incl. STARTTLS.
fn assert_answers_stream_header(addr: SocketAddr) {
    let mut raw = Raw::connect(addr);
    raw.send(HEADER);
    let features = raw.read_until("</stream:features>");
    assert!(features.contains("stream:features"), "{features}");
    assert!(features.contains("starttls"), "{features}");
}

fn process_gone(pid: u32) -> bool {
    !Path::new(&format!("/proc/{pid}")).exists() || process::process_gone(pid)
}

#[test]
fn starts_registers_accounts_and_answers_stream_header() {
    for &kind in ServerKind::ALL {
        let server = kind.start().unwrap_or_else(|e| panic!("start {kind}: {e}"));
        assert_eq!(server.kind(), kind);
        starts_registers_accounts_and_answers_stream_header_on(&*server);
    }
}

fn starts_registers_accounts_and_answers_stream_header_on(server: &dyn XmppServer) {
    assert_eq!(server.domain(), "localhost");
    assert_eq!(server.pubsub_service(), "pubsub.localhost");
    assert!(server.addr().ip().is_loopback());
    let alice = server.account().expect("first account");
    let bob = server.account().expect("second account");
    assert_ne!(alice.jid, bob.jid);
    assert_ne!(alice.password, bob.password);
    for account in [&alice, &bob] {
        assert!(account.jid.ends_with("@localhost"), "{}", account.jid);
    }
    assert_answers_stream_header(server.addr());
    Raw::login(server.addr(), &alice);
    Raw::login(server.addr(), &bob);
    let pem = std::fs::read_to_string(server.ca_file()).unwrap();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");
    assert!(server.log_path().exists());
}

#[test]
fn opens_only_the_c2s_port() {
    let server = Prosody::start().expect("start prosody");
    let pid = server.pid().unwrap();
    assert_eq!(
        process::listening_sockets(pid).unwrap(),
        vec![server.addr()]
    );
}

#[test]
fn drop_stops_the_process_closes_the_port_and_removes_the_dir() {
    let server = Prosody::start().expect("start prosody");
    let (pid, addr, dir) = (
        server.pid().unwrap(),
        server.addr(),
        server.dir().to_owned(),
    );
    let started = Instant::now();
    drop(server);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "stop took {:?}",
        started.elapsed()
    );
    assert!(process_gone(pid), "prosody (pid {pid}) still there");
    assert!(
        !process::accepts_tcp(addr),
        "{addr} still accepts connections"
    );
    if !crate::keep_dirs() {
        assert!(!dir.exists(), "{} still there", dir.display());
    }
}

#[test]
fn two_servers_run_at_once() {
    let servers = two_at_once(Prosody::start);
    assert_ne!(servers[0].dir(), servers[1].dir());
}

#[test]
fn two_ejabberds_run_at_once() {
    let servers = two_at_once(Ejabberd::start);
    assert_ne!(servers[0].node(), servers[1].node());
    assert_ne!(servers[0].dist_port(), servers[1].dist_port());
}

/// Two servers started from two threads at once: on different ports, each
/// serving its own accounts.
fn two_at_once<S: XmppServer + 'static>(start: fn() -> Result<S, HarnessError>) -> Vec<S> {
    let starts: Vec<_> = (0..2)
        .map(|_| thread::spawn(move || start().expect("start the server")))
        .collect();
    let servers: Vec<S> = starts.into_iter().map(|t| t.join().unwrap()).collect();
    assert_ne!(servers[0].addr(), servers[1].addr());
    for server in &servers {
        let account = server.account().expect("account");
        assert_answers_stream_header(server.addr());
        Raw::login(server.addr(), &account);
    }
    servers
}

#[test]
fn kill_and_restart_keep_port_and_data() {
    let mut server = Prosody::start().expect("start prosody");
    kill_and_restart_keep_port_and_data_on(&mut server, Prosody::pid, Duration::ZERO);
}

#[test]
fn ejabberd_kill_and_restart_keep_port_and_data() {
    let mut server = Ejabberd::start().expect("start ejabberd");
    // Mnesia keeps accounts in dets tables, and dets delays writes by up
    // to 3 s (its default `delayed_write` cache): a crash within 3 s of a
    // registration loses it, as it would in production.
    let dets_delay = Duration::from_millis(3500);
    kill_and_restart_keep_port_and_data_on(&mut server, Ejabberd::pid, dets_delay);
}

/// A `SIGKILL`, a restart after it, a restart of the running server: the
/// port and the accounts stay, and new accounts work. `settle` passes
/// between the registration and the kill.
fn kill_and_restart_keep_port_and_data_on<S: XmppServer>(
    server: &mut S,
    pid: fn(&S) -> Option<u32>,
    settle: Duration,
) {
    let account = server.account().unwrap();
    let (addr, before) = (server.addr(), pid(server).unwrap());
    std::thread::sleep(settle);
    let started = Instant::now();
    server.kill();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "kill took {:?}",
        started.elapsed()
    );
    assert_eq!(pid(server), None);
    assert!(process_gone(before), "pid {before} still there");
    assert!(!process::accepts_tcp(addr));
    server.restart().expect("restart after kill");
    assert_eq!(server.addr(), addr);
    Raw::login(addr, &account);
    // Restart of a running server: clean stop, then start.
    server.restart().expect("restart while running");
    Raw::login(addr, &account);
    let fresh = server.account().expect("account after restart");
    Raw::login(addr, &fresh);
}

/// Processes called `epmd` on this machine.
fn epmd_processes() -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.trim() == "epmd")
        })
        .count()
}

#[test]
fn ejabberd_opens_only_its_c2s_and_distribution_ports_and_no_epmd() {
    let epmd_before = epmd_processes();
    let server = Ejabberd::start().expect("start ejabberd");
    let pid = server.pid().unwrap();
    let mut expected = vec![
        server.addr(),
        SocketAddr::from(([127, 0, 0, 1], server.dist_port())),
    ];
    expected.sort();
    assert_eq!(process::listening_sockets(pid).unwrap(), expected);
    assert!(server.node().starts_with("xbus-"), "{}", server.node());
    assert_eq!(epmd_processes(), epmd_before, "an epmd was started");
    // ejabberdctl reaches the node through the fixed port and the cookie.
    let status = server.ctl(&["status"]).expect("ejabberdctl status");
    assert!(status.contains("started"), "{status}");
    assert!(status.contains(server.node()), "{status}");
    drop(server);
    assert_eq!(epmd_processes(), epmd_before, "an epmd was left behind");
}

#[test]
fn ejabberd_accounts_exist_when_returned() {
    let server = Ejabberd::start().expect("start ejabberd");
    let accounts: Vec<Account> = (0..5).map(|_| server.account().unwrap()).collect();
    let users = server
        .ctl(&["registered_users", "localhost"])
        .expect("ejabberdctl registered_users");
    for account in &accounts {
        assert!(
            users.lines().any(|u| u.trim() == account.username()),
            "{} not in {users}",
            account.jid
        );
    }
    // Registering is fast (in-band, no extra Erlang VM per account).
    let started = Instant::now();
    for _ in 0..20 {
        server.account().unwrap();
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "20 accounts took {:?}",
        started.elapsed()
    );
}

#[test]
fn ejabberd_drop_stops_the_vm_closes_the_port_and_removes_the_dir() {
    let server = Ejabberd::start().expect("start ejabberd");
    let (pid, addr, dir) = (
        server.pid().unwrap(),
        server.addr(),
        server.dir().to_owned(),
    );
    let dist = SocketAddr::from(([127, 0, 0, 1], server.dist_port()));
    let started = Instant::now();
    drop(server);
    assert!(
        started.elapsed() < Duration::from_secs(7),
        "stop took {:?}",
        started.elapsed()
    );
    assert!(process_gone(pid), "beam.smp (pid {pid}) still there");
    assert!(!process::accepts_tcp(addr), "{addr} still accepts");
    assert!(!process::accepts_tcp(dist), "{dist} still accepts");
    if !crate::keep_dirs() {
        assert!(!dir.exists(), "{} still there", dir.display());
    }
}

#[test]
fn a_taken_port_is_detected_on_ejabberd_restart() {
    let mut server = Ejabberd::start().expect("start ejabberd");
    server.kill();
    let squatter = std::net::TcpListener::bind(server.addr()).expect("take the port");
    let started = Instant::now();
    let error = server.restart().unwrap_err().to_string();
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
    assert!(error.contains("taken by another process"), "{error}");
    drop(squatter);
    server
        .restart()
        .expect("restart once the port is free again");
}

#[test]
fn server_lists_parse_strictly() {
    use crate::{DEFAULT_SERVERS, UnknownServer};
    assert_eq!(
        ServerKind::parse_list(DEFAULT_SERVERS).unwrap(),
        vec![
            ServerKind::Embedded,
            ServerKind::Prosody,
            ServerKind::Ejabberd,
            ServerKind::EjabberdCluster
        ]
    );
    assert_eq!(
        ServerKind::parse_list(" Ejabberd , prosody,ejabberd").unwrap(),
        vec![ServerKind::Ejabberd, ServerKind::Prosody]
    );
    let error: UnknownServer = ServerKind::parse_list("prosody,openfire").unwrap_err();
    let text = error.to_string();
    assert!(text.contains("\"openfire\""), "{text}");
    assert!(text.contains("prosody,ejabberd"), "{text}");
    assert!(ServerKind::parse_list(" , ").is_err());
    for &kind in ServerKind::ALL {
        assert_eq!(ServerKind::from_name(kind.name()), Some(kind));
    }
}

#[test]
fn a_taken_port_is_detected_fast_with_the_log_in_the_error() {
    let mut server = Prosody::start().expect("start prosody");
    server.kill();
    let squatter = std::net::TcpListener::bind(server.addr()).expect("take the port");
    let started = Instant::now();
    let error = server.restart().unwrap_err().to_string();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert!(error.contains("taken by another process"), "{error}");
    assert!(error.contains("Failed to open server port"), "{error}");
    drop(squatter);
    server
        .restart()
        .expect("restart once the port is free again");
}

#[test]
fn accounts_can_create_nodes_and_notifications_carry_the_publisher() {
    for &kind in ServerKind::ALL {
        let server = kind.start().unwrap_or_else(|e| panic!("start {kind}: {e}"));
        accounts_can_create_nodes_and_notifications_carry_the_publisher_on(&*server);
    }
}

fn accounts_can_create_nodes_and_notifications_carry_the_publisher_on(server: &dyn XmppServer) {
    let kind = server.kind();
    let (alice, bob) = (server.account().unwrap(), server.account().unwrap());
    let mut publisher = Raw::login(server.addr(), &alice);
    let mut subscriber = Raw::login(server.addr(), &bob);
    let item = |id: &str| {
        format!("<publish node='n'><item id='{id}'><x xmlns='urn:t'>{id}</x></item></publish>")
    };
    // No such node yet: the publish creates it (Prosody:
    // autocreate_on_publish for admins; ejabberd: any local user).
    let reply = publisher.pubsub("p1", &item("i1"));
    assert!(reply.contains("type='result'"), "{kind}: {reply}");
    // A second account may publish to a node the first one created.
    let reply = subscriber.pubsub("p0", &item("i0"));
    assert!(
        reply.contains("type='result'"),
        "{kind}: publish by a non-owner: {reply}"
    );
    let reply = subscriber.pubsub("s1", &format!("<subscribe node='n' jid='{}/r'/>", bob.jid));
    assert!(
        reply.contains("subscription='subscribed'"),
        "{kind}: {reply}"
    );
    let reply = subscriber.pubsub("c1", "<create node='other'/>");
    assert!(
        reply.contains("type='result'"),
        "{kind}: create by a second account: {reply}"
    );
    let reply = publisher.pubsub("p2", &item("i2"));
    assert!(reply.contains("type='result'"), "{kind}: {reply}");
    // The subscribe did not re-send the last item (i0): the first
    // notification is i2.
    let event = subscriber.read_until("</message>");
    assert!(event.contains("type='headline'"), "{kind}: {event}");
    assert!(event.contains("id='i2'"), "{kind}: {event}");
    assert!(
        event.contains(&format!("publisher='{}", alice.jid)),
        "{kind}: {event}"
    );
}

#[test]
fn accounts_run_out_with_a_clear_error() {
    let server = Prosody::start().expect("start prosody");
    server.next_account_for_test(crate::ACCOUNT_POOL_SIZE);
    let error = server.account().unwrap_err();
    assert!(
        error.to_string().contains("pre-configured account names"),
        "{error}"
    );
}

#[test]
fn servers_can_be_shared_between_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Prosody>();
    assert_send_sync::<Box<dyn XmppServer>>();
    assert_send_sync::<crate::HarnessError>();
}

#[test]
fn base64_matches_known_values() {
    assert_eq!(base64("\0u1\0pw"), "AHUxAHB3");
    assert_eq!(base64("ab"), "YWI=");
    assert_eq!(base64("a"), "YQ==");
}

#[test]
#[should_panic(expected = "apt-get update && apt-get install -y no-such-server")]
fn missing_binary_panics_with_install_hint() {
    require_binary(
        "xbus-no-such-server-binary",
        "apt-get update && apt-get install -y no-such-server",
    );
}

/// `ejabberd.schema` took: `pubsub_item` is `disc_copies` and keeps its
/// index on the node, and the stock server keeps the default.
#[test]
fn ejabberd_storage_is_tuned_or_stock() {
    let table = |server: &Ejabberd| {
        let info = server
            .ctl(&["mnesia_table_info", "pubsub_item"])
            .expect("mnesia_table_info");
        let pick = |key: &str| {
            info.lines()
                .map(str::trim)
                .find(|line| line.starts_with(&format!("{{{key},")))
                .unwrap_or_else(|| panic!("no {key} in {info}"))
                .to_owned()
        };
        (pick("storage_type"), pick("index"))
    };
    let tuned = Ejabberd::start().expect("start ejabberd");
    assert_eq!(
        table(&tuned),
        ("{storage_type,disc_copies},".into(), "{index,[3]},".into())
    );
    let stock = Ejabberd::start_with(Storage::Stock).expect("start ejabberd");
    assert_eq!(
        table(&stock),
        (
            "{storage_type,disc_only_copies},".into(),
            "{index,[3]},".into()
        )
    );
}

/// Prosody's SQLite database is in WAL mode when tuned, not when stock.
#[test]
fn prosody_storage_is_tuned_or_stock() {
    let mode = |server: &Prosody| {
        let out = std::process::Command::new("sqlite3")
            .arg(server.dir().join("data/prosody.sqlite"))
            .arg("PRAGMA journal_mode;")
            .output()
            .expect("run sqlite3");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let tuned = Prosody::start().expect("start prosody");
    assert_eq!(mode(&tuned), "wal");
    let stock = Prosody::start_with(Storage::Stock).expect("start prosody");
    // Prosody creates the file on its first write; before that, sqlite3
    // makes an empty one in the default mode.
    assert_eq!(mode(&stock), "delete");
}
