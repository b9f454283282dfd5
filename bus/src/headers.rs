//! XEP-0131 (SHIM) headers: string metadata carried beside an event.

use xmpp_parsers::minidom::Element;

use crate::codec::name;

/// Namespace of XEP-0131 Stanza Headers and Internet Metadata.
pub const NS_SHIM: &str = "http://jabber.org/protocol/shim";

/// Name/value metadata carried with an event (XEP-0131 `<headers/>`):
/// trace context, correlation ids, content hints. Names may repeat; order
/// is kept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(Vec<(String, String)>);

impl Headers {
    /// No headers.
    pub fn new() -> Headers {
        Headers(Vec::new())
    }

    /// Adds a header (names may repeat).
    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<String>) -> &mut Self {
        self.0.push((name.into(), value.into()));
        self
    }

    /// The first value of header `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// All headers in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// How many headers there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Checks that every name and value can travel in XML: no control
    /// characters other than tab, newline and carriage return, and a
    /// non-empty name.
    pub fn validate(&self) -> Result<(), InvalidHeader> {
        // XML 1.0 `Char`, without the control characters it discourages:
        // U+FFFE and U+FFFF are no characters in XML, and minidom refuses
        // to write them.
        let xml_char = |c: char| {
            matches!(c, '\t' | '\n' | '\r')
                || !(c.is_control() || matches!(c, '\u{FFFE}' | '\u{FFFF}'))
        };
        for (name, value) in &self.0 {
            if name.is_empty() || !name.chars().all(xml_char) || !value.chars().all(xml_char) {
                return Err(InvalidHeader { name: name.clone() });
            }
        }
        Ok(())
    }

    /// Appends the headers of every `<headers xmlns='…shim'/>` child of
    /// `parent`. Headers without a `name` are skipped.
    pub(crate) fn extend_from_parent(&mut self, parent: &Element) {
        for child in parent.children() {
            self.extend_from_element(child);
        }
    }

    /// Appends the headers of `elem` if it is a SHIM `<headers/>` element.
    pub(crate) fn extend_from_element(&mut self, elem: &Element) {
        if !elem.is("headers", NS_SHIM) {
            return;
        }
        for header in elem.children().filter(|c| c.is("header", NS_SHIM)) {
            if let Some(name) = header.attr("name") {
                self.insert(name, header.text());
            }
        }
    }

    /// The headers of `parent`'s `<headers/>` children.
    pub(crate) fn from_parent(parent: &Element) -> Headers {
        let mut headers = Headers::new();
        headers.extend_from_parent(parent);
        headers
    }

    /// The `<headers xmlns='http://jabber.org/protocol/shim'/>` element.
    pub(crate) fn to_element(&self) -> Element {
        Element::builder("headers", NS_SHIM)
            .append_all(self.0.iter().map(|(n, v)| {
                Element::builder("header", NS_SHIM)
                    .attr(name("name"), n.as_str())
                    .append(v.as_str())
                    .build()
            }))
            .build()
    }
}

/// A header name or value holds characters that XML cannot carry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("header {name:?} has an empty name or a control character that XML cannot carry")]
pub struct InvalidHeader {
    /// The header's name.
    pub name: String,
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Headers {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Headers(
            iter.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_order_and_repeats() {
        let mut headers = Headers::new();
        headers.insert("a", "1").insert("b", "2").insert("a", "3");
        assert_eq!(headers.get("a"), Some("1"));
        assert_eq!(
            headers.iter().collect::<Vec<_>>(),
            [("a", "1"), ("b", "2"), ("a", "3")]
        );
        let back = Headers::from_parent(
            &Element::builder("p", "x")
                .append(headers.to_element())
                .build(),
        );
        assert_eq!(back, headers);
    }

    #[test]
    fn refuses_what_xml_cannot_carry() {
        assert!(
            Headers::from_iter([("ok", "tab\tand\nnewline")])
                .validate()
                .is_ok()
        );
        assert!(Headers::from_iter([("", "v")]).validate().is_err());
        assert!(Headers::from_iter([("k", "nul\u{0}")]).validate().is_err());
        assert!(Headers::from_iter([("k\u{1b}", "v")]).validate().is_err());
    }
}
