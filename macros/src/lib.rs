//! Derive macros for xbus. Use them through the `xbus` crate, which
//! re-exports them and documents their attributes.
#![deny(missing_docs)]

use proc_macro::TokenStream;
use quote::quote;
use syn::{DeriveInput, parse_macro_input};

mod attrs;
mod event;
mod topic;

/// Derives `xbus::Event`: the topic, encoding and schema version of an event
/// type, set with `#[event(topic = "...", encoding = "msgpack" | "json",
/// version = N)]`; see the xbus crate docs.
#[proc_macro_derive(Event, attributes(event))]
pub fn derive_event(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    event::expand(&input)
        .unwrap_or_else(|err| {
            let error = err.to_compile_error();
            let fallback = event::fallback(&input);
            quote!(#error #fallback)
        })
        .into()
}
