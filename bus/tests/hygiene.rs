//! The code `#[derive(Event)]` and `#[derive(Request)]` generate names
//! everything through absolute paths: it compiles in a crate without the
//! prelude, next to items that shadow the names it could have used.
#![no_implicit_prelude]
#![allow(dead_code, non_camel_case_types)]

// Shadow what a careless expansion might name unqualified. (`str` is
// shadowed only in `shadowed_str` below: serde's own derive for structs with
// fields names it unqualified.)
struct u32;
struct Encoding;
trait Event {}
trait Request {}
struct Response;
trait Serialize {}
trait Send {}
mod core {}
mod serde {}
mod xbus {}

#[derive(::xbus::Event, ::serde::Serialize, ::serde::Deserialize)]
#[event(topic = "hygiene.struct", encoding = "json", version = 2)]
struct PlainStruct {
    id: ::std::primitive::u64,
}

#[derive(::xbus::Event, ::serde::Serialize, ::serde::Deserialize)]
enum PlainEnum {
    A,
    B(::std::primitive::u8),
}

#[derive(::xbus::Event, ::serde::Serialize, ::serde::Deserialize)]
#[event(version = 3)]
struct GenericStruct<T, const N: ::std::primitive::usize>
where
    T: ::std::clone::Clone,
{
    inner: T,
}

mod shadowed_str {
    struct str;

    #[derive(::xbus::Event, ::serde::Serialize, ::serde::Deserialize)]
    pub struct Unit;
}

#[derive(::xbus::Request, ::serde::Serialize, ::serde::Deserialize)]
#[request(
    method = "hygiene.call",
    response = ::std::vec::Vec<::std::primitive::u8>,
    encoding = "json",
    version = 2
)]
struct PlainRequest {
    id: ::std::primitive::u64,
}

#[derive(::xbus::Request, ::serde::Serialize, ::serde::Deserialize)]
#[request(response = ::std::option::Option<T>, version = 3)]
enum GenericRequest<T, const N: ::std::primitive::usize>
where
    T: ::std::clone::Clone,
{
    One(T),
}

mod shadowed_response {
    /// `response = Response` names this type, in this module: not the
    /// trait's associated type, nor the `Response` at the crate root.
    #[derive(::serde::Serialize, ::serde::Deserialize)]
    pub struct Response;

    #[derive(::xbus::Request, ::serde::Serialize, ::serde::Deserialize)]
    #[request(response = Response)]
    pub struct Ask;
}

/// Compiles only if `R` answers with `Resp`.
fn assert_response<R: ::xbus::Request<Response = Resp>, Resp>() {}

#[test]
fn consts_without_prelude() {
    use ::xbus::Event as _;

    ::std::assert_eq!(PlainStruct::TOPIC, "hygiene.struct");
    ::std::assert_eq!(PlainStruct::ENCODING, ::xbus::Encoding::Json);
    ::std::assert_eq!(PlainStruct::VERSION, 2);

    ::std::assert_eq!(PlainEnum::TOPIC, "plain_enum");
    ::std::assert_eq!(PlainEnum::ENCODING, ::xbus::Encoding::MessagePack);
    ::std::assert_eq!(PlainEnum::VERSION, 1);

    type G = GenericStruct<::std::string::String, 4>;
    ::std::assert_eq!(G::TOPIC, "generic_struct");
    ::std::assert_eq!(G::ENCODING, ::xbus::Encoding::MessagePack);
    ::std::assert_eq!(G::VERSION, 3);

    ::std::assert_eq!(shadowed_str::Unit::TOPIC, "unit");

    use ::xbus::Request as _;

    ::std::assert_eq!(PlainRequest::METHOD, "hygiene.call");
    ::std::assert_eq!(PlainRequest::ENCODING, ::xbus::Encoding::Json);
    ::std::assert_eq!(PlainRequest::VERSION, 2);
    assert_response::<PlainRequest, ::std::vec::Vec<::std::primitive::u8>>();

    type R = GenericRequest<::std::string::String, 4>;
    ::std::assert_eq!(R::METHOD, "generic_request");
    ::std::assert_eq!(R::ENCODING, ::xbus::Encoding::MessagePack);
    ::std::assert_eq!(R::VERSION, 3);
    assert_response::<R, ::std::option::Option<::std::string::String>>();

    ::std::assert_eq!(shadowed_response::Ask::METHOD, "ask");
    assert_response::<shadowed_response::Ask, shadowed_response::Response>();
}
