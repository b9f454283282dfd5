//! `xbus consume TOPIC --group NAME`: takes a share of a consumer group's
//! events, prints each job as one line of JSON and acks it (or naks it).

use std::time::Duration;

use anyhow::{anyhow, bail};
use futures::StreamExt;
use xbus::{ConsumeOptions, GroupError};

use super::connect::ConnectArgs;
use super::json::parse_secs;
use super::stop::Stop;
use super::subscribe::event_line;

/// Options of `xbus consume`.
#[derive(Debug, clap::Args)]
pub struct ConsumeArgs {
    /// The topic (pubsub node), e.g. `orders.created`.
    pub topic: String,
    /// The group's name: the instances of one account that consume it
    /// share its events.
    #[arg(long, value_name = "NAME")]
    pub group: String,
    /// Nak each job instead of acking it (it comes again after the
    /// backoff, and goes to the dead-letter topic after the last delivery).
    #[arg(long)]
    pub nak: bool,
    /// Exit after printing N jobs.
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// Stop after SECS seconds: exit 0, or 1 if `--count` jobs did not all
    /// arrive by then.
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub timeout: Option<Duration>,
    /// Where to connect and as whom.
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// Joins the group and prints jobs until `--count`, `--timeout` or Ctrl-C.
pub async fn run(args: ConsumeArgs) -> anyhow::Result<()> {
    let bus = args.connect.connect(|config| config).await?;
    let mut jobs = bus
        .consume_raw(&args.topic, &args.group, ConsumeOptions::new())
        .await?;
    eprintln!("consuming {} in group {}", args.topic, args.group);
    let stop = Stop::new(args.count, args.timeout, "jobs");
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    let mut printed = 0;
    let outcome = loop {
        if stop.done(printed) {
            break Ok(());
        }
        let next = tokio::select! {
            next = jobs.next() => next,
            outcome = stop.timed_out(printed) => break outcome,
            _ = &mut interrupted => break Ok(()),
        };
        let job = match next {
            None => bail!("the group's stream ended: the connection was closed"),
            Some(Err(error @ GroupError::Lost { .. })) => {
                eprintln!("xbus: {error}");
                continue;
            }
            Some(Err(other)) => {
                eprintln!("xbus: {}", super::flatten(&anyhow!(other)));
                continue;
            }
            Some(Ok(job)) => job,
        };
        let line = event_line(
            &job.event,
            Some(&job.item_id),
            job.publisher.as_deref(),
            std::iter::empty(),
            Some(job.attempt),
        );
        let settled = if args.nak { job.nak(None) } else { job.ack() };
        if let Err(error) = settled {
            eprintln!("xbus: {error}");
        }
        match line {
            Ok(line) => {
                if !super::print_line(&line)? {
                    break Ok(());
                }
                printed += 1;
            }
            Err(error) => eprintln!("xbus: {}", super::flatten(&error)),
        }
    };
    drop(jobs);
    let _ = bus.close().await;
    outcome
}
