//! Who may reach a bus, and how a bus logs in: call and inbox allow-lists
//! (`Allow`), the SASL mechanism picked, and the password from a file.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{config, init_tracing, matrix, next, raw_client, raw_iq, start, within};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio_xmpp::parsers::stanza_error::DefinedCondition;
use tokio_xmpp::{IqRequest, IqResponse, minidom::Element};
use xbus::{Allow, Bus, BusConfig, ConsumeOptions, Event, Request, RequestError, RpcError};

#[derive(Request, Serialize, Deserialize, Debug)]
#[request(method = "access.echo", response = u32)]
struct Echo(u32);

#[derive(Request, Serialize, Deserialize, Debug)]
#[request(method = "access.open", response = u32)]
struct Open(u32);

#[derive(Request, Serialize, Deserialize, Debug)]
#[request(method = "access.nothing", response = u32)]
struct Nothing(u32);

#[derive(Event, Serialize, Deserialize, Debug, PartialEq)]
#[event(topic = "access.note")]
struct Note(u32);

#[derive(Event, Serialize, Deserialize, Debug, PartialEq)]
#[event(topic = "access.jobs")]
struct Job(u32);

/// A service that lets in one account (`allowed`) bus-wide and everyone of
/// its domain for one method; a second account of the same domain is
/// refused everywhere else, before any handler runs.
#[tokio::test]
async fn calls_and_inbox_events_from_accounts_not_allowed_are_refused() {
    matrix(async |kind| {
        init_tracing();
        let server = start(kind);
        let (service, allowed, other) = (
            server.account().unwrap(),
            server.account().unwrap(),
            server.account().unwrap(),
        );
        let only_allowed = Allow::only([allowed.jid.as_str()]).unwrap();
        let callee = within(
            "connect the service",
            Bus::connect(
                config(&*server, &service)
                    .allow(only_allowed)
                    .build()
                    .unwrap(),
            ),
        )
        .await
        .unwrap();
        let handled = Arc::new(AtomicUsize::new(0));
        let count = handled.clone();
        within(
            "serve echo",
            callee.serve(move |Echo(n): Echo, _ctx| {
                count.fetch_add(1, Ordering::SeqCst);
                async move { Ok::<_, RpcError>(n) }
            }),
        )
        .await
        .unwrap();
        within(
            "serve open",
            callee
                .serve(|Open(n): Open, _ctx| async move { Ok::<_, RpcError>(n + 1) })
                .allow(Allow::same_domain()),
        )
        .await
        .unwrap();
        let mut notes = within("inbox", callee.inbox::<Note>()).await.unwrap();
        let connect = |account: &xbus_integration_tests::Account| {
            Bus::connect(config(&*server, account).build().unwrap())
        };
        let friend = within("connect allowed", connect(&allowed)).await.unwrap();
        let stranger = within("connect other", connect(&other)).await.unwrap();
        let to = callee.jid().to_string();

        // The allowed account gets through; the other is refused, with a
        // reason naming who may call, and the handler never runs.
        let echoed = within("allowed call", friend.request(&to, Echo(7)))
            .await
            .unwrap();
        assert_eq!(echoed, 7);
        let refused = within("refused call", stranger.request(&to, Echo(8)))
            .await
            .unwrap_err();
        eprintln!("[{kind}] refused call: {refused}");
        match &refused {
            RequestError::Forbidden { method, reason, .. } => {
                assert_eq!(method, "access.echo");
                assert!(reason.contains(&other.jid), "{reason}");
                assert!(reason.contains(&allowed.jid), "{reason}");
            }
            other => panic!("expected Forbidden, got {other:?}"),
        }
        assert_eq!(handled.load(Ordering::SeqCst), 1, "the refused call ran");

        // A method's own allow-list overrides the bus's.
        let opened = within("open call", stranger.request(&to, Open(1)))
            .await
            .unwrap();
        assert_eq!(opened, 2);

        // A stranger cannot even learn which methods exist.
        let unknown = within("unknown, stranger", stranger.request(&to, Nothing(0)))
            .await
            .unwrap_err();
        assert!(
            matches!(unknown, RequestError::Forbidden { .. }),
            "{unknown:?}"
        );
        let unknown = within("unknown, allowed", friend.request(&to, Nothing(0)))
            .await
            .unwrap_err();
        assert!(
            matches!(unknown, RequestError::UnknownMethod { .. }),
            "{unknown:?}"
        );

        // Inbox: the stranger's event is dropped and counted, the allowed
        // account's events arrive.
        let inbox = service.jid.as_str();
        within("send 1", friend.send(inbox, &Note(1)))
            .await
            .unwrap();
        within("send 2", stranger.send(inbox, &Note(2)))
            .await
            .unwrap();
        within("send 3", friend.send(inbox, &Note(3)))
            .await
            .unwrap();
        assert_eq!(next("note 1", &mut notes).await.unwrap().event, Note(1));
        assert_eq!(next("note 3", &mut notes).await.unwrap().event, Note(3));
        within("the stranger's event is counted", async {
            while callee.stats().await.unwrap().refused_messages < 1 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        let stats = callee.stats().await.unwrap();
        assert_eq!(stats.refused_messages, 1);
        assert_eq!(stats.forbidden_calls, 2);
        let more = tokio::time::timeout(Duration::from_millis(300), notes.next()).await;
        assert!(more.is_err(), "an event from the stranger was delivered");

        // Consumer-group jobs come from the service's own instances only.
        let _jobs = within(
            "consume",
            callee.consume::<Job>("workers", ConsumeOptions::default()),
        )
        .await
        .unwrap();
        let mut raw = raw_client(&*server, &allowed).await;
        let job = Element::builder("job", "urn:xbus:group:0")
            .attr("group".try_into().unwrap(), "workers")
            .build();
        match raw_iq(&mut raw, &to, IqRequest::Set(job)).await {
            IqResponse::Error(error) => {
                assert_eq!(error.defined_condition, DefinedCondition::Forbidden)
            }
            other => panic!("expected forbidden, got {other:?}"),
        }
    })
    .await;
}

/// xbus logs in with SCRAM whenever the server offers it: every server
/// here, with TLS and without; the password may come from a file.
#[tokio::test]
async fn scram_is_used_wherever_the_server_offers_it() {
    matrix(async |kind| {
        init_tracing();
        let server = start(kind);
        let account = server.account().unwrap();
        let plaintext = within(
            "connect in plaintext",
            Bus::connect(config(&*server, &account).build().unwrap()),
        )
        .await
        .unwrap();
        // The password from a file, as a mounted secret gives it.
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("password");
        std::fs::write(&secret, format!("{}\n", account.password)).unwrap();
        let vars = [
            ("XBUS_JID", account.jid.clone()),
            ("XBUS_PASSWORD_FILE", secret.display().to_string()),
            ("XBUS_SERVER", server.addr().to_string()),
            ("XBUS_TLS", server.ca_file().display().to_string()),
        ];
        let from_env = BusConfig::from_lookup(|name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.clone())
        })
        .unwrap();
        let tls = within("connect with TLS", Bus::connect(from_env))
            .await
            .unwrap();
        let (clear, secured) = (plaintext.sasl_mechanism(), tls.sasl_mechanism());
        eprintln!("[{kind}] SASL: plaintext {clear}, TLS {secured}");
        assert!(clear.starts_with("SCRAM-"), "{clear}");
        assert!(secured.starts_with("SCRAM-"), "{secured}");
        within("close", plaintext.close()).await.unwrap();
        within("close", tls.close()).await.unwrap();
    })
    .await;
}

/// PLAIN only where no SCRAM is offered: the embedded server with open
/// accounts (any name and password log in), which cannot verify a SCRAM
/// proof for an account it does not know.
#[tokio::test]
async fn plain_is_used_only_where_scram_is_not_offered() {
    init_tracing();
    let server = within(
        "start an open embedded server",
        xbus_server::Server::builder()
            .open_accounts()
            .plaintext()
            .start(),
    )
    .await
    .unwrap();
    let config = BusConfig::builder("anyone@localhost", "any")
        .server(server.addr().to_string())
        .allow_plaintext()
        .build()
        .unwrap();
    let bus = within("connect", Bus::connect(config)).await.unwrap();
    assert_eq!(bus.sasl_mechanism(), "PLAIN");
    within("close", bus.close()).await.unwrap();
}

/// Plaintext goes to loopback servers only: to anything else the config
/// is refused, and says why and what to use instead.
#[tokio::test]
async fn plaintext_to_a_remote_server_is_refused() {
    let error = BusConfig::builder("orders@example.org", "pw")
        .server("192.0.2.7:5222")
        .allow_plaintext()
        .build()
        .unwrap_err()
        .to_string();
    for needle in ["192.0.2.7", "loopback", "clear text", "ca_file"] {
        assert!(error.contains(needle), "{needle:?} in: {error}");
    }
}
