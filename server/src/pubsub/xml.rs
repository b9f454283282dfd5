//! Small helpers to read and build elements.

use xmpp_parsers::minidom::rxml::NcName;
use xmpp_parsers::minidom::{Element, ElementBuilder};

/// An attribute name known at compile time.
pub(crate) fn attr_name(name: &'static str) -> NcName {
    // Only called with literal names, which are valid NCNames.
    NcName::try_from(name).unwrap_or_else(|_| unreachable!("invalid attribute name {name}"))
}

/// `Element::builder` with string attributes.
pub(crate) fn build(name: &str, ns: &str, attrs: &[(&'static str, &str)]) -> ElementBuilder {
    let mut builder = Element::builder(name, ns);
    for (key, value) in attrs {
        builder = builder.attr(attr_name(key), *value);
    }
    builder
}

/// A boolean attribute per XML Schema (`true`/`1`, `false`/`0`); `None`
/// when absent, `Err` when malformed.
pub(crate) fn bool_attr(elem: &Element, name: &str) -> Result<Option<bool>, ()> {
    match elem.attr(name) {
        None => Ok(None),
        Some("true" | "1") => Ok(Some(true)),
        Some("false" | "0") => Ok(Some(false)),
        Some(_) => Err(()),
    }
}
