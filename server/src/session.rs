//! A bound session: reads stanzas from its connection and routes them,
//! writes what the router queued for it, counts XEP-0198 acknowledgements,
//! and waits for resumption when its connection is lost.

use std::sync::Arc;

use futures::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};
use tokio_xmpp::xmlstream::{ReadError, XmppStreamElement};
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::{FullJid, Jid};
use xmpp_parsers::sm::{self, Nonza as SmNonza};
use xmpp_parsers::stanza::Stanza;
use xmpp_parsers::stream_error::DefinedCondition as StreamCondition;

use crate::hub::{Bound, Hub};
use crate::io::{Budget, Xml, is_too_large};
use crate::sm::{ResumeRequest, Sm};

/// Why the connection part of a session stopped.
enum Next {
    /// Keep going.
    Continue,
    /// The connection is lost: hibernate if resumable.
    Lost,
    /// End the session.
    End,
}

/// Runs a session until it ends, then removes it from the hub.
pub(crate) async fn run(hub: Arc<Hub>, stream: Xml, budget: Budget, bound: Bound) {
    let Bound {
        id,
        jid,
        mut rx,
        kill,
    } = bound;
    let (resume_tx, mut resume_rx) = mpsc::channel::<ResumeRequest>(1);
    let mut resume_tx = Some(resume_tx);
    let mut sm: Option<Sm> = None;
    let mut conn: Option<(Xml, Budget)> = Some((stream, budget));
    let mut deadline = Instant::now();
    loop {
        if let Some(conflict) = kill.killed() {
            if let Some((stream, _)) = conn.as_mut() {
                let condition = if conflict {
                    StreamCondition::Conflict
                } else {
                    StreamCondition::PolicyViolation
                };
                crate::c2s::close_with_error(stream, condition, "session ended by the server")
                    .await;
            }
            break;
        }
        let next = if let Some((stream, budget)) = conn.as_mut() {
            tokio::select! {
                biased;
                () = kill.wait() => Next::Continue,
                Some(request) = resume_rx.recv() => {
                    conn = resume(&mut sm, request).await;
                    Next::Continue
                }
                item = stream.next() => match item {
                    Some(Ok(element)) => {
                        budget.reset();
                        incoming(&hub, id, &jid, stream, &mut sm, &mut resume_tx, element).await
                    }
                    Some(Err(ReadError::SoftTimeout)) => {
                        // Make a silent client answer before the hard
                        // timeout: an ack request, or a XEP-0199 ping.
                        if sm.is_some() {
                            send(stream, &SmNonza::Req(sm::R)).await
                        } else {
                            let ping = Iq::Get {
                                from: Some(Jid::from(hub.domain.clone())),
                                to: Some(Jid::from(jid.clone())),
                                id: format!("keepalive-{:08x}", rand::random::<u32>()),
                                payload: xmpp_parsers::ping::Ping.into(),
                            };
                            match stream.send(&Stanza::Iq(ping)).await {
                                Ok(()) => Next::Continue,
                                Err(_) => Next::Lost,
                            }
                        }
                    }
                    Some(Err(ReadError::ParseError(error))) => {
                        tracing::debug!(%error, "unparsable element ignored");
                        budget.reset();
                        Next::Continue
                    }
                    Some(Err(ReadError::HardError(error))) if is_too_large(&error) => {
                        tracing::warn!(%error, "stanza too large");
                        crate::c2s::close_with_error(
                            stream,
                            StreamCondition::PolicyViolation,
                            "stanza too large",
                        )
                        .await;
                        Next::End
                    }
                    Some(Err(ReadError::StreamFooterReceived)) => {
                        let _ = tokio::time::timeout(
                            std::time::Duration::from_secs(1),
                            stream.shutdown(),
                        )
                        .await;
                        Next::End
                    }
                    Some(Err(ReadError::HardError(error))) => {
                        tracing::debug!(%error, "connection lost");
                        Next::Lost
                    }
                    None => Next::Lost,
                },
                Some(stanza) = rx.recv() => {
                    // A write blocked by a client that does not read must
                    // not keep a killed session alive.
                    // Nor one whose dead connection was replaced by a
                    // resumption.
                    tokio::select! {
                        next = outgoing(&hub, stream, &mut sm, &rx, stanza) => next,
                        () = kill.wait() => Next::Continue,
                        Some(request) = resume_rx.recv() => {
                            conn = resume(&mut sm, request).await;
                            Next::Continue
                        }
                    }
                }
            }
        } else {
            tokio::select! {
                biased;
                () = kill.wait() => Next::Continue,
                Some(request) = resume_rx.recv() => {
                    conn = resume(&mut sm, request).await;
                    Next::Continue
                }
                () = sleep_until(deadline) => {
                    if let Some(sm) = &sm {
                        hub.lock().resumable.remove(&sm.id);
                    }
                    resume_rx.close();
                    match resume_rx.try_recv() {
                        Ok(request) => {
                            conn = resume(&mut sm, request).await;
                            Next::Continue
                        }
                        Err(_) => {
                            tracing::debug!("not resumed in time");
                            Next::End
                        }
                    }
                }
            }
        };
        match next {
            Next::Continue => {}
            Next::End => break,
            Next::Lost => {
                conn = None;
                if sm.as_ref().is_some_and(|sm| sm.resumable) {
                    tracing::debug!("connection lost: waiting for resumption");
                    deadline = Instant::now() + hub.config.resume_timeout;
                } else {
                    break;
                }
            }
        }
    }
    if let Some(sm) = &sm {
        hub.lock().resumable.remove(&sm.id);
    }
    hub.end_session(id, &jid);
    // What the client never acknowledged, and what it never got.
    let mut leftovers: Vec<Stanza> = sm.map(|sm| sm.unacked.into()).unwrap_or_default();
    rx.close();
    while let Ok(stanza) = rx.try_recv() {
        leftovers.push(stanza);
    }
    for stanza in leftovers {
        hub.undeliverable(&jid, stanza);
    }
}

/// Takes over a new connection that asked to resume this session.
async fn resume(sm: &mut Option<Sm>, request: ResumeRequest) -> Option<(Xml, Budget)> {
    let ResumeRequest {
        mut stream,
        budget,
        h,
    } = request;
    let sm = sm.as_mut()?;
    if !sm.ack(h) {
        tracing::warn!(h, "resume with an h larger than sent");
    }
    let resumed = sm::Resumed {
        h: sm.inbound,
        previd: sm::StreamId(sm.id.clone()),
    };
    if !matches!(
        send(&mut stream, &SmNonza::Resumed(resumed)).await,
        Next::Continue
    ) {
        return None;
    }
    tracing::debug!(resent = sm.unacked.len(), "session resumed");
    for stanza in &sm.unacked {
        if stream.feed(stanza).await.is_err() {
            return None;
        }
    }
    sm.requested = true;
    if stream.feed(&SmNonza::Req(sm::R)).await.is_err() || flush(&mut stream).await.is_err() {
        return None;
    }
    Some((stream, budget))
}

/// Writes one element and flushes.
async fn send(stream: &mut Xml, element: &SmNonza) -> Next {
    match stream.send(element).await {
        Ok(()) => Next::Continue,
        Err(error) => {
            tracing::debug!(%error, "write failed");
            Next::Lost
        }
    }
}

/// Writes a stanza queued for this session.
async fn outgoing(
    hub: &Hub,
    stream: &mut Xml,
    sm: &mut Option<Sm>,
    rx: &mpsc::Receiver<Stanza>,
    stanza: Stanza,
) -> Next {
    // With stream management the stanza is unacknowledged from now on, so
    // that a write cut short (connection lost, resumption) re-sends it.
    let written = match sm.as_mut() {
        Some(sm) => {
            sm.unacked.push_back(stanza);
            match sm.unacked.back() {
                Some(stanza) => stream.feed(stanza).await,
                None => Ok(()),
            }
        }
        None => stream.feed(&stanza).await,
    };
    if let Err(error) = written {
        tracing::debug!(%error, "write failed");
        return Next::Lost;
    }
    if let Some(sm) = sm.as_mut() {
        if sm.unacked.len() > hub.config.max_unacked {
            tracing::warn!("too many unacknowledged stanzas");
            crate::c2s::close_with_error(
                stream,
                StreamCondition::PolicyViolation,
                "too many unacknowledged stanzas",
            )
            .await;
            return Next::End;
        }
        if rx.is_empty() && !sm.requested {
            sm.requested = true;
            if stream.feed(&SmNonza::Req(sm::R)).await.is_err() {
                return Next::Lost;
            }
        }
    }
    if rx.is_empty()
        && let Err(error) = flush(stream).await
    {
        tracing::debug!(%error, "flush failed");
        return Next::Lost;
    }
    Next::Continue
}

/// Handles one element read from the client.
async fn incoming(
    hub: &Hub,
    id: u64,
    jid: &FullJid,
    stream: &mut Xml,
    sm: &mut Option<Sm>,
    resume_tx: &mut Option<mpsc::Sender<ResumeRequest>>,
    element: XmppStreamElement,
) -> Next {
    match element {
        XmppStreamElement::Stanza(mut stanza) => {
            if let Some(sm) = sm.as_mut() {
                sm.inbound = sm.inbound.wrapping_add(1);
            }
            stamp(&mut stanza, jid);
            hub.route(id, jid, stanza);
            Next::Continue
        }
        XmppStreamElement::SM(SmNonza::Enable(enable)) if sm.is_none() => {
            let state = Sm::new(enable.resume);
            if enable.resume
                && let Some(tx) = resume_tx.take()
            {
                hub.lock()
                    .resumable
                    .insert(state.id.clone(), (jid.to_bare(), tx));
            }
            let enabled = sm::Enabled {
                id: Some(sm::StreamId(state.id.clone())),
                location: None,
                max: enable.resume.then(|| {
                    u32::try_from(hub.config.resume_timeout.as_secs()).unwrap_or(u32::MAX)
                }),
                resume: enable.resume,
            };
            tracing::debug!(resume = enable.resume, "stream management enabled");
            *sm = Some(state);
            send(stream, &SmNonza::Enabled(enabled)).await
        }
        XmppStreamElement::SM(SmNonza::Req(_)) => match sm {
            Some(sm) => send(stream, &SmNonza::Ack(sm::A { h: sm.inbound })).await,
            None => Next::Continue,
        },
        XmppStreamElement::SM(SmNonza::Ack(a)) => {
            if let Some(sm) = sm.as_mut() {
                sm.requested = false;
                if !sm.ack(a.h) {
                    tracing::warn!(h = a.h, "ack for more stanzas than were sent");
                    crate::c2s::close_with_error(
                        stream,
                        StreamCondition::UndefinedCondition,
                        "h too high",
                    )
                    .await;
                    return Next::End;
                }
            }
            Next::Continue
        }
        XmppStreamElement::SM(_) => {
            let failed = sm::Failed {
                // Always given: xmpp-parsers refuses `<failed/>` without it.
                h: Some(sm.as_ref().map_or(0, |sm| sm.inbound)),
                error: Some(xmpp_parsers::stanza_error::DefinedCondition::UnexpectedRequest),
            };
            send(stream, &SmNonza::Failed(failed)).await
        }
        XmppStreamElement::StreamError(error) => {
            tracing::debug!(%error, "stream error from the client");
            Next::End
        }
        other => {
            tracing::debug!(element = ?other, "unexpected element after binding ignored");
            Next::Continue
        }
    }
}

/// Sets the `from` of a stanza from a client to its full JID.
fn stamp(stanza: &mut Stanza, jid: &FullJid) {
    let from = Some(Jid::from(jid.clone()));
    match stanza {
        Stanza::Message(message) => message.from = from,
        Stanza::Presence(presence) => presence.from = from,
        Stanza::Iq(
            Iq::Get { from: f, .. }
            | Iq::Set { from: f, .. }
            | Iq::Result { from: f, .. }
            | Iq::Error { from: f, .. },
        ) => *f = from,
    }
}

/// Flushes what was fed to the stream.
async fn flush(stream: &mut Xml) -> std::io::Result<()> {
    SinkExt::<&Stanza>::flush(stream).await
}
