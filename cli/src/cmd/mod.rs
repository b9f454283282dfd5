//! The subcommands, one module each, and what they share:
//! connection options ([`connect`]), JSON and payload encodings ([`json`]),
//! and writing to stdout.

pub mod bench;
pub mod connect;
pub mod consume;
pub mod json;
pub mod publish;
pub mod reply;
pub mod request;
pub mod server;
pub mod services;
pub mod shell;
pub mod stop;
pub mod subscribe;
pub mod topic;

use std::io::{ErrorKind, Write as _};

use anyhow::Context as _;

/// Writes `line` and a newline to stdout and flushes. `Ok(false)` when
/// nobody reads stdout any more (a closed pipe, as in `xbus sub t | head -1`).
pub fn print_line(line: &str) -> anyhow::Result<bool> {
    print_text(&format!("{line}\n"))
}

/// Writes `text` to stdout and flushes, like [`print_line`].
pub fn print_text(text: &str) -> anyhow::Result<bool> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => Ok(true),
        Err(error) if error.kind() == ErrorKind::BrokenPipe => Ok(false),
        Err(error) => Err(error).context("cannot write to stdout"),
    }
}

/// An error and its causes on one line: `outer: cause: cause`, skipping a
/// cause whose text the line already holds, and with newlines and runs of
/// blanks made single spaces.
pub fn flatten(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if line.contains(text.trim()) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flatten_makes_one_line_without_repeats() {
        let error = anyhow::anyhow!("refused: forbidden\n(auth)")
            .context("publish to t")
            .context("refused: forbidden\n(auth)");
        assert_eq!(flatten(&error), "refused: forbidden (auth): publish to t");
        let inner = std::io::Error::other("disk\nfull");
        let error = anyhow::Error::new(inner).context("write");
        assert_eq!(flatten(&error), "write: disk full");
    }
}
