//! One instance's liveness as this bus sees it: when it last said
//! something, the ping it owes, whether it is unresponsive. Pure state, for
//! the [`Directory`](super::directory::Directory); see [`crate::liveness`]
//! for the rules.

use tokio::time::Instant;

use crate::liveness::Liveness;

/// What [`Pulse::tick`] asks the task to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Nothing to do now.
    Wait,
    /// Send a ping.
    Probe,
    /// The ping went unanswered: the instance just became unresponsive.
    Unresponsive,
}

/// The liveness of one instance.
#[derive(Debug)]
pub(super) struct Pulse {
    last_heard: Instant,
    /// Since when the instance has owed this bus an answer without saying
    /// anything.
    owed_since: Option<Instant>,
    /// The ping in flight: its IQ id and when it left.
    probe: Option<(String, Instant)>,
    unresponsive: bool,
    /// Pings unanswered in a row.
    misses: u32,
    /// No ping before this (the back-off for unresponsive instances).
    not_before: Instant,
}

impl Pulse {
    pub fn new(now: Instant) -> Pulse {
        Pulse {
            last_heard: now,
            owed_since: None,
            probe: None,
            unresponsive: false,
            misses: 0,
            not_before: now,
        }
    }

    pub fn is_unresponsive(&self) -> bool {
        self.unresponsive
    }

    /// The instance said something; `owes` whether calls to it are still
    /// unanswered. True if it was unresponsive until now.
    pub fn heard(&mut self, now: Instant, owes: bool) -> bool {
        self.last_heard = now;
        self.owed_since = owes.then_some(now);
        self.misses = 0;
        self.not_before = now;
        std::mem::take(&mut self.unresponsive)
    }

    /// A call to the instance left; `first` if no other is unanswered.
    pub fn call_started(&mut self, now: Instant) {
        self.owed_since.get_or_insert(now);
    }

    /// No call to the instance is unanswered any more.
    pub fn calls_settled(&mut self) {
        self.owed_since = None;
    }

    /// The ping `id` left at `now`.
    pub fn probing(&mut self, id: String, now: Instant) {
        self.probe = Some((id, now));
    }

    /// The id of the ping in flight, if any.
    pub fn probe_id(&self) -> Option<&str> {
        self.probe.as_ref().map(|(id, _)| id.as_str())
    }

    /// The ping was answered: it is no longer in flight.
    pub fn probe_answered(&mut self, id: &str) {
        if self.probe_id() == Some(id) {
            self.probe = None;
        }
    }

    /// Our own connection came back: nothing unanswered while it was down
    /// counts against the instance.
    pub fn restart(&mut self, now: Instant) {
        self.probe = None;
        self.last_heard = now;
        if self.owed_since.is_some() {
            self.owed_since = Some(now);
        }
        self.not_before = now;
    }

    /// What to do at `now`. A timed-out ping is forgotten here: its id is
    /// returned in `expired` so the task can drop its pending IQ.
    pub fn tick(&mut self, now: Instant, config: &Liveness, expired: &mut Vec<String>) -> Verdict {
        if let Some((_, sent)) = &self.probe {
            if now.saturating_duration_since(*sent) < config.timeout {
                return Verdict::Wait;
            }
            let (id, _) = self.probe.take().expect("checked above");
            expired.push(id);
            self.misses = self.misses.saturating_add(1);
            let backoff = config
                .interval
                .saturating_mul(1 << self.misses.min(3))
                .min(config.max_backoff());
            self.not_before = now + backoff;
            if !self.unresponsive {
                self.unresponsive = true;
                return Verdict::Unresponsive;
            }
            return Verdict::Wait;
        }
        if now < self.not_before {
            return Verdict::Wait;
        }
        let silent = now.saturating_duration_since(self.last_heard) >= config.interval;
        let owing = self
            .owed_since
            .is_some_and(|since| now.saturating_duration_since(since) >= config.suspect_after);
        if self.unresponsive || silent || owing {
            Verdict::Probe
        } else {
            Verdict::Wait
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn an_owed_answer_leads_to_a_ping_and_silence_to_unresponsive() {
        let config = Liveness::default();
        let t0 = Instant::now();
        let mut pulse = Pulse::new(t0);
        let mut expired = Vec::new();
        assert_eq!(
            pulse.tick(t0 + ms(100), &config, &mut expired),
            Verdict::Wait
        );
        pulse.call_started(t0 + ms(100));
        assert_eq!(
            pulse.tick(t0 + ms(300), &config, &mut expired),
            Verdict::Wait
        );
        assert_eq!(
            pulse.tick(t0 + ms(350), &config, &mut expired),
            Verdict::Probe
        );
        pulse.probing("p1".into(), t0 + ms(350));
        assert_eq!(
            pulse.tick(t0 + ms(1000), &config, &mut expired),
            Verdict::Wait
        );
        assert_eq!(
            pulse.tick(t0 + ms(1100), &config, &mut expired),
            Verdict::Unresponsive
        );
        assert_eq!(expired, ["p1"]);
        assert!(pulse.is_unresponsive());
        // Backed off: no ping right away, then another one.
        assert_eq!(
            pulse.tick(t0 + ms(1200), &config, &mut expired),
            Verdict::Wait
        );
        assert_eq!(
            pulse.tick(t0 + ms(2700), &config, &mut expired),
            Verdict::Probe
        );
        // It speaks again: back, and no ping needed for a while.
        assert!(pulse.heard(t0 + ms(2800), false));
        assert!(!pulse.is_unresponsive());
        assert_eq!(
            pulse.tick(t0 + ms(3000), &config, &mut expired),
            Verdict::Wait
        );
    }

    #[test]
    fn a_silent_idle_instance_is_pinged_each_interval_and_answers_keep_it() {
        let config = Liveness::default();
        let t0 = Instant::now();
        let mut pulse = Pulse::new(t0);
        let mut expired = Vec::new();
        assert_eq!(
            pulse.tick(t0 + ms(700), &config, &mut expired),
            Verdict::Wait
        );
        assert_eq!(
            pulse.tick(t0 + ms(760), &config, &mut expired),
            Verdict::Probe
        );
        pulse.probing("p1".into(), t0 + ms(760));
        pulse.probe_answered("p1");
        assert!(!pulse.heard(t0 + ms(761), false));
        assert_eq!(
            pulse.tick(t0 + ms(1400), &config, &mut expired),
            Verdict::Wait
        );
        assert!(expired.is_empty());
    }

    #[test]
    fn a_slow_call_is_checked_by_ping_not_held_against_the_instance() {
        let config = Liveness::default();
        let t0 = Instant::now();
        let mut pulse = Pulse::new(t0);
        let mut expired = Vec::new();
        pulse.call_started(t0);
        for round in 0..8u64 {
            let at = t0 + ms(300 * (round + 1));
            assert_eq!(pulse.tick(at, &config, &mut expired), Verdict::Probe);
            pulse.probing(format!("p{round}"), at);
            pulse.probe_answered(&format!("p{round}"));
            assert!(!pulse.heard(at + ms(1), true), "never unresponsive");
        }
        assert!(expired.is_empty());
    }

    #[test]
    fn our_own_reconnect_does_not_count_against_the_instance() {
        let config = Liveness::default();
        let t0 = Instant::now();
        let mut pulse = Pulse::new(t0);
        let mut expired = Vec::new();
        pulse.probing("p1".into(), t0);
        pulse.restart(t0 + ms(5000));
        assert_eq!(
            pulse.tick(t0 + ms(5100), &config, &mut expired),
            Verdict::Wait
        );
        assert!(!pulse.is_unresponsive());
    }
}
