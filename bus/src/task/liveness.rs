//! The task's side of liveness: pinging the instances in use, and what
//! their answers (or silence) mean. The rules are in [`crate::liveness`];
//! the state is in the [`Directory`](super::directory::Directory).

use tracing::debug;
use xmpp_parsers::jid::{FullJid, Jid};
use xmpp_parsers::minidom::Element;
use xmpp_parsers::stanza_error::StanzaError;

use super::Task;
use super::iq::PendingIq;

impl Task {
    /// One round of liveness checks (every 100 ms while a service is in
    /// use). Nothing is judged while this bus's own connection is down.
    pub(super) async fn check_liveness(&mut self) {
        if self.lost_at.is_some() {
            return;
        }
        let checks = self.directory.check_liveness().await;
        for id in checks.expired {
            self.pending.remove(&id);
        }
        let own = checks
            .unresponsive
            .iter()
            .any(|jid| jid.to_bare() == self.directory.own);
        if own {
            self.members_changed().await;
        }
        for jid in checks.probe {
            let id = format!("xb{}", self.next_id());
            self.directory.probing_sent(&jid, id.clone());
            let ping = Element::builder("ping", xmpp_parsers::ns::PING).build();
            let pending = PendingIq::Liveness { to: jid.clone() };
            self.send_iq_as(id, Jid::from(jid), false, ping, pending)
                .await;
        }
    }

    /// The answer to a liveness ping. An error from the instance's server
    /// saying there is no such session removes it; any other answer, even
    /// an error from a client without ping support, proves it alive.
    pub(super) async fn on_liveness_answer(
        &mut self,
        to: FullJid,
        id: &str,
        answer: Result<Option<Element>, StanzaError>,
    ) {
        self.directory.probe_answered(&to, id);
        match answer {
            Err(error) if crate::rpc::is_unavailable(&error) => {
                debug!(%to, ?error.defined_condition, "pinged instance has no session");
                self.directory.gone(&to).await;
                if to.to_bare() == self.directory.own {
                    self.members_changed().await;
                }
            }
            _ => self.heard_member(&to).await,
        }
    }

    /// Any stanza from `from` other than a "no such session" error proves
    /// the instance alive, even a late answer nobody waits for.
    pub(super) async fn heard_from(&mut self, from: Option<&Jid>) {
        // Only an instance in the directory can change state; most
        // stanzas (the server's, calls' answers from anyone else) stop
        // here without a copy of their sender.
        if self.directory.is_empty() {
            return;
        }
        if let Some(Ok(full)) = from.map(Jid::try_as_full) {
            let full = full.clone();
            self.heard_member(&full).await;
        }
    }

    /// `jid` is alive; if it is a member of our groups that was
    /// unresponsive, the groups count it again.
    async fn heard_member(&mut self, jid: &FullJid) {
        let own_bare = &self.directory.own;
        let own = jid.node() == own_bare.node() && jid.domain() == own_bare.domain();
        let was = own
            && self
                .directory
                .unresponsive(&self.directory.own)
                .contains(jid);
        self.directory.heard(jid).await;
        if was {
            self.members_changed().await;
        }
    }
}
