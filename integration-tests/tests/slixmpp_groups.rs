//! Interoperability with a third-party client, consumer groups: a slixmpp
//! member (`integration-tests/slixmpp/xbus_group.py`, written from
//! `docs/PROTOCOL.md` §10) works in one group next to xbus instances that
//! run as processes of their own (`xbus_instance consume`). It never leads
//! (`lead='false'`), although its resource `a-py` sorts before theirs and
//! would otherwise be elected.
//!
//! The peer runs in the venv that `scripts/slixmpp-venv.sh` creates; without
//! it these tests fail with that command, they never skip.

mod common;
#[path = "common/slixmpp.rs"]
mod slixmpp;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use futures::StreamExt as _;

use slixmpp::*;
use xbus_integration_tests::InstanceProcess;

/// The Python member's resource: lower than `c1` in byte order.
const PY: &str = "a-py";
/// Jobs one xbus instance may hold at a time (the default `max_in_flight`).
const MAX_IN_FLIGHT: usize = 16;

/// What every member printed: per event, who got a job for it (with the
/// attempt) and who acked it.
#[derive(Default)]
struct Seen {
    jobs: HashMap<u64, Vec<(String, u32)>>,
    acked: HashMap<u64, Vec<String>>,
    /// The Python member's other lines (claim, stale, settled, naked...).
    py: Vec<String>,
}

impl Seen {
    fn absorb_process(&mut self, name: &str, process: &mut InstanceProcess) {
        for line in process.drain_lines() {
            let mut words = line.split_whitespace();
            let kind = words.next();
            let seq = words.next().and_then(|w| w.parse::<u64>().ok());
            let attempt = words.next().and_then(|w| w.parse::<u32>().ok());
            match (kind, seq) {
                (Some("job"), Some(seq)) => self
                    .jobs
                    .entry(seq)
                    .or_default()
                    .push((name.to_owned(), attempt.unwrap_or(1))),
                (Some("acked"), Some(seq)) => {
                    self.acked.entry(seq).or_default().push(name.to_owned())
                }
                _ => {}
            }
        }
    }

    fn absorb_py(&mut self, lines: &Mutex<Vec<String>>) {
        for line in std::mem::take(&mut *lines.lock().unwrap()) {
            let line_of: PyLine = from_json(&line);
            match (line_of.kind.as_str(), line_of.seq) {
                ("job", Some(seq)) => self
                    .jobs
                    .entry(seq)
                    .or_default()
                    .push((PY.to_owned(), line_of.attempt.unwrap_or(1))),
                ("acked", Some(seq)) => self.acked.entry(seq).or_default().push(PY.to_owned()),
                ("failed" | "ended", _) => {
                    panic!("{}the slixmpp member stopped: {line}", common::tag())
                }
                _ => {}
            }
            self.py.push(line);
        }
    }

    fn acked_by(&self, name: &str) -> BTreeSet<u64> {
        self.acked
            .iter()
            .filter(|(_, who)| who.iter().any(|w| w == name))
            .map(|(seq, _)| *seq)
            .collect()
    }

    fn py_lines(&self, kind: &str) -> Vec<PyLine> {
        self.py
            .iter()
            .map(|l| from_json::<PyLine>(l))
            .filter(|l| l.kind == kind)
            .collect()
    }
}

/// One line of `xbus_group.py` (only the fields these tests read).
#[derive(Serialize, Deserialize, Debug, Clone)]
struct PyLine {
    kind: String,
    seq: Option<u64>,
    attempt: Option<u32>,
    leader: Option<String>,
    epoch: Option<u64>,
    outcome: Option<String>,
    to: Option<String>,
    items: Option<u64>,
    reason: Option<String>,
}

impl PyLine {
    /// The line the collecting task adds when the member's output ends.
    fn ended(stderr: String) -> PyLine {
        PyLine {
            kind: "ended".into(),
            seq: None,
            attempt: None,
            leader: None,
            epoch: None,
            outcome: None,
            to: None,
            items: None,
            reason: Some(stderr),
        }
    }
}

/// Starts the Python member and a task that owns it and collects its
/// lines; returns once it printed `ready`. Aborting the task kills it.
async fn python_member(
    server: &dyn XmppServer,
    account: &Account,
    scenario: &str,
) -> (Arc<Mutex<Vec<String>>>, JoinHandle<()>) {
    let mut peer = Peer::start_member(server, account, PY, scenario).await;
    let ready: Ready = peer.expect("ready").await;
    assert_eq!(ready.jid, format!("{}/{PY}", account.jid));
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    let reader = tokio::spawn(async move {
        while let Ok(Some(line)) = peer.lines.next_line().await {
            sink.lock().unwrap().push(line);
        }
        let stderr = peer.stderr().await;
        sink.lock().unwrap().push(to_json(PyLine::ended(stderr)));
    });
    (lines, reader)
}

/// Publishes `Job { seq }` for `seqs`, 3 ms apart.
fn publish_jobs(publisher: &xbus::Bus, seqs: std::ops::Range<u64>) -> JoinHandle<()> {
    let publisher = publisher.clone();
    tokio::spawn(async move {
        for seq in seqs {
            publisher
                .publish(&common::Job { seq })
                .await
                .expect("publish");
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
    })
}

/// The two xbus instances `c1` and `c2`, as `consume` processes.
async fn consumers(
    server: &dyn XmppServer,
    account: &Account,
) -> Vec<(&'static str, InstanceProcess)> {
    let mut processes = Vec::new();
    for name in ["c1", "c2"] {
        let mut process = common::spawn_instance(server, account, name, &CONSUME);
        process.ready(STEP).await;
        processes.push((name, process));
    }
    processes
}

/// Reads every member's lines until `events` events are acked (within
/// `secs`), killing the first process (`c1`, the leader) with SIGKILL
/// once `kill_at` are; then waits for the publisher, and a second more,
/// in which a late duplicate would show. Returns when the kill happened
/// and how many were acked then.
async fn collect(
    seen: &mut Seen,
    processes: &mut [(&'static str, InstanceProcess)],
    py_lines: &Mutex<Vec<String>>,
    events: u64,
    secs: u64,
    kill_at: Option<usize>,
    publishing: JoinHandle<()>,
) -> Option<(Instant, usize)> {
    let mut killed = None;
    let deadline = Instant::now() + Duration::from_secs(secs);
    while (seen.acked.len() as u64) < events {
        assert!(
            Instant::now() < deadline,
            "{}only {} of {events} events acked within {secs} s; the slixmpp member said: {:?}",
            common::tag(),
            seen.acked.len(),
            seen.py
        );
        for (name, process) in processes.iter_mut() {
            seen.absorb_process(name, process);
        }
        seen.absorb_py(py_lines);
        if killed.is_none() && kill_at.is_some_and(|n| seen.acked.len() >= n) {
            let (name, process) = &mut processes[0];
            process.kill();
            seen.absorb_process(name, process);
            killed = Some((Instant::now(), seen.acked.len()));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    within("publishing", publishing).await.expect("publisher");
    tokio::time::sleep(Duration::from_secs(1)).await;
    for (name, process) in processes.iter_mut() {
        seen.absorb_process(name, process);
    }
    seen.absorb_py(py_lines);
    killed
}

const CONSUME: [&str; 6] = [
    "consume",
    "billing",
    "--sleep-ms",
    "2",
    "--timeout-ms",
    "5000",
];

/// The slixmpp member and two xbus instances share a group: each event is
/// acked exactly once, the member gets its share, and what it naks comes
/// back as attempt 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slixmpp_member_shares_a_group_with_xbus_instances() {
    common::matrix(async |kind| {
        const EVENTS: u64 = 150;
        let naks = [3u64, 17, 42, 77, 99, 120];
        let server = start_server(kind);
        let account = server.account().expect("account");
        let scenario = format!(
            r#"{{"group": "billing", "topic": "fault.job", "nak": {naks:?},
                "nak_delay_ms": 100, "work_ms": 2, "max_s": 120}}"#
        );
        let (py_lines, member) = python_member(&server, &account, &scenario).await;
        let mut processes = consumers(&server, &account).await;
        let publisher = bus(&server).await;
        let publishing = publish_jobs(&publisher, 0..EVENTS);
        let mut seen = Seen::default();
        collect(
            &mut seen,
            &mut processes,
            &py_lines,
            EVENTS,
            60,
            None,
            publishing,
        )
        .await;

        let py_acked = seen.acked_by(PY);
        let naked: BTreeSet<u64> = seen
            .py_lines("naked")
            .iter()
            .filter_map(|l| l.seq)
            .collect();
        eprintln!(
            "{}acked by a-py {}, c1 {}, c2 {}; a-py naked {naked:?}; claims seen by a-py: {:?}",
            common::tag(),
            py_acked.len(),
            seen.acked_by("c1").len(),
            seen.acked_by("c2").len(),
            seen.py_lines("claim")
        );
        for seq in 0..EVENTS {
            let who = seen.acked.get(&seq);
            assert_eq!(
                who.map(Vec::len),
                Some(1),
                "{}event {seq} must be acked exactly once: {who:?}",
                common::tag()
            );
        }
        assert!(
            !py_acked.is_empty(),
            "{}the slixmpp member got a share",
            common::tag()
        );
        for seq in &naked {
            let jobs = &seen.jobs[seq];
            assert!(
                jobs.iter().any(|(_, attempt)| *attempt == 2),
                "{}event {seq}, naked by the slixmpp member, came back as attempt 2: {jobs:?}",
                common::tag()
            );
        }
        for line in seen.py_lines("job") {
            let leader = line.leader.unwrap_or_default();
            assert!(
                leader.ends_with("/c1") || leader.ends_with("/c2"),
                "{}jobs come from an xbus instance, never the member itself: {leader}",
                common::tag()
            );
        }
        assert!(
            seen.py_lines("stale").is_empty(),
            "{}no job was refused as stale: {:?}",
            common::tag(),
            seen.py_lines("stale")
        );
        member.abort();
        within("close publisher", publisher.close())
            .await
            .expect("close");
    })
    .await;
}

/// The leader (xbus instance c1) is killed with SIGKILL mid-run: c2 takes
/// over, the slixmpp member follows c2's claim and reports what it acked
/// lately, and goes on taking c2's jobs. Every event is acked; none the
/// member acked is handed out again; only events out at the leader's death
/// may come twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slixmpp_member_follows_the_new_leader_when_the_leader_is_killed() {
    common::matrix(async |kind| {
        const EVENTS: u64 = 300;
        let server = start_server(kind);
        let account = server.account().expect("account");
        let (py_lines, member) = python_member(
            &server,
            &account,
            r#"{"group": "billing", "topic": "fault.job", "work_ms": 2, "max_s": 150}"#,
        )
        .await;
        let mut processes = consumers(&server, &account).await;
        let publisher = bus(&server).await;
        let publishing = publish_jobs(&publisher, 0..EVENTS);
        let mut seen = Seen::default();
        let killed = collect(
            &mut seen,
            &mut processes,
            &py_lines,
            EVENTS,
            90,
            Some(80),
            publishing,
        )
        .await;

        let (killed_at, acked_at_kill) = killed.expect("the kill happened");
        let twice: BTreeSet<u64> = seen
            .jobs
            .iter()
            .filter(|(_, who)| who.len() > 1)
            .map(|(seq, _)| *seq)
            .collect();
        let py_acked = seen.acked_by(PY);
        let claims = seen.py_lines("claim");
        let reports = seen.py_lines("settled");
        eprintln!(
            "{}SIGKILL of the leader c1 at {acked_at_kill} acked; all {EVENTS} acked {:?} after; \
             handled twice: {} {twice:?}; acked by a-py {}, c2 {}; a-py's claims {claims:?}, \
             reports {reports:?}",
            common::tag(),
            killed_at.elapsed(),
            twice.len(),
            py_acked.len(),
            seen.acked_by("c2").len(),
        );
        for seq in 0..EVENTS {
            assert!(
                seen.acked.contains_key(&seq),
                "{}event {seq} never acked",
                common::tag()
            );
        }
        let c2_claim = claims.iter().find(|c| {
            c.leader.as_deref().is_some_and(|l| l.ends_with("/c2"))
                && c.outcome.as_deref() == Some("followed")
        });
        let after_kill: Vec<PyLine> = seen
            .py_lines("job")
            .into_iter()
            .filter(|j| j.leader.as_deref().is_some_and(|l| l.ends_with("/c2")))
            .collect();
        assert!(
            c2_claim.is_some() || !after_kill.is_empty(),
            "{}the slixmpp member followed c2 (its claim, or its first job): {claims:?}",
            common::tag()
        );
        assert!(
            !after_kill.is_empty(),
            "{}the slixmpp member took jobs from the new leader c2",
            common::tag()
        );
        for seq in &py_acked {
            // The killed leader's own acks may be lost with it; nobody
            // else may handle what the member acked.
            let acks: Vec<&String> = seen.acked[seq].iter().filter(|w| *w != "c1").collect();
            assert_eq!(
                acks.len(),
                1,
                "{}event {seq}, acked by the slixmpp member, was handed out again: {:?}",
                common::tag(),
                seen.jobs[seq]
            );
        }
        assert!(
            twice.len() <= 3 * MAX_IN_FLIGHT,
            "{}at most the jobs in flight at the leader's death come twice: {}",
            common::tag(),
            twice.len()
        );
        member.abort();
        within("close publisher", publisher.close())
            .await
            .expect("close");
    })
    .await;
}

/// Items a foreign publisher got wrong (here: a payload whose `topic` is
/// not its node, PROTOCOL §2) reach no member: the leader terms each at
/// once, whoever it was meant for, and the consumers hear of it as
/// `GroupError::Undecodable`, long before the 30 s ack wait; the good
/// events around them are handled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items_no_member_can_read_are_termed_at_once() {
    common::matrix(async |kind| {
        let server = start_server(kind);
        let (_account, buses) = common::instances(&server, 2).await;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut tasks = Vec::new();
        for bus in &buses {
            let options = xbus::ConsumeOptions::new().ack_wait(Duration::from_secs(30));
            let mut jobs = within("consume", bus.consume::<common::Job>("billing", options))
                .await
                .expect("consume");
            let tx = tx.clone();
            tasks.push(tokio::spawn(async move {
                while let Some(job) = jobs.next().await {
                    let _ = tx.send(match job {
                        Ok(job) => {
                            let seq = job.event.seq;
                            job.ack().expect("ack");
                            Ok(seq)
                        }
                        Err(error) => Err(error.to_string()),
                    });
                }
            }));
        }
        let python = server.account().expect("account");
        let item = |seq: u64, topic: &str| {
            format!(
                r#"{{"topic": "fault.job", "payload_topic": "{topic}", "encoding": "msgpack",
                     "version": 1, "event": {{"seq": {seq}}}}}"#
            )
        };
        let items: Vec<String> = (0..8)
            .map(|seq| {
                item(
                    seq,
                    if seq % 2 == 1 {
                        "other.topic"
                    } else {
                        "fault.job"
                    },
                )
            })
            .collect();
        let started = Instant::now();
        let mut peer = Peer::start(
            &server,
            &python,
            Tls::Plaintext,
            &format!(
                r#"{{"scenario": "publish", "items": [{}]}}"#,
                items.join(",")
            ),
        )
        .await;
        let (mut acked, mut errors) = (BTreeSet::new(), Vec::new());
        while acked.len() < 4 || errors.len() < 4 {
            match within("the next job or error", rx.recv()).await {
                Some(Ok(seq)) => {
                    acked.insert(seq);
                }
                Some(Err(error)) => errors.push(error),
                None => panic!("{}the consumers ended", common::tag()),
            }
        }
        let took = started.elapsed();
        eprintln!(
            "{}4 events acked and 4 unreadable reported in {took:?}: {errors:?}",
            common::tag()
        );
        assert_eq!(acked, BTreeSet::from([0, 2, 4, 6]));
        for error in &errors {
            assert!(
                error.contains("other.topic") && error.contains("fault.job"),
                "{}the error names the payload's topic and the node: {error}",
                common::tag()
            );
        }
        assert!(
            took < Duration::from_secs(20),
            "{}termed at once, not after the 30 s ack wait: {took:?}",
            common::tag()
        );
        let _ = peer.expect::<Kind>("node").await;
        for task in tasks {
            task.abort();
        }
        for bus in buses {
            within("close", bus.close()).await.expect("close");
        }
    })
    .await;
}
