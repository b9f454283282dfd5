//! `xbus topic create TOPIC --publisher JID...`: sets a topic up once, as
//! an account allowed to create topics (on Prosody 0.12, an admin of the
//! pubsub component), so that services publish to it as plain accounts.

use super::connect::ConnectArgs;
use anyhow::Context as _;
use xbus::TopicAccess;

/// Options of `xbus topic`.
#[derive(Debug, clap::Args)]
pub struct TopicArgs {
    #[command(subcommand)]
    pub action: TopicAction,
}

/// What `xbus topic` does.
#[derive(Debug, clap::Subcommand)]
pub enum TopicAction {
    /// Creates a topic as this account (its owner) and lets the given
    /// accounts publish to it (and, with `--subscriber`, only the given
    /// accounts subscribe); an existing topic gets the lists all the same.
    /// See docs/DEPLOYMENT.md, "Who may create topics" and "Topic access".
    Create(CreateArgs),
}

/// Options of `xbus topic create`.
#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// The topic (pubsub node), e.g. `orders.created`.
    pub topic: String,
    /// An account that may publish to the topic, as a bare JID (repeatable).
    #[arg(long = "publisher", value_name = "JID")]
    pub publishers: Vec<String>,
    /// Only the topic's owner and the `--publisher` accounts may publish
    /// (`pubsub#publish_model` = `publishers`; Prosody's default already).
    #[arg(long)]
    pub publishers_only: bool,
    /// An account that may subscribe to the topic (repeatable): the topic
    /// then has a whitelist (`pubsub#access_model` = `whitelist`) of its
    /// owner, its publishers and these accounts.
    #[arg(long = "subscriber", value_name = "JID")]
    pub subscribers: Vec<String>,
    /// How many events the topic keeps.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub max_items: u32,
    /// Where to connect and as whom.
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// Runs `xbus topic ...`.
pub async fn run(args: TopicArgs) -> anyhow::Result<()> {
    match args.action {
        TopicAction::Create(args) => create(args).await,
    }
}

async fn create(args: CreateArgs) -> anyhow::Result<()> {
    let max_items = args.max_items;
    let mut access = TopicAccess::new();
    if args.publishers_only {
        access = access.publishers(args.publishers.iter().cloned());
    }
    if !args.subscribers.is_empty() {
        access = access.subscribers(args.subscribers.iter().cloned());
    }
    let topic = args.topic.clone();
    let bus = args
        .connect
        .connect(|config| config.max_items(max_items).topic_access(topic, access))
        .await?;
    let publishers: Vec<&str> = args.publishers.iter().map(String::as_str).collect();
    let created = bus.create_topic(&args.topic, &publishers).await;
    let closed = bus.close().await;
    created.with_context(|| format!("set up topic {:?}", args.topic))?;
    closed.context("close the connection")?;
    Ok(())
}
