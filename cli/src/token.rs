//! `dta token`: make, list and revoke the API tokens of a running node (its `admin` scope).

use clap::Subcommand;
use serde_json::{Value, json};

use crate::client::{ClientArgs, table, text};
use crate::output::outln;

/// `dta token ...`.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Make a token and print it (this once: the node keeps only its digest).
    Create {
        /// Comma-separated scopes: read, order, release, approve, secret, mpin, admin, or all.
        #[arg(long)]
        scopes: String,
        /// How long it works (30d, 12h, 90m, 45s); without it, until revoked.
        #[arg(long)]
        expires: Option<String>,
        /// A note for whoever reads the list.
        #[arg(long)]
        label: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Every token the node made: id, scopes, label, state.
    List(ClientArgs),
    /// Revoke a token by id: it is refused from the moment this returns.
    Revoke {
        /// The token's id (from `dta token list`).
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// Runs a `dta token` command.
pub async fn run(command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::Create {
            scopes,
            expires,
            label,
            client,
        } => {
            let scopes: Vec<&str> = scopes.split(',').map(str::trim).collect();
            let made = client
                .post(
                    "/v2/tokens",
                    json!({ "scopes": scopes, "expires": expires, "label": label }),
                )
                .await?;
            if client.json {
                outln!("{}", serde_json::to_string_pretty(&made)?);
            } else {
                outln!("{}", text(&made["token"]));
                eprintln!(
                    "token {} ({}): shown this once, keep it somewhere safe",
                    text(&made["id"]),
                    scopes_of(&made)
                );
            }
        }
        TokenCommand::List(client) => {
            let tokens = client.get("/v2/tokens").await?;
            if client.json {
                outln!("{}", serde_json::to_string_pretty(&tokens)?);
                return Ok(());
            }
            let rows = tokens
                .as_array()
                .into_iter()
                .flatten()
                .map(|t| vec![text(&t["id"]), scopes_of(t), state_of(t), text(&t["label"])])
                .collect();
            table(&["ID", "SCOPES", "STATE", "LABEL"], rows);
        }
        TokenCommand::Revoke { id, client } => {
            let revoked = client.client()?.delete(&format!("/v2/tokens/{id}")).await?;
            if client.json {
                outln!("{}", serde_json::to_string_pretty(&revoked)?);
            } else {
                outln!("revoked {id}");
            }
        }
    }
    Ok(())
}

fn scopes_of(token: &Value) -> String {
    token["scopes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect::<Vec<_>>()
        .join(",")
}

fn state_of(token: &Value) -> String {
    if !token["revoked_ms"].is_null() {
        "revoked".into()
    } else if token["live"] == true {
        "live".into()
    } else {
        "expired".into()
    }
}
