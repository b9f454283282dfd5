//! `#[derive(Event)]`: check the input, parse its `#[event(...)]` attributes
//! ([`attrs`](crate::attrs)), fill in and validate the defaults, expand to
//! an `impl ::xbus::__private::Event` ([`common`] does the parts shared with
//! `#[derive(Request)]`).
//!
//! Every error carries the span of the offending token. On error the entry
//! point also emits [`fallback`], an impl with default values, so the user
//! sees the one real error and not a cascade of "trait not implemented".

use proc_macro2::TokenStream;
use quote::quote;
use syn::DeriveInput;

use crate::attrs::{AccessModel, Kind, PublishModel};
use crate::common::{self, Spec};

/// `#[derive(Event)]` with `#[event(topic = "...", ...)]`.
pub const KIND: Kind = Kind {
    derive: "Event",
    attr: "event",
    name_key: "topic",
    name_example: "\"orders.created\"",
    response: false,
    transient: true,
};

/// Expands `#[derive(Event)]` on `input`, or says what is wrong with it.
/// `#[event(transient)]` adds `const PERSISTENCE = Persistence::Transient`;
/// `publish_model` and `access_model` add `const ACCESS`.
pub fn expand(input: &DeriveInput) -> syn::Result<TokenStream> {
    let (attrs, spec) = common::spec(input, &KIND)?;
    let persistence = attrs.transient.map(|()| {
        quote! {
            const PERSISTENCE: ::xbus::__private::Persistence =
                ::xbus::__private::Persistence::Transient;
        }
    });
    let access = (attrs.publish_model.is_some() || attrs.access_model.is_some()).then(|| {
        let publishers_only = attrs.publish_model == Some(PublishModel::Publishers);
        let model = attrs.access_model.unwrap_or(AccessModel::Open).to_tokens();
        quote! {
            const ACCESS: ::xbus::__private::EventAccess = ::xbus::__private::EventAccess {
                publishers_only: #publishers_only,
                model: #model,
            };
        }
    });
    let items = match (persistence, access) {
        (None, None) => None,
        (persistence, access) => Some(quote!(#persistence #access)),
    };
    Ok(common::impl_trait(input, &KIND, &spec, None, items))
}

/// An impl with default values, emitted next to the error when [`expand`]
/// fails so that uses of the type as an `Event` raise no further errors.
/// Nothing for a union (see [`Spec::fallback`]).
pub fn fallback(input: &DeriveInput) -> TokenStream {
    match Spec::fallback(input) {
        Some(spec) => common::impl_trait(input, &KIND, &spec, None, None),
        None => TokenStream::new(),
    }
}

#[cfg(test)]
mod tests {
    use syn::parse_quote;

    use super::*;

    #[test]
    fn expands_to_an_event_impl() {
        let code = expand(&parse_quote! {
            #[event(topic = "a.b", encoding = "json", version = 3)]
            struct S;
        })
        .unwrap()
        .to_string();
        assert!(code.contains("impl :: xbus :: __private :: Event for S {"));
        assert!(code.contains("= \"a.b\" ;"), "{code}");
        assert!(code.contains("= :: xbus :: __private :: Encoding :: Json ;"));
        assert!(code.contains("u32 = 3u32 ;"), "{code}");
    }

    #[test]
    fn transient_events_say_so() {
        let code = expand(&parse_quote! {
            #[event(topic = "telemetry.cpu", transient)]
            struct Cpu;
        })
        .unwrap()
        .to_string();
        assert!(
            code.contains("const PERSISTENCE : :: xbus :: __private :: Persistence = :: xbus :: __private :: Persistence :: Transient ;"),
            "{code}"
        );
        let persistent = expand(&parse_quote! {
            #[event(topic = "orders.created")]
            struct Order;
        })
        .unwrap()
        .to_string();
        assert!(!persistent.contains("PERSISTENCE"), "{persistent}");
        for (input, expected) in [
            (
                quote!(
                    #[event(transient = true)]
                    struct A;
                ),
                "`transient` is a flag and takes no value: write `#[event(transient)]`",
            ),
            (
                quote!(
                    #[event(transient, transient)]
                    struct A;
                ),
                "duplicate `transient` key",
            ),
        ] {
            let error = expand(&syn::parse2(input).unwrap())
                .unwrap_err()
                .to_string();
            assert!(error.contains(expected), "{error}");
        }
    }

    #[test]
    fn access_keys_set_the_access_const() {
        let code = expand(&parse_quote! {
            #[event(topic = "orders", publish_model = "publishers", access_model = "whitelist")]
            struct Order;
        })
        .unwrap()
        .to_string();
        assert!(code.contains("const ACCESS"), "{code}");
        assert!(code.contains("publishers_only : true"), "{code}");
        assert!(code.contains("AccessModel :: Whitelist"), "{code}");
        let open = expand(&parse_quote! {
            #[event(topic = "orders")]
            struct Order;
        })
        .unwrap()
        .to_string();
        assert!(!open.contains("ACCESS"), "{open}");
        for (input, expected) in [
            (
                quote!(
                    #[event(access_model = "roster")]
                    struct A;
                ),
                "unknown access_model \"roster\"",
            ),
            (
                quote!(
                    #[event(publish_model = "subscribers")]
                    struct A;
                ),
                "unknown publish_model \"subscribers\"",
            ),
        ] {
            let error = expand(&syn::parse2(input).unwrap())
                .unwrap_err()
                .to_string();
            assert!(error.contains(expected), "{error}");
        }
    }

    #[test]
    fn fallback_uses_the_defaults() {
        let input: DeriveInput = parse_quote! {
            #[event(topic = "a b")]
            enum OrderEvent { A }
        };
        assert!(expand(&input).is_err());
        let code = fallback(&input).to_string();
        assert!(code.contains("str = \"order_event\" ;"), "{code}");
        assert!(code.contains("Encoding :: MessagePack ;"), "{code}");
        assert!(fallback(&parse_quote!(union U { a: u8 })).is_empty());
    }
}
