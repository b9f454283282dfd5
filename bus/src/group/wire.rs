//! How a group's leader hands a job to an instance, and how the instance
//! answers: one IQ per delivery.
//!
//! ```xml
//! <iq type='set' to='billing@localhost/i2' id='xb41'>
//!   <job xmlns='urn:xbus:group:0' group='billing' item='9f…c1' attempt='1'
//!        epoch='3' ack-wait-ms='30000' publisher='orders@localhost/o1'>
//!     <payload xmlns='urn:xbus:0' topic='orders.created' …>…</payload>
//!   </job>
//! </iq>
//! ```
//!
//! * `result`: **ack**.
//! * `error` with `<nak xmlns='urn:xbus:group:0' delay-ms='N'/>` (type
//!   `wait`, `undefined-condition`; `delay-ms` optional): **nak**, the text
//!   is the reason.
//! * `error` with `<term xmlns='urn:xbus:group:0'/>` (type `cancel`,
//!   `undefined-condition`): **term**, dead-lettered at once.
//! * `error` with `<stale-epoch xmlns='urn:xbus:group:0' epoch='E'/>`
//!   (type `cancel`, `conflict`): the instance follows a newer leader; the
//!   sender stops leading.
//! * any other error: the delivery failed (a server's "no such session"
//!   means the instance is gone).
//!
//! While it works on a job, an instance may send `<progress
//! xmlns='urn:xbus:group:0' group='billing' item='9f…c1'/>` to the leader
//! in an IQ `set`, which restarts the ack wait.
//!
//! Before it reads the group's state, an instance taking over sends
//! `<claim xmlns='urn:xbus:group:0' group='billing' topic='orders.created'
//! epoch='4'/>` in an IQ `set` to every other live member. A member that
//! follows no newer claim takes it (it refuses jobs of older leaders from
//! then on) and answers `result`; a member that was leading saves its
//! progress first and answers once the save is confirmed, so the new
//! leader reads the latest progress. A member that follows a newer claim
//! answers with `<stale-epoch/>`, as for a job.
//!
//! A member that starts following a new leader (by its claim or its first
//! job) first sends it `<settled xmlns='urn:xbus:group:0' group='billing'
//! topic='orders.created'><item id='…'/>…</settled>` in an IQ `set`: the
//! events it acked or termed lately. The old leader may have died before
//! it saved them; the new one does not hand them out again. A settlement
//! of an older leader's job is also sent to the newest leader that way.

use std::time::Duration;

use xmpp_parsers::minidom::Element;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};

use super::state::NS;
use crate::codec::{PAYLOAD, RawPayload, name};
use crate::consume::Verdict;
use crate::error::DecodeError;

/// Longest group name (it goes into node names and attributes).
pub(crate) const MAX_GROUP_LEN: usize = 64;
/// Longest reason text kept from a nak or term.
const MAX_REASON: usize = 1024;

/// One delivery of an event to an instance.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct JobOffer {
    pub group: String,
    pub item: String,
    /// 1 for the first delivery.
    pub attempt: u32,
    /// The leader's epoch: an instance ignores older leaders.
    pub epoch: u64,
    pub ack_wait: Duration,
    /// Who published the event, as the pubsub service stamped it.
    pub publisher: Option<String>,
    pub payload: RawPayload,
}

/// Why a job offer cannot be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(crate) enum WireError {
    #[error("not a <job xmlns='{NS}'/> element")]
    NotAJob,
    #[error("not a <claim xmlns='{NS}'/> element")]
    NotAClaim,
    #[error("not a <settled xmlns='{NS}'/> element")]
    NotAReport,
    #[error("attribute {name} is missing or not valid: {why}")]
    BadAttribute {
        name: &'static str,
        why: &'static str,
    },
    #[error("the job's event: {0}")]
    Payload(#[from] DecodeError),
}

impl JobOffer {
    /// The `<job/>` element.
    pub fn to_element(&self) -> Element {
        let mut job = Element::builder("job", NS)
            .attr(name("group"), self.group.as_str())
            .attr(name("item"), self.item.as_str())
            .attr(name("attempt"), self.attempt.to_string())
            .attr(name("epoch"), self.epoch.to_string())
            .attr(name("ack-wait-ms"), self.ack_wait.as_millis().to_string());
        if let Some(publisher) = &self.publisher {
            job = job.attr(name("publisher"), publisher.as_str());
        }
        job.append(self.payload.to_element()).build()
    }

    /// Reads a `<job/>` element; the event is refused over `max_payload`
    /// bytes.
    pub fn from_element(job: &Element, max_payload: usize) -> Result<JobOffer, WireError> {
        if !job.is("job", NS) {
            return Err(WireError::NotAJob);
        }
        let group = text(job, "group")?;
        if group.is_empty() || group.len() > MAX_GROUP_LEN {
            return Err(WireError::BadAttribute {
                name: "group",
                why: "a group name has 1 to 64 bytes",
            });
        }
        let item = text(job, "item")?;
        if item.is_empty() || item.len() > 256 {
            return Err(WireError::BadAttribute {
                name: "item",
                why: "an item id has 1 to 256 bytes",
            });
        }
        let attempt = number(job, "attempt")?;
        let epoch = number(job, "epoch")?;
        let ack_wait = Duration::from_millis(number(job, "ack-wait-ms")?);
        let payload = job
            .get_child(PAYLOAD, crate::codec::NS)
            .ok_or(DecodeError::MissingPayload)?;
        Ok(JobOffer {
            group: group.to_owned(),
            item: item.to_owned(),
            attempt: u32::try_from(attempt).map_err(|_| WireError::BadAttribute {
                name: "attempt",
                why: "too large",
            })?,
            epoch,
            ack_wait,
            publisher: job.attr("publisher").map(str::to_owned),
            payload: RawPayload::from_element(payload, max_payload)?,
        })
    }
}

/// What an instance's answer to a job means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Ack, nak or term, as the instance's consumer settled it.
    Settled(Verdict),
    /// The instance follows a leader of epoch `epoch`.
    StaleEpoch { epoch: u64 },
    /// The delivery failed without a verdict; `gone` if the server says
    /// the instance has no session.
    Failed { gone: bool, reason: String },
}

/// Reads an instance's answer to a job.
pub(crate) fn outcome(answer: &Result<Option<Element>, StanzaError>) -> Outcome {
    let error = match answer {
        Ok(_) => return Outcome::Settled(Verdict::Ack),
        Err(error) => error,
    };
    let reason = error
        .texts
        .values()
        .next()
        .map(|t| t.chars().take(MAX_REASON).collect::<String>())
        .unwrap_or_default();
    let app = error.other.as_ref().filter(|o| o.ns() == NS);
    match app.map(Element::name) {
        Some("nak") => Outcome::Settled(Verdict::Nak {
            delay: app
                .and_then(|a| a.attr("delay-ms"))
                .and_then(|d| d.parse().ok())
                .map(Duration::from_millis),
            reason,
        }),
        Some("term") => Outcome::Settled(Verdict::Term { reason }),
        Some("stale-epoch") => match app.and_then(|a| a.attr("epoch")?.parse().ok()) {
            Some(epoch) => Outcome::StaleEpoch { epoch },
            None => Outcome::Failed {
                gone: false,
                reason,
            },
        },
        _ => Outcome::Failed {
            gone: crate::rpc::is_unavailable(error),
            reason,
        },
    }
}

/// The error an instance answers a nak with.
pub(crate) fn nak_error(delay: Option<Duration>, reason: &str) -> StanzaError {
    let mut nak = Element::builder("nak", NS);
    if let Some(delay) = delay {
        nak = nak.attr(name("delay-ms"), delay.as_millis().to_string());
    }
    with_app(ErrorType::Wait, reason, nak.build())
}

/// The error an instance answers a term with.
pub(crate) fn term_error(reason: &str) -> StanzaError {
    with_app(
        ErrorType::Cancel,
        reason,
        Element::builder("term", NS).build(),
    )
}

/// The error an instance answers a job of an older leader with.
pub(crate) fn stale_epoch_error(current: u64) -> StanzaError {
    let mut error = StanzaError::new(
        ErrorType::Cancel,
        DefinedCondition::Conflict,
        "en",
        format!("this instance follows the leader of epoch {current}"),
    );
    error.other = Some(
        Element::builder("stale-epoch", NS)
            .attr(name("epoch"), current.to_string())
            .build(),
    );
    error
}

/// `<progress/>`: the instance is still at `item`.
pub(crate) fn progress(group: &str, item: &str) -> Element {
    Element::builder("progress", NS)
        .attr(name("group"), group)
        .attr(name("item"), item)
        .build()
}

/// `<claim/>`: the sender takes over `group` on `topic` at `epoch`.
pub(crate) fn claim(group: &str, topic: &str, epoch: u64) -> Element {
    Element::builder("claim", NS)
        .attr(name("group"), group)
        .attr(name("topic"), topic)
        .attr(name("epoch"), epoch.to_string())
        .build()
}

/// Reads a `<claim/>` element: the group, topic and epoch.
pub(crate) fn read_claim(element: &Element) -> Result<(&str, &str, u64), WireError> {
    if !element.is("claim", NS) {
        return Err(WireError::NotAClaim);
    }
    Ok((
        text(element, "group")?,
        text(element, "topic")?,
        number(element, "epoch")?,
    ))
}

/// Most items one `<settled/>` report carries.
pub(crate) const MAX_REPORT: usize = 1024;

/// `<settled/>`: `items` of `group` on `topic` were acked or termed.
pub(crate) fn report<'a>(
    group: &str,
    topic: &str,
    items: impl IntoIterator<Item = &'a str>,
) -> Element {
    let mut report = Element::builder("settled", NS)
        .attr(name("group"), group)
        .attr(name("topic"), topic);
    for item in items.into_iter().take(MAX_REPORT) {
        report = report.append(Element::builder("item", NS).attr(name("id"), item).build());
    }
    report.build()
}

/// A `<settled/>` report: group, topic and item ids (at most
/// [`MAX_REPORT`]).
pub(crate) type Report<'a> = (&'a str, &'a str, Vec<&'a str>);

/// Reads a `<settled/>` report.
pub(crate) fn read_report(element: &Element) -> Result<Report<'_>, WireError> {
    if !element.is("settled", NS) {
        return Err(WireError::NotAReport);
    }
    let items = element
        .children()
        .filter(|c| c.is("item", NS))
        .filter_map(|c| c.attr("id"))
        .filter(|id| !id.is_empty() && id.len() <= 256)
        .take(MAX_REPORT)
        .collect();
    Ok((text(element, "group")?, text(element, "topic")?, items))
}

/// Reads a `<progress/>` element: the group and item.
pub(crate) fn read_progress(element: &Element) -> Option<(&str, &str)> {
    if !element.is("progress", NS) {
        return None;
    }
    Some((element.attr("group")?, element.attr("item")?))
}

fn with_app(kind: ErrorType, reason: &str, app: Element) -> StanzaError {
    let reason: String = reason.chars().take(MAX_REASON).collect();
    let mut error = StanzaError::new(kind, DefinedCondition::UndefinedCondition, "en", reason);
    error.other = Some(app);
    error
}

fn text<'a>(element: &'a Element, attr: &'static str) -> Result<&'a str, WireError> {
    element.attr(attr).ok_or(WireError::BadAttribute {
        name: attr,
        why: "missing",
    })
}

fn number(element: &Element, attr: &'static str) -> Result<u64, WireError> {
    text(element, attr)?
        .parse()
        .map_err(|_| WireError::BadAttribute {
            name: attr,
            why: "not a whole number",
        })
}

#[cfg(test)]
#[path = "wire_tests.rs"]
mod tests;
