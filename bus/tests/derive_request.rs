//! `#[derive(Request)]`: the constants and response type it generates for
//! each attribute key, the defaults, and every kind of type it accepts.

use std::collections::BTreeMap;
use std::marker::PhantomData;

use serde::{Deserialize, Serialize};
use xbus::Encoding::{self, Json, MessagePack};
use xbus::{Request, validate_topic};

/// Asserts the three constants of `R`, and that its method passes the
/// runtime check; compiles only if `R` answers with `Resp`.
#[track_caller]
fn assert_request<R: Request<Response = Resp>, Resp>(
    method: &str,
    encoding: Encoding,
    version: u32,
) {
    let name = std::any::type_name::<R>();
    assert_eq!(
        (R::METHOD, R::ENCODING, R::VERSION),
        (method, encoding, version),
        "{name}"
    );
    assert_eq!(validate_topic(R::METHOD), Ok(()), "{name}");
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct StockLevel {
    sku: String,
    available: u32,
}

#[derive(Request, Serialize, Deserialize)]
#[request(response = StockLevel)]
struct CheckStock {
    sku: String,
}

#[test]
fn defaults_are_snake_case_msgpack_version_1() {
    assert_request::<CheckStock, StockLevel>("check_stock", MessagePack, 1);
}

#[derive(Request, Serialize, Deserialize)]
#[request(response = ())]
struct HTTPGetSent;

#[derive(Request, Serialize, Deserialize)]
#[request(response = u8)]
struct V2Ping;

#[derive(Request, Serialize, Deserialize)]
#[request(response = u8)]
struct r#Loop;

#[test]
fn default_methods_from_type_names() {
    assert_request::<HTTPGetSent, ()>("http_get_sent", MessagePack, 1);
    assert_request::<V2Ping, u8>("v2_ping", MessagePack, 1);
    assert_request::<Loop, u8>("loop", MessagePack, 1);
}

#[derive(Request, Serialize, Deserialize)]
#[request(method = "inventory.check", response = StockLevel)]
struct WithMethod {
    sku: String,
}

#[derive(Request, Serialize, Deserialize)]
#[request(response = StockLevel, encoding = "json")]
struct WithJson;

#[derive(Request, Serialize, Deserialize)]
#[request(encoding = "msgpack", response = StockLevel)]
struct WithMsgpack;

#[derive(Request, Serialize, Deserialize)]
#[request(response = StockLevel, version = 4_294_967_295u32)]
struct MaxVersion;

#[derive(Request, Serialize, Deserialize)]
#[request(
    method = "billing-v2.invoice_pay",
    response = Result<u64, String>,
    encoding = "json",
    version = 12,
)]
struct AllKeys {
    invoice: String,
}

#[test]
fn each_key() {
    assert_request::<WithMethod, StockLevel>("inventory.check", MessagePack, 1);
    assert_request::<WithJson, StockLevel>("with_json", Json, 1);
    assert_request::<WithMsgpack, StockLevel>("with_msgpack", MessagePack, 1);
    assert_request::<MaxVersion, StockLevel>("max_version", MessagePack, u32::MAX);
    type Paid = Result<u64, String>;
    assert_request::<AllKeys, Paid>("billing-v2.invoice_pay", Json, 12);
}

mod inventory {
    #[derive(serde::Serialize, serde::Deserialize)]
    pub struct Reserved(pub u32);
}

#[derive(Request, Serialize, Deserialize)]
#[request(response = crate::inventory::Reserved)]
#[derive(Debug)]
#[request(version = 5)]
#[request(method = "inventory.reserve", encoding = "json")]
struct Reserve {
    sku: String,
}

#[test]
fn several_attributes_are_merged() {
    assert_request::<Reserve, inventory::Reserved>("inventory.reserve", Json, 5);
}

#[derive(Request, Serialize, Deserialize)]
#[request(response = Vec<u8>)]
struct Fetch(String, u32);

#[derive(Request, Serialize, Deserialize)]
#[request(response = BTreeMap<String, Vec<Option<u32>>>, encoding = "json", version = 2)]
enum InventoryQuery {
    BySku { sku: String },
    ByShelf(u32),
    All,
}

#[test]
fn tuple_unit_and_enum_types() {
    assert_request::<Fetch, Vec<u8>>("fetch", MessagePack, 1);
    type Levels = BTreeMap<String, Vec<Option<u32>>>;
    assert_request::<InventoryQuery, Levels>("inventory_query", Json, 2);
}

/// The response names the type parameter: the impl requires
/// `Vec<T>: Serialize + ...` as well as `Echo<T>: Serialize + ...`.
#[derive(Request, Serialize, Deserialize)]
#[request(method = "echo", response = Vec<T>)]
struct Echo<T> {
    items: Vec<T>,
}

#[derive(Request, Serialize, Deserialize)]
#[request(response = Vec<u32>)]
struct Page<const N: usize>;

/// A type parameter that is not serialized: serde puts no bound on it, and
/// neither does the derive.
#[derive(Request, Serialize, Deserialize)]
#[request(response = u64)]
struct Tagged<M: Send + 'static> {
    id: u64,
    #[serde(skip)]
    marker: PhantomData<fn() -> M>,
}

struct NotSerializable;

#[test]
fn generic_types() {
    assert_request::<Echo<u8>, Vec<u8>>("echo", MessagePack, 1);
    assert_request::<Echo<String>, Vec<String>>("echo", MessagePack, 1);
    assert_request::<Page<4>, Vec<u32>>("page", MessagePack, 1);
    assert_request::<Tagged<NotSerializable>, u64>("tagged", MessagePack, 1);
    assert_request::<Echo<Vec<u8>>, Vec<Vec<u8>>>("echo", MessagePack, 1);
}

#[test]
fn requests_and_responses_round_trip_through_serde() {
    let request = CheckStock { sku: "A-1".into() };
    let json = serde_json::to_string(&request).unwrap();
    let back: CheckStock = serde_json::from_str(&json).unwrap();
    assert_eq!(back.sku, "A-1");
    let response: <CheckStock as Request>::Response = StockLevel {
        sku: back.sku,
        available: 3,
    };
    let bytes = rmp_serde::to_vec(&response).unwrap();
    let back: StockLevel = rmp_serde::from_slice(&bytes).unwrap();
    assert_eq!(back, response);
    let _ = (
        WithMethod { sku: String::new() }.sku,
        AllKeys {
            invoice: String::new(),
        }
        .invoice,
        Reserve { sku: String::new() },
        Fetch(String::new(), 1).1,
        Echo::<u8> { items: vec![] }.items,
        Tagged::<NotSerializable> {
            id: 1,
            marker: PhantomData,
        }
        .id,
    );
    let _ = (
        InventoryQuery::BySku { sku: String::new() },
        InventoryQuery::ByShelf(1),
        InventoryQuery::All,
    );
    let _ = (HTTPGetSent, V2Ping, Loop, WithJson, WithMsgpack, MaxVersion);
    let _ = Page::<4>;
}
