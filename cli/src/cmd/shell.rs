//! `xbus reply --command CMD`: one run of `sh -c CMD` per call, the
//! request's JSON on its stdin, its stdout (JSON) the answer.

use std::os::unix::process::ExitStatusExt as _;
use std::process::{ExitStatus, Stdio};

use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _};
use tokio::process::Command;
use tokio::time::Instant;
use xbus::RpcError;

/// The error code a caller gets when the command fails, prints something
/// else than JSON, or outlives the call.
pub const COMMAND_FAILED: &str = "command_failed";

/// The most a command may print as its answer: the default maximum
/// payload of a bus (1 MiB).
pub const MAX_OUTPUT: usize = 1024 * 1024;

/// How much of the command's stderr is read, and how much of its end an
/// error message quotes.
const MAX_STDERR: usize = 64 * 1024;
const STDERR_TAIL: usize = 300;

/// Runs `sh -c command` with `input` as one line of JSON on its stdin and
/// `env` added to its environment; its stdout, parsed as JSON, is the
/// answer. A failure to start, a non-zero exit, output that is not JSON or
/// exceeds [`MAX_OUTPUT`], or a run past `deadline` (the command is then
/// killed) is an [`RpcError`] with code [`COMMAND_FAILED`].
pub async fn run(
    command: &str,
    input: &Value,
    env: &[(&str, String)],
    deadline: Instant,
) -> Result<Value, RpcError> {
    let failed = |message: String| RpcError::new(COMMAND_FAILED, message);
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(command)
        .envs(env.iter().map(|(name, value)| (name, value)))
        // The bus's own secret is not the mock's business.
        .env_remove("XBUS_PASSWORD")
        // Its own process group, so that the deadline kills what it started
        // too (a pipeline, a sleep), not only `sh`.
        .process_group(0)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| failed(format!("cannot start `sh -c`: {e}")))?;
    let (stdin, stdout, stderr) = (child.stdin.take(), child.stdout.take(), child.stderr.take());
    let mut line = input.to_string().into_bytes();
    line.push(b'\n');
    let write = async move {
        if let Some(mut stdin) = stdin {
            // A command that does not read its stdin closes it: not an error.
            let _ = stdin.write_all(&line).await;
        }
    };
    let work = async {
        let (_, out, err) = tokio::join!(
            write,
            read_at_most(stdout, MAX_OUTPUT + 1),
            read_at_most(stderr, MAX_STDERR)
        );
        (out, err, child.wait().await)
    };
    let finished = tokio::time::timeout_at(deadline, work).await;
    let Ok((out, err, status)) = finished else {
        if let Some(pid) = child.id() {
            // SAFETY: kill(2) with a negative pid signals the process group
            // `sh` leads (made by process_group(0) above); no memory is shared.
            unsafe {
                libc::kill(-(pid as libc::pid_t), libc::SIGKILL);
            }
        }
        let _ = child.start_kill();
        return Err(failed(
            "the command did not finish before the caller's deadline: killed".to_owned(),
        ));
    };
    // Checked first: a command cut off after the limit dies of SIGPIPE.
    if out.len() > MAX_OUTPUT {
        return Err(failed(format!(
            "the command printed more than {MAX_OUTPUT} bytes"
        )));
    }
    let status = status.map_err(|e| failed(format!("cannot wait for the command: {e}")))?;
    if !status.success() {
        return Err(failed(format!("{}{}", exited(status), tail(&err))));
    }
    serde_json::from_slice(&out).map_err(|e| {
        failed(format!(
            "the command's output is not JSON ({e}): {:?}{}",
            String::from_utf8_lossy(&out[..out.len().min(100)]),
            tail(&err)
        ))
    })
}

/// Up to `limit` bytes of `pipe`; the pipe is closed when this returns,
/// so a command that prints more gets SIGPIPE rather than blocking.
async fn read_at_most(pipe: Option<impl AsyncRead + Unpin>, limit: usize) -> Vec<u8> {
    let mut bytes = Vec::new();
    if let Some(pipe) = pipe {
        let _ = pipe.take(limit as u64).read_to_end(&mut bytes).await;
    }
    bytes
}

/// `the command exited with status N` or `... was killed by signal N`.
fn exited(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("the command exited with status {code}"),
        (None, Some(signal)) => format!("the command was killed by signal {signal}"),
        (None, None) => format!("the command failed: {status}"),
    }
}

/// `: ` and the last [`STDERR_TAIL`] characters of `stderr` on one line,
/// or nothing when it is blank.
fn tail(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let words = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if words.is_empty() {
        return String::new();
    }
    let chars = words.chars().count();
    let tail: String = words
        .chars()
        .skip(chars.saturating_sub(STDERR_TAIL))
        .collect();
    let cut = if chars > STDERR_TAIL { "..." } else { "" };
    format!(": {cut}{tail}")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::*;

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(10)
    }

    #[tokio::test]
    async fn the_request_goes_in_and_the_answer_comes_out() {
        let env = [("XBUS_METHOD", "t.echo".to_owned())];
        let script = r#"printf '{"method":"%s","request":%s}' "$XBUS_METHOD" "$(cat)""#;
        let answer = run(script, &json!({"n": 1}), &env, soon()).await;
        assert_eq!(answer, Ok(json!({"method": "t.echo", "request": {"n": 1}})));
    }

    #[tokio::test]
    async fn failures_are_application_errors() {
        let error = run("echo oops >&2; exit 3", &json!({}), &[], soon())
            .await
            .unwrap_err();
        assert_eq!(error.code, COMMAND_FAILED);
        assert_eq!(error.message, "the command exited with status 3: oops");
        let error = run("echo not json", &json!({}), &[], soon())
            .await
            .unwrap_err();
        assert!(error.message.contains("not JSON"), "{error:?}");
        let late = Instant::now() + Duration::from_millis(200);
        let error = run("sleep 5", &json!({}), &[], late).await.unwrap_err();
        assert!(error.message.contains("deadline"), "{error:?}");
        let error = run("yes", &json!({}), &[], soon()).await.unwrap_err();
        assert!(error.message.contains("more than"), "{error:?}");
    }

    /// What the command started dies with it at the deadline, and it does
    /// not see the bus's password.
    #[tokio::test]
    async fn the_deadline_kills_the_whole_command_and_secrets_stay_out() {
        let dir = tempfile::tempdir().expect("temp dir");
        let pidfile = dir.path().join("pid");
        let script = format!("sleep 30 & echo $! > {}; wait", pidfile.display());
        let late = Instant::now() + Duration::from_millis(300);
        let error = run(&script, &json!({}), &[], late).await.unwrap_err();
        assert!(error.message.contains("deadline"), "{error:?}");
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .expect("pid file")
            .trim()
            .parse()
            .expect("pid");
        let mut alive = true;
        for _ in 0..50 {
            // SAFETY: signal 0 only checks that the process exists. A
            // zombie (dead, not reaped by an init that does not reap) counts
            // as dead.
            let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                stat.rsplit(')')
                    .next()
                    .is_some_and(|s| s.trim_start().starts_with('Z'))
            });
            alive = unsafe { libc::kill(pid, 0) } == 0 && !zombie;
            if !alive {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(!alive, "the command's child {pid} outlived the deadline");

        // SAFETY: set in this test process only, before the command runs.
        unsafe { std::env::set_var("XBUS_PASSWORD", "hunter2") };
        let answer = run(
            r#"printf '"%s"' "${XBUS_PASSWORD:-unset}""#,
            &json!({}),
            &[],
            soon(),
        )
        .await;
        assert_eq!(answer, Ok(json!("unset")));
    }

    #[test]
    fn the_stderr_tail_is_short_and_on_one_line() {
        assert_eq!(tail(b"  \n"), "");
        assert_eq!(tail(b"a\nb"), ": a b");
        let long = "x".repeat(1000);
        assert_eq!(tail(long.as_bytes()).len(), 2 + 3 + STDERR_TAIL);
    }
}
