//! The RPC wire format: the `<request/>` an IQ set carries, the
//! `<response/>` its result carries, and the stanza errors a callee
//! answers with. See `docs/PROTOCOL.md`.
//!
//! ```xml
//! <iq type='set' id='xb7' to='inventory@example.org/i1'>
//!   <request xmlns='urn:xbus:0' method='inventory.check' encoding='msgpack'
//!            version='1' timeout='10000'>BASE64</request>
//! </iq>
//! <iq type='result' id='xb7'>
//!   <response xmlns='urn:xbus:0' method='inventory.check' encoding='msgpack'
//!             version='1'>BASE64</response>
//! </iq>
//! ```

use std::time::Duration;

use xmpp_parsers::jid::FullJid;
use xmpp_parsers::minidom::Element;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};

use crate::codec::{NS, attr, body_element, deserialize, name, read_body, read_format, serialize};
use crate::error::{DecodeError, EncodeError};
use crate::event::{Encoding, validate_topic};
use crate::headers::Headers;
use crate::request::{Request, RequestError, RpcError};

/// Element of a call.
pub(crate) const REQUEST: &str = "request";
/// Element of an answer.
pub(crate) const RESPONSE: &str = "response";
/// Application condition of a handler's error: `<failure code='...'/>`.
const FAILURE: &str = "failure";
/// Application condition of a call to a method without handler.
const UNKNOWN_METHOD: &str = "unknown-method";

/// A request as bytes: the untyped form, for tools and bridges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRequest {
    /// The method called.
    pub method: String,
    /// How `data` (and the response) are serialized.
    pub encoding: Encoding,
    /// The schema version of the request and its response.
    pub version: u32,
    /// The serialized request.
    pub data: Vec<u8>,
    /// XEP-0131 headers carried with the request.
    pub headers: Headers,
}

impl RawRequest {
    /// Serializes `request` with its type's encoding.
    pub fn encode<R: Request>(request: &R) -> Result<RawRequest, EncodeError> {
        Ok(RawRequest {
            method: R::METHOD.to_owned(),
            encoding: R::ENCODING,
            version: R::VERSION,
            data: serialize(request, R::ENCODING)?,
            headers: Headers::new(),
        })
    }

    /// Deserializes into `R`, checking encoding and version first.
    pub fn decode<R: Request>(&self) -> Result<R, DecodeError> {
        check_format::<R>(self.encoding, self.version)?;
        deserialize(&self.data, self.encoding)
    }

    /// The `<request/>` element; `timeout` tells the callee how long the
    /// caller waits.
    pub(crate) fn to_element(&self, timeout: Duration) -> Element {
        let millis = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        body_element(
            REQUEST,
            &[
                ("method", self.method.clone()),
                ("timeout", millis.to_string()),
            ],
            self.encoding,
            self.version,
            &self.data,
            &self.headers,
        )
    }

    /// Parses a `<request/>` element and its optional `timeout`.
    pub(crate) fn from_element(
        elem: &Element,
        max_payload: usize,
    ) -> Result<(RawRequest, Option<Duration>), DecodeError> {
        let method = method_of(elem)?;
        let timeout = match elem.attr("timeout") {
            None => None,
            Some(ms) => Some(Duration::from_millis(ms.parse::<u64>().map_err(|e| {
                DecodeError::BadAttribute {
                    name: "timeout",
                    reason: e.to_string(),
                }
            })?)),
        };
        let (encoding, version) = read_format(elem)?;
        let (data, headers) = read_body(elem, max_payload)?;
        let request = RawRequest {
            method,
            encoding,
            version,
            data,
            headers,
        };
        Ok((request, timeout))
    }
}

/// A response as bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawResponse {
    /// How `data` is serialized.
    pub encoding: Encoding,
    /// The schema version.
    pub version: u32,
    /// The serialized response.
    pub data: Vec<u8>,
}

impl RawResponse {
    /// Serializes the response to a call of `R`.
    pub(crate) fn encode<R: Request>(response: &R::Response) -> Result<RawResponse, EncodeError> {
        Ok(RawResponse {
            encoding: R::ENCODING,
            version: R::VERSION,
            data: serialize(response, R::ENCODING)?,
        })
    }

    /// Deserializes the response to a call of `R`.
    pub fn decode<R: Request>(&self) -> Result<R::Response, DecodeError> {
        check_format::<R>(self.encoding, self.version)?;
        deserialize(&self.data, self.encoding)
    }

    /// The `<response/>` element.
    pub(crate) fn to_element(&self, method: &str) -> Element {
        body_element(
            RESPONSE,
            &[("method", method.to_owned())],
            self.encoding,
            self.version,
            &self.data,
            &Headers::new(),
        )
    }

    /// Parses the payload of a result IQ.
    pub(crate) fn from_result(
        payload: Option<&Element>,
        max_payload: usize,
    ) -> Result<RawResponse, DecodeError> {
        let elem = payload
            .filter(|p| p.is(RESPONSE, NS))
            .ok_or(DecodeError::MissingPayload)?;
        let (encoding, version) = read_format(elem)?;
        let (data, _) = read_body(elem, max_payload)?;
        Ok(RawResponse {
            encoding,
            version,
            data,
        })
    }
}

fn method_of(elem: &Element) -> Result<String, DecodeError> {
    if !elem.is(REQUEST, NS) {
        return Err(DecodeError::MissingPayload);
    }
    let method = attr(elem, "method")?;
    validate_topic(method).map_err(|e| DecodeError::BadAttribute {
        name: "method",
        reason: e.to_string(),
    })?;
    Ok(method.to_owned())
}

fn check_format<R: Request>(encoding: Encoding, version: u32) -> Result<(), DecodeError> {
    if encoding != R::ENCODING {
        return Err(DecodeError::WrongEncoding {
            expected: R::ENCODING,
            found: encoding,
        });
    }
    if version != R::VERSION {
        return Err(DecodeError::WrongVersion {
            expected: R::VERSION,
            found: version,
        });
    }
    Ok(())
}

// ------------------------------------------------------ callee's errors ---

fn stanza_error(kind: ErrorType, condition: DefinedCondition, text: String) -> StanzaError {
    StanzaError::new(kind, condition, "en", text)
}

/// The handler's application error: `undefined-condition` with
/// `<failure xmlns='urn:xbus:0' code='...'/>`; the message is the text.
pub(crate) fn app_error(error: &RpcError) -> StanzaError {
    let mut stanza = stanza_error(
        ErrorType::Cancel,
        DefinedCondition::UndefinedCondition,
        error.message.clone(),
    );
    stanza.other = Some(
        Element::builder(FAILURE, NS)
            .attr(name("code"), error.code.as_str())
            .build(),
    );
    stanza
}

/// No handler for `method`.
pub(crate) fn unknown_method(method: &str) -> StanzaError {
    let mut stanza = stanza_error(
        ErrorType::Cancel,
        DefinedCondition::FeatureNotImplemented,
        format!("no handler for method {method:?}"),
    );
    stanza.other = Some(
        Element::builder(UNKNOWN_METHOD, NS)
            .attr(name("method"), method)
            .build(),
    );
    stanza
}

/// The request is malformed.
pub(crate) fn bad_request(reason: String) -> StanzaError {
    stanza_error(ErrorType::Modify, DefinedCondition::BadRequest, reason)
}

/// The caller is not allowed to call `method` (see [`Allow`](crate::Allow)).
pub(crate) fn forbidden(method: &str, from: &FullJid, allowed: &str) -> StanzaError {
    stanza_error(
        ErrorType::Auth,
        DefinedCondition::Forbidden,
        format!(
            "{} may not call {method:?}: this service allows {allowed}",
            from.to_bare()
        ),
    )
}

/// All handler slots are taken.
pub(crate) fn overloaded(limit: usize) -> StanzaError {
    stanza_error(
        ErrorType::Wait,
        DefinedCondition::ResourceConstraint,
        format!("all {limit} handler slots are busy"),
    )
}

/// The handler panicked or its response did not serialize.
pub(crate) fn handler_failed(reason: String) -> StanzaError {
    stanza_error(
        ErrorType::Wait,
        DefinedCondition::InternalServerError,
        reason,
    )
}

// ------------------------------------------------------ caller's view ---

/// Whether the error says that the recipient is not there (so another
/// instance may be tried).
pub(crate) fn is_unavailable(error: &StanzaError) -> bool {
    matches!(
        error.defined_condition,
        DefinedCondition::ServiceUnavailable
            | DefinedCondition::RecipientUnavailable
            | DefinedCondition::ItemNotFound
            | DefinedCondition::RemoteServerNotFound
    )
}

/// Maps a callee's (or its server's) stanza error to what the caller
/// should do about it.
pub(crate) fn classify(method: &str, from: &str, error: &StanzaError) -> RequestError {
    let method = method.to_owned();
    let from = from.to_owned();
    let text = error
        .texts
        .values()
        .next()
        .filter(|t| !t.is_empty())
        .cloned();
    let reason = || {
        text.clone()
            .unwrap_or_else(|| condition_name(&error.defined_condition))
    };
    let app = error.other.as_ref().filter(|o| o.ns() == NS);
    match (&error.defined_condition, app) {
        (DefinedCondition::UndefinedCondition, Some(failure)) if failure.name() == FAILURE => {
            RequestError::Remote {
                error: RpcError::new(
                    failure.attr("code").unwrap_or_default(),
                    text.clone().unwrap_or_default(),
                ),
                method,
                from,
            }
        }
        (DefinedCondition::FeatureNotImplemented, Some(u)) if u.name() == UNKNOWN_METHOD => {
            RequestError::UnknownMethod { method, from }
        }
        (DefinedCondition::BadRequest, _) => RequestError::Rejected {
            reason: reason(),
            method,
            from,
        },
        (DefinedCondition::ResourceConstraint, _) => RequestError::Overloaded { method, from },
        (DefinedCondition::Forbidden, _) => RequestError::Forbidden {
            reason: reason(),
            method,
            from,
        },
        (DefinedCondition::InternalServerError, _) => RequestError::HandlerFailed {
            reason: reason(),
            method,
            from,
        },
        _ if is_unavailable(error) => RequestError::NoResponder {
            reason: format!("{from} answered {}", reason()),
            method,
            to: from,
        },
        _ => RequestError::Server {
            error: crate::pubsub::server_error(error),
            method,
            to: from,
        },
    }
}

fn condition_name(condition: &DefinedCondition) -> String {
    let elem = Element::from(StanzaError::new(
        ErrorType::Cancel,
        condition.clone(),
        "en",
        "",
    ));
    elem.children()
        .find(|c| c.name() != "text")
        .map(|c| c.name().to_owned())
        .unwrap_or_else(|| "undefined-condition".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Check {
        sku: String,
    }
    impl Request for Check {
        type Response = u32;
        const METHOD: &'static str = "inventory.check";
        const ENCODING: Encoding = Encoding::Json;
        const VERSION: u32 = 2;
    }

    #[test]
    fn request_round_trips_through_xml() {
        let mut raw = RawRequest::encode(&Check { sku: "A1".into() }).unwrap();
        raw.headers.insert("trace", "t-1");
        let elem = raw.to_element(Duration::from_millis(1500));
        let xml = String::from(&elem);
        assert!(xml.contains("method='inventory.check'"), "{xml}");
        assert!(xml.contains("timeout='1500'"), "{xml}");
        let (back, timeout) = RawRequest::from_element(&xml.parse().unwrap(), 1024).unwrap();
        assert_eq!(back, raw);
        assert_eq!(timeout, Some(Duration::from_millis(1500)));
        assert_eq!(back.decode::<Check>().unwrap(), Check { sku: "A1".into() });
    }

    #[test]
    fn response_round_trips_and_checks_the_version() {
        let raw = RawResponse::encode::<Check>(&7).unwrap();
        let elem = raw.to_element("inventory.check");
        let back = RawResponse::from_result(Some(&elem), 1024).unwrap();
        assert_eq!(back.decode::<Check>().unwrap(), 7);
        let other = RawResponse { version: 1, ..back };
        assert!(matches!(
            other.decode::<Check>(),
            Err(DecodeError::WrongVersion { .. })
        ));
        assert_eq!(
            RawResponse::from_result(None, 1024),
            Err(DecodeError::MissingPayload)
        );
    }

    #[test]
    fn bad_requests_are_refused_with_reasons() {
        let cases = [
            (
                "<request xmlns='urn:xbus:0' encoding='json' version='1'>e30=</request>",
                "method",
            ),
            (
                "<request xmlns='urn:xbus:0' method='a b' encoding='json' version='1'>e30=</request>",
                "method",
            ),
            (
                "<request xmlns='urn:xbus:0' method='m' timeout='soon' encoding='json' version='1'>e30=</request>",
                "timeout",
            ),
            (
                "<request xmlns='urn:xbus:0' method='m' encoding='yaml' version='1'>e30=</request>",
                "encoding",
            ),
            (
                "<request xmlns='urn:xbus:0' method='m' encoding='json' version='1'>%%%</request>",
                "base64",
            ),
        ];
        for (xml, word) in cases {
            let error = RawRequest::from_element(&xml.parse().unwrap(), 1024).unwrap_err();
            assert!(error.to_string().contains(word), "{xml}: {error}");
        }
    }

    #[test]
    fn errors_map_to_what_the_caller_should_do() {
        let kind = |e: StanzaError| classify("m", "svc@x/1", &e);
        assert!(matches!(
            kind(app_error(&RpcError::new("out_of_stock", "none left"))),
            RequestError::Remote { error, .. } if error == RpcError::new("out_of_stock", "none left")
        ));
        assert!(matches!(
            kind(unknown_method("m")),
            RequestError::UnknownMethod { .. }
        ));
        assert!(matches!(
            kind(bad_request("no".into())),
            RequestError::Rejected { reason, .. } if reason == "no"
        ));
        assert!(matches!(
            kind(overloaded(4)),
            RequestError::Overloaded { .. }
        ));
        assert!(matches!(
            kind(handler_failed("panicked".into())),
            RequestError::HandlerFailed { .. }
        ));
        let gone = StanzaError::new(
            ErrorType::Cancel,
            DefinedCondition::ServiceUnavailable,
            "en",
            "",
        );
        assert!(is_unavailable(&gone));
        assert!(matches!(kind(gone), RequestError::NoResponder { .. }));
        let refused = StanzaError::new(ErrorType::Auth, DefinedCondition::Forbidden, "en", "");
        assert!(matches!(kind(refused), RequestError::Forbidden { .. }));
        let caller = FullJid::new("orders@example.com/o1").unwrap();
        let refused = forbidden("inventory.check", &caller, "accounts of example.org");
        assert!(matches!(
            kind(refused),
            RequestError::Forbidden { reason, .. }
                if reason == "orders@example.com may not call \"inventory.check\": \
                              this service allows accounts of example.org"
        ));
    }
}
