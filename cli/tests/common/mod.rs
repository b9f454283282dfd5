//! Running the `xbus` binary against real servers: the shared servers, fresh
//! accounts, child processes with bounded waits, and the server matrix.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{LazyLock, OnceLock};
use std::time::{Duration, Instant};

use futures::FutureExt as _;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, BufReader, Lines};
use tokio::process::{Child, ChildStderr, ChildStdout, Command};
use xbus::{Bus, BusConfig};
use xbus_integration_tests::{Account, Embedded, Prosody, ServerKind, XmppServer};

/// Upper bound of every wait: a child's line, its exit, a connection.
pub const STEP: Duration = Duration::from_secs(20);

/// The servers every test runs against, one after the other.
pub const KINDS: &[ServerKind] = &[ServerKind::Embedded, ServerKind::Prosody];

/// One server of each kind, shared by the tests of this binary (the
/// harness kills a Prosody left at exit). A missing Prosody panics with
/// the command that installs it.
static EMBEDDED: LazyLock<Embedded> =
    LazyLock::new(|| Embedded::start().expect("start the embedded server"));
static PROSODY: LazyLock<Prosody> = LazyLock::new(|| Prosody::start().expect("start Prosody"));

/// The shared server of `kind`.
pub fn server(kind: ServerKind) -> &'static dyn XmppServer {
    match kind {
        ServerKind::Embedded => &*EMBEDDED,
        ServerKind::Prosody => &*PROSODY,
        other => panic!("no shared {other} server in these tests"),
    }
}

/// Runs `test` on each of [`KINDS`] and panics at the end, naming every
/// server it failed on.
pub async fn matrix<F: AsyncFn(ServerKind)>(test: F) {
    let mut failures = Vec::new();
    for &kind in KINDS {
        if let Err(panic) = AssertUnwindSafe(test(kind)).catch_unwind().await {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            failures.push(format!("on {kind}: {message}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A fresh account on a server, as the CLI and the library see it.
pub struct User {
    /// The JID and password.
    pub account: Account,
    /// The server's address.
    pub addr: SocketAddr,
}

impl User {
    /// Registers a fresh account on the shared server of `kind`.
    pub fn new(kind: ServerKind) -> User {
        let server = server(kind);
        let account = server
            .account()
            .unwrap_or_else(|e| panic!("[{kind}] register an account: {e}"));
        User {
            account,
            addr: server.addr(),
        }
    }

    /// Registers a fresh account that no pubsub setting favours (on
    /// Prosody, not an admin of the pubsub component).
    pub fn plain(kind: ServerKind) -> User {
        let server = server(kind);
        let account = server
            .plain_account()
            .unwrap_or_else(|e| panic!("[{kind}] register an account: {e}"));
        User {
            account,
            addr: server.addr(),
        }
    }

    /// The bare JID.
    pub fn jid(&self) -> &str {
        &self.account.jid
    }

    /// `xbus ARGS` logged in as this account (plaintext on loopback, through
    /// the environment variables).
    pub fn xbus(&self, args: &[&str]) -> Command {
        let mut command = xbus(args);
        command
            .env("XBUS_JID", &self.account.jid)
            .env("XBUS_PASSWORD", &self.account.password)
            .env("XBUS_SERVER", self.addr.to_string())
            .env("XBUS_TLS", "plaintext");
        command
    }

    /// A library bus as this account, with `resource`.
    pub async fn bus(&self, resource: &str) -> Bus {
        let config = BusConfig::builder(
            format!("{}/{resource}", self.account.jid),
            &self.account.password,
        )
        .server(self.addr.to_string())
        .allow_plaintext()
        .build()
        .expect("valid config");
        within("connect a bus", Bus::connect(config))
            .await
            .expect("connect a bus")
    }
}

/// The copy of the `xbus` binary the tests run, removed at exit.
static COPY: OnceLock<PathBuf> = OnceLock::new();

/// The target directory is shared with other builds, which may replace
/// `xbus` while these tests run: they run a private copy, made on first
/// use and checked to be this crate's binary.
fn binary() -> &'static Path {
    COPY.get_or_init(|| {
        let built = Path::new(env!("CARGO_BIN_EXE_xbus"));
        let copy = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("xbus-cli-commands-{}", std::process::id()));
        std::fs::copy(built, &copy).expect("copy the xbus binary");
        extern "C" fn remove_copy() {
            if let Some(copy) = COPY.get() {
                let _ = std::fs::remove_file(copy);
            }
        }
        // SAFETY: registers a plain function that only removes a file.
        unsafe { libc::atexit(remove_copy) };
        let mut help = std::process::Command::new(&copy)
            .arg("--help")
            .stdout(Stdio::piped())
            .spawn()
            .expect("run xbus --help");
        let deadline = Instant::now() + STEP;
        while help.try_wait().expect("wait for xbus --help").is_none() {
            assert!(Instant::now() < deadline, "xbus --help did not exit");
            std::thread::sleep(Duration::from_millis(10));
        }
        let mut text = String::new();
        std::io::Read::read_to_string(&mut help.stdout.take().expect("stdout"), &mut text)
            .expect("read xbus --help");
        assert!(
            text.contains("services"),
            "{} is not this crate's xbus (another build in the shared target \
             directory replaced it): run the tests again\n{text}",
            built.display()
        );
        copy
    })
}

/// `xbus ARGS` with none of the `XBUS_*` variables of the test's own
/// environment, the default log filter, and its output piped.
pub fn xbus(args: &[&str]) -> Command {
    let mut command = Command::new(binary());
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for name in [
        "XBUS_JID",
        "XBUS_PASSWORD",
        "XBUS_SERVER",
        "XBUS_PUBSUB",
        "XBUS_TLS",
        "RUST_LOG",
    ] {
        command.env_remove(name);
    }
    command
}

/// Awaits `future`, panicking after [`STEP`].
pub async fn within<F: Future>(what: &str, future: F) -> F::Output {
    tokio::time::timeout(STEP, future)
        .await
        .unwrap_or_else(|_| panic!("timed out after {STEP:?}: {what}"))
}

/// How a finished `xbus` went.
#[derive(Debug)]
pub struct Output {
    /// The exit code; `None` if a signal ended it.
    pub code: Option<i32>,
    /// Everything on stdout (after the lines already read).
    pub stdout: String,
    /// Everything on stderr (after the lines already read).
    pub stderr: String,
}

impl Output {
    /// Asserts exit code 0 and returns stdout.
    pub fn ok(&self) -> &str {
        assert_eq!(self.code, Some(0), "xbus failed: {self:?}");
        &self.stdout
    }

    /// Asserts exit code 1 and exactly one line on stderr (besides `sub`'s
    /// `subscribed to TOPIC` notice) that starts with `xbus: ` and holds
    /// each of `parts`; returns that line.
    pub fn error(&self, parts: &[&str]) -> &str {
        assert_eq!(self.code, Some(1), "expected exit code 1: {self:?}");
        let lines: Vec<&str> = (self.stderr.lines())
            .filter(|line| !line.starts_with("subscribed to "))
            .collect();
        assert_eq!(lines.len(), 1, "expected one line on stderr: {self:?}");
        assert!(lines[0].starts_with("xbus: "), "{self:?}");
        for part in parts {
            assert!(
                lines[0].contains(part),
                "expected {part:?} in {:?}",
                lines[0]
            );
        }
        lines[0]
    }
}

/// A running `xbus`; dropping it kills the process.
pub struct Running {
    child: Child,
    stdout: Lines<BufReader<ChildStdout>>,
    stderr: Lines<BufReader<ChildStderr>>,
}

impl Running {
    /// Starts `command`.
    pub fn spawn(mut command: Command) -> Running {
        let mut child = command.spawn().expect("start xbus");
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let stderr = BufReader::new(child.stderr.take().expect("piped stderr")).lines();
        Running {
            child,
            stdout,
            stderr,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("the child runs")
    }

    /// The next line on stdout, within [`STEP`].
    pub async fn stdout_line(&mut self) -> String {
        within("a line on stdout", self.stdout.next_line())
            .await
            .expect("read stdout")
            .expect("stdout ended before the line")
    }

    /// The next line on stderr, within [`STEP`].
    pub async fn stderr_line(&mut self) -> String {
        within("a line on stderr", self.stderr.next_line())
            .await
            .expect("read stderr")
            .expect("stderr ended before the line")
    }

    /// Waits (within [`STEP`]) for the exit and the rest of the output.
    pub async fn finish(self) -> Output {
        let Running {
            mut child,
            stdout,
            stderr,
        } = self;
        let (mut rest_out, mut rest_err) = (String::new(), String::new());
        let mut out = stdout.into_inner();
        let mut err = stderr.into_inner();
        let (read_out, read_err, status) = within("xbus to exit", async {
            tokio::join!(
                out.read_to_string(&mut rest_out),
                err.read_to_string(&mut rest_err),
                child.wait()
            )
        })
        .await;
        read_out.expect("read stdout");
        read_err.expect("read stderr");
        Output {
            code: status.expect("wait for xbus").code(),
            stdout: rest_out,
            stderr: rest_err,
        }
    }
}

/// Runs `command` to its end, within [`STEP`].
pub async fn run(command: Command) -> Output {
    Running::spawn(command).finish().await
}

/// The JSON lines of `text`.
pub fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line:?}")))
        .collect()
}

/// Runs the slixmpp interop peer (`integration-tests/slixmpp/xbus_peer.py`)
/// with `job` on stdin, within 60 s; returns its stdout, panicking with
/// its stderr if it failed. Its Python is the venv `scripts/slixmpp-venv.sh`
/// makes (or `XBUS_SLIXMPP_PYTHON`): without it this panics with that
/// command, it never skips.
pub async fn slixmpp_peer(job: &str) -> String {
    use tokio::io::AsyncWriteExt as _;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let python = std::env::var_os("XBUS_SLIXMPP_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/slixmpp-venv/bin/python"));
    assert!(
        python.exists(),
        "{} does not exist: create the slixmpp venv with scripts/slixmpp-venv.sh \
         (from the repository root), or set XBUS_SLIXMPP_PYTHON",
        python.display()
    );
    let mut child = Command::new(python)
        .arg(root.join("integration-tests/slixmpp/xbus_peer.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the slixmpp peer");
    let mut stdin = child.stdin.take().expect("piped stdin");
    stdin
        .write_all(job.as_bytes())
        .await
        .expect("write the job");
    drop(stdin);
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("the slixmpp peer ends within 60 s")
        .expect("wait for the slixmpp peer");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(
        out.status.success(),
        "the slixmpp peer failed ({}):\n{stdout}\n--- stderr ---\n{stderr}",
        out.status
    );
    stdout
}
