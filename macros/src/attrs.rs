//! Parsing of the `#[event(...)]` and `#[request(...)]` attributes with
//! `parse_nested_meta`. One parser serves both derives; a [`Kind`] says which
//! attribute it reads and which keys that attribute takes.
//!
//! Each value is checked as it is read, so every error carries the span of
//! the offending token: the key for an unknown or duplicate key, the value
//! for a bad topic, method, response type, encoding or version.

use proc_macro2::TokenStream;
use quote::quote;
use syn::ext::IdentExt;
use syn::meta::ParseNestedMeta;
use syn::{Attribute, Expr, ExprLit, Lit, LitStr, Type};

use crate::topic;

/// One derive and its attribute: `Event` with `#[event(topic = ...)]`, or
/// `Request` with `#[request(method = ..., response = ...)]`.
#[derive(Debug)]
pub struct Kind {
    /// The derive, which is also the name of the trait it implements.
    pub derive: &'static str,
    /// The attribute name, as registered by the derive.
    pub attr: &'static str,
    /// The key that names the topic or method; its constant is the key in
    /// upper case (`TOPIC`, `METHOD`).
    pub name_key: &'static str,
    /// A value of that key, for the "expected a string literal" message.
    pub name_example: &'static str,
    /// Whether the attribute takes `response = Type`.
    pub response: bool,
    /// Whether the attribute takes the `transient` flag and the
    /// `publish_model` and `access_model` keys (the topic's access).
    pub transient: bool,
}

impl Kind {
    /// The keys the attribute accepts, for the "unknown key" message.
    fn keys(&self) -> String {
        let response = if self.response { "`response`, " } else { "" };
        let transient = if self.transient {
            ", `transient`, `publish_model`, `access_model`"
        } else {
            ""
        };
        format!(
            "`{}`, {response}`encoding`, `version`{transient}",
            self.name_key
        )
    }
}

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

/// What the attributes set; `None` for a key not given. A given topic or
/// method is already validated.
#[derive(Default)]
pub struct Attrs {
    /// `topic = "..."` or `method = "..."`.
    pub name: Option<String>,
    /// `response = Type` (only `#[request]` takes it).
    pub response: Option<Type>,
    /// `encoding = "msgpack" | "json"`.
    pub encoding: Option<Encoding>,
    /// `version = N`.
    pub version: Option<u32>,
    /// The `transient` flag (only `#[event]` takes it).
    pub transient: Option<()>,
    /// `publish_model = "publishers" | "open"` (only `#[event]`).
    pub publish_model: Option<PublishModel>,
    /// `access_model = "open" | "whitelist" | "presence" | "authorize"`
    /// (only `#[event]`).
    pub access_model: Option<AccessModel>,
}

/// `publish_model = "..."`: who may publish to the topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishModel {
    /// `"open"`: anyone, the default.
    Open,
    /// `"publishers"`: the topic's owner and its publisher list.
    Publishers,
}

/// `access_model = "..."`, mirroring `xbus::AccessModel`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessModel {
    /// `"open"`.
    Open,
    /// `"whitelist"`.
    Whitelist,
    /// `"presence"`.
    Presence,
    /// `"authorize"`.
    Authorize,
}

impl AccessModel {
    /// The `xbus::AccessModel` variant, through the hidden module.
    pub fn to_tokens(self) -> TokenStream {
        match self {
            AccessModel::Open => quote!(::xbus::__private::AccessModel::Open),
            AccessModel::Whitelist => quote!(::xbus::__private::AccessModel::Whitelist),
            AccessModel::Presence => quote!(::xbus::__private::AccessModel::Presence),
            AccessModel::Authorize => quote!(::xbus::__private::AccessModel::Authorize),
        }
    }
}

/// The first attribute of `kind` in `attrs`, if any.
pub fn find<'a>(attrs: &'a [Attribute], kind: &Kind) -> Option<&'a Attribute> {
    attrs.iter().find(|attr| attr.path().is_ident(kind.attr))
}

/// Parses and merges every attribute of `kind`; a key may appear once
/// across all of them.
pub fn parse(attrs: &[Attribute], kind: &Kind) -> syn::Result<Attrs> {
    let mut out = Attrs::default();
    for attr in attrs.iter().filter(|attr| attr.path().is_ident(kind.attr)) {
        attr.parse_nested_meta(|meta| parse_key(&mut out, &meta, kind))?;
    }
    Ok(out)
}

fn parse_key(out: &mut Attrs, meta: &ParseNestedMeta<'_>, kind: &Kind) -> syn::Result<()> {
    let key = meta.path.get_ident().map(|ident| ident.unraw().to_string());
    match key.as_deref() {
        Some(key) if key == kind.name_key => {
            set(&mut out.name, meta, kind, key, || name_value(meta, kind))
        }
        Some(key @ "response") if kind.response => {
            set(&mut out.response, meta, kind, key, || response_value(meta))
        }
        Some(key @ "encoding") => set(&mut out.encoding, meta, kind, key, || encoding_value(meta)),
        Some(key @ "version") => set(&mut out.version, meta, kind, key, || version_value(meta)),
        Some(key @ "transient") if kind.transient => {
            set(&mut out.transient, meta, kind, key, || {
                flag_value(meta, kind, key)
            })
        }
        Some(key @ "publish_model") if kind.transient => {
            set(&mut out.publish_model, meta, kind, key, || {
                let lit = string_value(meta, key, "\"publishers\"")?;
                match lit.value().as_str() {
                    "publishers" => Ok(PublishModel::Publishers),
                    "open" => Ok(PublishModel::Open),
                    other => Err(syn::Error::new(
                        lit.span(),
                        format!(
                            "unknown publish_model {other:?}; expected \"publishers\" or \"open\""
                        ),
                    )),
                }
            })
        }
        Some(key @ "access_model") if kind.transient => {
            set(&mut out.access_model, meta, kind, key, || {
                let lit = string_value(meta, key, "\"whitelist\"")?;
                match lit.value().as_str() {
                    "open" => Ok(AccessModel::Open),
                    "whitelist" => Ok(AccessModel::Whitelist),
                    "presence" => Ok(AccessModel::Presence),
                    "authorize" => Ok(AccessModel::Authorize),
                    other => Err(syn::Error::new(
                        lit.span(),
                        format!(
                            "unknown access_model {other:?}; expected \"open\", \"whitelist\", \
                             \"presence\" or \"authorize\""
                        ),
                    )),
                }
            })
        }
        _ => {
            let path = &meta.path;
            let shown = quote!(#path).to_string().replace(' ', "");
            Err(syn::Error::new_spanned(
                path,
                format!(
                    "unknown `{}` key `{shown}`; expected one of {}",
                    kind.attr,
                    kind.keys()
                ),
            ))
        }
    }
}

/// A flag: the key alone, as in `#[event(transient)]`.
fn flag_value(meta: &ParseNestedMeta<'_>, kind: &Kind, key: &str) -> syn::Result<()> {
    if meta.input.is_empty() || meta.input.peek(syn::Token![,]) {
        return Ok(());
    }
    Err(syn::Error::new_spanned(
        &meta.path,
        format!(
            "`{key}` is a flag and takes no value: write `#[{}({key})]`, or leave it out",
            kind.attr
        ),
    ))
}

/// Fills `slot` with `value()`, or fails on the key if it is already set.
fn set<T>(
    slot: &mut Option<T>,
    meta: &ParseNestedMeta<'_>,
    kind: &Kind,
    key: &str,
    value: impl FnOnce() -> syn::Result<T>,
) -> syn::Result<()> {
    if slot.is_some() {
        return Err(syn::Error::new_spanned(
            &meta.path,
            format!(
                "duplicate `{key}` key; each key may be given once \
                 across all `#[{}(...)]` attributes",
                kind.attr
            ),
        ));
    }
    *slot = Some(value()?);
    Ok(())
}

/// The value after `topic =` or `method =`: a string literal that follows
/// the topic rule.
fn name_value(meta: &ParseNestedMeta<'_>, kind: &Kind) -> syn::Result<String> {
    let key = kind.name_key;
    let lit = string_value(meta, key, kind.name_example)?;
    let name = lit.value();
    topic::validate(&name).map_err(|err| {
        syn::Error::new(
            lit.span(),
            format!("invalid {key} {name:?}: {}", err.describe(key)),
        )
    })?;
    Ok(name)
}

/// The value after `encoding =`: `"msgpack"` or `"json"`.
fn encoding_value(meta: &ParseNestedMeta<'_>) -> syn::Result<Encoding> {
    let lit = string_value(meta, "encoding", "\"json\"")?;
    Encoding::from_name(&lit.value()).ok_or_else(|| {
        syn::Error::new(
            lit.span(),
            format!(
                "unknown encoding {:?}; expected {}",
                lit.value(),
                Encoding::VALID
            ),
        )
    })
}

/// The value after `response =`: a type. A string literal gets its own
/// message, since quoting the type is the likely mistake.
fn response_value(meta: &ParseNestedMeta<'_>) -> syn::Result<Type> {
    let input = meta.value()?;
    if input.peek(LitStr) {
        let lit: LitStr = input.parse()?;
        let hint = match syn::parse_str::<Type>(&lit.value()) {
            Ok(_) => format!(": write `response = {}`, without the quotes", lit.value()),
            Err(_) => ", like `response = StockLevel`".to_owned(),
        };
        return Err(syn::Error::new(
            lit.span(),
            format!("expected `response` to be a type, not a string literal{hint}"),
        ));
    }
    input.parse::<Type>().map_err(|err| {
        syn::Error::new(
            err.span(),
            "expected `response` to be a type, like `response = StockLevel`",
        )
    })
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
    use crate::event::KIND as EVENT;
    use crate::request::KIND as REQUEST;

    fn error_of(attrs: Vec<Attribute>, kind: &Kind) -> String {
        match parse(&attrs, kind) {
            Ok(_) => panic!("parsed without an error"),
            Err(err) => err.to_string(),
        }
    }

    #[test]
    fn keys_merge_across_attributes() {
        let attrs = parse(
            &[
                parse_quote!(#[event(topic = "a.b")]),
                parse_quote!(#[derive(Clone)]),
                parse_quote!(#[event(encoding = "json", version = 7u32,)]),
            ],
            &EVENT,
        )
        .unwrap();
        assert_eq!(attrs.name.as_deref(), Some("a.b"));
        assert_eq!(attrs.encoding, Some(Encoding::Json));
        assert_eq!(attrs.version, Some(7));
        assert!(attrs.response.is_none());
        assert!(parse(&[], &EVENT).unwrap().name.is_none());
    }

    #[test]
    fn errors() {
        let cases: [(Vec<Attribute>, &str); 10] = [
            (
                vec![parse_quote!(#[event(nope = 1)])],
                "unknown `event` key `nope`; expected one of `topic`, `encoding`, `version`, `transient`, `publish_model`, `access_model`",
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
                "duplicate `topic` key; each key may be given once across all `#[event(...)]`",
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
            let error = error_of(attrs, &EVENT);
            assert!(error.contains(expected), "{error:?} lacks {expected:?}");
        }
    }

    #[test]
    fn request_errors() {
        let cases: [(Attribute, &str); 9] = [
            (
                parse_quote!(#[request(topic = "a")]),
                "unknown `request` key `topic`; expected one of `method`, `response`, \
                 `encoding`, `version`",
            ),
            (
                parse_quote!(#[request(response = A, response = B)]),
                "duplicate `response` key; each key may be given once across all \
                 `#[request(...)]` attributes",
            ),
            (
                parse_quote!(#[request(method = "a..b")]),
                "invalid method \"a..b\": it contains \"..\"",
            ),
            (
                parse_quote!(#[request(method = "")]),
                "invalid method \"\": it is empty; a method is 1 to 255 bytes long",
            ),
            (
                parse_quote!(#[request(method = inventory)]),
                "expected `method` to be a string literal, like `method = \"inventory.check\"`",
            ),
            (
                parse_quote!(#[request(response = "Foo<u8>")]),
                "not a string literal: write `response = Foo<u8>`, without the quotes",
            ),
            (
                parse_quote!(#[request(response = "not a type")]),
                "not a string literal, like `response = StockLevel`",
            ),
            (
                parse_quote!(#[request(response = 42)]),
                "expected `response` to be a type, like `response = StockLevel`",
            ),
            (
                parse_quote!(#[event(response = u8)]),
                "unknown `event` key `response`",
            ),
        ];
        for (attr, expected) in cases {
            let kind = if attr.path().is_ident("event") {
                &EVENT
            } else {
                &REQUEST
            };
            let error = error_of(vec![attr], kind);
            assert!(error.contains(expected), "{error:?} lacks {expected:?}");
        }
    }
}
