//! The window of recently delivered item ids that keeps a subscription
//! free of duplicates.
//!
//! Duplicates come from recovery: a publish re-sent after a session reset
//! (the server may have stored the first one and notified it), and a gap
//! fetch after a reset that returns items delivered before it. The window
//! holds the ids of the last `capacity` items a subscription delivered;
//! with `capacity` at least the topic's `max_items`, every item the server
//! still keeps and the subscription delivered is in it.

use std::collections::{HashSet, VecDeque};

/// The last `capacity` item ids seen, oldest first.
#[derive(Debug)]
pub(crate) struct Window {
    order: VecDeque<String>,
    ids: HashSet<String>,
    capacity: usize,
}

impl Window {
    pub(crate) fn new(capacity: usize) -> Window {
        Window {
            order: VecDeque::new(),
            ids: HashSet::new(),
            capacity: capacity.max(1),
        }
    }

    /// Records `id`; `false` if it is in the window already (a duplicate).
    pub(crate) fn insert(&mut self, id: &str) -> bool {
        if self.ids.contains(id) {
            return false;
        }
        if self.order.len() >= self.capacity
            && let Some(oldest) = self.order.pop_front()
        {
            self.ids.remove(&oldest);
        }
        self.order.push_back(id.to_owned());
        self.ids.insert(id.to_owned());
        true
    }

    #[cfg(test)]
    fn contains(&self, id: &str) -> bool {
        self.ids.contains(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_the_last_ids_only() {
        let mut window = Window::new(3);
        assert!(window.insert("a"));
        assert!(!window.insert("a"));
        assert!(window.insert("b"));
        assert!(window.insert("c"));
        assert!(window.insert("d"));
        assert!(!window.contains("a"), "evicted");
        assert!(window.insert("a"), "seen again after leaving the window");
        assert!(!window.insert("d"));
        assert_eq!(window.order.len(), 3);
        assert_eq!(window.ids.len(), 3);
    }
}
