//! Consumer-group instances as processes of their own (`xbus_instance
//! consume`): one is killed with `SIGKILL` mid-run and a new one started
//! later; every event is handled, and only events out with the killed one
//! are handled twice.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use common::*;

const EVENTS: u64 = 600;
/// Jobs one instance may hold at a time (the default `max_in_flight`).
const MAX_IN_FLIGHT: usize = 16;

/// What the processes printed: per event, who received it and who acked it.
#[derive(Default)]
struct Seen {
    jobs: HashMap<u64, Vec<String>>,
    acked: HashMap<u64, Vec<String>>,
}

impl Seen {
    fn absorb(&mut self, name: &str, process: &mut InstanceProcess) {
        for line in process.drain_lines() {
            let mut words = line.split_whitespace();
            let (Some(kind), Some(Ok(seq))) = (words.next(), words.next().map(str::parse::<u64>))
            else {
                continue;
            };
            match kind {
                "job" => self.jobs.entry(seq).or_default().push(name.to_owned()),
                "acked" => self.acked.entry(seq).or_default().push(name.to_owned()),
                _ => {}
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_group_instance_is_replaced_and_every_event_is_handled() {
    matrix(async |kind| kill_one_of_three(kind, "c2").await).await;
}

/// The leader itself is killed: another member takes over once liveness
/// pings find it dead, from the progress it saved last (at most 50 ms
/// old), so the events it had handed out or heard acked since may come
/// twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_group_leader_is_replaced_and_every_event_is_handled() {
    matrix(async |kind| kill_one_of_three(kind, "c1").await).await;
}

/// Three `consume` processes c1 (the leader: lowest JID), c2, c3; `victim`
/// is killed at 200 of 600 events acked, c4 starts at 400.
async fn kill_one_of_three(kind: xbus_integration_tests::ServerKind, victim: &str) {
    {
        let server = start(kind);
        let account = server.account().expect("register account");
        let args = [
            "consume",
            "billing",
            "--sleep-ms",
            "2",
            "--timeout-ms",
            "5000",
        ];
        let mut processes: Vec<(String, InstanceProcess)> = Vec::new();
        for name in ["c1", "c2", "c3"] {
            let mut process = spawn_instance(&*server, &account, name, &args);
            process.ready(STEP).await;
            processes.push((name.to_owned(), process));
        }
        let publisher = bus(&*server).await;
        let publishing = {
            let publisher = publisher.clone();
            tokio::spawn(async move {
                for seq in 0..EVENTS {
                    publisher.publish(&Job { seq }).await.expect("publish");
                    tokio::time::sleep(Duration::from_millis(3)).await;
                }
            })
        };
        let mut seen = Seen::default();
        let mut killed: Option<(Instant, usize)> = None;
        let mut started = false;
        let deadline = Instant::now() + Duration::from_secs(90);
        while (seen.acked.len() as u64) < EVENTS {
            assert!(
                Instant::now() < deadline,
                "{}only {} of {EVENTS} events acked within 90 s",
                tag(),
                seen.acked.len()
            );
            for (name, process) in &mut processes {
                seen.absorb(name, process);
            }
            if killed.is_none() && seen.acked.len() >= 200 {
                let at = processes
                    .iter()
                    .position(|(n, _)| n == victim)
                    .expect("victim");
                processes[at].1.kill();
                seen.absorb(victim, &mut processes[at].1);
                killed = Some((Instant::now(), seen.acked.len()));
            }
            if !started && seen.acked.len() >= 400 {
                let mut process = spawn_instance(&*server, &account, "c4", &args);
                process.ready(STEP).await;
                processes.push(("c4".to_owned(), process));
                started = true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        within("publishing", publishing).await.expect("publisher");
        // A moment more: a late duplicate would show now.
        tokio::time::sleep(Duration::from_secs(1)).await;
        for (name, process) in &mut processes {
            seen.absorb(name, process);
        }
        let (killed_at, acked_at_kill) = killed.expect("the kill happened");
        let twice: BTreeSet<u64> = seen
            .jobs
            .iter()
            .filter(|(_, who)| who.len() > 1)
            .map(|(seq, _)| *seq)
            .collect();
        let victim_jobs: BTreeSet<u64> = seen
            .jobs
            .iter()
            .filter(|(_, who)| who.iter().any(|w| w == victim))
            .map(|(seq, _)| *seq)
            .collect();
        let acked_twice = seen.acked.values().filter(|who| who.len() > 1).count();
        let per_process: HashMap<&str, usize> = ["c1", "c2", "c3", "c4"]
            .into_iter()
            .map(|name| {
                let n = seen
                    .acked
                    .values()
                    .filter(|w| w.iter().any(|x| x == name))
                    .count();
                (name, n)
            })
            .collect();
        eprintln!(
            "{}SIGKILL of {victim} at {acked_at_kill} acked; all {EVENTS} acked {:?} after the kill; \
             handled twice: {} {twice:?} (acked twice: {acked_twice}); acked per process: {per_process:?}",
            tag(),
            killed_at.elapsed(),
            twice.len()
        );
        for seq in 0..EVENTS {
            assert!(
                seen.acked.contains_key(&seq),
                "{}event {seq} never acked",
                tag()
            );
        }
        if victim == "c1" {
            // The leader's last save: what it handed out (every member's
            // jobs in flight) and what it heard acked in the last 50 ms.
            assert!(
                twice.len() <= 3 * MAX_IN_FLIGHT,
                "{}at most the jobs in flight at the leader's death come twice: {}",
                tag(),
                twice.len()
            );
        } else {
            assert!(
                twice.is_subset(&victim_jobs),
                "{}only events the killed instance held come twice: {:?}",
                tag(),
                twice.difference(&victim_jobs).collect::<Vec<_>>()
            );
            assert!(
                twice.len() <= MAX_IN_FLIGHT,
                "{}at most the killed instance's jobs in flight come twice: {}",
                tag(),
                twice.len()
            );
        }
        assert!(
            per_process["c4"] > 0,
            "{}the new instance got a share",
            tag()
        );
        within("close publisher", publisher.close())
            .await
            .expect("close");
    }
}
