//! Parsing of the `#[event(...)]` attributes with `parse_nested_meta`.
//!
//! Each value is checked as it is read, so every error carries the span of
//! the offending token: the key for an unknown or duplicate key, the value
//! for a bad topic, encoding or version.

use proc_macro2::TokenStream;
use quote::quote;
use syn::ext::IdentExt;
use syn::meta::ParseNestedMeta;
use syn::{Attribute, Expr, ExprLit, Lit, LitStr};

use crate::topic;

/// The attribute name, as registered by the derive.
pub const ATTR: &str = "event";
/// The keys `#[event(...)]` accepts, for the "unknown key" message.
const KEYS: &str = "`topic`, `encoding`, `version`";

/// Payload encoding, mirroring `xbus::Encoding`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Encoding {
    /// `encoding = "msgpack"`, the default.
    #[default]
    MessagePack,
    /// `encoding = "json"`.
    Json,
}

impl Encoding {
    /// The accepted values of `encoding = "..."`, for error messages.
    const VALID: &str = "\"msgpack\" or \"json\"";

    fn from_name(name: &str) -> Option<Self> {
        match name {
            "msgpack" => Some(Encoding::MessagePack),
            "json" => Some(Encoding::Json),
            _ => None,
        }
    }

    /// The `xbus::Encoding` variant, through the hidden module.
    pub fn to_tokens(self) -> TokenStream {
        match self {
            Encoding::MessagePack => quote!(::xbus::__private::Encoding::MessagePack),
            Encoding::Json => quote!(::xbus::__private::Encoding::Json),
        }
    }
}

/// What the `#[event(...)]` attributes set; `None` for a key not given.
/// A given topic is already validated.
#[derive(Debug, Default)]
pub struct Attrs {
    /// `topic = "..."`.
    pub topic: Option<String>,
    /// `encoding = "msgpack" | "json"`.
    pub encoding: Option<Encoding>,
    /// `version = N`.
    pub version: Option<u32>,
}

/// The first `#[event]` attribute in `attrs`, if any.
pub fn find(attrs: &[Attribute]) -> Option<&Attribute> {
    attrs.iter().find(|attr| attr.path().is_ident(ATTR))
}

/// Parses and merges every `#[event(...)]` attribute; a key may appear once
/// across all of them.
pub fn parse(attrs: &[Attribute]) -> syn::Result<Attrs> {
    let mut out = Attrs::default();
    for attr in attrs.iter().filter(|attr| attr.path().is_ident(ATTR)) {
        attr.parse_nested_meta(|meta| parse_key(&mut out, &meta))?;
    }
    Ok(out)
}

fn parse_key(out: &mut Attrs, meta: &ParseNestedMeta<'_>) -> syn::Result<()> {
    let path = &meta.path;
    let key = path.get_ident().map(|ident| ident.unraw().to_string());
    let duplicate = |key: &str| {
        syn::Error::new_spanned(
            path,
            format!(
                "duplicate `{key}` key; each key may be given once \
                 across all `#[{ATTR}(...)]` attributes"
            ),
        )
    };
    match key.as_deref() {
        Some("topic") => {
            if out.topic.is_some() {
                return Err(duplicate("topic"));
            }
            let lit = string_value(meta, "topic", "\"orders.created\"")?;
            let topic = lit.value();
            topic::validate(&topic).map_err(|err| {
                syn::Error::new(lit.span(), format!("invalid topic {topic:?}: {err}"))
            })?;
            out.topic = Some(topic);
        }
        Some("encoding") => {
            if out.encoding.is_some() {
                return Err(duplicate("encoding"));
            }
            let lit = string_value(meta, "encoding", "\"json\"")?;
            let encoding = Encoding::from_name(&lit.value()).ok_or_else(|| {
                syn::Error::new(
                    lit.span(),
                    format!(
                        "unknown encoding {:?}; expected {}",
                        lit.value(),
                        Encoding::VALID
                    ),
                )
            })?;
            out.encoding = Some(encoding);
        }
        Some("version") => {
            if out.version.is_some() {
                return Err(duplicate("version"));
            }
            out.version = Some(version_value(meta)?);
        }
        _ => {
            let shown = quote!(#path).to_string().replace(' ', "");
            return Err(syn::Error::new_spanned(
                path,
                format!("unknown `{ATTR}` key `{shown}`; expected one of {KEYS}"),
            ));
        }
    }
    Ok(())
}

/// The value after `key =`, which must be a string literal.
fn string_value(meta: &ParseNestedMeta<'_>, key: &str, example: &str) -> syn::Result<LitStr> {
    match meta.value()?.parse::<Expr>()? {
        Expr::Lit(ExprLit {
            lit: Lit::Str(lit), ..
        }) => Ok(lit),
        other => Err(syn::Error::new_spanned(
            other,
            format!("expected `{key}` to be a string literal, like `{key} = {example}`"),
        )),
    }
}

/// The value after `version =`, which must be an integer literal that fits
/// a `u32`, unsuffixed or suffixed `u32`.
fn version_value(meta: &ParseNestedMeta<'_>) -> syn::Result<u32> {
    let lit = match meta.value()?.parse::<Expr>()? {
        Expr::Lit(ExprLit {
            lit: Lit::Int(lit), ..
        }) => lit,
        other => {
            return Err(syn::Error::new_spanned(
                other,
                "expected `version` to be an integer literal (a u32), like `version = 2`",
            ));
        }
    };
    if !matches!(lit.suffix(), "" | "u32") {
        return Err(syn::Error::new(
            lit.span(),
            format!(
                "`version` is a u32; write it without the `{}` suffix",
                lit.suffix()
            ),
        ));
    }
    lit.base10_parse::<u32>().map_err(|_| {
        syn::Error::new(
            lit.span(),
            format!("`version` must fit in a u32 (0 to {})", u32::MAX),
        )
    })
}

#[cfg(test)]
mod tests {
    use syn::parse_quote;

    use super::*;

    fn error_of(attrs: Vec<Attribute>) -> String {
        parse(&attrs).unwrap_err().to_string()
    }

    #[test]
    fn keys_merge_across_attributes() {
        let attrs = parse(&[
            parse_quote!(#[event(topic = "a.b")]),
            parse_quote!(#[derive(Clone)]),
            parse_quote!(#[event(encoding = "json", version = 7u32,)]),
        ])
        .unwrap();
        assert_eq!(attrs.topic.as_deref(), Some("a.b"));
        assert_eq!(attrs.encoding, Some(Encoding::Json));
        assert_eq!(attrs.version, Some(7));
        assert!(parse(&[]).unwrap().topic.is_none());
    }

    #[test]
    fn errors() {
        let cases: [(Vec<Attribute>, &str); 10] = [
            (
                vec![parse_quote!(#[event(nope = 1)])],
                "unknown `event` key `nope`",
            ),
            (
                vec![parse_quote!(#[event(a::b)])],
                "unknown `event` key `a::b`",
            ),
            (
                vec![
                    parse_quote!(#[event(topic = "a")]),
                    parse_quote!(#[event(topic = "b")]),
                ],
                "duplicate `topic` key",
            ),
            (vec![parse_quote!(#[event(topic = "a b")])], "contains ' '"),
            (vec![parse_quote!(#[event(topic = 3)])], "string literal"),
            (
                vec![parse_quote!(#[event(encoding = "xml")])],
                "\"msgpack\" or \"json\"",
            ),
            (
                vec![parse_quote!(#[event(version = "2")])],
                "integer literal",
            ),
            (
                vec![parse_quote!(#[event(version = -1)])],
                "integer literal",
            ),
            (vec![parse_quote!(#[event(version = 2u8)])], "`u8` suffix"),
            (
                vec![parse_quote!(#[event(version = 4294967296)])],
                "fit in a u32",
            ),
        ];
        for (attrs, expected) in cases {
            let error = error_of(attrs);
            assert!(error.contains(expected), "{error:?} lacks {expected:?}");
        }
    }
}
