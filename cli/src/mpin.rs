//! `dta mpin ...`: M-Pin secrets from trust authorities, tokens, and authentication against
//! a node acting as authentication server.

use anyhow::{Context, bail};
use dta_crypto::mpin::{self, G1Point, MpinScalar};
use serde_json::{Value, json};

use crate::client::{ClientArgs, table, text};
use crate::output::outln;

/// Whom a request asks, and for shares of what.
#[derive(Debug, clap::Args)]
pub struct Authorities {
    /// The authorities' identity CIDs, comma-separated (with --master, every fiduciary of the
    /// master order by default).
    #[arg(long, value_delimiter = ',', required_unless_present = "master")]
    from: Vec<String>,
    /// Shares of a master secret generated t-of-n: the reference of its `mpin-master` order.
    /// The first t authorities' shares combine.
    #[arg(long)]
    master: Option<String>,
    /// The master order's principal (an identity CID), when it is not this node.
    #[arg(long, requires = "master")]
    master_principal: Option<String>,
    /// The master secret's threshold, when this node does not know the order.
    #[arg(long, requires = "master")]
    threshold: Option<u32>,
}

impl Authorities {
    /// A request body with these authorities and master secret.
    fn body(&self, mut body: Value) -> Value {
        if !self.from.is_empty() {
            body["from"] = json!(self.from);
        }
        if let Some(reference) = &self.master {
            body["master"] = json!({
                "reference": reference,
                "principal": self.master_principal,
                "threshold": self.threshold,
            });
        }
        body
    }
}

/// `dta mpin ...`.
#[derive(Debug, clap::Subcommand)]
pub enum MpinCommand {
    /// Ask trust authorities for client-secret shares of an identity (this node's own name,
    /// or the name of an identity it hosts: `dta identity create`); prints the combined client
    /// secret (hex).
    ClientSecret {
        /// The M-Pin identity.
        #[arg(long = "id")]
        identity: String,
        #[command(flatten)]
        from: Authorities,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Ask trust authorities for server-secret shares; the node keeps the sum as its
    /// authentication-server secret.
    ServerSecret {
        #[command(flatten)]
        from: Authorities,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Ask trust authorities for a time permit (date in days since the Unix epoch).
    Permit {
        /// The M-Pin identity.
        #[arg(long = "id")]
        identity: String,
        /// The date, in days since 1970-01-01.
        #[arg(long)]
        date: u32,
        #[command(flatten)]
        from: Authorities,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Take the PIN out of a client secret: prints the token a client stores.
    Token {
        /// The M-Pin identity.
        #[arg(long = "id")]
        identity: String,
        /// The PIN (a number below 10000).
        #[arg(long)]
        pin: u32,
        /// The reference of a client secret the node was issued.
        #[arg(
            long,
            conflicts_with = "client_secret",
            required_unless_present = "client_secret"
        )]
        reference: Option<String>,
        /// The client secret itself (hex).
        #[arg(long)]
        client_secret: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Authenticate with a token and a PIN against a node acting as authentication server:
    /// runs the client's side here and the server's check there. Exits non-zero if refused.
    Authenticate {
        /// The M-Pin identity.
        #[arg(long = "id")]
        identity: String,
        /// The PIN.
        #[arg(long)]
        pin: u32,
        /// The token (hex), from `dta mpin token`.
        #[arg(long, env = "DTA_MPIN_TOKEN")]
        token: String,
        /// The server: its API URL (http://…), or its identity CID, reached over the network
        /// through this node (--api or --home).
        #[arg(long)]
        server: String,
        /// A time permit (hex, from `dta mpin permit`): authenticate with it, for its --date.
        #[arg(long, requires = "date")]
        permit: Option<String>,
        /// The permit's date, in days since 1970-01-01 (UTC); the server takes only today's.
        #[arg(long, requires = "permit")]
        date: Option<u32>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Issuances this node recorded, as requester or as authority.
    List(ClientArgs),
}

/// Runs an `mpin` command.
pub async fn run(command: MpinCommand) -> anyhow::Result<()> {
    match command {
        MpinCommand::ClientSecret {
            identity,
            from,
            client,
        } => {
            let issued = client
                .post(
                    "/v2/mpin/client-secret",
                    from.body(json!({ "identity": identity })),
                )
                .await?;
            print(&client, &issued, "client_secret");
        }
        MpinCommand::ServerSecret { from, client } => {
            let issued = client
                .post("/v2/mpin/server-secret", from.body(json!({})))
                .await?;
            print(&client, &issued, "reference");
        }
        MpinCommand::Permit {
            identity,
            date,
            from,
            client,
        } => {
            let issued = client
                .post(
                    "/v2/mpin/permit",
                    from.body(json!({ "identity": identity, "date": date })),
                )
                .await?;
            print(&client, &issued, "permit");
        }
        MpinCommand::Token {
            identity,
            pin,
            reference,
            client_secret,
            client,
        } => {
            let mut body = json!({ "identity": identity, "pin": pin });
            match (reference, client_secret) {
                (Some(reference), _) => body["reference"] = reference.into(),
                (None, Some(secret)) => body["client_secret"] = secret.into(),
                (None, None) => bail!("pass --reference or --client-secret"),
            }
            let token = client.post("/v2/mpin/token", body).await?;
            print(&client, &token, "token");
        }
        MpinCommand::Authenticate {
            identity,
            pin,
            token,
            server,
            permit,
            date,
            client,
        } => {
            let permit = match (permit, date) {
                (Some(point), Some(date)) => {
                    let bytes = hex::decode(point.trim()).context("the permit is not hex")?;
                    let point =
                        G1Point::from_bytes(&bytes).context("the permit is not a valid point")?;
                    Some(mpin::Permit { date, point })
                }
                _ => None,
            };
            let outcome =
                authenticate(&identity, pin, &token, permit.as_ref(), &server, &client).await?;
            if client.json {
                outln!("{outcome}");
            } else {
                outln!("authenticated as {identity}");
            }
        }
        MpinCommand::List(client) => {
            let records = client.get("/v2/mpin").await?;
            if client.json {
                outln!("{}", serde_json::to_string_pretty(&records)?);
                return Ok(());
            }
            let rows = records
                .as_array()
                .into_iter()
                .flatten()
                .map(|r| {
                    vec![
                        text(&r["reference"]),
                        text(&r["side"]),
                        text(&r["secret"]),
                        text(&r["identity"]),
                        format!(
                            "{}/{}",
                            text(&r["answered"]),
                            r["authorities"].as_array().map_or(0, Vec::len)
                        ),
                        text(&r["state"]),
                    ]
                })
                .collect();
            table(
                &[
                    "REFERENCE",
                    "SIDE",
                    "SECRET",
                    "IDENTITY",
                    "ANSWERS",
                    "STATE",
                ],
                rows,
            );
        }
    }
    Ok(())
}

fn print(client: &ClientArgs, answer: &Value, field: &str) {
    if client.json {
        outln!("{answer}");
    } else {
        outln!("{}", text(&answer[field]));
    }
}

/// The client's two passes here, the server's challenge and check at `server`: its API, or
/// this node's, which relays both steps to the server over the network.
async fn authenticate(
    identity: &str,
    pin: u32,
    token: &str,
    permit: Option<&mpin::Permit>,
    server: &str,
    client: &ClientArgs,
) -> anyhow::Result<Value> {
    let (api, relay_to) = if server.starts_with("http://") || server.starts_with("https://") {
        (client.client_at(server)?, None)
    } else {
        (client.client()?, Some(server.to_owned()))
    };
    let with_server = |mut body: Value| {
        if let Some(cid) = &relay_to {
            body["server"] = cid.clone().into();
        }
        body
    };
    let token = hex::decode(token.trim()).context("the token is not hex")?;
    let token = G1Point::from_bytes(&token).context("the token is not a valid point")?;
    let first = mpin::client_first(&token, identity.as_bytes(), pin, permit, None)?;
    let mut body = json!({ "identity": identity, "u": hex::encode(first.u.to_bytes()) });
    if let Some(permit) = permit {
        body["date"] = permit.date.into();
    }
    let body = with_server(body);
    let challenge = api.post("/v2/mpin/auth/challenge", &body).await?;
    let y = hex::decode(text(&challenge["y"])).context("the server's y is not hex")?;
    let y = MpinScalar::from_bytes(&y).context("the server's y is not a scalar")?;
    let v = mpin::client_second(first.state, &y)?;
    let body =
        with_server(json!({ "session": challenge["session"], "v": hex::encode(v.to_bytes()) }));
    Ok(api.post("/v2/mpin/auth/verify", &body).await?)
}
