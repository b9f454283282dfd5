//! Derive macros for xbus. Use them through the `xbus` crate, which
//! re-exports them and documents their attributes.
#![deny(missing_docs)]

use proc_macro::TokenStream;
use quote::quote;
use syn::{DeriveInput, parse_macro_input};

mod attrs;
mod common;
mod event;
mod request;
mod topic;

/// Derives `xbus::Event`: the topic, encoding and schema version of an event
/// type, set with `#[event(topic = "...", encoding = "msgpack" | "json",
/// version = N)]`; see the xbus crate docs.
#[proc_macro_derive(Event, attributes(event))]
pub fn derive_event(input: TokenStream) -> TokenStream {
    derive(input, event::expand, event::fallback)
}

/// Derives `xbus::Request`: the method, response type, encoding and schema
/// version of a request type, set with `#[request(method = "...", response =
/// Type, encoding = "msgpack" | "json", version = N)]`, where only `response`
/// is required; see the xbus crate docs.
#[proc_macro_derive(Request, attributes(request))]
pub fn derive_request(input: TokenStream) -> TokenStream {
    derive(input, request::expand, request::fallback)
}

/// Runs `expand`; on error emits the error and, next to it, the `fallback`
/// impl, so the error is the only one the user sees.
fn derive(
    input: TokenStream,
    expand: fn(&DeriveInput) -> syn::Result<proc_macro2::TokenStream>,
    fallback: fn(&DeriveInput) -> proc_macro2::TokenStream,
) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand(&input)
        .unwrap_or_else(|err| {
            let error = err.to_compile_error();
            let fallback = fallback(&input);
            quote!(#error #fallback)
        })
        .into()
}
