//! What starting Prosody and ejabberd shares: the server's directory, and
//! the log and console output of one launch.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use tempfile::TempDir;

use crate::{HarnessError, ServerKind, certs, exit_hook, process};

/// A server's temporary directory, ready for its config and data.
pub(crate) struct ServerHome {
    /// The directory; dropping it removes it.
    pub dir: TempDir,
    /// Its path.
    pub root: PathBuf,
    /// `certs/ca.pem` in it: the CA of the shared test certificate.
    pub ca_file: PathBuf,
}

impl ServerHome {
    /// A fresh directory `PREFIX…` (see [`process::server_dir`]), removed at
    /// exit even if the server is never dropped, with the subdirectories
    /// `subdirs` and `certs/`, which holds the shared test certificate.
    pub fn create(prefix: &str, subdirs: &[&str]) -> Result<ServerHome, HarnessError> {
        let certs = certs::shared()?;
        let dir = process::server_dir(prefix)?;
        let root = dir.path().to_owned();
        exit_hook::remove_dir_at_exit(&root);
        for sub in subdirs.iter().chain(&["certs"]) {
            let path = root.join(sub);
            fs::create_dir(&path)
                .map_err(|e| HarnessError::io(format!("creating {}", path.display()), e))?;
        }
        let ca_file = certs::install(certs, &root.join("certs"))?;
        Ok(ServerHome { dir, root, ca_file })
    }
}

/// The log file and the console file (the server's stdout and stderr) of
/// one launch, each read from where it ended when the launch began: a
/// restart appends to both.
pub(crate) struct LaunchOutput {
    log: PathBuf,
    log_from: u64,
    console: PathBuf,
    console_from: u64,
}

impl LaunchOutput {
    /// Marks where `log` and `console` end now.
    pub fn begin(log: PathBuf, console: PathBuf) -> LaunchOutput {
        LaunchOutput {
            log_from: process::file_len(&log),
            console_from: process::file_len(&console),
            log,
            console,
        }
    }

    /// The server's stdout and stderr: both append to the console file.
    pub fn console_stdio(&self) -> Result<(File, File), HarnessError> {
        fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.console)
            .and_then(|file| Ok((file.try_clone()?, file)))
            .map_err(|e| HarnessError::io(format!("opening {}", self.console.display()), e))
    }

    /// Whether the log written since the launch began holds one of `needles`.
    pub fn log_says(&self, needles: &[&str]) -> bool {
        says(&self.log, self.log_from, needles)
    }

    /// Whether the console written since the launch began holds one of
    /// `needles`.
    pub fn console_says(&self, needles: &[&str]) -> bool {
        says(&self.console, self.console_from, needles)
    }

    /// The launch failed for `reason`: the error shows the log's new lines,
    /// the last lines of `also` (another log of the server), and the
    /// console's new lines.
    pub fn failure(&self, server: ServerKind, reason: String, also: Option<&Path>) -> HarnessError {
        let mut log_tail = process::tail(&self.log, self.log_from, 30);
        if let Some(also) = also {
            log_tail += &format!(
                "\n--- last lines of {} ---\n{}",
                also.display(),
                process::tail(also, 0, 10)
            );
        }
        log_tail += &format!(
            "\n--- last lines of {} ---\n{}",
            self.console.display(),
            process::tail(&self.console, self.console_from, 15)
        );
        HarnessError::Startup {
            server,
            reason,
            log: self.log.clone(),
            log_tail,
        }
    }
}

/// Whether `path`, from byte `from` on, holds one of `needles`.
fn says(path: &Path, from: u64, needles: &[&str]) -> bool {
    fs::read(path).is_ok_and(|bytes| {
        let start = usize::try_from(from).unwrap_or(0).min(bytes.len());
        let text = String::from_utf8_lossy(&bytes[start..]);
        needles.iter().any(|needle| text.contains(needle))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_only_what_the_launch_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let (log, console) = (dir.path().join("log"), dir.path().join("console"));
        fs::write(&log, "old: address already in use\n").unwrap();
        let output = LaunchOutput::begin(log.clone(), console.clone());
        assert!(!output.log_says(&["address already in use"]));
        let (mut stdout, _) = output.console_stdio().unwrap();
        std::io::Write::write_all(&mut stdout, b"eaddrinuse\n").unwrap();
        fs::write(&log, "old: address already in use\nnew: started\n").unwrap();
        assert!(output.console_says(&["x", "eaddrinuse"]));
        assert!(output.log_says(&["started"]));
        let HarnessError::Startup { log_tail, .. } =
            output.failure(ServerKind::Prosody, "no".into(), None)
        else {
            panic!("a startup error");
        };
        assert!(log_tail.contains("new: started"), "{log_tail}");
        assert!(!log_tail.contains("old:"), "{log_tail}");
        assert!(log_tail.contains("eaddrinuse"), "{log_tail}");
    }
}
