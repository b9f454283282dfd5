//! `#[derive(Request)]`: check the input, parse its `#[request(...)]`
//! attributes ([`attrs`](crate::attrs)), fill in and validate the defaults,
//! require `response = Type`, expand to an `impl ::xbus::__private::Request`
//! ([`common`] does the parts shared with `#[derive(Event)]`).
//!
//! Every error carries the span of the offending token. On error the entry
//! point also emits [`fallback`], an impl with default values and the
//! response type if one can be found, so the user sees the one real error
//! and not a cascade of "trait not implemented".

use proc_macro2::{TokenStream, TokenTree};
use syn::parse::{ParseStream, Parser};
use syn::{Attribute, DeriveInput, Meta, Type, parse_quote};

use crate::attrs::Kind;
use crate::common::{self, Spec};

/// `#[derive(Request)]` with `#[request(method = "...", response = Type, ...)]`.
pub const KIND: Kind = Kind {
    derive: "Request",
    attr: "request",
    name_key: "method",
    name_example: "\"inventory.check\"",
    response: true,
    transient: false,
};

/// Expands `#[derive(Request)]` on `input`, or says what is wrong with it.
pub fn expand(input: &DeriveInput) -> syn::Result<TokenStream> {
    let (attrs, spec) = common::spec(input, &KIND)?;
    let response = attrs.response.ok_or_else(|| {
        syn::Error::new(
            input.ident.span(),
            "missing `response = Type`: add `#[request(response = ...)]` naming the type \
             a handler answers with",
        )
    })?;
    Ok(common::impl_trait(
        input,
        &KIND,
        &spec,
        Some(&response),
        None,
    ))
}

/// An impl with default values, emitted next to the error when [`expand`]
/// fails so that uses of the type as a `Request` raise no further errors.
/// Its response is the one the attributes name if it parses
/// ([`scan_response`]), `()` otherwise. Nothing for a union (see
/// [`Spec::fallback`]).
pub fn fallback(input: &DeriveInput) -> TokenStream {
    let Some(spec) = Spec::fallback(input) else {
        return TokenStream::new();
    };
    let response = scan_response(&input.attrs).unwrap_or_else(|| parse_quote!(()));
    common::impl_trait(input, &KIND, &spec, Some(&response), None)
}

/// The first `response = Type` of the `#[request(...)]` attributes, found
/// without parsing the other keys: when another key is wrong, the fallback
/// still answers with the right type, so code that relies on it raises no
/// further errors.
fn scan_response(attrs: &[Attribute]) -> Option<Type> {
    let lists = attrs.iter().filter(|attr| attr.path().is_ident(KIND.attr));
    lists.into_iter().find_map(|attr| {
        let Meta::List(list) = &attr.meta else {
            return None;
        };
        let tokens: Vec<TokenTree> = list.tokens.clone().into_iter().collect();
        (0..tokens.len()).find_map(|i| {
            let starts_key = i == 0 || is_punct(&tokens[i - 1], ',');
            let is_response = matches!(&tokens[i], TokenTree::Ident(key) if key == "response");
            let eq = tokens.get(i + 1).is_some_and(|token| is_punct(token, '='));
            if !(starts_key && is_response && eq) {
                return None;
            }
            let leading_type = |input: ParseStream<'_>| {
                let ty = input.parse::<Type>()?;
                input.parse::<TokenStream>()?;
                Ok(ty)
            };
            leading_type
                .parse2(tokens[i + 2..].iter().cloned().collect())
                .ok()
        })
    })
}

/// Whether `token` is the punctuation `ch`.
fn is_punct(token: &TokenTree, ch: char) -> bool {
    matches!(token, TokenTree::Punct(punct) if punct.as_char() == ch)
}

#[cfg(test)]
mod tests {
    use quote::ToTokens;

    use super::*;
    use crate::attrs;

    fn tokens(ty: Option<&Type>) -> Option<String> {
        ty.map(|ty| ty.to_token_stream().to_string())
    }

    #[test]
    fn response_types() {
        let attrs = attrs::parse(
            &[
                parse_quote!(#[request(method = "inventory.check")]),
                parse_quote!(#[event(topic = "ignored")]),
                parse_quote!(#[request(response = Vec<(u8, String)>, version = 2)]),
            ],
            &KIND,
        )
        .unwrap();
        assert_eq!(attrs.name.as_deref(), Some("inventory.check"));
        assert_eq!(
            tokens(attrs.response.as_ref()).as_deref(),
            Some("Vec < (u8 , String) >")
        );
        assert_eq!((attrs.encoding, attrs.version), (None, Some(2)));
        let attrs = attrs::parse(
            &[parse_quote!(#[request(response = crate::a::B<'static, T>)])],
            &KIND,
        )
        .unwrap();
        assert_eq!(
            tokens(attrs.response.as_ref()).as_deref(),
            Some("crate :: a :: B < 'static , T >")
        );
    }

    #[test]
    fn expands_to_a_request_impl() {
        let code = expand(&parse_quote! {
            #[request(response = Option<StockLevel>, encoding = "json")]
            struct CheckStock { sku: String }
        })
        .unwrap()
        .to_string();
        assert!(code.contains("impl :: xbus :: __private :: Request for CheckStock {"));
        assert!(
            code.contains("type Response = Option < StockLevel > ;"),
            "{code}"
        );
        assert!(code.contains("const METHOD : & 'static"), "{code}");
        assert!(code.contains("str = \"check_stock\" ;"), "{code}");
        assert!(code.contains("Encoding :: Json ;"), "{code}");
    }

    #[test]
    fn generic_impls_bound_the_response_too() {
        let code = expand(&parse_quote! {
            #[request(response = Vec<T>)]
            struct Echo<T> { items: Vec<T> }
        })
        .unwrap()
        .to_string();
        assert!(
            code.contains("where Echo < T > : :: xbus :: __private :: serde :: Serialize"),
            "{code}"
        );
        assert!(
            code.contains(", Vec < T > : :: xbus :: __private :: serde :: Serialize"),
            "{code}"
        );
    }

    #[test]
    fn missing_response() {
        let input: DeriveInput = parse_quote! {
            #[request(method = "a.b", version = 2)]
            struct CheckStock;
        };
        let error = expand(&input).unwrap_err().to_string();
        assert!(
            error.starts_with("missing `response = Type`: add"),
            "{error}"
        );
        let code = fallback(&input).to_string();
        assert!(code.contains("type Response = () ;"), "{code}");
        assert!(code.contains("str = \"check_stock\" ;"), "{code}");
    }

    #[test]
    fn fallback_keeps_the_response_it_can_find() {
        let input: DeriveInput = parse_quote! {
            #[request(methd = "x", response = StockLevel)]
            struct CheckStock;
        };
        assert!(expand(&input).is_err());
        let code = fallback(&input).to_string();
        assert!(code.contains("type Response = StockLevel ;"), "{code}");
        assert!(fallback(&parse_quote!(union U { a: u8 })).is_empty());
    }

    #[test]
    fn scan_response_skips_what_does_not_parse() {
        let scan = |attrs: Vec<Attribute>| tokens(scan_response(&attrs).as_ref());
        assert_eq!(
            scan(vec![
                parse_quote!(#[request(nope = 1 2, response = Vec<u8>, x)])
            ])
            .as_deref(),
            Some("Vec < u8 >")
        );
        assert_eq!(
            scan(vec![
                parse_quote!(#[request(method = "m")]),
                parse_quote!(#[request(response = "Foo")]),
                parse_quote!(#[request(bad, response = A::B)]),
            ])
            .as_deref(),
            Some("A :: B")
        );
        assert_eq!(scan(vec![parse_quote!(#[request(x = response = A)])]), None);
        assert_eq!(scan(vec![parse_quote!(#[event(response = A)])]), None);
        assert_eq!(scan(vec![parse_quote!(#[request = "response = A"])]), None);
    }
}
