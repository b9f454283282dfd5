//! `xbus server`: runs the embedded XMPP server until SIGINT or SIGTERM.

use anyhow::Context as _;
use tokio::signal::unix::{SignalKind, signal};

/// Options of `xbus server`.
#[derive(Debug, clap::Args)]
pub struct ServerArgs {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:5222")]
    pub bind: String,
    /// The XMPP domain served; the pubsub service is `pubsub.<domain>`.
    #[arg(long, default_value = "localhost")]
    pub domain: String,
    /// A fixed account (repeatable). Without any, accounts are open: any
    /// name registers on its first login with the password it gives.
    #[arg(long = "user", value_name = "NAME:PASSWORD", value_parser = parse_user)]
    pub users: Vec<(String, String)>,
    /// Offer STARTTLS with a certificate made at start; the CA to trust is
    /// written to a file whose path is printed. Required off loopback.
    #[arg(long)]
    pub tls: bool,
    /// Largest stanza a client may send, in bytes [default: 10 MiB].
    #[arg(long, value_name = "BYTES")]
    pub max_stanza_size: Option<usize>,
}

/// Starts the server, prints `listening on ADDR ...` as the first line of
/// stdout, and serves until SIGINT or SIGTERM.
pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    // Listen for the signals before anything else, so none is missed.
    let mut interrupt = signal(SignalKind::interrupt()).context("listen for SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("listen for SIGTERM")?;
    let mut builder = xbus_server::Server::builder()
        .bind(args.bind.clone())
        .domain(args.domain.clone());
    if !args.users.is_empty() {
        builder = builder.fixed_accounts();
    }
    if args.tls {
        builder = builder.tls_generated();
    }
    if let Some(bytes) = args.max_stanza_size {
        builder = builder.max_stanza_size(bytes);
    }
    let server = builder.start().await?;
    for (user, password) in &args.users {
        server.register(user, password)?;
    }
    let accounts = match args.users.len() {
        0 => "open accounts".to_owned(),
        1 => "1 account".to_owned(),
        n => format!("{n} accounts"),
    };
    let tls = if args.tls { "STARTTLS" } else { "plaintext" };
    let mut text = format!(
        "listening on {} (domain {}, pubsub {}, {accounts}, {tls})\n",
        server.addr(),
        server.domain(),
        server.pubsub_jid()
    );
    if let Some(ca) = server.ca_file() {
        text.push_str(&format!("CA certificate: {}\n", ca.display()));
    }
    super::print_text(&text)?;
    tokio::select! {
        _ = interrupt.recv() => {}
        _ = terminate.recv() => {}
    }
    server.shutdown().await;
    Ok(())
}

/// clap parser of `--user NAME:PASSWORD`.
fn parse_user(text: &str) -> Result<(String, String), String> {
    match text.split_once(':') {
        Some((name, password)) if !name.is_empty() && !password.is_empty() => {
            Ok((name.to_owned(), password.to_owned()))
        }
        _ => Err(format!("expected NAME:PASSWORD, got {text:?}")),
    }
}
