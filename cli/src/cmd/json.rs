//! JSON on the command line, payload bytes on the wire: parsing arguments,
//! encoding them as MessagePack or JSON, decoding what arrives.

use std::time::Duration;

use anyhow::{Context as _, anyhow};
use serde_json::Value;
use xbus::{Encoding, Headers, RawPayload, RawRequest};

/// The payload encodings a user can pick with `--encoding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum EncodingArg {
    /// MessagePack with named fields: what `#[derive(Event)]` uses by default.
    #[default]
    Msgpack,
    /// UTF-8 JSON.
    Json,
}

impl From<EncodingArg> for Encoding {
    fn from(arg: EncodingArg) -> Encoding {
        match arg {
            EncodingArg::Msgpack => Encoding::MessagePack,
            EncodingArg::Json => Encoding::Json,
        }
    }
}

/// Parses the JSON text given on the command line; `-` reads it from stdin.
pub fn parse_arg(text: &str) -> anyhow::Result<Value> {
    let text = if text == "-" {
        std::io::read_to_string(std::io::stdin()).context("cannot read JSON from stdin")?
    } else {
        text.to_owned()
    };
    serde_json::from_str(&text).map_err(|e| anyhow!("invalid JSON: {e}"))
}

/// Serializes `value` as `encoding` would carry it: MessagePack with named
/// fields (as xbus's typed events are), or JSON.
pub fn encode(value: &Value, encoding: Encoding) -> anyhow::Result<Vec<u8>> {
    match encoding {
        Encoding::Json => Ok(serde_json::to_vec(value)?),
        _ => rmp_serde::to_vec_named(value).context("cannot encode as MessagePack"),
    }
}

/// What `xbus pub` and `xbus req` send: the JSON argument encoded, with
/// its schema version and headers.
pub struct Body {
    encoding: Encoding,
    version: u32,
    data: Vec<u8>,
    headers: Headers,
}

impl Body {
    /// Parses `json` (`-`: stdin) and encodes it as `encoding`.
    pub fn from_args(
        json: &str,
        encoding: EncodingArg,
        version: u32,
        headers: &[(String, String)],
    ) -> anyhow::Result<Body> {
        let encoding = encoding.into();
        Ok(Body {
            data: encode(&parse_arg(json)?, encoding)?,
            encoding,
            version,
            headers: self::headers(headers),
        })
    }

    /// The body as an event of `topic`.
    pub fn into_payload(self, topic: String) -> RawPayload {
        let Body {
            encoding,
            version,
            data,
            headers,
        } = self;
        RawPayload {
            topic,
            encoding,
            version,
            data,
            headers,
        }
    }

    /// The body as a call of `method`.
    pub fn into_request(self, method: String) -> RawRequest {
        let Body {
            encoding,
            version,
            data,
            headers,
        } = self;
        RawRequest {
            method,
            encoding,
            version,
            data,
            headers,
        }
    }
}

/// Decodes a payload of `encoding` into a JSON value.
pub fn decode(data: &[u8], encoding: Encoding) -> anyhow::Result<Value> {
    match encoding {
        Encoding::Json => serde_json::from_slice(data).context("the JSON payload does not parse"),
        _ => rmp_serde::from_slice(data)
            .context("the MessagePack payload does not decode as JSON data"),
    }
}

/// The `--header name=value` options as XEP-0131 headers.
pub fn headers(pairs: &[(String, String)]) -> Headers {
    pairs.iter().cloned().collect()
}

/// Headers as a JSON object; a name that repeats maps to an array of its
/// values, in order.
pub fn headers_json<'a>(headers: impl Iterator<Item = (&'a str, &'a str)>) -> Value {
    let mut object = serde_json::Map::new();
    for (name, value) in headers {
        let value = Value::String(value.to_owned());
        match object.get_mut(name) {
            None => {
                object.insert(name.to_owned(), value);
            }
            Some(Value::Array(values)) => values.push(value),
            Some(first) => *first = Value::Array(vec![first.take(), value]),
        }
    }
    Value::Object(object)
}

/// clap parser of `--header name=value`.
pub fn parse_header(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
        _ => Err(format!("expected name=value, got {text:?}")),
    }
}

/// clap parser of a duration in seconds (`10`, `0.5`).
pub fn parse_secs(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    Duration::try_from_secs_f64(secs).map_err(|_| format!("{text:?} is not a duration"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_encodings_round_trip() {
        let value = serde_json::json!({"id": 7, "tags": ["a", "b"], "ok": true, "x": null});
        for encoding in [Encoding::MessagePack, Encoding::Json] {
            let bytes = encode(&value, encoding).unwrap();
            assert_eq!(decode(&bytes, encoding).unwrap(), value);
        }
    }

    #[test]
    fn repeated_headers_become_arrays() {
        let json = headers_json([("a", "1"), ("b", "2"), ("a", "3")].into_iter());
        assert_eq!(json, serde_json::json!({"a": ["1", "3"], "b": "2"}));
    }

    #[test]
    fn parses_headers_and_seconds() {
        assert_eq!(parse_header("k=v=w").unwrap(), ("k".into(), "v=w".into()));
        assert!(parse_header("=v").is_err());
        assert!(parse_header("novalue").is_err());
        assert_eq!(parse_secs("0.5").unwrap(), Duration::from_millis(500));
        assert!(parse_secs("-1").is_err());
        assert!(parse_secs("soon").is_err());
    }
}
