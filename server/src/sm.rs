//! XEP-0198 stream management: counters, the unacknowledged queue and the
//! hand-over of a new connection to a session waiting to be resumed.

use std::collections::VecDeque;

use xmpp_parsers::stanza::Stanza;

use crate::io::{Budget, Xml};

/// A new connection that asked to resume a session, handed to that
/// session's task.
pub(crate) struct ResumeRequest {
    pub stream: Xml,
    pub budget: Budget,
    /// The client's count of stanzas it handled.
    pub h: u32,
}

impl std::fmt::Debug for ResumeRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResumeRequest").field("h", &self.h).finish()
    }
}

/// Stream management state of one session.
#[derive(Debug)]
pub(crate) struct Sm {
    /// The resumption id (also the key in the hub's table).
    pub id: String,
    pub resumable: bool,
    /// Stanzas received from the client (`h` we report).
    pub inbound: u32,
    /// The client's last `h`.
    acked: u32,
    /// Stanzas sent and not yet acknowledged, oldest first.
    pub unacked: VecDeque<Stanza>,
    /// An `<r/>` is out and not yet answered.
    pub requested: bool,
}

impl Sm {
    pub fn new(resumable: bool) -> Sm {
        Sm {
            id: format!("{:032x}", rand::random::<u128>()),
            resumable,
            inbound: 0,
            acked: 0,
            unacked: VecDeque::new(),
            requested: false,
        }
    }

    /// The client acknowledged up to `h`. Returns `false` if `h` counts
    /// more stanzas than were sent.
    pub fn ack(&mut self, h: u32) -> bool {
        let newly = h.wrapping_sub(self.acked) as usize;
        if newly > self.unacked.len() {
            return false;
        }
        self.unacked.drain(..newly);
        self.acked = h;
        true
    }
}
