//! What `#[derive(Event)]` and `#[derive(Request)]` share: the shape check,
//! the defaults, and the impl with its name, encoding and version constants.
//! A [`Kind`] says which derive is asking.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};
use syn::ext::IdentExt;
use syn::punctuated::Punctuated;
use syn::{
    Attribute, Data, DeriveInput, Fields, PredicateType, Token, Type, TypeParamBound,
    WherePredicate, parse_quote,
};

use crate::attrs::{self, Attrs, Encoding, Kind};
use crate::topic;

/// The values an impl is generated from, every default filled in.
#[derive(Debug)]
pub struct Spec {
    /// The topic or method.
    pub name: String,
    /// The payload encoding.
    pub encoding: Encoding,
    /// The schema version.
    pub version: u32,
}

impl Spec {
    /// The defaults, for the impl emitted next to an error; `None` for a
    /// union: serde cannot derive for one, so an impl would only add
    /// "`Serialize` is not implemented" errors.
    pub fn fallback(input: &DeriveInput) -> Option<Spec> {
        if let Data::Union(_) = input.data {
            return None;
        }
        Some(Spec {
            name: default_name(input),
            encoding: Encoding::default(),
            version: 1,
        })
    }
}

/// Checks the input's shape, parses its attributes and fills in the
/// defaults: the attributes (for what only one derive reads) and the spec.
pub fn spec(input: &DeriveInput, kind: &Kind) -> syn::Result<(Attrs, Spec)> {
    check_shape(input, kind)?;
    let attrs = attrs::parse(&input.attrs, kind)?;
    let spec = resolve(input, &attrs, kind)?;
    Ok((attrs, spec))
}

/// Rejects unions, and the attribute anywhere but on the type itself.
fn check_shape(input: &DeriveInput, kind: &Kind) -> syn::Result<()> {
    let misplaced = |attrs: &[Attribute], place: &str| match attrs::find(attrs, kind) {
        Some(attr) => Err(syn::Error::new_spanned(
            attr,
            format!("`#[{}(...)]` goes on the type, not on a {place}", kind.attr),
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
            format!(
                "`#[derive({})]` does not support unions: serde cannot derive \
                 `Serialize`/`Deserialize` for a union; use a struct or an enum",
                kind.derive
            ),
        )),
    }
}

/// Fills in the defaults and checks the default topic or method, which the
/// user did not write but which must still follow the topic rule.
fn resolve(input: &DeriveInput, attrs: &Attrs, kind: &Kind) -> syn::Result<Spec> {
    let name = match &attrs.name {
        Some(name) => name.clone(),
        None => {
            let name = default_name(input);
            let key = kind.name_key;
            topic::validate(&name).map_err(|err| {
                syn::Error::new(
                    input.ident.span(),
                    format!(
                        "the default {key} {name:?}, taken from the type name, is invalid: \
                         {}; set one with `#[{}({key} = \"...\")]`",
                        err.describe(key),
                        kind.attr
                    ),
                )
            })?;
            name
        }
    };
    Ok(Spec {
        name,
        encoding: attrs.encoding.unwrap_or_default(),
        version: attrs.version.unwrap_or(1),
    })
}

/// The type name in snake_case (`OrderCreated` -> `order_created`).
fn default_name(input: &DeriveInput) -> String {
    topic::snake_case(&input.ident.unraw().to_string())
}

/// The impl of `::xbus::__private::{kind.derive}`, with `type Response` when
/// `response` is given, and `items` (further associated items) when given.
///
/// For a generic type it requires the trait's supertraits of the type itself
/// (not of each parameter), so whatever bounds serde's derive chose
/// (including `#[serde(bound = ...)]`) are the ones that apply; likewise of
/// the response type, which may name the parameters.
pub fn impl_trait(
    input: &DeriveInput,
    kind: &Kind,
    spec: &Spec,
    response: Option<&Type>,
    items: Option<TokenStream>,
) -> TokenStream {
    let ident = &input.ident;
    let (_, ty_generics, _) = input.generics.split_for_impl();
    let mut generics = input.generics.clone();
    if !generics.params.is_empty() {
        let this: Type = parse_quote!(#ident #ty_generics);
        let bounds: Punctuated<TypeParamBound, Token![+]> = parse_quote! {
            ::xbus::__private::serde::Serialize
                + ::xbus::__private::serde::de::DeserializeOwned
                + ::xbus::__private::core::marker::Send
                + 'static
        };
        let predicates = &mut generics.make_where_clause().predicates;
        for ty in [Some(&this), response].into_iter().flatten() {
            predicates.push(WherePredicate::Type(PredicateType {
                lifetimes: None,
                bounded_ty: ty.clone(),
                colon_token: Default::default(),
                bounds: bounds.clone(),
            }));
        }
    }
    let (impl_generics, _, where_clause) = generics.split_for_impl();
    let trait_ident = format_ident!("{}", kind.derive);
    let name_const = format_ident!("{}", kind.name_key.to_uppercase());
    let response = response.map(|ty| quote!(type Response = #ty;));
    let Spec {
        name,
        encoding,
        version,
    } = spec;
    let encoding = encoding.to_tokens();
    quote! {
        #[automatically_derived]
        impl #impl_generics ::xbus::__private::#trait_ident for #ident #ty_generics #where_clause {
            #response
            const #name_const: &'static ::xbus::__private::core::primitive::str = #name;
            const ENCODING: ::xbus::__private::Encoding = #encoding;
            const VERSION: ::xbus::__private::core::primitive::u32 = #version;
            #items
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::KIND as EVENT;
    use crate::request::KIND as REQUEST;

    fn spec_of(input: &DeriveInput, kind: &Kind) -> syn::Result<Spec> {
        spec(input, kind).map(|(_, spec)| spec)
    }

    fn error_of(input: DeriveInput, kind: &Kind) -> String {
        spec_of(&input, kind).unwrap_err().to_string()
    }

    #[test]
    fn defaults() {
        let input = parse_quote!(
            struct HTTPRequestSent;
        );
        for kind in [&EVENT, &REQUEST] {
            let spec = spec_of(&input, kind).unwrap();
            assert_eq!(spec.name, "http_request_sent");
            assert_eq!(spec.encoding, Encoding::MessagePack);
            assert_eq!(spec.version, 1);
        }
    }

    #[test]
    fn raw_identifiers_lose_their_prefix() {
        let spec = spec_of(
            &parse_quote!(
                struct r#Type;
            ),
            &EVENT,
        )
        .unwrap();
        assert_eq!(spec.name, "type");
    }

    #[test]
    fn invalid_default_names() {
        let event = error_of(
            parse_quote!(
                struct Café;
            ),
            &EVENT,
        );
        assert!(event.contains("default topic \"café\""), "{event}");
        assert!(event.contains("set one with `#[event(topic"), "{event}");
        let request = error_of(
            parse_quote!(
                struct Café;
            ),
            &REQUEST,
        );
        assert!(request.contains("default method \"café\""), "{request}");
        assert!(
            request.contains("set one with `#[request(method = \"...\")]`"),
            "{request}"
        );
    }

    #[test]
    fn attributes_are_merged_into_the_spec() {
        let spec = spec_of(
            &parse_quote! {
                #[event(topic = "a.b")]
                #[event(version = 3)]
                enum E { A }
            },
            &EVENT,
        )
        .unwrap();
        assert_eq!(
            (spec.name.as_str(), spec.encoding, spec.version),
            ("a.b", Encoding::MessagePack, 3)
        );
    }

    #[test]
    fn misplaced_attributes_and_unions() {
        let field = error_of(
            parse_quote!(
                struct S {
                    #[event(topic = "x")]
                    a: u8,
                }
            ),
            &EVENT,
        );
        assert!(field.contains("`#[event(...)]` goes on the type, not on a field"));
        let variant = error_of(
            parse_quote!(
                enum E {
                    #[request]
                    A(u8),
                }
            ),
            &REQUEST,
        );
        assert!(variant.contains("`#[request(...)]` goes on the type, not on a variant"));
        let variant_field = error_of(
            parse_quote!(
                enum E {
                    A(#[request] u8),
                }
            ),
            &REQUEST,
        );
        assert!(variant_field.contains("not on a field"), "{variant_field}");
        let union: DeriveInput = parse_quote!(union U { a: u8 });
        let error = error_of(union.clone(), &REQUEST);
        assert!(error.contains("`#[derive(Request)]` does not support unions"));
        assert!(Spec::fallback(&union).is_none());
        // The other derive's attribute is not this one's business.
        assert!(
            spec_of(
                &parse_quote!(
                    struct S {
                        #[event]
                        a: u8,
                    }
                ),
                &REQUEST
            )
            .is_ok()
        );
    }

    #[test]
    fn generic_impls_bound_the_type_itself() {
        let input: DeriveInput = parse_quote!(
            struct W<T>(T)
            where
                T: Clone;
        );
        let code = impl_trait(
            &input,
            &EVENT,
            &spec_of(&input, &EVENT).unwrap(),
            None,
            None,
        );
        let code = code.to_string();
        assert!(code.contains("T : Clone , W < T > : :: xbus :: __private :: serde :: Serialize"));
        assert!(code.contains(
            "const TOPIC : & 'static :: xbus :: __private :: core :: primitive :: str = \"w\""
        ));
        assert!(!code.contains("Response"), "{code}");
    }

    #[test]
    fn non_generic_impls_have_no_where_clause() {
        let input: DeriveInput = parse_quote!(
            struct S;
        );
        let spec = spec_of(&input, &REQUEST).unwrap();
        let code = impl_trait(&input, &REQUEST, &spec, Some(&parse_quote!(u8)), None).to_string();
        assert!(!code.contains("where"), "{code}");
        assert!(code.contains("impl :: xbus :: __private :: Request for S {"));
        assert!(code.contains("type Response = u8 ;"), "{code}");
        assert!(code.contains("const METHOD : & 'static"), "{code}");
    }
}
