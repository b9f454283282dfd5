//! `#[derive(Event)]`: check the input, parse its `#[event(...)]` attributes
//! ([`attrs`]), fill in and validate the defaults, expand to an
//! `impl ::xbus::__private::Event`.
//!
//! Every error carries the span of the offending token. On error the entry
//! point also emits [`fallback`], an impl with default values, so the user
//! sees the one real error and not a cascade of "trait not implemented".

use proc_macro2::TokenStream;
use quote::quote;
use syn::ext::IdentExt;
use syn::{Attribute, Data, DeriveInput, Fields, parse_quote};

use crate::attrs::{self, ATTR, Attrs, Encoding};
use crate::topic;

/// The values the impl is generated from, every default filled in.
#[derive(Debug)]
struct Spec {
    topic: String,
    encoding: Encoding,
    version: u32,
}

/// Expands `#[derive(Event)]` on `input`, or says what is wrong with it.
pub fn expand(input: &DeriveInput) -> syn::Result<TokenStream> {
    check_shape(input)?;
    let attrs = attrs::parse(&input.attrs)?;
    let spec = resolve(input, attrs)?;
    Ok(impl_event(input, &spec))
}

/// An impl with default values, emitted next to the error when [`expand`]
/// fails so that uses of the type as an `Event` raise no further errors.
///
/// Nothing for a union: serde cannot derive for one, so an impl would only
/// add "`Serialize` is not implemented" errors.
pub fn fallback(input: &DeriveInput) -> TokenStream {
    if let Data::Union(_) = input.data {
        return TokenStream::new();
    }
    let spec = Spec {
        topic: default_topic(input),
        encoding: Encoding::default(),
        version: 1,
    };
    impl_event(input, &spec)
}

// ------------------------------------------------------------- validate ---

/// Rejects unions, and `#[event]` anywhere but on the type itself.
fn check_shape(input: &DeriveInput) -> syn::Result<()> {
    let misplaced = |attrs: &[Attribute], place: &str| match attrs::find(attrs) {
        Some(attr) => Err(syn::Error::new_spanned(
            attr,
            format!("`#[{ATTR}(...)]` goes on the type, not on a {place}"),
        )),
        None => Ok(()),
    };
    let check_fields = |fields: &Fields| {
        fields
            .iter()
            .try_for_each(|field| misplaced(&field.attrs, "field"))
    };
    match &input.data {
        Data::Struct(data) => check_fields(&data.fields),
        Data::Enum(data) => data.variants.iter().try_for_each(|variant| {
            misplaced(&variant.attrs, "variant")?;
            check_fields(&variant.fields)
        }),
        Data::Union(data) => Err(syn::Error::new(
            data.union_token.span,
            "`#[derive(Event)]` does not support unions: serde cannot derive \
             `Serialize`/`Deserialize` for a union; use a struct or an enum",
        )),
    }
}

/// Fills in the defaults and checks the default topic, which the user did not
/// write but which must still be a valid topic.
fn resolve(input: &DeriveInput, attrs: Attrs) -> syn::Result<Spec> {
    let topic = match attrs.topic {
        Some(topic) => topic,
        None => {
            let topic = default_topic(input);
            topic::validate(&topic).map_err(|err| {
                syn::Error::new(
                    input.ident.span(),
                    format!(
                        "the default topic {topic:?}, taken from the type name, is invalid: \
                         {err}; set one with `#[{ATTR}(topic = \"...\")]`"
                    ),
                )
            })?;
            topic
        }
    };
    Ok(Spec {
        topic,
        encoding: attrs.encoding.unwrap_or_default(),
        version: attrs.version.unwrap_or(1),
    })
}

/// The type name in snake_case (`OrderCreated` -> `order_created`).
fn default_topic(input: &DeriveInput) -> String {
    topic::snake_case(&input.ident.unraw().to_string())
}

// --------------------------------------------------------------- expand ---

/// The impl. For a generic type it requires the trait's supertraits of the
/// type itself (not of each parameter), so whatever bounds serde's derive
/// chose (including `#[serde(bound = ...)]`) are the ones that apply.
fn impl_event(input: &DeriveInput, spec: &Spec) -> TokenStream {
    let ident = &input.ident;
    let (_, ty_generics, _) = input.generics.split_for_impl();
    let mut generics = input.generics.clone();
    if !generics.params.is_empty() {
        generics.make_where_clause().predicates.push(parse_quote! {
            #ident #ty_generics: ::xbus::__private::serde::Serialize
                + ::xbus::__private::serde::de::DeserializeOwned
                + ::xbus::__private::core::marker::Send
                + 'static
        });
    }
    let (impl_generics, _, where_clause) = generics.split_for_impl();
    let Spec {
        topic,
        encoding,
        version,
    } = spec;
    let encoding = encoding.to_tokens();
    quote! {
        #[automatically_derived]
        impl #impl_generics ::xbus::__private::Event for #ident #ty_generics #where_clause {
            const TOPIC: &'static ::xbus::__private::core::primitive::str = #topic;
            const ENCODING: ::xbus::__private::Encoding = #encoding;
            const VERSION: ::xbus::__private::core::primitive::u32 = #version;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec_of(input: DeriveInput) -> syn::Result<Spec> {
        check_shape(&input)?;
        resolve(&input, attrs::parse(&input.attrs)?)
    }

    fn error_of(input: DeriveInput) -> String {
        spec_of(input).unwrap_err().to_string()
    }

    #[test]
    fn defaults() {
        let spec = spec_of(parse_quote!(
            struct HTTPRequestSent;
        ))
        .unwrap();
        assert_eq!(spec.topic, "http_request_sent");
        assert_eq!(spec.encoding, Encoding::MessagePack);
        assert_eq!(spec.version, 1);
    }

    #[test]
    fn raw_identifiers_lose_their_prefix() {
        let spec = spec_of(parse_quote!(
            struct r#Type;
        ))
        .unwrap();
        assert_eq!(spec.topic, "type");
    }

    #[test]
    fn invalid_default_topic() {
        let error = error_of(parse_quote!(
            struct Café;
        ));
        assert!(error.contains("default topic \"café\""), "{error}");
        assert!(error.contains("set one with `#[event(topic"), "{error}");
    }

    #[test]
    fn attributes_are_merged_into_the_spec() {
        let spec = spec_of(parse_quote! {
            #[event(topic = "a.b")]
            #[event(version = 3)]
            enum E { A }
        })
        .unwrap();
        assert_eq!(
            (spec.topic.as_str(), spec.encoding, spec.version),
            ("a.b", Encoding::MessagePack, 3)
        );
    }

    #[test]
    fn misplaced_attributes_and_unions() {
        let field = error_of(parse_quote!(
            struct S {
                #[event(topic = "x")]
                a: u8,
            }
        ));
        assert!(field.contains("not on a field"), "{field}");
        let variant = error_of(parse_quote!(
            enum E {
                #[event(topic = "x")]
                A,
            }
        ));
        assert!(variant.contains("not on a variant"), "{variant}");
        let union = error_of(parse_quote!(
            union U {
                a: u8,
            }
        ));
        assert!(union.contains("unions"), "{union}");
        assert!(
            fallback(&parse_quote!(
                union U {
                    a: u8,
                }
            ))
            .is_empty()
        );
    }

    #[test]
    fn generic_impls_bound_the_type_itself() {
        let input: DeriveInput = parse_quote!(
            struct W<T>(T)
            where
                T: Clone;
        );
        let code = impl_event(&input, &spec_of(input.clone()).unwrap()).to_string();
        assert!(code.contains("T : Clone , W < T > : :: xbus :: __private :: serde :: Serialize"));
        assert!(code.contains(
            "const TOPIC : & 'static :: xbus :: __private :: core :: primitive :: str = \"w\""
        ));
    }
}
