//! [`Servers`]: the servers a bus may connect to, and which one it is on.
//!
//! A bus configured with several servers (the nodes of a cluster) starts
//! with one picked at random, so that a fleet spreads over the nodes, and
//! tries the others in turn when that one does not answer, on the first
//! connection and on every reconnection.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The configured servers and the one in use; clones share the latter.
#[derive(Debug, Clone)]
pub(crate) struct Servers {
    list: Arc<[(String, u16)]>,
    current: Arc<AtomicUsize>,
}

impl Servers {
    /// `list` must not be empty (`BusConfig` puts the JID's domain in
    /// an empty one). With several, the first one tried is random.
    pub(crate) fn new(list: &[(String, u16)]) -> Servers {
        assert!(!list.is_empty(), "BusConfig always names a server");
        let start = if list.len() > 1 {
            rand::random_range(0..list.len())
        } else {
            0
        };
        Servers {
            list: list.into(),
            current: Arc::new(AtomicUsize::new(start)),
        }
    }

    /// How many servers there are.
    pub(crate) fn len(&self) -> usize {
        self.list.len()
    }

    /// `host:port` of server `index`.
    pub(crate) fn address(&self, index: usize) -> String {
        let (host, port) = &self.list[index];
        if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        }
    }

    /// Host and port of server `index`.
    pub(crate) fn host_port(&self, index: usize) -> (&str, u16) {
        let (host, port) = &self.list[index];
        (host, *port)
    }

    /// The index of the server in use (or to try first).
    pub(crate) fn current(&self) -> usize {
        self.current.load(Ordering::Relaxed)
    }

    /// `host:port` of the server in use (or to try first).
    pub(crate) fn current_address(&self) -> String {
        self.address(self.current())
    }

    /// Every server once, starting with the current one.
    pub(crate) fn in_turn(&self) -> impl Iterator<Item = usize> + use<> {
        let start = self.current();
        let len = self.len();
        (0..len).map(move |step| (start + step) % len)
    }

    /// Notes that the bus is now on server `index`.
    pub(crate) fn settle_on(&self, index: usize) {
        self.current.store(index, Ordering::Relaxed);
    }

    /// Every address, comma-separated (for errors about all of them).
    pub(crate) fn all_addresses(&self) -> String {
        (0..self.len())
            .map(|index| self.address(index))
            .collect::<Vec<_>>()
            .join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(n: u16) -> Vec<(String, u16)> {
        (1..=n).map(|port| ("127.0.0.1".to_owned(), port)).collect()
    }

    #[test]
    fn tries_each_server_once_from_the_current_one() {
        let servers = Servers::new(&list(3));
        servers.settle_on(2);
        assert_eq!(servers.in_turn().collect::<Vec<_>>(), [2, 0, 1]);
        assert_eq!(servers.current_address(), "127.0.0.1:3");
        assert_eq!(servers.clone().current(), 2, "clones share the position");
    }

    #[test]
    fn a_fleet_spreads_over_the_servers() {
        let mut seen = [0usize; 3];
        for _ in 0..300 {
            seen[Servers::new(&list(3)).current()] += 1;
        }
        assert!(seen.iter().all(|&n| n > 50), "{seen:?}");
    }

    #[test]
    fn ipv6_hosts_get_brackets() {
        let servers = Servers::new(&[("::1".to_owned(), 5222)]);
        assert_eq!(servers.address(0), "[::1]:5222");
        assert_eq!(servers.all_addresses(), "[::1]:5222");
    }
}
