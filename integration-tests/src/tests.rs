//! Tests of the harness against a real Prosody, with a tiny raw XMPP client.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use crate::{Account, Prosody, ServerKind, XmppServer, process, require_binary};

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
    !Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn starts_registers_accounts_and_answers_stream_header() {
    let server = Prosody::start().expect("start prosody");
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
    let starts: Vec<_> = (0..2)
        .map(|_| thread::spawn(|| Prosody::start().expect("start prosody")))
        .collect();
    let servers: Vec<Prosody> = starts.into_iter().map(|t| t.join().unwrap()).collect();
    assert_ne!(servers[0].addr(), servers[1].addr());
    assert_ne!(servers[0].dir(), servers[1].dir());
    for server in &servers {
        let account = server.account().expect("account");
        assert_answers_stream_header(server.addr());
        Raw::login(server.addr(), &account);
    }
}

#[test]
fn kill_and_restart_keep_port_and_data() {
    let mut server = Prosody::start().expect("start prosody");
    let account = server.account().unwrap();
    let (addr, pid) = (server.addr(), server.pid().unwrap());
    server.kill();
    assert_eq!(server.pid(), None);
    assert!(process_gone(pid));
    assert!(!process::accepts_tcp(addr));
    server.restart().expect("restart after kill");
    assert_eq!(server.addr(), addr);
    Raw::login(addr, &account);
    // Restart of a running server: graceful stop, then start.
    server.restart().expect("restart while running");
    Raw::login(addr, &account);
    assert!(server.account().is_ok());
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
    let server: Box<dyn XmppServer> = ServerKind::Prosody.start().expect("start prosody");
    let (alice, bob) = (server.account().unwrap(), server.account().unwrap());
    let mut publisher = Raw::login(server.addr(), &alice);
    let mut subscriber = Raw::login(server.addr(), &bob);
    let item = |id: &str| {
        format!("<publish node='n'><item id='{id}'><x xmlns='urn:t'>{id}</x></item></publish>")
    };
    // No such node yet: the publish creates it (autocreate_on_publish, admin).
    let reply = publisher.pubsub("p1", &item("i1"));
    assert!(reply.contains("type='result'"), "{reply}");
    let reply = subscriber.pubsub("s1", &format!("<subscribe node='n' jid='{}/r'/>", bob.jid));
    assert!(reply.contains("subscription='subscribed'"), "{reply}");
    let reply = subscriber.pubsub("c1", "<create node='other'/>");
    assert!(
        reply.contains("type='result'"),
        "create by a second account: {reply}"
    );
    let reply = publisher.pubsub("p2", &item("i2"));
    assert!(reply.contains("type='result'"), "{reply}");
    let event = subscriber.read_until("</message>");
    assert!(event.contains("type='headline'"), "{event}");
    assert!(event.contains("id='i2'"), "{event}");
    assert!(
        event.contains(&format!("publisher='{}'", alice.jid)),
        "{event}"
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
