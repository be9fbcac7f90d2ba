//! Client commands: talk to a running node's HTTP API and print tables or JSON.

use std::path::PathBuf;

use anyhow::{Context, bail};
use serde_json::Value;

/// Where the API is: `--api`, else `DTA_API`, else the `node.json` of `--home` / `DTA_HOME`.
#[derive(Debug, clap::Args)]
pub struct ClientArgs {
    /// The node's API base URL, for example http://127.0.0.1:7070.
    #[arg(long, env = "DTA_API")]
    api: Option<String>,
    /// A node home whose node.json names the API.
    #[arg(long, env = "DTA_HOME")]
    home: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

impl ClientArgs {
    fn base(&self) -> anyhow::Result<String> {
        if let Some(api) = &self.api {
            return Ok(api.trim_end_matches('/').to_owned());
        }
        let Some(home) = &self.home else {
            bail!("no node to talk to: pass --api URL or --home DIR (or set DTA_API / DTA_HOME)");
        };
        let path = home.join("node.json");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {} (is the node running?)", path.display()))?;
        let node: dta_node::NodeFile =
            serde_json::from_str(&text).with_context(|| format!("invalid {}", path.display()))?;
        Ok(node.api)
    }

    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base()?);
        let response = reqwest::get(&url)
            .await
            .with_context(|| format!("cannot reach {url}"))?;
        let status = response.status();
        let body: Value = response
            .json()
            .await
            .with_context(|| format!("{url} did not answer JSON"))?;
        if !status.is_success() {
            let message = body["error"].as_str().unwrap_or("unknown error");
            bail!("{url}: {status}: {message}");
        }
        Ok(body)
    }
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn table(headers: &[&str], rows: Vec<Vec<String>>) {
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
    println!(
        "{}",
        line(headers.iter().map(|h| (*h).to_owned()).collect())
    );
    for row in rows {
        println!("{}", line(row));
    }
}

/// `dta status`.
pub async fn status(args: &ClientArgs) -> anyhow::Result<()> {
    let node = args.get("/v2/node").await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&node)?);
        return Ok(());
    }
    println!("name       {}", text(&node["name"]));
    println!("identity   {}", text(&node["identity"]));
    println!("peer id    {}", text(&node["peer_id"]));
    println!("roles      {}", text(&node["roles"]));
    for address in node["listen_addrs"].as_array().into_iter().flatten() {
        println!("listening  {}", text(address));
    }
    Ok(())
}

/// `dta peers`.
pub async fn peers(args: &ClientArgs) -> anyhow::Result<()> {
    let peers = args.get("/v2/peers").await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&peers)?);
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

/// `dta identities`.
pub async fn identities(args: &ClientArgs) -> anyhow::Result<()> {
    let identities = args.get("/v2/identities").await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&identities)?);
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
        println!("{}", serde_json::to_string_pretty(&identity)?);
        return Ok(());
    }
    for key in ["cid", "name", "peer_id", "created_at"] {
        println!("{key:<11}{}", text(&identity[key]));
    }
    Ok(())
}
