#!/usr/bin/env bash
# Builds the publishable crates as a user's project does: a new crate that
# depends on xbus and xbus-server, resolved afresh to the newest compatible
# versions (not this workspace's Cargo.lock), checked with warnings denied.
# Then installs the `xbus` command as the README says (`cargo install --path
# cli`, which resolves afresh too), with warnings denied, and runs it.
# Cargo caps lints of registry crates, so what -D warnings catches is a
# warning in xbus, xbus-macros, xbus-server or the code the derives expand
# to, e.g. a dependency's newly deprecated API.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
dir="$root/target/user-build"
mkdir -p "$dir/src"
cat > "$dir/Cargo.toml" <<TOML
[package]
name = "xbus-user-build"
version = "0.0.0"
edition = "2024"
publish = false

[dependencies]
xbus = { path = "$root/bus" }
xbus-server = { path = "$root/server", features = ["bus"] }
serde = { version = "1", features = ["derive"] }
tokio = { version = "1", features = ["rt-multi-thread", "macros"] }

# Its own workspace: not a member of the one above.
[workspace]
TOML
cat > "$dir/src/main.rs" <<'RUST'
//! A user's service in miniature: both derives, a publish, a served method.
use serde::{Deserialize, Serialize};
use xbus::{Event, Request};

#[derive(Event, Serialize, Deserialize, Debug)]
#[event(topic = "orders.created")]
struct OrderCreated {
    id: u64,
}

#[derive(Request, Serialize, Deserialize)]
#[request(method = "inventory.check", response = u32)]
struct CheckStock {
    sku: String,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (server, orders) = xbus_server::start_with_bus("orders").await?;
    let inventory = server.bus("inventory").await?;
    inventory
        .serve(|req: CheckStock, _ctx: xbus::Context| async move {
            if req.sku.is_empty() {
                return Err(xbus::RpcError::new("bad_sku", "empty SKU"));
            }
            Ok(3)
        })
        .await?;
    orders.publish(&OrderCreated { id: 7 }).await?;
    let left = orders
        .request("inventory@localhost", CheckStock { sku: "A1".into() })
        .await?;
    println!("{left} left");
    Ok(())
}
RUST
cd "$dir"
# Newest compatible versions of everything, as `cargo add xbus` would pick.
cargo generate-lockfile --quiet
RUSTFLAGS="-D warnings" cargo check --quiet --target-dir "$dir/target"
cd "$root"
# The debug profile and the same target directory: the library crates
# checked above are not built twice over.
RUSTFLAGS="-D warnings" cargo install --quiet --debug --path cli \
  --root "$dir/install" --target-dir "$dir/target"
"$dir/install/bin/xbus" --version
cd "$dir"
echo "user build: no warnings in xbus, xbus-macros, xbus-server, xbus-cli, with" \
  $(cargo tree --quiet -e normal --prefix none | grep -E '^(rustls|tokio-rustls|tokio-xmpp|xmpp-parsers|tokio|serde) v' | sed 's/ (\*)//' | sort -u | tr '\n' ' ')
