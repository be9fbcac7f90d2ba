//! `dta order ...`: create (with `--wait`), list, show, release (with `--wait`) and a
//! beneficiary's received secret, through the node's HTTP API. Secrets given or received are
//! wiped from the command's own buffers once used; a received secret written to a file is
//! written mode 0600.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::{Value, json};
use zeroize::{Zeroize, Zeroizing};

use crate::client::{ClientArgs, of_principal, table, text};
use crate::output::outln;
use crate::wait::{self, Goal};

/// `dta order ...`.
#[derive(Debug, clap::Subcommand)]
pub enum OrderCommand {
    /// Ask fiduciaries to take custody: of a secret, t-of-n (`safeguardsecret`), or of a key
    /// they generate, t-of-n without a dealer or n-of-n (`bitcoinwallet`, `milagro`).
    Create {
        /// A fiduciary identity CID (repeat, in share order).
        #[arg(long = "fiduciary", required = true)]
        fiduciaries: Vec<String>,
        /// Shares needed to release.
        #[arg(long)]
        threshold: u32,
        /// The beneficiary identity CID.
        #[arg(long)]
        beneficiary: Option<String>,
        /// Order reference (generated if absent).
        #[arg(long)]
        reference: Option<String>,
        /// The secret, as text, for `safeguardsecret` (use --secret-file to keep it out of
        /// the shell history).
        #[arg(long, conflicts_with = "secret_file")]
        secret: Option<String>,
        /// A file holding the secret: its exact bytes, text or not, are the secret.
        #[arg(long)]
        secret_file: Option<PathBuf>,
        /// Plugin input as KEY=VALUE (repeatable), for example `coin=1` for `bitcoinwallet`.
        #[arg(long = "input", value_parser = key_value)]
        input: Vec<(String, String)>,
        /// How many releases are allowed.
        #[arg(long, default_value_t = 1)]
        max_releases: u32,
        /// A release policy, as a TOML or JSON file (approver groups, rule, not_before_ms,
        /// delay_ms, veto, approval_lifetime_ms, signing, expires_at_ms; see the README).
        #[arg(long)]
        policy: Option<PathBuf>,
        /// Plugin.
        #[arg(long, default_value = "safeguardsecret")]
        plugin: String,
        /// Refresh the shares this often (milliseconds, at least 1000) once the order is
        /// certified: same key, new shares, the old ones deleted. The principal checks every
        /// 5 s whether a refresh is due.
        #[arg(long, value_name = "MS")]
        refresh_every_ms: Option<u64>,
        /// Wait until the order is certified (at most SECONDS, 60 by default); fail naming
        /// the fiduciaries that have not signed if it is not.
        #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "60", value_name = "SECONDS")]
        wait: Option<u64>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Orders this node knows, of every role; filtered, and in pages with --limit.
    List {
        /// Only orders in this state (`certified`, `holding`, `released`, …), or `stalled`:
        /// the orders of this node's, as principal, that have waited for a fiduciary or the
        /// beneficiary longer than --stalled-after.
        #[arg(long)]
        state: Option<String>,
        /// With --state stalled: how long an order must have waited, in seconds (60 if not
        /// given).
        #[arg(long, value_name = "SECONDS")]
        stalled_after: Option<u64>,
        /// Only orders where this node plays this role.
        #[arg(long)]
        role: Option<String>,
        /// At most this many (1 to 1000); a full page says how to ask for the next.
        #[arg(long)]
        limit: Option<usize>,
        /// Start after this order: `ROLE/PRINCIPAL/REFERENCE` of the last one listed.
        #[arg(long)]
        after: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// One order, as each local role sees it.
    Show {
        /// The order reference.
        reference: String,
        /// Whose order, where two principals used the reference.
        #[arg(long)]
        principal: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Approve (or with --veto, veto) a release request of an order under its release
    /// policy, or a request that moves its custody to another committee or threshold, as an
    /// identity of this node.
    Approve {
        /// The order reference.
        reference: String,
        /// The request's CID (`dta order show` lists those a fiduciary holds).
        #[arg(long)]
        request: String,
        /// Veto it instead (as a member of the policy's veto group).
        #[arg(long)]
        veto: bool,
        /// Sign as this identity, one the node hosts; the node's own by default.
        #[arg(long = "as")]
        identity: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Release an order to its beneficiary.
    Release {
        /// The order reference.
        reference: String,
        /// Another beneficiary than the order's.
        #[arg(long)]
        beneficiary: Option<String>,
        /// Wait until the beneficiary holds the secret (at most SECONDS, 60 by default); fail
        /// naming who has not answered if it does not.
        #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "60", value_name = "SECONDS")]
        wait: Option<u64>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Have the order's fiduciaries deal its shares anew: same key, same committee and
    /// threshold, new shares (the old ones are deleted once the new certificate is in).
    Refresh {
        /// The order reference.
        reference: String,
        /// Wait until the order is certified with its new shares (at most SECONDS, 60 by
        /// default); fail naming who has not answered if it is not.
        #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "60", value_name = "SECONDS")]
        wait: Option<u64>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// End an order: every fiduciary deletes its share and says so in a signed envelope.
    /// Under a release policy the cancel needs what a release needs (approvals, delay, no
    /// veto). Nothing can be released afterwards.
    Cancel {
        /// The order reference.
        reference: String,
        /// Wait until every fiduciary said it deleted its share (at most SECONDS, 60 by
        /// default); fail naming who has not if they have not.
        #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "60", value_name = "SECONDS")]
        wait: Option<u64>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Have t fiduciaries sign a message with the order's key, which nobody holds: a BIP-340
    /// signature under the x-only form of a t-of-n secp256k1 key they generated, or a BLS
    /// signature under a BLS12-381 key (a dealt secret, an `mpin-master` key).
    Sign {
        /// The order reference.
        reference: String,
        /// The message, hex (1 to 4096 bytes).
        #[arg(long, conflicts_with = "sighash", required_unless_present = "sighash")]
        message: Option<String>,
        /// A 32-byte digest to sign as it is (a BIP-341 sighash), hex.
        #[arg(long)]
        sighash: Option<String>,
        /// Wait for the signature (at most SECONDS, 60 by default).
        #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "60", value_name = "SECONDS")]
        wait: Option<u64>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Move custody of an order to another committee and threshold (any overlap), same key:
    /// the old fiduciaries deal their shares to the new ones and delete them.
    Reshare {
        /// The order reference.
        reference: String,
        /// A fiduciary of the new committee (repeat, in share order).
        #[arg(long = "fiduciary", required = true)]
        fiduciaries: Vec<String>,
        /// Shares the new committee needs to release.
        #[arg(long)]
        threshold: u32,
        /// Wait until the new committee has certified the order (at most SECONDS, 60 by
        /// default); fail naming who has not answered if it has not.
        #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "60", value_name = "SECONDS")]
        wait: Option<u64>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Give up a generated key whose fiduciaries did not all answer (one is down for good):
    /// the order ends, every fiduciary drops what it kept for it, and the ones that did not
    /// answer are named. Make a new order without them.
    Abandon {
        /// The order reference.
        reference: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// The secret a beneficiary received: as text when it is UTF-8, else as hex.
    Secret {
        /// The order reference.
        reference: String,
        /// Write the secret's exact bytes to this file (mode 0600) instead.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Whose order, where two principals used the reference.
        #[arg(long)]
        principal: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
}

fn order_rows(orders: &Value) {
    let rows = orders
        .as_array()
        .into_iter()
        .flatten()
        .map(|o| {
            vec![
                text(&o["reference"]),
                text(&o["role"]),
                text(&o["state"]),
                format!(
                    "{}/{}",
                    text(&o["threshold"]),
                    o["fiduciaries"].as_array().map_or(0, Vec::len)
                ),
                text(&o["head"]),
                waiting_for(o),
            ]
        })
        .collect();
    table(
        &["REFERENCE", "ROLE", "STATE", "T/N", "HEAD", "WAITING FOR"],
        rows,
    );
}

/// Who a principal's order still waits for and since when: `receipt from CID since
/// 12:00:01 UTC (3 s), ...`, or `-`.
/// Each release's policy progress, as the records' `policy` says it: who approved in which
/// group, who vetoed, and what is missing.
/// The principal's threshold signatures of each record: made (with the signature and key) or
/// under way.
fn signing_lines(records: &Value) {
    for record in records.as_array().into_iter().flatten() {
        if record["role"] != "principal" {
            continue;
        }
        for run in record["signing"].as_array().into_iter().flatten() {
            match run["signature"].as_str() {
                Some(signature) => outln!(
                    "signature {}: {signature} ({}, key {})",
                    text(&run["sequence"]),
                    scheme_name(&run["scheme"]),
                    text(&run["key"])
                ),
                None => outln!(
                    "signature {}: under way, request {} (attempt {}; left out: {})",
                    text(&run["sequence"]),
                    text(&run["request"]),
                    text(&run["attempt"]),
                    run["excluded"]
                        .as_array()
                        .filter(|e| !e.is_empty())
                        .map_or("none".to_owned(), |e| {
                            e.iter().map(text).collect::<Vec<_>>().join(", ")
                        })
                ),
            }
        }
    }
}

/// How the API names a signature's scheme, as the CLI shows it.
fn scheme_name(scheme: &Value) -> &'static str {
    match scheme.as_str() {
        Some("bls12-381") => "BLS12-381",
        _ => "BIP-340",
    }
}

fn policy_lines(records: &Value) {
    for record in records.as_array().into_iter().flatten() {
        let policy = &record["policy"];
        for request in policy["requests"].as_array().into_iter().flatten() {
            outln!(
                "release {} ({}) as {} sees it:",
                text(&request["sequence"]),
                text(&request["request"]),
                text(&record["role"])
            );
            for group in policy["groups"].as_array().into_iter().flatten() {
                let name = text(&group["name"]);
                let approved: Vec<String> = request["approved"][&name]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(text)
                    .collect();
                outln!(
                    "  {name}: {} of {} approved {}",
                    approved.len(),
                    text(&group["count"]),
                    approved.join(", ")
                );
            }
            let vetoed = request["vetoed"].as_array().map_or(0, Vec::len);
            if vetoed > 0 {
                outln!("  vetoed by {vetoed}");
            }
            let verdict = &request["policy"];
            match verdict["now"].as_str() {
                Some("wait") => match verdict["delay_ends_ms"].as_u64() {
                    Some(end) => outln!("  waiting; the delay ends at {}", wait::clock(end)),
                    None => outln!("  waiting for approvals"),
                },
                Some("refused") => outln!("  refused: {}", text(&verdict["why"])),
                _ => outln!("  the policy lets it go"),
            }
        }
    }
}

fn waiting_for(order: &Value) -> String {
    if order["waiting_for"].as_array().is_none_or(Vec::is_empty) {
        return "-".into();
    }
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    crate::wait::unanswered(order, now_ms)
}

fn key_value(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .filter(|(key, _)| !key.is_empty())
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .ok_or_else(|| format!("{text:?} is not KEY=VALUE"))
}

/// A policy file: JSON if it parses as JSON, else TOML.
pub(crate) fn read_policy(path: &Path) -> anyhow::Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    if let Ok(json) = serde_json::from_str::<Value>(&text) {
        return Ok(json);
    }
    let table: toml::Table = toml::from_str(&text)
        .with_context(|| format!("{} is neither JSON nor TOML", path.display()))?;
    Ok(serde_json::to_value(table)?)
}

/// Runs an order command.
pub async fn order(command: OrderCommand) -> anyhow::Result<()> {
    match command {
        OrderCommand::Create {
            fiduciaries,
            threshold,
            beneficiary,
            reference,
            secret,
            secret_file,
            max_releases,
            policy,
            plugin,
            refresh_every_ms,
            input,
            wait,
            client,
        } => {
            let policy = policy.as_deref().map(read_policy).transpose()?;
            let input: std::collections::BTreeMap<String, String> = input.into_iter().collect();
            let mut body = serde_json::json!({
                "reference": reference,
                "plugin": plugin,
                "fiduciaries": fiduciaries,
                "threshold": threshold,
                "beneficiary": beneficiary,
                "max_releases": max_releases,
                "input": input,
            });
            if let Some(policy) = policy {
                body["policy"] = policy;
            }
            if let Some(every) = refresh_every_ms {
                body["refresh_every_ms"] = every.into();
            }
            if let Some(secret) = secret {
                body["secret"] = Value::String(secret);
            }
            if let Some(file) = secret_file {
                // The file's bytes as they are, in hex: a key or any other binary secret
                // arrives unchanged, where text would refuse bytes that are not UTF-8.
                let bytes = Zeroizing::new(
                    std::fs::read(&file)
                        .with_context(|| format!("cannot read {}", file.display()))?,
                );
                body["secret_hex"] = Value::String(hex::encode(&*bytes));
            }
            let created = client.post_json("/v2/orders", &body).await;
            wipe_secret(&mut body);
            let mut created = created?;
            if let Some(seconds) = wait {
                created = wait::until(&client, created, Goal::Certified, seconds).await?;
            }
            if client.json {
                outln!("{}", serde_json::to_string_pretty(&created)?);
            } else {
                outln!("{}", text(&created["reference"]));
            }
        }
        OrderCommand::Approve {
            reference,
            request,
            veto,
            identity,
            client,
        } => {
            let made = client
                .post(
                    &format!("/v2/orders/{reference}/approvals"),
                    json!({ "request": request, "veto": veto, "identity": identity }),
                )
                .await?;
            if client.json {
                outln!("{}", serde_json::to_string_pretty(&made)?);
            } else {
                outln!("{}", text(&made["cid"]));
            }
        }
        OrderCommand::List {
            state,
            stalled_after,
            role,
            limit,
            after,
            client,
        } => {
            let mut query = Vec::new();
            for (name, value) in [
                ("state", state),
                ("stalled_after", stalled_after.map(|s| s.to_string())),
                ("role", role),
                ("limit", limit.map(|l| l.to_string())),
                ("after", after),
            ] {
                if let Some(value) = value {
                    query.push(format!("{name}={}", dta_node::client::query_value(&value)));
                }
            }
            let path = match query.is_empty() {
                true => "/v2/orders".to_owned(),
                false => format!("/v2/orders?{}", query.join("&")),
            };
            let orders = client.get(&path).await?;
            if client.json {
                outln!("{}", serde_json::to_string_pretty(&orders)?);
            } else {
                order_rows(&orders);
                let listed = orders.as_array().map_or(0, Vec::len);
                if let (Some(limit), Some(last)) = (limit, orders.as_array().and_then(|o| o.last()))
                    && listed == limit
                {
                    eprintln!(
                        "more: --after {}/{}/{}",
                        text(&last["role"]),
                        text(&last["principal"]),
                        text(&last["reference"])
                    );
                }
            }
        }
        OrderCommand::Show {
            reference,
            principal,
            client,
        } => {
            let path = of_principal(format!("/v2/orders/{reference}"), principal.as_deref());
            let orders = client.get(&path).await?;
            if client.json {
                outln!("{}", serde_json::to_string_pretty(&orders)?);
            } else {
                order_rows(&orders);
                policy_lines(&orders);
                signing_lines(&orders);
            }
        }
        OrderCommand::Release {
            reference,
            beneficiary,
            wait,
            client,
        } => {
            let mut released = client
                .post(
                    &format!("/v2/orders/{reference}/release"),
                    serde_json::json!({ "beneficiary": beneficiary }),
                )
                .await?;
            if let Some(seconds) = wait {
                let goal = Goal::Receipt(wait::latest_release(&released));
                released = wait::until(&client, released, goal, seconds).await?;
            }
            if client.json {
                outln!("{}", serde_json::to_string_pretty(&released)?);
            } else if wait.is_some() {
                outln!("{reference} released to its beneficiary");
            } else {
                outln!(
                    "release of {reference} sent; state {}; waiting for {}",
                    text(&released["state"]),
                    waiting_for(&released)
                );
            }
        }
        OrderCommand::Refresh {
            reference,
            wait,
            client,
        } => {
            let answer = client
                .post(
                    &format!("/v2/orders/{reference}/refresh"),
                    serde_json::json!({}),
                )
                .await?;
            dealt_anew(&client, &reference, answer, wait, "refreshed").await?;
        }
        OrderCommand::Cancel {
            reference,
            wait,
            client,
        } => {
            let mut answer = client
                .post(
                    &format!("/v2/orders/{reference}/cancel"),
                    serde_json::json!({}),
                )
                .await?;
            if let Some(seconds) = wait {
                answer = wait::until(&client, answer, Goal::Cancelled, seconds).await?;
            }
            if client.json {
                outln!("{}", serde_json::to_string_pretty(&answer)?);
            } else {
                outln!(
                    "{reference}: {}; {} of {} holders deleted their shares",
                    text(&answer["state"]),
                    answer["shares_deleted"],
                    answer["fiduciaries"].as_array().map_or(0, Vec::len)
                );
            }
        }
        OrderCommand::Sign {
            reference,
            message,
            sighash,
            wait,
            client,
        } => {
            let body = match (message, sighash) {
                (Some(message), _) => serde_json::json!({ "message_hex": message }),
                (None, sighash) => serde_json::json!({ "sighash": sighash }),
            };
            let path = match wait {
                Some(seconds) => format!("/v2/orders/{reference}/sign?wait={seconds}"),
                None => format!("/v2/orders/{reference}/sign"),
            };
            let answer = client.post(&path, body).await?;
            let signature = &answer["signature"];
            if client.json {
                outln!("{}", serde_json::to_string_pretty(&answer)?);
            } else if let Some(hex) = signature["signature"].as_str() {
                outln!(
                    "{reference}: signature {} ({})\n  signature {hex}\n  key       {}",
                    signature["sequence"],
                    scheme_name(&signature["scheme"]),
                    text(&signature["key"])
                );
            } else if wait.is_some() {
                anyhow::bail!(
                    "{reference}: signature {} not made in time; waiting for {}",
                    signature["sequence"],
                    waiting_for(&answer)
                );
            } else {
                outln!(
                    "{reference}: signature {} asked for (dta order show {reference} lists it once made)",
                    signature["sequence"]
                );
            }
        }
        OrderCommand::Reshare {
            reference,
            fiduciaries,
            threshold,
            wait,
            client,
        } => {
            let answer = client
                .post(
                    &format!("/v2/orders/{reference}/reshare"),
                    serde_json::json!({ "fiduciaries": fiduciaries, "threshold": threshold }),
                )
                .await?;
            dealt_anew(
                &client,
                &reference,
                answer,
                wait,
                "moved to its new committee",
            )
            .await?;
        }
        OrderCommand::Abandon { reference, client } => {
            let answer = client
                .post(
                    &format!("/v2/orders/{reference}/abandon"),
                    serde_json::json!({}),
                )
                .await?;
            if client.json {
                outln!("{}", serde_json::to_string_pretty(&answer)?);
            } else {
                let missing: Vec<&str> = answer["missing"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                outln!(
                    "order {reference} abandoned; no answer from {}",
                    missing.join(", ")
                );
            }
        }
        OrderCommand::Secret {
            reference,
            out,
            principal,
            client,
        } => {
            let path = of_principal(
                format!("/v2/orders/{reference}/secret"),
                principal.as_deref(),
            );
            let mut secret = client.get(&path).await?;
            let shown = show_secret(&client, &reference, &secret, out.as_deref());
            wipe_secret(&mut secret);
            shown?;
        }
    }
    Ok(())
}

/// Prints a received secret, or writes its exact bytes to `out`.
fn show_secret(
    client: &ClientArgs,
    reference: &str,
    secret: &Value,
    out: Option<&Path>,
) -> anyhow::Result<()> {
    let Some(out) = out else {
        if client.json {
            outln!("{}", serde_json::to_string_pretty(secret)?);
        } else if secret["secret"].is_string() {
            outln!("{}", text(&secret["secret"]));
        } else {
            outln!("{}", text(&secret["secret_hex"]));
        }
        return Ok(());
    };
    let written = write_secret(out, secret)?;
    if client.json {
        outln!(
            "{}",
            json!({ "reference": reference, "out": out.display().to_string(), "bytes": written })
        );
    } else {
        outln!("{written} bytes written to {}", out.display());
    }
    Ok(())
}

/// Writes the exact bytes of a received secret (the answer's `secret_hex`) to `path`, readable
/// by its owner only: mode 0600 is set before anything is written, also on a file that was
/// there before with a looser mode.
fn write_secret(path: &Path, answer: &Value) -> anyhow::Result<usize> {
    use std::io::Write as _;
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let digits = answer["secret_hex"]
        .as_str()
        .context("the node's answer has no secret_hex")?;
    // Decoded into a buffer that is wiped even if the digits are bad.
    let mut bytes = Zeroizing::new(vec![0; digits.len() / 2]);
    hex::decode_to_slice(digits, bytes.as_mut_slice())
        .map_err(|_| anyhow::anyhow!("the node answered a malformed secret_hex"))?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot make {} private", path.display()))?;
    file.write_all(&bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(bytes.len())
}

/// Wipes the secret fields of a request or answer once they have served.
fn wipe_secret(value: &mut Value) {
    for field in ["secret", "secret_hex", "secret_base64"] {
        if let Some(Value::String(text)) = value.get_mut(field) {
            text.zeroize();
        }
    }
}

/// Reports a refresh or reshare the node took: at once, or once the order is certified with
/// its new shares (`--wait`).
async fn dealt_anew(
    client: &ClientArgs,
    reference: &str,
    mut answer: serde_json::Value,
    wait: Option<u64>,
    done: &str,
) -> anyhow::Result<()> {
    let epoch = answer["epoch"].as_u64().unwrap_or_default() + 1;
    if let Some(seconds) = wait {
        answer = wait::until(client, answer, Goal::Epoch(epoch), seconds).await?;
    }
    if client.json {
        outln!("{}", serde_json::to_string_pretty(&answer)?);
    } else if wait.is_some() {
        outln!("{reference} {done}: its shares of epoch {epoch} are certified");
    } else {
        outln!(
            "{reference}: shares of epoch {epoch} asked for; state {}; waiting for {}",
            text(&answer["state"]),
            waiting_for(&answer)
        );
    }
    Ok(())
}
