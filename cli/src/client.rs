//! Client commands: talk to a running node's HTTP API and print tables or JSON.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use dta_node::client::{ApiClient, Method};
use dta_node::tokens;
use serde_json::Value;
use zeroize::Zeroizing;

use crate::output::outln;

/// Where the API is: `--api`, else `DTA_API`, else the `node.json` of `--home` / `DTA_HOME`.
#[derive(Debug, clap::Args)]
pub struct ClientArgs {
    /// The node's API base URL, for example http://127.0.0.1:7070.
    #[arg(long, env = "DTA_API")]
    api: Option<String>,
    /// A node home whose node.json names the API (and whose api-token is used).
    #[arg(long, env = "DTA_HOME")]
    home: Option<PathBuf>,
    /// A file holding the API token to send; else the token in DTA_TOKEN, else the
    /// home's api-token.
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// The SHA-256 fingerprint of an HTTPS API's certificate (what `dta init --api-tls`
    /// printed); with --home, node.json has it.
    #[arg(long, env = "DTA_API_FINGERPRINT")]
    api_fingerprint: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

impl ClientArgs {
    /// The node home named, if any.
    pub(crate) fn home(&self) -> Option<&Path> {
        self.home.as_deref()
    }
}

/// How to reach a node whose API listens inside another network namespace (a `--lan`
/// testnet's node): its address means something else out here.
pub(crate) fn elsewhere(home: &Path, node: &dta_node::NodeFile, namespace: &str) -> String {
    let mut how = format!(
        "node {} runs in network namespace {namespace}: its API {} is reachable from inside \
         it only; run the command there (`ip netns exec {namespace} dta ...`)",
        node.name, node.api
    );
    if let Some(dir) = home
        .parent()
        .filter(|dir| dir.join(dta_testnet::process::TESTNET_FILE).exists())
    {
        how.push_str(&format!(
            " or ask through its testnet (`dta testnet api --dir {} {} GET /v2/node`)",
            dir.display(),
            home.file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
        ));
    }
    how
}

impl ClientArgs {
    /// The API at `url`.
    pub(crate) fn at(url: &str, token_file: PathBuf, json: bool) -> Self {
        Self {
            api: Some(url.to_owned()),
            home: None,
            token_file: Some(token_file),
            api_fingerprint: None,
            json,
        }
    }

    /// The node home named (`--home`, `DTA_HOME`), if any.
    pub(crate) fn home_dir(&self) -> Option<&Path> {
        self.home.as_deref()
    }

    /// The token to send, if there is one: `--token-file`, else `DTA_TOKEN`, else
    /// `HOME/api-token`.
    fn token(&self) -> anyhow::Result<Option<Zeroizing<String>>> {
        if let Some(file) = &self.token_file {
            return match tokens::read_token_file(file)? {
                Some(token) => Ok(Some(token)),
                None => bail!("no token file {}", file.display()),
            };
        }
        if let Some(token) = std::env::var_os("DTA_TOKEN") {
            let token = token
                .into_string()
                .map_err(|_| anyhow::anyhow!("DTA_TOKEN is not text"))?;
            return Ok(Some(Zeroizing::new(token.trim().to_owned())));
        }
        match &self.home {
            Some(home) => Ok(tokens::read_token_file(
                &home.join(tokens::HOME_TOKEN_FILE),
            )?),
            None => Ok(None),
        }
    }

    /// The API's URL, and its certificate's fingerprint if it speaks HTTPS and one is known
    /// (`--api-fingerprint`, else the home's `node.json`).
    fn target(&self) -> anyhow::Result<(String, Option<String>)> {
        if let Some(api) = &self.api {
            let pinned = self.api_fingerprint.clone().or_else(|| {
                self.node_file()
                    .ok()
                    .filter(|node| node.api.trim_end_matches('/') == api.trim_end_matches('/'))
                    .and_then(|node| node.api_fingerprint)
            });
            return Ok((api.trim_end_matches('/').to_owned(), pinned));
        }
        let node = self.node_file()?;
        let pinned = self.api_fingerprint.clone().or(node.api_fingerprint);
        Ok((node.api, pinned))
    }

    /// The `node.json` of `--home`, checked to be reachable from here.
    fn node_file(&self) -> anyhow::Result<dta_node::NodeFile> {
        let Some(home) = &self.home else {
            bail!("no node to talk to: pass --api URL or --home DIR (or set DTA_API / DTA_HOME)");
        };
        let path = home.join("node.json");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {} (is the node running?)", path.display()))?;
        let node: dta_node::NodeFile =
            serde_json::from_str(&text).with_context(|| format!("invalid {}", path.display()))?;
        if let Some(namespace) = &node.namespace
            && !dta_node::netns::is_current(namespace)
        {
            bail!("{}", elsewhere(home, &node, namespace));
        }
        Ok(node)
    }

    /// A client of the node's API.
    pub(crate) fn client(&self) -> anyhow::Result<ApiClient> {
        let (base, pinned) = self.target()?;
        self.client_with(&base, pinned.as_deref())
    }

    /// A client of the API at `base` (another node's), with this command's token and
    /// `--api-fingerprint`.
    pub(crate) fn client_at(&self, base: &str) -> anyhow::Result<ApiClient> {
        self.client_with(base, self.api_fingerprint.as_deref())
    }

    fn client_with(&self, base: &str, pinned: Option<&str>) -> anyhow::Result<ApiClient> {
        let mut client = ApiClient::new(base);
        if let Some(pinned) = pinned {
            client = client.with_pinned_certificate(pinned)?;
        }
        Ok(match self.token()? {
            Some(token) => client.with_token(token),
            None => client,
        })
    }

    pub(crate) async fn get(&self, path: &str) -> anyhow::Result<Value> {
        Ok(self.client()?.get(path).await?)
    }

    /// Sends bytes (PUT or POST) and reads the JSON answer.
    async fn send_bytes(&self, method: Method, path: &str, body: Vec<u8>) -> anyhow::Result<Value> {
        Ok(self.client()?.send_bytes(method, path, body).await?)
    }

    /// Reads raw bytes; an error answer's JSON message becomes the error.
    async fn get_bytes(&self, path: &str) -> anyhow::Result<Vec<u8>> {
        Ok(self.client()?.get_bytes(path).await?)
    }

    pub(crate) async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.post_json(path, &body).await
    }

    /// Posts a body the caller keeps, so that it can wipe a secret in it once it is sent.
    pub(crate) async fn post_json(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        Ok(self.client()?.post(path, body).await?)
    }
}

pub(crate) fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

pub(crate) fn table(headers: &[&str], rows: Vec<Vec<String>>) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    outln!(
        "{}",
        line(headers.iter().map(|h| (*h).to_owned()).collect())
    );
    for row in rows {
        outln!("{}", line(row));
    }
}

/// `dta keystore status`.
pub async fn keystore_status(args: &ClientArgs) -> anyhow::Result<()> {
    let status = args.get("/v2/keystore").await?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&status)?);
        return Ok(());
    }
    outln!("backend    {}", text(&status["backend"]));
    if !status["token"].is_null() {
        outln!("token      {}", text(&status["token"]));
    }
    outln!("secrets    {}", text(&status["secrets"]));
    Ok(())
}

pub async fn status(args: &ClientArgs) -> anyhow::Result<()> {
    let node = args.get("/v2/node").await?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&node)?);
        return Ok(());
    }
    outln!("name       {}", text(&node["name"]));
    outln!("identity   {}", text(&node["identity"]));
    outln!("peer id    {}", text(&node["peer_id"]));
    outln!("roles      {}", text(&node["roles"]));
    for address in node["listen_addrs"].as_array().into_iter().flatten() {
        outln!("listening  {}", text(address));
    }
    Ok(())
}

/// `dta peers block|unblock|blocked`.
#[derive(Debug, clap::Subcommand)]
pub enum PeersCommand {
    /// Close every connection with a peer and refuse new ones, both ways, until unblocked or
    /// until the node restarts.
    Block {
        /// The peer id.
        peer: String,
        #[command(flatten)]
        args: ClientArgs,
    },
    /// Allow a blocked peer again (and dial it).
    Unblock {
        /// The peer id.
        peer: String,
        #[command(flatten)]
        args: ClientArgs,
    },
    /// The blocked peers.
    Blocked(ClientArgs),
}

/// `dta peers`, and its block list.
pub async fn peers(command: Option<PeersCommand>, args: &ClientArgs) -> anyhow::Result<()> {
    let (args, path) = match &command {
        None => (args, "/v2/peers".to_owned()),
        Some(PeersCommand::Blocked(args)) => (args, "/v2/peers/blocked".to_owned()),
        Some(PeersCommand::Block { peer, args }) => {
            return change_block_list(args, Method::PUT, peer, "blocked").await;
        }
        Some(PeersCommand::Unblock { peer, args }) => {
            return change_block_list(args, Method::DELETE, peer, "unblocked").await;
        }
    };
    let peers = args.get(&path).await?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&peers)?);
        return Ok(());
    }
    let rows = peers
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| vec![text(&p["peer_id"]), text(&p["name"]), text(&p["identity"])])
        .collect();
    table(&["PEER ID", "NAME", "IDENTITY"], rows);
    Ok(())
}

async fn change_block_list(
    args: &ClientArgs,
    method: Method,
    peer: &str,
    done: &str,
) -> anyhow::Result<()> {
    let answer = args
        .send_bytes(method, &format!("/v2/peers/blocked/{peer}"), Vec::new())
        .await?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&answer)?);
    } else {
        outln!("{done} {peer}");
    }
    Ok(())
}

/// `dta api METHOD PATH [--data JSON]`.
pub async fn api(
    method: &str,
    path: &str,
    data: Option<&str>,
    args: &ClientArgs,
) -> anyhow::Result<()> {
    let method = match method.to_ascii_uppercase().as_str() {
        "GET" => Method::GET,
        "POST" => Method::POST,
        "PUT" => Method::PUT,
        "DELETE" => Method::DELETE,
        other => bail!("unsupported method {other:?}: use GET, POST, PUT or DELETE"),
    };
    if !path.starts_with('/') {
        bail!("the path must start with /, as in /v2/peers");
    }
    let body: Option<Value> = data
        .map(serde_json::from_str)
        .transpose()
        .context("--data is not JSON")?;
    let client = args.client()?;
    if method == Method::GET && path == dta_node::client::EVENTS_PATH {
        // A stream that does not end: one JSON line per event, as it comes.
        let mut events = client.events().await?;
        while let Some(event) = events.next().await {
            let event = event?;
            outln!(
                "{}",
                serde_json::json!({ "event": event.name, "data": event.data })
            );
        }
        return Ok(());
    }
    let answer = client.call(method, path, body.as_ref()).await?;
    if args.json {
        outln!("{}", dta_node::client::api_line(&answer));
        return Ok(());
    }
    outln!("{}", serde_json::to_string_pretty(&answer.body)?);
    if !answer.is_success() {
        bail!("{}{path}: {}", client.base(), answer.status_line());
    }
    Ok(())
}

/// `dta identities`.
pub async fn identities(args: &ClientArgs) -> anyhow::Result<()> {
    let identities = args.get("/v2/identities").await?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&identities)?);
        return Ok(());
    }
    let rows = identities
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| vec![text(&i["cid"]), text(&i["name"]), text(&i["peer_id"])])
        .collect();
    table(&["IDENTITY", "NAME", "PEER ID"], rows);
    Ok(())
}

/// `dta identity show CID`.
pub async fn identity(args: &ClientArgs, cid: &str) -> anyhow::Result<()> {
    let identity = args.get(&format!("/v2/identities/{cid}")).await?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&identity)?);
        return Ok(());
    }
    for key in [
        "cid",
        "name",
        "peer_id",
        "created_at",
        "document",
        "rotations",
    ] {
        outln!("{key:<11}{}", text(&identity[key]));
    }
    if let Some(revoked) = identity.get("revoked") {
        outln!("{:<11}{}", "revoked", revocation_line(revoked));
    }
    Ok(())
}

fn revocation_line(revoked: &Value) -> String {
    let mut line = format!(
        "at {} ms by its {} (revocation {})",
        text(&revoked["at"]),
        text(&revoked["revoker"]),
        text(&revoked["revocation"])
    );
    if let Some(reason) = revoked["reason"].as_str().filter(|r| !r.is_empty()) {
        line.push_str(&format!(": {reason}"));
    }
    line
}

/// `dta identity rotate CID`: new keys for an identity the node hosts.
pub async fn rotate_hosted(args: &ClientArgs, cid: &str) -> anyhow::Result<()> {
    let rotated = args
        .post(&format!("/v2/identities/{cid}/rotate"), Value::Null)
        .await?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&rotated)?);
    } else {
        outln!(
            "identity {cid} rotated (rotation {}): document {}",
            text(&rotated["rotations"]),
            text(&rotated["document"])
        );
    }
    Ok(())
}

/// `dta identity revoke CID [--reason TEXT] [--as-operator]`.
pub async fn revoke_identity(
    args: &ClientArgs,
    cid: &str,
    reason: &str,
    as_operator: bool,
) -> anyhow::Result<()> {
    let mut body = serde_json::json!({ "reason": reason });
    if as_operator {
        body["revoker"] = "operator".into();
    }
    let revoked = args
        .post(&format!("/v2/identities/{cid}/revoke"), body)
        .await?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&revoked)?);
    } else {
        outln!("{cid} revoked {}", revocation_line(&revoked));
    }
    Ok(())
}

/// `dta identity create NAME`.
pub async fn create_identity(args: &ClientArgs, name: &str) -> anyhow::Result<()> {
    let created = args
        .post("/v2/identities", serde_json::json!({ "name": name }))
        .await?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&created)?);
    } else {
        outln!("{}", text(&created["cid"]));
    }
    Ok(())
}

/// `PATH?principal=CID` where a principal is named: two principals may use one reference.
pub(crate) fn of_principal(path: String, principal: Option<&str>) -> String {
    match principal {
        Some(principal) => format!("{path}?principal={principal}"),
        None => path,
    }
}

/// `dta audit REF [--principal CID] [--head CID]`.
pub async fn audit(
    args: &ClientArgs,
    reference: &str,
    principal: Option<&str>,
    head: Option<&str>,
) -> anyhow::Result<()> {
    let mut path = of_principal(format!("/v2/orders/{reference}/audit"), principal);
    if let Some(head) = head {
        let separator = if principal.is_some() { '&' } else { '?' };
        path = format!("{path}{separator}head={head}");
    }
    let report = args.get(&path).await?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    outln!(
        "audit of {reference}: passed; certified {}; {} receipt(s); {} release(s) checked against a policy",
        text(&report["certified"]),
        text(&report["receipts"]),
        text(&report["policies"])
    );
    for misconduct in report["misconduct"].as_array().into_iter().flatten() {
        outln!(
            "  misconduct: {} by {} (evidence {})",
            text(&misconduct["offence"]),
            text(&misconduct["culprit"]),
            text(&misconduct["evidence"])
        );
    }
    for revoked in report["revoked"].as_array().into_iter().flatten() {
        outln!(
            "  revoked: {} {}",
            text(&revoked["identity"]),
            revocation_line(revoked)
        );
    }
    for envelope in report["envelopes"].as_array().into_iter().flatten() {
        let mark = match envelope["after_revocation_of"].as_str() {
            Some(sender) => format!("  (signed after {sender} was revoked)"),
            None => String::new(),
        };
        outln!(
            "  {:<22} {}{mark}",
            text(&envelope["kind"]),
            text(&envelope["cid"])
        );
    }
    Ok(())
}

/// `dta block ...`.
#[derive(Debug, clap::Subcommand)]
pub enum BlockCommand {
    /// Write a stored block's bytes to a file (or standard output).
    Get {
        /// The block's CID.
        cid: String,
        /// Where to write it.
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Store a file as a block; prints its CID.
    Put {
        /// The file.
        file: PathBuf,
        /// `raw` or `dag-cbor` (which must be canonical).
        #[arg(long, default_value = "raw")]
        codec: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Store every block of a CAR v1 archive (each checked against its CID first).
    Import {
        /// The archive.
        file: PathBuf,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// Runs a block command.
pub async fn block(command: BlockCommand) -> anyhow::Result<()> {
    match command {
        BlockCommand::Get { cid, out, client } => {
            let bytes = client.get_bytes(&format!("/v2/blocks/{cid}")).await?;
            match out {
                Some(path) => std::fs::write(&path, &bytes)
                    .with_context(|| format!("cannot write {}", path.display()))?,
                None => crate::output::write(&bytes),
            }
        }
        BlockCommand::Put {
            file,
            codec,
            client,
        } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let stored = client
                .send_bytes(Method::PUT, &format!("/v2/blocks?codec={codec}"), bytes)
                .await?;
            if client.json {
                outln!("{}", serde_json::to_string_pretty(&stored)?);
            } else {
                outln!("{}", text(&stored["cid"]));
            }
        }
        BlockCommand::Import { file, client } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let imported = client
                .send_bytes(Method::POST, "/v2/blocks/import", bytes)
                .await?;
            if client.json {
                outln!("{}", serde_json::to_string_pretty(&imported)?);
            } else {
                outln!(
                    "{} blocks imported; roots {}",
                    text(&imported["blocks"]),
                    imported["roots"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(text)
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
        }
    }
    Ok(())
}

/// `dta log export REF --car FILE`: the order's log as a CAR v1 archive (root = head).
pub async fn export_log(
    client: &ClientArgs,
    reference: &str,
    car: &std::path::Path,
    head: Option<&str>,
) -> anyhow::Result<()> {
    let path = match head {
        Some(head) => format!("/v2/orders/{reference}/car?head={head}"),
        None => format!("/v2/orders/{reference}/car"),
    };
    let bytes = client.get_bytes(&path).await?;
    std::fs::write(car, &bytes).with_context(|| format!("cannot write {}", car.display()))?;
    if client.json {
        outln!(
            "{}",
            serde_json::json!({ "reference": reference, "car": car, "bytes": bytes.len() })
        );
    } else {
        outln!("{} bytes written to {}", bytes.len(), car.display());
    }
    Ok(())
}
