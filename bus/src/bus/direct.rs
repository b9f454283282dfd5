//! Events to one service: [`Bus::send`] and the [`inbox`](Bus::inbox)
//! that receives them (docs/PROTOCOL.md §4).

use std::str::FromStr;

use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::{Instrument, info_span};
use xmpp_parsers::jid::Jid;
use xmpp_parsers::minidom::Element;

use super::Bus;
use crate::codec::RawPayload;
use crate::command::{Command, Dropped};
use crate::error::{SendError, SubscribeError};
use crate::event::{Event, validate_topic};
use crate::meter;
use crate::subscription::{RawSubscription, SubscribeOptions, Subscription};

impl Bus {
    /// Sends `event` to one recipient as a `<message/>`: a bare JID (the
    /// server picks the session) or a full JID (one instance). Resolves once
    /// the server acknowledged it (XEP-0198), or once it was written when
    /// the server has no stream management.
    pub async fn send<E: Event>(&self, to: &str, event: &E) -> Result<(), SendError> {
        self.send_raw(to, RawPayload::encode(event)?).await
    }

    /// Sends an already serialized payload to one recipient.
    pub async fn send_raw(&self, to: &str, payload: RawPayload) -> Result<(), SendError> {
        let to = Jid::from_str(to).map_err(|e| SendError::InvalidRecipient {
            jid: to.to_owned(),
            reason: e.to_string(),
        })?;
        payload.headers.validate()?;
        let span = info_span!("send", topic = payload.topic.as_str(), %to);
        self.send_payload(span, payload, |payload, reply| Command::Send {
            to,
            payload,
            reply,
        })
        .await
    }

    /// Sends `payload` with the command `command` builds, in the `send`
    /// span `span` whose trace context the payload carries, and measures it.
    pub(crate) async fn send_payload<T>(
        &self,
        span: tracing::Span,
        mut payload: RawPayload,
        command: impl FnOnce(Element, oneshot::Sender<Result<T, SendError>>) -> Command,
    ) -> Result<T, SendError> {
        crate::trace::inject(&span, &mut payload.headers);
        if let Some((size, max)) = self.oversize(&payload) {
            return Err(SendError::PayloadTooLarge { size, max });
        }
        let (reply, answer) = oneshot::channel();
        let started = Instant::now();
        let outcome = async {
            self.command(command(payload.to_element(), reply))
                .await
                .map_err(|_| SendError::Closed)?;
            answer.await.map_err(|_| SendError::Closed)?
        }
        .instrument(span)
        .await;
        let error = outcome.as_ref().err().map(meter::send_error_type);
        meter::sent(
            meter::Outgoing::Send,
            &payload.topic,
            started.elapsed(),
            error,
        );
        outcome
    }

    /// The stream of events of type `E` sent directly to this bus with
    /// [`send`](Self::send). Each inbox gets every such event.
    pub async fn inbox<E: Event>(&self) -> Result<Subscription<E>, SubscribeError> {
        Ok(Subscription::new(self.inbox_raw(E::TOPIC).await?))
    }

    /// The untyped inbox for direct events on `topic`.
    pub async fn inbox_raw(&self, topic: &str) -> Result<RawSubscription, SubscribeError> {
        validate_topic(topic)?;
        let (tx, rx) = self.buffer(&SubscribeOptions::default());
        let (reply, answer) = oneshot::channel();
        self.command(Command::Inbox {
            topic: topic.to_owned(),
            tx,
            reply,
        })
        .await
        .map_err(|_| SubscribeError::Closed)?;
        let id = answer.await.map_err(|_| SubscribeError::Closed)?;
        Ok(RawSubscription {
            topic: topic.to_owned(),
            rx,
            _guard: self.guard(Dropped::Inbox {
                topic: topic.to_owned(),
                id,
            }),
        })
    }
}
