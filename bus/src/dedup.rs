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
use std::sync::Arc;

/// An item id as the window keeps it.
///
/// xbus publishers choose 128 random bits written as 32 lowercase hex
/// digits; those are kept as the number, so that the common delivery
/// allocates nothing here (it used to cost two `String`s). Any other id
/// (foreign publishers, direct events) is kept as one string shared by the
/// set and the queue. Only the exact 32-lowercase-hex form is read as a
/// number, so the mapping is one to one: two different ids never share a
/// key (no hashing, hence no collisions).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Hex(u128),
    Other(Arc<str>),
}

impl Key {
    fn new(id: &str) -> Key {
        match hex128(id) {
            Some(n) => Key::Hex(n),
            None => Key::Other(Arc::from(id)),
        }
    }
}

/// The value of exactly 32 lowercase hex digits (`u128::from_str_radix`
/// would also take upper case and a sign, and so map two ids to one key).
fn hex128(id: &str) -> Option<u128> {
    if id.len() != 32 {
        return None;
    }
    id.bytes().try_fold(0u128, |n, b| {
        let digit = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            _ => return None,
        };
        Some(n << 4 | u128::from(digit))
    })
}

/// The last `capacity` item ids seen, oldest first.
#[derive(Debug)]
pub(crate) struct Window {
    order: VecDeque<Key>,
    ids: HashSet<Key>,
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
        let key = Key::new(id);
        if self.ids.contains(&key) {
            return false;
        }
        if self.order.len() >= self.capacity
            && let Some(oldest) = self.order.pop_front()
        {
            self.ids.remove(&oldest);
        }
        self.order.push_back(key.clone());
        self.ids.insert(key);
        true
    }

    #[cfg(test)]
    fn contains(&self, id: &str) -> bool {
        self.ids.contains(&Key::new(id))
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

    #[test]
    fn hex_ids_are_numbers_and_other_ids_stay_distinct() {
        let id = format!("{:032x}", 0x0123_4567_89ab_cdef_u128 << 64 | 42);
        assert_eq!(
            Key::new(&id),
            Key::Hex(0x0123_4567_89ab_cdef_u128 << 64 | 42)
        );
        // Same value, other spellings: different ids, different keys.
        let upper = id.to_uppercase();
        let short = id.trim_start_matches('0');
        assert!(matches!(Key::new(&upper), Key::Other(_)));
        assert!(matches!(Key::new(short), Key::Other(_)));
        assert!(matches!(Key::new(&format!("+{}", &id[1..])), Key::Other(_)));
        let mut window = Window::new(8);
        assert!(window.insert(&id));
        assert!(window.insert(&upper));
        assert!(window.insert(short));
        assert!(!window.insert(&id));
        assert!(!window.insert(&upper));
        assert!(!window.insert(short));
        assert!(window.insert(&"f".repeat(32)), "the largest value");
        assert!(!window.insert(&"f".repeat(32)));
        assert!(window.insert(""), "an empty id is an id too");
        assert!(!window.insert(""));
    }
}
