//! CPU time and memory: of the benchmark process (`getrusage`, `/proc/self`,
//! a counting allocator) and of a server process (`/proc/PID/stat`).

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::time::Duration;

/// The process's allocator: [`System`], plus a count of live heap bytes
/// kept only while a [`HeapWindow`] is open. Outside a window an
/// allocation costs one relaxed atomic load more than `System`'s.
pub struct CountingAllocator;

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// Open [`HeapWindow`]s; counting is on while this is not zero. (A count
/// rather than a flag, so that two windows, e.g. of tests running side by
/// side, do not switch each other off.)
static WINDOWS: AtomicUsize = AtomicUsize::new(0);

/// Bytes allocated minus bytes freed while counting was on.
static LIVE: AtomicI64 = AtomicI64::new(0);

fn counting() -> bool {
    WINDOWS.load(Ordering::Relaxed) != 0
}

fn count(delta: i64) {
    LIVE.fetch_add(delta, Ordering::Relaxed);
}

fn signed(size: usize) -> i64 {
    i64::try_from(size).unwrap_or(i64::MAX)
}

// SAFETY: every call is forwarded to `System` unchanged; the counters have no
// effect on the memory handed out.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract.
        let ptr = unsafe { System.alloc(layout) };
        if counting() && !ptr.is_null() {
            count(signed(layout.size()));
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if counting() && !ptr.is_null() {
            count(signed(layout.size()));
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by this allocator, i.e. by `System`.
        unsafe { System.dealloc(ptr, layout) };
        if counting() {
            count(-signed(layout.size()));
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` was allocated by `System` with `layout`.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if counting() && !new.is_null() {
            count(signed(new_size) - signed(layout.size()));
        }
        new
    }
}

/// While it lives, the allocator counts; [`HeapWindow::bytes`] is the heap
/// growth since it was opened (every thread's allocations count).
pub struct HeapWindow {
    start: i64,
}

impl HeapWindow {
    /// Starts counting.
    pub fn open() -> HeapWindow {
        let start = LIVE.load(Ordering::SeqCst);
        WINDOWS.fetch_add(1, Ordering::SeqCst);
        HeapWindow { start }
    }

    /// Bytes allocated and not freed since [`HeapWindow::open`] (frees of
    /// memory allocated before count negatively).
    pub fn bytes(&self) -> i64 {
        LIVE.load(Ordering::SeqCst) - self.start
    }
}

impl Drop for HeapWindow {
    fn drop(&mut self) {
        WINDOWS.fetch_sub(1, Ordering::SeqCst);
    }
}

/// CPU time (user + system) this process has used so far.
pub fn process_cpu() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: `usage` is a valid, writable `rusage`.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) };
    if rc != 0 {
        return Duration::ZERO;
    }
    // SAFETY: `getrusage` succeeded and filled it (it was zeroed anyway).
    let usage = unsafe { usage.assume_init() };
    timeval(usage.ru_utime) + timeval(usage.ru_stime)
}

fn timeval(tv: libc::timeval) -> Duration {
    let secs = u64::try_from(tv.tv_sec).unwrap_or(0);
    let micros = u32::try_from(tv.tv_usec).unwrap_or(0);
    Duration::from_secs(secs) + Duration::from_micros(u64::from(micros))
}

/// CPU seconds (user + system) used so far by process `pid` and the
/// processes below it (a server started through a wrapper script counts
/// whole); `None` when `pid` is gone or `/proc` is unreadable.
pub fn server_cpu(pid: u32) -> Option<f64> {
    let ticks = clock_ticks()?;
    let own = read_stat(pid)?;
    let mut total = own.cpu_ticks;
    let children = children_by_parent();
    let mut stack = vec![pid];
    while let Some(parent) = stack.pop() {
        for &(child, ticks) in children.get(&parent).map(Vec::as_slice).unwrap_or(&[]) {
            total += ticks;
            stack.push(child);
        }
    }
    Some(total as f64 / ticks)
}

fn clock_ticks() -> Option<f64> {
    // SAFETY: `sysconf` has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (ticks > 0).then_some(ticks as f64)
}

struct Stat {
    parent: u32,
    cpu_ticks: u64,
}

/// `/proc/PID/stat`: the parent (field 4) and utime + stime (14, 15).
fn read_stat(pid: u32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

fn parse_stat(text: &str) -> Option<Stat> {
    // The command name (field 2) is in parentheses and may hold spaces.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `fields[0]` is field 3 (the state).
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
    Some(Stat {
        parent: u32::try_from(field(4)?).ok()?,
        cpu_ticks: field(14)? + field(15)?,
    })
}

/// Every process's children with their CPU ticks, by parent pid.
fn children_by_parent() -> HashMap<u32, Vec<(u32, u64)>> {
    let mut map: HashMap<u32, Vec<(u32, u64)>> = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return map;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if let Some(stat) = read_stat(pid) {
            map.entry(stat.parent)
                .or_default()
                .push((pid, stat.cpu_ticks));
        }
    }
    map
}

/// Resident set size of this process, bytes (`/proc/self/statm`).
pub fn rss_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = text.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: `sysconf` has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).ok()?)
}

/// The CPU seconds of all of `pids` together (none: `None`, as when one
/// cannot be read).
fn servers_cpu(pids: &[u32]) -> Option<f64> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|&pid| server_cpu(pid)).sum()
}

/// CPU time of the benchmark process and of a server between
/// [`CpuMeter::start`] and [`CpuMeter::read`].
pub struct CpuMeter {
    client: Duration,
    server_pids: Vec<u32>,
    server: Option<f64>,
}

impl CpuMeter {
    /// Starts measuring; `server_pids` are the server's processes (one per
    /// node of a cluster), if any.
    pub fn start(server_pids: &[u32]) -> CpuMeter {
        CpuMeter {
            client: process_cpu(),
            server_pids: server_pids.to_vec(),
            server: servers_cpu(server_pids),
        }
    }

    /// CPU seconds since [`CpuMeter::start`]: this process's, and the
    /// server's when it has one and it could be read both times.
    pub fn read(&self) -> (f64, Option<f64>) {
        let client = process_cpu().saturating_sub(self.client).as_secs_f64();
        let server = match (self.server, servers_cpu(&self.server_pids)) {
            (Some(before), Some(after)) => Some((after - before).max(0.0)),
            _ => None,
        };
        (client, server)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_stat_with_spaces_in_the_name() {
        let line = "4242 (a (b) c) S 17 4242 4242 0 -1 4194560 500 0 0 0 123 45 0 0 20 0 1 0";
        let stat = parse_stat(line).unwrap();
        assert_eq!(stat.parent, 17);
        assert_eq!(stat.cpu_ticks, 168);
    }

    #[test]
    fn own_process_has_cpu_and_memory() {
        let meter = CpuMeter::start(&[std::process::id()]);
        let mut x = 0u64;
        for i in 0..3_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(std::hint::black_box(i));
        }
        std::hint::black_box(x);
        let (client, server) = meter.read();
        assert!(client > 0.0, "{client}");
        assert!(server.is_some());
        assert!(rss_bytes().unwrap() > 0);
    }

    #[test]
    fn heap_window_counts_live_bytes() {
        let window = HeapWindow::open();
        let held = vec![7u8; 8 << 20];
        let grown = window.bytes();
        drop(held);
        drop(window);
        // Other tests allocate at the same time; 8 MiB stands out.
        assert!(grown >= 7 << 20, "{grown}");
    }
}
