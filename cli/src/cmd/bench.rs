//! `xbus bench ARGS`: runs the benchmark, `xbus-bench ARGS`, when it is
//! installed beside `xbus` or on `PATH`.
//!
//! The benchmark is a crate of its own (`bench/`) so that this command
//! stays small: its comparison peers (NATS, HTTP), plot and server
//! launcher are not built into `xbus`. Where `xbus-bench` is missing, the
//! error says how to run or install it.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::anyhow;

/// The benchmark's binary.
const BENCH: &str = "xbus-bench";

/// Options of `xbus bench`: all of them go to `xbus-bench`.
#[derive(Debug, clap::Args)]
#[command(disable_help_flag = true)]
pub struct BenchArgs {
    /// The options of `xbus-bench` (`xbus bench --help` prints them).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<OsString>,
}

/// Runs `xbus-bench` with the given options and exits as it does.
pub fn run(args: BenchArgs) -> Result<ExitCode, anyhow::Error> {
    let exe = std::env::current_exe().ok();
    let beside = exe.as_deref().and_then(Path::parent);
    let path = std::env::var_os("PATH");
    let Some(bench) = find(beside, path.as_deref()) else {
        let shown: Vec<_> = args.args.iter().map(|a| a.to_string_lossy()).collect();
        let shown = shown.join(" ");
        return Err(anyhow!(
            "the benchmark is its own tool, `{BENCH}`, and it is not installed: \
             run `cargo run --release -p {BENCH} -- {shown}` in the xbus repository, \
             or install it with `cargo install --path bench`"
        ));
    };
    let status = std::process::Command::new(&bench)
        .args(&args.args)
        .status()
        .map_err(|error| anyhow!("cannot run {}: {error}", bench.display()))?;
    // A benchmark killed by a signal exits with 1, as a failed one does.
    let code = status.code().map_or(1, |code| code.clamp(0, 255));
    Ok(ExitCode::from(code as u8))
}

/// `xbus-bench` in the directory of `xbus`, else on `path`.
fn find(beside: Option<&Path>, path: Option<&OsStr>) -> Option<PathBuf> {
    let on_path = path.into_iter().flat_map(std::env::split_paths);
    beside
        .map(Path::to_path_buf)
        .into_iter()
        .chain(on_path)
        .map(|dir| dir.join(BENCH))
        .find(|candidate| candidate.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_benchmark_beside_then_on_path() {
        let beside = tempfile::tempdir().unwrap();
        let on_path = tempfile::tempdir().unwrap();
        let path = std::env::join_paths([on_path.path()]).unwrap();
        assert_eq!(find(Some(beside.path()), Some(&path)), None);
        std::fs::write(on_path.path().join(BENCH), "").unwrap();
        assert_eq!(
            find(Some(beside.path()), Some(&path)),
            Some(on_path.path().join(BENCH))
        );
        std::fs::write(beside.path().join(BENCH), "").unwrap();
        assert_eq!(
            find(Some(beside.path()), Some(&path)),
            Some(beside.path().join(BENCH))
        );
    }
}
