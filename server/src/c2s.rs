//! Client-to-server stream negotiation (RFC 6120): stream headers,
//! STARTTLS, SASL, resource binding, XEP-0198 resumption; then the
//! session takes over.

use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_xmpp::xmlstream::{
    AcceptedStream, ReadError, StreamHeader, Timeouts, XmppStreamElement, accept_stream,
};
use xmpp_parsers::bind::{BindFeature, BindQuery, BindResponse};
use xmpp_parsers::iq::Iq;
use xmpp_parsers::sasl::{self, Nonza as SaslNonza};
use xmpp_parsers::sm::{self, Nonza as SmNonza, StreamManagement};
use xmpp_parsers::starttls::{self, StartTls};
use xmpp_parsers::stream_error::{DefinedCondition as StreamCondition, StreamError};
use xmpp_parsers::stream_features::StreamFeatures;

use crate::hub::Hub;
use crate::io::{Budget, Io, Transport, Xml, is_too_large};
use crate::sm::ResumeRequest;

/// Read timeouts of client streams: a silent client is asked for an ack
/// (with XEP-0198) after the soft timeout and dropped after the hard one.
fn timeouts() -> Timeouts {
    Timeouts {
        read_timeout: Duration::from_secs(120),
        response_timeout: Duration::from_secs(60),
    }
}

/// Where negotiation ended.
enum Negotiated {
    /// A resource was bound: run the session.
    Bound(Box<(Xml, Budget, crate::hub::Bound)>),
    /// The connection was handed to a session being resumed, or closed.
    Done,
}

/// What negotiation has established so far.
struct Progress {
    tls: bool,
    user: Option<String>,
}

/// Serves one accepted TCP connection until it closes.
pub(crate) async fn serve(hub: Arc<Hub>, tcp: TcpStream, tls: Option<TlsAcceptor>) {
    let _ = tcp.set_nodelay(true);
    let budget = Budget::new(hub.config.max_stanza_size);
    let io = budget.wrap(Box::new(tcp));
    let limit = hub.config.negotiation_timeout;
    match tokio::time::timeout(limit, negotiate(&hub, io, budget, tls)).await {
        Ok(Ok(Negotiated::Bound(bound))) => {
            let (stream, budget, bound) = *bound;
            tracing::debug!(jid = %bound.jid, "resource bound");
            crate::session::run(hub, stream, budget, bound).await;
        }
        Ok(Ok(Negotiated::Done)) => {}
        Ok(Err(error)) => tracing::debug!(%error, "negotiation failed"),
        Err(_) => tracing::debug!("negotiation timed out"),
    }
}

/// Sends a stream error and closes the stream (bounded in time).
pub(crate) async fn close_with_error(stream: &mut Xml, condition: StreamCondition, text: &str) {
    let error = StreamError::new(condition, "en", text.to_owned());
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        stream.send(&error).await?;
        stream.shutdown().await
    })
    .await;
}

async fn negotiate(
    hub: &Hub,
    io: Io,
    mut budget: Budget,
    tls: Option<TlsAcceptor>,
) -> std::io::Result<Negotiated> {
    let mut progress = Progress {
        tls: false,
        user: None,
    };
    let mut accepted = accept_stream(io, xmpp_parsers::ns::JABBER_CLIENT, timeouts()).await?;
    loop {
        let header = accepted.take_header();
        let domain = hub.domain.domain().as_str();
        let to_ok = header.to.as_deref().is_none_or(|to| to == domain);
        let pending = accepted
            .send_header(StreamHeader {
                from: Some(domain.into()),
                to: None,
                id: Some(format!("{:016x}", rand::random::<u64>()).into()),
            })
            .await?;
        if !to_ok {
            pending
                .send_error(&StreamError::new(
                    StreamCondition::HostUnknown,
                    "en",
                    format!("this server serves {domain}"),
                ))
                .await?;
            return Ok(Negotiated::Done);
        }
        let features = features(hub, &progress, tls.is_some());
        let mut stream: Xml = pending.send_features(&features).await?;
        let step = loop {
            match exchange(hub, &mut stream, &mut progress, tls.is_some()).await? {
                Step::Resume(resume) => {
                    match resume_session(hub, &progress, stream, budget.clone(), resume).await {
                        Ok(()) => return Ok(Negotiated::Done),
                        // `<failed/>` was sent: the client may bind instead.
                        Err(back) => stream = back,
                    }
                }
                other => break other,
            }
        };
        match step {
            Step::StartTls => {
                let Some(acceptor) = tls.as_ref() else {
                    return Ok(Negotiated::Done);
                };
                stream
                    .send(&starttls::Nonza::Proceed(starttls::Proceed))
                    .await?;
                let plain = stream.into_inner().into_inner().into_inner();
                let secured = acceptor.accept(plain).await?;
                budget = Budget::new(hub.config.max_stanza_size);
                let boxed: Box<dyn Transport> = Box::new(secured);
                progress.tls = true;
                accepted = accept_stream(
                    budget.wrap(boxed),
                    xmpp_parsers::ns::JABBER_CLIENT,
                    timeouts(),
                )
                .await?;
            }
            Step::Authenticated(success) => {
                accepted = reset(stream, &success).await?;
            }
            Step::Bound(bound) => return Ok(Negotiated::Bound(Box::new((stream, budget, bound)))),
            Step::Resume(_) => return Ok(Negotiated::Done),
            Step::Close => return Ok(Negotiated::Done),
        }
    }
}

async fn reset(stream: Xml, success: &SaslNonza) -> std::io::Result<AcceptedStream<Io>> {
    stream.accept_reset(success).await
}

fn features(hub: &Hub, progress: &Progress, tls_available: bool) -> StreamFeatures {
    let mut features = StreamFeatures::default();
    if progress.user.is_some() {
        features.bind = Some(BindFeature { required: true });
        features.stream_management = Some(StreamManagement { optional: true });
        return features;
    }
    if tls_available && !progress.tls {
        features.starttls = Some(StartTls {
            required: tls_required(hub),
        });
        if tls_required(hub) {
            return features;
        }
    }
    features.sasl_mechanisms = hub
        .accounts
        .mechanisms()
        .into_iter()
        .map(str::to_owned)
        .collect();
    features
}

/// STARTTLS is mandatory unless the server listens on loopback only.
fn tls_required(hub: &Hub) -> bool {
    !hub.loopback
}

enum Step {
    StartTls,
    Authenticated(SaslNonza),
    Bound(crate::hub::Bound),
    Resume(sm::Resume),
    Close,
}

/// Reads elements until one changes the stream's state.
async fn exchange(
    hub: &Hub,
    stream: &mut Xml,
    progress: &mut Progress,
    tls_available: bool,
) -> std::io::Result<Step> {
    let mut mechanism: Option<Box<dyn ::sasl::server::Mechanism + Send>> = None;
    loop {
        let element = match stream.next().await {
            Some(Ok(element)) => element,
            Some(Err(ReadError::ParseError(error))) => {
                tracing::debug!(%error, "unparsable element during negotiation");
                continue;
            }
            Some(Err(ReadError::SoftTimeout)) => continue,
            Some(Err(ReadError::HardError(error))) if is_too_large(&error) => {
                crate::c2s::close_with_error(stream, StreamCondition::PolicyViolation, "too large")
                    .await;
                return Ok(Step::Close);
            }
            Some(Err(ReadError::HardError(error))) => return Err(error),
            Some(Err(ReadError::StreamFooterReceived)) | None => return Ok(Step::Close),
        };
        match element {
            XmppStreamElement::Starttls(starttls::Nonza::Request(_))
                if tls_available && !progress.tls && progress.user.is_none() =>
            {
                return Ok(Step::StartTls);
            }
            XmppStreamElement::Sasl(nonza) if progress.user.is_none() => {
                if tls_available && !progress.tls && tls_required(hub) {
                    close_with_error(stream, StreamCondition::PolicyViolation, "STARTTLS first")
                        .await;
                    return Ok(Step::Close);
                }
                let response = match nonza {
                    SaslNonza::Auth(auth) => {
                        mechanism = hub.accounts.mechanism(&auth.mechanism, &auth.data);
                        match mechanism.as_mut() {
                            Some(m) => m.respond(&auth.data),
                            None => {
                                fail(stream, sasl::DefinedCondition::InvalidMechanism).await?;
                                continue;
                            }
                        }
                    }
                    SaslNonza::Response(response) => match mechanism.as_mut() {
                        Some(m) => m.respond(&response.data),
                        None => {
                            fail(stream, sasl::DefinedCondition::MalformedRequest).await?;
                            continue;
                        }
                    },
                    SaslNonza::Abort(_) => {
                        mechanism = None;
                        fail(stream, sasl::DefinedCondition::Aborted).await?;
                        continue;
                    }
                    _ => continue,
                };
                match response {
                    Ok(::sasl::server::Response::Proceed(data)) => {
                        stream
                            .send(&SaslNonza::Challenge(sasl::Challenge { data }))
                            .await?;
                    }
                    Ok(::sasl::server::Response::Success(identity, data)) => {
                        let ::sasl::common::Identity::Username(user) = identity else {
                            fail(stream, sasl::DefinedCondition::NotAuthorized).await?;
                            continue;
                        };
                        tracing::debug!(user, "authenticated");
                        progress.user = Some(user);
                        return Ok(Step::Authenticated(SaslNonza::Success(sasl::Success {
                            data,
                        })));
                    }
                    Err(error) => {
                        tracing::debug!(%error, "authentication failed");
                        mechanism = None;
                        fail(stream, sasl::DefinedCondition::NotAuthorized).await?;
                    }
                }
            }
            XmppStreamElement::SM(SmNonza::Resume(resume)) if progress.user.is_some() => {
                return Ok(Step::Resume(resume));
            }
            XmppStreamElement::Stanza(xmpp_parsers::stanza::Stanza::Iq(Iq::Set {
                id,
                payload,
                ..
            })) if progress.user.is_some() && payload.is("bind", xmpp_parsers::ns::BIND) => {
                let user = progress.user.clone().unwrap_or_default();
                let query = BindQuery::try_from(payload).ok();
                let resource = query.and_then(|q| q.resource);
                let Some(bound) = hub.bind(&user, resource.as_deref()) else {
                    let error = Iq::Error {
                        from: None,
                        to: None,
                        id,
                        error: crate::hub::stanza_error(
                            xmpp_parsers::stanza_error::DefinedCondition::BadRequest,
                        ),
                        payload: None,
                    };
                    stream.send(&error).await?;
                    continue;
                };
                let result = Iq::Result {
                    from: None,
                    to: None,
                    id,
                    payload: Some(
                        BindResponse {
                            jid: bound.jid.clone(),
                        }
                        .into(),
                    ),
                };
                stream.send(&result).await?;
                return Ok(Step::Bound(bound));
            }
            XmppStreamElement::StreamError(error) => {
                tracing::debug!(%error, "stream error from the client");
                return Ok(Step::Close);
            }
            other => {
                tracing::debug!(element = ?other, "element before binding");
                close_with_error(
                    stream,
                    StreamCondition::NotAuthorized,
                    "authenticate and bind first",
                )
                .await;
                return Ok(Step::Close);
            }
        }
    }
}

async fn fail(stream: &mut Xml, condition: sasl::DefinedCondition) -> std::io::Result<()> {
    stream
        .send(&SaslNonza::Failure(sasl::Failure {
            defined_condition: condition,
            texts: Default::default(),
        }))
        .await
}

/// Hands the connection to the session `resume.previd`; or answers
/// `<failed/>` and gives the stream back.
async fn resume_session(
    hub: &Hub,
    progress: &Progress,
    mut stream: Xml,
    budget: Budget,
    resume: sm::Resume,
) -> Result<(), Xml> {
    let user = progress.user.clone().unwrap_or_default();
    let target = {
        let state = hub.lock();
        state
            .resumable
            .get(&resume.previd.0)
            .filter(|(owner, _)| owner.node().is_some_and(|n| n.as_str() == user))
            .map(|(_, tx)| tx.clone())
    };
    if let Some(tx) = target {
        let request = ResumeRequest {
            stream,
            budget,
            h: resume.h,
        };
        match tx.try_send(request) {
            Ok(()) => return Ok(()),
            Err(error) => stream = error.into_inner().stream,
        }
    }
    tracing::debug!(previd = resume.previd.0, "resumption refused");
    // `h` is optional in XEP-0198, but tokio-xmpp (xmpp-parsers 0.23)
    // refuses a `<failed/>` without it and drops the connection; the old
    // session is unknown, so nothing of it was handled here.
    let failed = sm::Failed {
        h: Some(0),
        error: Some(xmpp_parsers::stanza_error::DefinedCondition::ItemNotFound),
    };
    let _ = stream.send(&SmNonza::Failed(failed)).await;
    Err(stream)
}
