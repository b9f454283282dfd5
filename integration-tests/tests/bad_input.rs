//! Fault test 4, bad input: a raw client throws 1,000 garbage stanzas at a
//! bus while another bus keeps sending it good traffic, on every server of
//! the matrix.
//!
//! * The target bus `T` (`max_payload` 4096) has an inbox and a
//!   subscription for [`Tick`] and serves [`Echo`].
//! * The good bus `P` publishes ticks `0, 1, 2, ...` on the topic, sends
//!   every even one to `T`'s inbox and calls `T` every 20th, from before
//!   the garbage starts until after it ends.
//! * The raw client `R` (no xbus) sends `T`'s full JID 1,000 stanzas, 100
//!   of each [`Kind`], in turn, and publishes 50 malformed items (10 of
//!   each of [`PUBSUB_KINDS`]) to the topic's node through the pubsub
//!   service.
//!
//! Each kind is answered or reported as `docs/PROTOCOL.md` and
//! `BusStats` say: garbage IQs get the specified stanza error (counted by
//! kind and condition); events that can be attributed to the inbox or the
//! subscription come out as `DeliveryError`s with the right
//! `DecodeError` (matched to the stanza by message or item id); stanzas
//! with no one to report to are counted in `T.stats()`. Meanwhile and
//! afterwards every good event arrives exactly once and in order, every
//! call is answered, and a last event sent after the garbage arrives.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use common::{Server, bus, config, matrix, next, raw_client, start, within};
use futures::{FutureExt, Stream, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tokio_xmpp::minidom::Element;
use tokio_xmpp::parsers::iq::Iq;
use tokio_xmpp::parsers::message::Message;
use tokio_xmpp::{Event as XmppEvent, Stanza};
use xbus::{
    Bus, Context, DecodeError, Delivery, DeliveryError, Encoding, Event, Headers, RawPayload,
    Request,
};

#[derive(Event, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[event(topic = "badinput.tick")]
struct Tick {
    n: u32,
}

#[derive(Request, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[request(method = "badinput.echo", response = u32)]
struct Echo {
    n: u32,
}

const TOPIC: &str = "badinput.tick";
const MAX_PAYLOAD: usize = 4096;
/// Stanzas `R` sends to `T`'s full JID.
const GARBAGE: usize = 1000;
/// Malformed items `R` publishes (one every 20 stanzas).
const PUBSUB_GARBAGE: usize = GARBAGE / 20;
/// `P` publishes at least this many ticks, and goes on until the garbage is over.
const MIN_GOOD: u32 = 200;
/// The tick that follows all the rest, on the inbox and on the topic.
const LAST: u32 = u32::MAX;
/// The tick in the fake pubsub events and `urn:xbus:1` payloads.
const FAKE: u32 = 999_999;

/// What `R` sends to `T`: the `i`-th stanza is of kind `ALL[i % 10]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A direct event whose text is not base64: inbox error `Base64`.
    BadBase64,
    /// Base64 of bytes that are not a `Tick` in MessagePack: `Schema`.
    WrongMsgpack,
    /// A good event for a topic `T` has no inbox for: ignored, counted.
    UnknownTopic,
    /// A `Tick` of schema version 9: inbox error `WrongVersion`.
    UnknownVersion,
    /// A payload over `max_payload`: inbox error `TooLarge`.
    Oversize,
    /// A call of a method nobody serves: `feature-not-implemented`.
    UnknownMethod,
    /// A call of the served method with bad base64: `bad-request`.
    BadRequest,
    /// An IQ get or set in an unknown namespace: `service-unavailable`.
    UnknownNamespace,
    /// A pubsub event from `R`, not the service: ignored, counted.
    FakePubsubEvent,
    /// A chat message, unrelated XML or a payload in `urn:xbus:1`:
    /// ignored, counted.
    NoPayload,
}

const ALL: [Kind; 10] = [
    Kind::BadBase64,
    Kind::WrongMsgpack,
    Kind::UnknownTopic,
    Kind::UnknownVersion,
    Kind::Oversize,
    Kind::UnknownMethod,
    Kind::BadRequest,
    Kind::UnknownNamespace,
    Kind::FakePubsubEvent,
    Kind::NoPayload,
];
const PER_KIND: usize = GARBAGE / ALL.len();

/// The malformed items `R` publishes: the `j`-th is of kind `j % 5`.
const PUBSUB_KINDS: [Kind; 5] = [
    Kind::BadBase64,
    Kind::NoPayload,
    Kind::Oversize,
    Kind::UnknownVersion,
    Kind::WrongMsgpack,
];

/// The `<payload/>` element for `data` as XML.
fn payload_xml(topic: &str, version: u32, data: &[u8]) -> String {
    let payload = RawPayload {
        topic: topic.into(),
        encoding: Encoding::MessagePack,
        version,
        data: data.to_vec(),
        headers: Headers::new(),
    };
    String::from(&payload.to_element())
}

/// A good payload of the tick `FAKE`, which must never be delivered.
fn fake_tick() -> String {
    String::from(&RawPayload::encode(&Tick { n: FAKE }).unwrap().to_element())
}

/// The content of the `i`-th message or item of `kind` that carries an
/// event (or fails to).
fn body(kind: Kind, i: usize) -> String {
    let tick_1 = [0x81, 0xa1, b'n', 1]; // {"n": 1}
    match kind {
        Kind::BadBase64 => format!(
            "<payload xmlns='urn:xbus:0' topic='{TOPIC}' encoding='msgpack' version='1'>%%% not base64</payload>"
        ),
        // Not a `Tick`: the reserved byte 0xc1, or the string "hello".
        Kind::WrongMsgpack if i.is_multiple_of(2) => payload_xml(TOPIC, 1, &[0xc1]),
        Kind::WrongMsgpack => payload_xml(TOPIC, 1, b"\xa5hello"),
        Kind::UnknownTopic => payload_xml("badinput.nobody", 1, &tick_1),
        Kind::UnknownVersion => payload_xml(TOPIC, 9, &tick_1),
        Kind::Oversize => payload_xml(TOPIC, 1, &vec![0x90; MAX_PAYLOAD + 1000]),
        Kind::FakePubsubEvent => format!(
            "<event xmlns='http://jabber.org/protocol/pubsub#event'><items node='{TOPIC}'><item id='fake-{i}'>{}</item></items></event>",
            fake_tick()
        ),
        // No xbus payload: a chat body, unrelated XML, a good tick in the
        // namespace of a future protocol version.
        Kind::NoPayload if i.is_multiple_of(3) => "<body>hello</body>".into(),
        Kind::NoPayload if i % 3 == 1 => "<x xmlns='urn:example:x'><y/></x>".into(),
        Kind::NoPayload => fake_tick().replace("urn:xbus:0", "urn:xbus:1"),
        Kind::UnknownMethod | Kind::BadRequest | Kind::UnknownNamespace => unreachable!(),
    }
}

/// The `i`-th garbage stanza, to `to`, with the id `bad-{i}`.
fn garbage(i: usize, to: &str) -> Stanza {
    let request = |method: &str, text: &str| {
        format!(
            "<request xmlns='urn:xbus:0' method='{method}' encoding='msgpack' version='1'>{text}</request>"
        )
    };
    let (kind, nth) = (ALL[i % ALL.len()], i / ALL.len());
    let (name, type_, content) = match kind {
        Kind::UnknownMethod => ("iq", "set", request("no.such", "gA==")),
        Kind::BadRequest => ("iq", "set", request("badinput.echo", "%%%")),
        Kind::UnknownNamespace => {
            let query = "<query xmlns='urn:example:nothing'><x/></query>";
            ("iq", ["get", "set"][nth % 2], query.into())
        }
        Kind::FakePubsubEvent => ("message", "headline", body(kind, i)),
        Kind::NoPayload if nth % 3 == 0 => ("message", "chat", body(kind, nth)),
        _ => ("message", "normal", body(kind, nth)),
    };
    parse_stanza(&format!(
        "<{name} xmlns='jabber:client' type='{type_}' id='bad-{i}' to='{to}'>{content}</{name}>"
    ))
}

/// The `j`-th malformed item, published to the topic with the id `pub-{j}`.
fn pubsub_garbage(j: usize, service: &str) -> Stanza {
    let content = body(PUBSUB_KINDS[j % PUBSUB_KINDS.len()], j / PUBSUB_KINDS.len());
    parse_stanza(&format!(
        "<iq xmlns='jabber:client' type='set' id='pub-{j}' to='{service}'>\
         <pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='{TOPIC}'>\
         <item id='pbad-{j}'>{content}</item></publish></pubsub></iq>"
    ))
}

fn parse_stanza(xml: &str) -> Stanza {
    let element: Element = xml.parse().unwrap_or_else(|e| panic!("{e}: {xml}"));
    if element.name() == "iq" {
        Iq::try_from(element).unwrap().into()
    } else {
        Message::try_from(element).unwrap().into()
    }
}

/// Whether `reason` is the `DecodeError` an event of `kind` must come out
/// as on a stream.
fn is_reason(kind: Kind, reason: &DecodeError) -> bool {
    use DecodeError::*;
    match (kind, reason) {
        (Kind::BadBase64, Base64(_)) | (Kind::WrongMsgpack, Schema(_)) => true,
        (Kind::NoPayload, MissingPayload) => true,
        (Kind::UnknownVersion, WrongVersion { expected, found }) => (*expected, *found) == (1, 9),
        (Kind::Oversize, TooLarge { max, .. }) => *max == MAX_PAYLOAD,
        _ => false,
    }
}

/// How many IQs of each kind got each answer: `"Kind: result"`, or
/// `"Kind: type condition [xbus element]"`.
type Tally = BTreeMap<String, usize>;

fn counts(entries: &[(&str, usize)]) -> BTreeMap<String, usize> {
    entries
        .iter()
        .map(|(key, n)| ((*key).to_owned(), *n))
        .collect()
}

/// Sends all the garbage from `raw`, reading its stream meanwhile, and
/// returns how each IQ was answered, by kind.
async fn throw_garbage(raw: &mut tokio_xmpp::Client, to: &str, service: &str) -> Tally {
    let mut tally = Tally::new();
    // IQs sent and not answered yet (negative if answered twice).
    let mut waiting: i64 = 0;
    for i in 0..GARBAGE {
        if i % 20 == 0 {
            send(raw, pubsub_garbage(i / 20, service)).await;
            waiting += 1;
        }
        let kind = ALL[i % ALL.len()];
        let iq = matches!(
            kind,
            Kind::UnknownMethod | Kind::BadRequest | Kind::UnknownNamespace
        );
        waiting += i64::from(iq);
        send(raw, garbage(i, to)).await;
        while let Some(Some(event)) = raw.next().now_or_never() {
            waiting -= record(event, &mut tally);
        }
        // Spread the garbage over the good traffic.
        if i % 10 == 9 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    // Its answer comes after every stanza `R` sent to `T` was handled.
    let ping = format!(
        "<iq xmlns='jabber:client' type='get' id='last-ping' to='{to}'><ping xmlns='urn:xmpp:ping'/></iq>"
    );
    send(raw, parse_stanza(&ping)).await;
    waiting += 1;
    within("garbage IQ answers", async {
        while waiting > 0 {
            let event = raw.next().await.expect("raw client stream ended");
            waiting -= record(event, &mut tally);
        }
    })
    .await;
    tally
}

async fn send(raw: &mut tokio_xmpp::Client, stanza: Stanza) {
    within("raw send", raw.send_stanza(stanza)).await.unwrap();
}

/// Adds an IQ answer to `tally`; 1 if it was one.
fn record(event: XmppEvent, tally: &mut Tally) -> i64 {
    let (id, outcome) = match event {
        XmppEvent::Stanza(Stanza::Iq(Iq::Result { id, .. })) => (id, "result".to_owned()),
        XmppEvent::Stanza(Stanza::Iq(Iq::Error { id, error, .. })) => {
            let mut outcome = format!("{:?} {:?}", error.type_, error.defined_condition);
            if let Some(other) = &error.other {
                outcome += &format!(" {}", other.name());
            }
            (id, outcome)
        }
        XmppEvent::Disconnected(error) => {
            panic!("{}raw client disconnected: {error}", common::tag())
        }
        other => {
            eprintln!("{}raw client got {other:?}", common::tag());
            return 0;
        }
    };
    let what = match id.split_once('-') {
        Some(("bad", i)) => format!("{:?}", ALL[i.parse::<usize>().unwrap() % ALL.len()]),
        Some(("pub", _)) => "Publish".to_owned(),
        _ => id,
    };
    *tally.entry(format!("{what}: {outcome}")).or_default() += 1;
    1
}

/// `P`'s good traffic until `done`, and at least `MIN_GOOD` ticks; the
/// ticks published so far are in `published`.
async fn good_traffic(p: Bus, to: String, done: Arc<AtomicBool>, published: Arc<AtomicU32>) {
    let mut n = 0;
    while n < MIN_GOOD || !done.load(Ordering::SeqCst) {
        assert!(n < 20_000, "the garbage run never ended");
        within("good publish", p.publish(&Tick { n }))
            .await
            .unwrap();
        if n % 2 == 0 {
            within("good send", p.send(&to, &Tick { n })).await.unwrap();
        }
        if n % 20 == 0 {
            let answer = within("good call", p.request(&to, Echo { n })).await;
            assert_eq!(answer.unwrap(), n + 1, "call during the garbage");
        }
        n += 1;
        published.store(n, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

type Item = Result<Delivery<Tick>, DeliveryError>;

/// Everything a stream yields before the tick `LAST`.
async fn collect(what: &'static str, mut stream: impl Stream<Item = Item> + Unpin) -> Vec<Item> {
    let mut items = Vec::new();
    loop {
        match next(what, &mut stream).await {
            Ok(delivery) if delivery.event.n == LAST => return items,
            item => items.push(item),
        }
    }
}

/// The test's background tasks, aborted if it fails half-way so that they
/// do not outlive their server.
#[derive(Default)]
struct Tasks(Vec<tokio::task::AbortHandle>);

impl Tasks {
    fn spawn<T: Send + 'static>(
        &mut self,
        task: impl Future<Output = T> + Send + 'static,
    ) -> JoinHandle<T> {
        let handle = tokio::spawn(task);
        self.0.push(handle.abort_handle());
        handle
    }
}

impl Drop for Tasks {
    fn drop(&mut self) {
        self.0.iter().for_each(|task| task.abort());
    }
}

/// Awaits a task, re-raising its panic with its own message.
async fn join<T>(what: &str, task: JoinHandle<T>) -> T {
    within(what, task)
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}

/// Splits deliveries into good ticks and the numbers of the errors' ids
/// (after `prefix`: `bad-` or `pbad-`), checking each error with `check`.
fn split(
    what: &str,
    items: Vec<Item>,
    prefix: &str,
    check: impl Fn(usize, &DeliveryError),
) -> (Vec<u32>, Vec<usize>) {
    let (mut good, mut bad) = (Vec::new(), Vec::new());
    for item in items {
        match item {
            Ok(delivery) => good.push(delivery.event.n),
            Err(error) => {
                let id = error.item_id().and_then(|id| id.strip_prefix(prefix));
                let i: usize = id
                    .and_then(|i| i.parse().ok())
                    .unwrap_or_else(|| panic!("{what}: unexpected error {error}"));
                check(i, &error);
                bad.push(i);
            }
        }
    }
    (good, bad)
}

/// Asserts that the errors came for exactly the `expected` stanzas, in
/// the order they were sent; else names the missing and extra ones.
fn assert_ids(what: &str, got: &[usize], expected: impl Iterator<Item = usize>) {
    let expected: Vec<usize> = expected.collect();
    if got != expected {
        let missing: Vec<_> = expected.iter().filter(|i| !got.contains(i)).collect();
        let extra: Vec<_> = got.iter().filter(|i| !expected.contains(i)).collect();
        panic!(
            "{}{what}: {} errors, {} expected; missing {missing:?}, extra {extra:?}",
            common::tag(),
            got.len(),
            expected.len()
        );
    }
}

#[tokio::test]
async fn garbage_is_answered_or_reported_and_good_events_keep_flowing() {
    matrix(async |kind| {
        let server: Server = start(kind);
        let account = server.account().unwrap();
        let t_config = config(&server, &account).max_payload(MAX_PAYLOAD);
        let t = within("connect T", Bus::connect(t_config.build().unwrap()))
            .await
            .unwrap();
        let p = bus(&server).await;
        let echo = |req: Echo, _: Context| async move { Ok(req.n + 1) };
        within("serve", t.serve(echo)).await.unwrap();
        let inbox = within("inbox", t.inbox::<Tick>()).await.unwrap();
        // Subscribing creates the node; R and P may publish to it on every server.
        let subscription = within("subscribe", t.subscribe::<Tick>()).await.unwrap();
        let mut raw = raw_client(&server, &server.account().unwrap()).await;
        let raw_jid = raw.bound_jid().unwrap().to_string();
        let target = t.jid().to_string();

        let mut tasks = Tasks::default();
        let inbox_task = tasks.spawn(collect("inbox", inbox));
        let sub_task = tasks.spawn(collect("subscription", subscription));
        let done = Arc::new(AtomicBool::new(false));
        let published = Arc::new(AtomicU32::new(0));
        let good = good_traffic(p.clone(), target.clone(), done.clone(), published.clone());
        let good_task = tasks.spawn(good);
        within("good traffic starts", async {
            while published.load(Ordering::SeqCst) == 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await;

        let started = Instant::now();
        let tally = throw_garbage(&mut raw, &target, &server.pubsub_service()).await;
        let garbage_time = started.elapsed();
        let during = published.load(Ordering::SeqCst);
        done.store(true, Ordering::SeqCst);
        join("good traffic", good_task).await;
        let published = published.load(Ordering::SeqCst);
        eprintln!(
            "garbage sent and answered in {garbage_time:?}; \
             {during} ticks published meanwhile, {published} in all"
        );

        // Every garbage IQ got the specified answer.
        let n = PER_KIND;
        let expected = counts(&[
            ("BadRequest: Modify BadRequest", n),
            ("Publish: result", PUBSUB_GARBAGE),
            (
                "UnknownMethod: Cancel FeatureNotImplemented unknown-method",
                n,
            ),
            ("UnknownNamespace: Cancel ServiceUnavailable", n),
            ("last-ping: result", 1),
        ]);
        assert_eq!(tally, expected, "IQ answers by kind");

        // A fresh event on each stream, after all the garbage (R's last
        // ping and publishes were answered): the bus still delivers.
        let last = Tick { n: LAST };
        within("last send", p.send(&target, &last)).await.unwrap();
        within("last publish", p.publish(&last)).await.unwrap();
        let inbox_items = join("inbox", inbox_task).await;
        let sub_items = join("subscription", sub_task).await;

        // The inbox: every even tick in order, and one error per
        // attributable garbage message, each matching its stanza's kind.
        let (good, errors) = split("inbox", inbox_items, "bad-", |i, error| {
            let kind = ALL[i % ALL.len()];
            assert!(
                is_reason(kind, error.reason()),
                "bad-{i} ({kind:?}): {error}"
            );
            assert_eq!(error.from(), Some(raw_jid.as_str()), "{error}");
            assert_eq!(error.topic(), TOPIC);
        });
        let even: Vec<u32> = (0..published).step_by(2).collect();
        assert_eq!(good, even, "good direct ticks");
        let reported = (0..GARBAGE).filter(|i| {
            use Kind::*;
            matches!(
                ALL[i % ALL.len()],
                BadBase64 | WrongMsgpack | UnknownVersion | Oversize
            )
        });
        assert_ids("inbox delivery errors", &errors, reported);

        // The subscription: every published tick once and in order (none
        // of the fake events), and one error per malformed item.
        let (good, errors) = split("subscription", sub_items, "pbad-", |j, error| {
            let kind = PUBSUB_KINDS[j % PUBSUB_KINDS.len()];
            assert!(
                is_reason(kind, error.reason()),
                "pbad-{j} ({kind:?}): {error}"
            );
            assert_eq!(error.topic(), TOPIC);
        });
        assert_eq!(
            good,
            (0..published).collect::<Vec<_>>(),
            "good published ticks"
        );
        assert_ids("subscription delivery errors", &errors, 0..PUBSUB_GARBAGE);

        // What had no one to report to is counted.
        let stats = within("stats", t.stats()).await.unwrap();
        eprintln!("{stats:?}");
        // Unknown topic, fake pubsub event, no payload.
        assert_eq!(stats.ignored_stanzas, 3 * n as u64, "ignored_stanzas");
        // Payloads that could not be read: bad base64 and oversize direct
        // events, and the malformed items but those that are read and only
        // fail to decode as a Tick (another version, wrong MessagePack).
        let malformed = (2 * n + 3 * PUBSUB_GARBAGE / PUBSUB_KINDS.len()) as u64;
        assert_eq!(stats.malformed_events, malformed, "malformed_events");
        // Unknown method only: a malformed request for a served method is
        // answered `bad-request` by the handler's wrapper, as documented on
        // `BusStats::refused_calls`.
        assert_eq!(stats.refused_calls, n as u64, "refused_calls");
        assert_eq!(stats.duplicates_dropped, 0, "duplicates_dropped");
        assert_eq!(stats.overflowed, 0, "overflowed");
        assert_eq!(stats.session_resets, 0, "session_resets");

        // And the bus still serves.
        let answer = within("call after", p.request(&target, Echo { n: 41 })).await;
        assert_eq!(answer.unwrap(), 42);
    })
    .await;
}
