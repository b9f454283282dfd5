//! Topic and method names: the default derived from a type name, and the
//! validity rule (a method name follows the topic rule).
//!
//! The rule is the same as `xbus::validate_topic` in `bus/src/event.rs`; this
//! crate cannot depend on `xbus` (that would be a cycle), so it is repeated
//! here and both copies are tested against the same cases.

/// Longest topic accepted, in bytes (`xbus::MAX_TOPIC_LEN`).
pub const MAX_TOPIC_LEN: usize = 255;

/// Converts a type name in `UpperCamelCase` to `snake_case`.
///
/// A `_` goes before an uppercase letter that follows a lowercase letter or a
/// digit (`OrderCreated` -> `order_created`, `V2Thing` -> `v2_thing`), and
/// before the last uppercase letter of an acronym followed by a lowercase one
/// (`HTTPRequestSent` -> `http_request_sent`). Existing underscores are kept
/// and never doubled by the conversion.
pub fn snake_case(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::with_capacity(name.len() + 4);
    for (i, &c) in chars.iter().enumerate() {
        if !c.is_uppercase() {
            out.push(c);
            continue;
        }
        if let Some(&prev) = i.checked_sub(1).and_then(|p| chars.get(p)) {
            let next_is_lower = chars.get(i + 1).is_some_and(|n| n.is_lowercase());
            if prev.is_lowercase()
                || prev.is_ascii_digit()
                || (prev.is_uppercase() && next_is_lower)
            {
                out.push('_');
            }
        }
        out.extend(c.to_lowercase());
    }
    out
}

/// Why a string is not a valid topic (or method name, which follows the same
/// rule); [`TopicError::describe`] says it in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicError {
    /// Zero bytes long.
    Empty,
    /// Longer than [`MAX_TOPIC_LEN`] bytes (the length).
    TooLong(usize),
    /// Holds a character outside `[A-Za-z0-9._-]` (the first one).
    InvalidChar(char),
    /// Starts with '.'.
    LeadingDot,
    /// Ends with '.'.
    TrailingDot,
    /// Holds "..".
    DoubleDot,
}

impl TopicError {
    /// Completes "invalid {noun} ...: ", where `noun` is what the string
    /// names: `topic` or `method`.
    pub fn describe(&self, noun: &str) -> String {
        const SEGMENT: &str = "segments between dots must not be empty";
        match self {
            TopicError::Empty => format!("it is empty; a {noun} is 1 to 255 bytes long"),
            TopicError::TooLong(len) => {
                format!("it is {len} bytes long, at most {MAX_TOPIC_LEN} are allowed")
            }
            TopicError::InvalidChar(ch) => format!(
                "it contains {ch:?}; only ASCII letters, digits, '.', '_' and '-' are allowed"
            ),
            TopicError::LeadingDot => format!("it starts with '.'; {SEGMENT}"),
            TopicError::TrailingDot => format!("it ends with '.'; {SEGMENT}"),
            TopicError::DoubleDot => format!("it contains \"..\"; {SEGMENT}"),
        }
    }
}

/// Checks `topic` against the rule of `xbus::validate_topic`: 1 to 255 bytes
/// of ASCII letters, digits, `.`, `_` and `-`, with no empty `.`-separated
/// segment.
pub fn validate(topic: &str) -> Result<(), TopicError> {
    if topic.is_empty() {
        return Err(TopicError::Empty);
    }
    if topic.len() > MAX_TOPIC_LEN {
        return Err(TopicError::TooLong(topic.len()));
    }
    if let Some(ch) = topic
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(TopicError::InvalidChar(ch));
    }
    if topic.starts_with('.') {
        Err(TopicError::LeadingDot)
    } else if topic.ends_with('.') {
        Err(TopicError::TrailingDot)
    } else if topic.contains("..") {
        Err(TopicError::DoubleDot)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snake_case_of_type_names() {
        let cases = [
            ("OrderCreated", "order_created"),
            ("HTTPRequestSent", "http_request_sent"),
            ("V2Thing", "v2_thing"),
            ("Order", "order"),
            ("A", "a"),
            ("ABC", "abc"),
            ("IOError", "io_error"),
            ("XMLHttpRequest", "xml_http_request"),
            ("HTTP2Request", "http2_request"),
            ("Utf8Decoder", "utf8_decoder"),
            ("ThingV2", "thing_v2"),
            ("V2", "v2"),
            ("lowerCamel", "lower_camel"),
            ("already_snake", "already_snake"),
            ("Order_Created", "order_created"),
            ("_Private", "_private"),
            ("Foo__Bar", "foo__bar"),
            ("ABCd", "ab_cd"),
            ("Ünïcode", "ünïcode"),
            ("", ""),
        ];
        for (input, expected) in cases {
            assert_eq!(snake_case(input), expected, "snake_case({input:?})");
        }
    }

    #[test]
    fn snake_case_of_ascii_idents_is_a_valid_topic() {
        for name in ["OrderCreated", "HTTPRequestSent", "V2Thing", "_X", "a1B2c3"] {
            assert_eq!(validate(&snake_case(name)), Ok(()), "{name}");
        }
    }

    #[test]
    fn valid_topics() {
        for t in [
            "orders.created",
            "a-b_c.D9",
            "a",
            "billing_v2",
            "-._",
            "x.y.z",
        ] {
            assert_eq!(validate(t), Ok(()), "{t:?}");
        }
        assert_eq!(validate(&"a".repeat(MAX_TOPIC_LEN)), Ok(()));
    }

    #[test]
    fn invalid_topics() {
        assert_eq!(validate(""), Err(TopicError::Empty));
        assert_eq!(validate(&"a".repeat(256)), Err(TopicError::TooLong(256)));
        assert_eq!(validate("a b"), Err(TopicError::InvalidChar(' ')));
        assert_eq!(validate("a/b"), Err(TopicError::InvalidChar('/')));
        assert_eq!(validate("café"), Err(TopicError::InvalidChar('é')));
        assert_eq!(validate(".a"), Err(TopicError::LeadingDot));
        assert_eq!(validate("."), Err(TopicError::LeadingDot));
        assert_eq!(validate("a."), Err(TopicError::TrailingDot));
        assert_eq!(validate("a..b"), Err(TopicError::DoubleDot));
        // Length is checked on bytes, before characters, like xbus does.
        assert_eq!(validate(&"é".repeat(128)), Err(TopicError::TooLong(256)));
    }

    #[test]
    fn messages_say_what_is_wrong() {
        let describe = |name: &str| validate(name).unwrap_err().describe("topic");
        assert_eq!(
            describe("a b"),
            "it contains ' '; only ASCII letters, digits, '.', '_' and '-' are allowed"
        );
        assert!(describe("a..b").contains("\"..\""));
        assert_eq!(describe(""), "it is empty; a topic is 1 to 255 bytes long");
        assert!(describe(&"a".repeat(300)).contains("300 bytes"));
        assert_eq!(
            TopicError::Empty.describe("method"),
            "it is empty; a method is 1 to 255 bytes long"
        );
    }
}
