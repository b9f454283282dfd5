//! `xbus services SERVICE`: the live table of a service's instances, from
//! presence.

use std::collections::BTreeMap;
use std::io::IsTerminal as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::anyhow;
use futures::{FutureExt as _, StreamExt as _};
use xbus::{InstanceEvent, Watch};

use super::connect::ConnectArgs;

/// How long the first look at a service waits for its presence.
const DISCOVERY: Duration = Duration::from_secs(2);
/// The table is complete once no presence came for this long... (the
/// presence of a service's instances comes in one burst, but on a loaded
/// machine 300 ms between two of them was seen)
const QUIET: Duration = Duration::from_millis(600);
/// ...or after this long at most.
const SETTLE: Duration = Duration::from_secs(2);

/// Options of `xbus services`.
#[derive(Debug, clap::Args)]
pub struct ServicesArgs {
    /// The service: a bare JID such as `inventory@example.org`.
    pub service: String,
    /// Print the instances online now and exit, instead of watching.
    #[arg(long)]
    pub once: bool,
    /// Where to connect and as whom.
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// What the table knows of one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Row {
    status: String,
    /// When this command saw it come online or change status (UTC);
    /// `None` for instances online when the command started.
    since: Option<String>,
}

/// The status shown for an instance that stopped answering pings.
const UNRESPONSIVE: &str = "unresponsive";

/// The instances by full JID.
#[derive(Debug, Default)]
struct Table(BTreeMap<String, Row>);

impl Table {
    /// Applies one change; true if the table changed.
    fn apply(&mut self, event: InstanceEvent, since: Option<String>) -> bool {
        match event {
            InstanceEvent::Online(instance)
            | InstanceEvent::StatusChanged(instance)
            | InstanceEvent::Responsive(instance) => {
                let status = instance.status.to_string();
                let jid = instance.jid.to_string();
                if self.0.get(&jid).is_some_and(|row| row.status == status) {
                    return false;
                }
                self.0.insert(jid, Row { status, since });
                true
            }
            InstanceEvent::Offline(jid) => self.0.remove(jid.as_str()).is_some(),
            InstanceEvent::Unresponsive(jid) => match self.0.get_mut(jid.as_str()) {
                Some(row) if row.status != UNRESPONSIVE => {
                    row.status = UNRESPONSIVE.to_owned();
                    row.since = since;
                    true
                }
                _ => false,
            },
            _ => false,
        }
    }

    /// The table as text: `INSTANCE STATUS [SINCE]` in aligned columns.
    fn render(&self, service: &str, with_since: bool) -> String {
        if self.0.is_empty() {
            return format!("no instance of {service} is online\n");
        }
        let width = self.0.keys().map(String::len).max().unwrap_or(0).max(8);
        let status_width = self
            .0
            .values()
            .map(|r| r.status.len())
            .max()
            .unwrap_or(0)
            .max(6);
        let mut text = String::new();
        let mut row = |jid: &str, status: &str, since: &str| {
            let line = match with_since {
                true => format!("{jid:width$}  {status:status_width$}  {since}"),
                false => format!("{jid:width$}  {status}"),
            };
            text.push_str(line.trim_end());
            text.push('\n');
        };
        row("INSTANCE", "STATUS", "SINCE");
        for (jid, r) in &self.0 {
            row(jid, &r.status, r.since.as_deref().unwrap_or("-"));
        }
        text
    }
}

/// Prints the table once (`--once`) or after every change until Ctrl-C.
pub async fn run(args: ServicesArgs) -> anyhow::Result<()> {
    let bus = args
        .connect
        .connect(|config| config.discovery_timeout(DISCOVERY))
        .await?;
    let outcome = async {
        // Watch first, so that no change between the two calls is lost.
        let mut watch = bus.watch(&args.service).await?;
        let mut table = Table::default();
        for instance in bus.instances(&args.service).await? {
            table.apply(InstanceEvent::Online(instance), None);
        }
        settle(&mut watch, &mut table).await?;
        if args.once {
            return super::print_text(&table.render(&args.service, false)).map(drop);
        }
        follow(&args.service, &mut watch, &mut table).await
    }
    .await;
    let _ = bus.close().await;
    outcome
}

/// Takes the presence still arriving about the instances online now.
async fn settle(watch: &mut Watch, table: &mut Table) -> anyhow::Result<()> {
    let end = tokio::time::Instant::now() + SETTLE;
    while let Ok(Ok(event)) =
        tokio::time::timeout_at(end, tokio::time::timeout(QUIET, watch.next())).await
    {
        let event = event.ok_or_else(|| anyhow!("the bus closed"))?;
        table.apply(event, None);
    }
    Ok(())
}

/// Reprints the table on each change until Ctrl-C or stdout closes.
async fn follow(service: &str, watch: &mut Watch, table: &mut Table) -> anyhow::Result<()> {
    let terminal = std::io::stdout().is_terminal();
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    let mut first = true;
    loop {
        let text = table.render(service, true);
        let text = match (terminal, first) {
            (true, _) => format!("\x1b[2J\x1b[H{text}"),
            (false, true) => text,
            (false, false) => format!("\n{text}"),
        };
        if !super::print_text(&text)? {
            return Ok(());
        }
        first = false;
        let mut changed = false;
        while !changed {
            let event = tokio::select! {
                event = watch.next() => event,
                _ = &mut interrupted => return Ok(()),
            };
            let event = event.ok_or_else(|| anyhow!("the bus closed"))?;
            changed |= table.apply(event, Some(now_utc()));
            // A burst of changes makes one table.
            while let Some(Some(event)) = watch.next().now_or_never() {
                changed |= table.apply(event, Some(now_utc()));
            }
        }
    }
}

/// The time of day in UTC, `HH:MM:SSZ`.
fn now_utc() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let day = secs % 86_400;
    format!("{:02}:{:02}:{:02}Z", day / 3600, day % 3600 / 60, day % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_table_says_so() {
        let table = Table::default();
        assert_eq!(
            table.render("svc@localhost", true),
            "no instance of svc@localhost is online\n"
        );
    }

    #[test]
    fn rows_are_aligned() {
        let mut table = Table::default();
        table.0.insert(
            "svc@localhost/i1".into(),
            Row {
                status: "ready".into(),
                since: None,
            },
        );
        table.0.insert(
            "svc@localhost/long-name".into(),
            Row {
                status: "draining".into(),
                since: Some("12:00:00Z".into()),
            },
        );
        assert_eq!(
            table.render("svc@localhost", true),
            "INSTANCE                 STATUS    SINCE\n\
             svc@localhost/i1         ready     -\n\
             svc@localhost/long-name  draining  12:00:00Z\n"
        );
        assert_eq!(
            table.render("svc@localhost", false),
            "INSTANCE                 STATUS\n\
             svc@localhost/i1         ready\n\
             svc@localhost/long-name  draining\n"
        );
    }
}
