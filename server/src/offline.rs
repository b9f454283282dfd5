//! Offline messages: stored while a user has no available resource and
//! delivered, with a XEP-0203 `<delay/>`, at its next initial presence.

use std::time::{SystemTime, UNIX_EPOCH};

use xmpp_parsers::date::DateTime;
use xmpp_parsers::delay::Delay;
use xmpp_parsers::jid::{FullJid, Jid};
use xmpp_parsers::message::Message;
use xmpp_parsers::stanza::Stanza;

use crate::hub::{Hub, State};

/// Stores `message` for `node`, dropping the oldest when full.
pub(crate) fn store(hub: &Hub, state: &mut State, node: &str, mut message: Message) {
    let limit = hub.config.max_offline;
    if limit == 0 {
        return;
    }
    message.payloads.push(
        Delay {
            from: Some(Jid::from(hub.domain.clone())),
            stamp: now(),
            data: Some("Offline Storage".into()),
        }
        .into(),
    );
    let queue = &mut state.user(node).offline;
    if queue.len() >= limit {
        queue.pop_front();
        tracing::warn!(
            user = node,
            limit,
            "offline store full: oldest message dropped"
        );
    }
    queue.push_back(message);
    tracing::debug!(user = node, stored = queue.len(), "message stored offline");
}

/// Delivers and forgets every stored message of `node` to `session`.
pub(crate) fn flush(state: &mut State, node: &str, session: &FullJid) {
    let messages: Vec<Message> = state.user(node).offline.drain(..).collect();
    if messages.is_empty() {
        return;
    }
    tracing::debug!(%session, count = messages.len(), "delivering offline messages");
    if let Some(target) = state.session(session) {
        for mut message in messages {
            message.to = Some(session.clone().into());
            target.deliver(Stanza::Message(message));
        }
    }
}

/// Now, as an XEP-0082 date-time.
pub(crate) fn now() -> DateTime {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    let text = format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    );
    text.parse()
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".parse().expect("valid constant date"))
}

/// Days since 1970-01-01 to a proleptic Gregorian date (H. Hinnant's
/// algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::civil_from_days;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }
}
