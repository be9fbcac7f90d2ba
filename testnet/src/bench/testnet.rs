//! `dta bench testnet`: launches process testnets of N nodes on 127.0.0.1, one after the other,
//! and measures the time from the first process start until every node is ready (connected to
//! its target number of peers and knowing their identities; in a testnet larger than that
//! target, with its identity announced in the DHT) and each node's memory then: resident (RSS), its
//! proportional share (PSS) and anonymous memory, the part that is the node's alone (heap,
//! stacks, rocksdb's buffers), which is what a thousand nodes on one machine multiply.
//!
//! Then, on the running testnet: orders between strangers (identities looked up on demand),
//! the DHT probed from many nodes and the spread of a head announcement by gossip (see
//! [`super::network_health`]), and the CPU time the nodes used.
//!
//! With sites (`--sites`), each testnet is spread over sites joined by the simulated WAN, and
//! it also times 2-of-3 orders whose fiduciaries are all in other sites than the principal's.

use std::path::PathBuf;
use std::time::Instant;

use serde::Serialize;

use super::network_health::median;
use crate::process::{self, Placement, TestnetError, TestnetFile, UpConfig};

/// One size's figures.
#[derive(Debug, Clone, Serialize)]
pub struct TestnetFigures {
    /// Nodes.
    pub nodes: usize,
    /// Seconds from starting the first process until every node was ready.
    pub ready_seconds: f64,
    /// Mean resident memory per node (MiB).
    pub rss_mean_mib: f64,
    /// Largest resident memory of a node (MiB).
    pub rss_max_mib: f64,
    /// Mean proportional memory per node (MiB): resident memory with the pages processes
    /// share (the binary's and rocksdb's code) divided among them.
    pub pss_mean_mib: f64,
    /// Mean anonymous memory per node (MiB): memory no file backs, the node's own.
    pub anon_mean_mib: f64,
    /// Largest anonymous memory of a node (MiB).
    pub anon_max_mib: f64,
    /// Mean anonymous memory per node (MiB) [`SETTLE`] after the orders, once the nodes have
    /// closed the connections their DHT queries opened and given the memory back.
    pub settled_anon_mean_mib: f64,
    /// Largest anonymous memory of a node (MiB) then.
    pub settled_anon_max_mib: f64,
    /// Milliseconds from asking the principal for a 2-of-2 order to its certificate, with
    /// fiduciaries whose identities the principal did not know (looked up in the DHT), the
    /// median of [`STRANGER_ORDERS`]; none when the principal knew every node (a network no
    /// larger than its target of peers).
    pub stranger_order_ms: Option<f64>,
    /// Orders between strangers that failed (with why, the first).
    pub stranger_orders_failed: usize,
    /// Why the first failed order between strangers failed.
    pub stranger_order_error: Option<String>,
    /// Probes of the DHT from nodes spread over the testnet.
    pub dht: super::network_health::DhtHealth,
    /// The spread of a head announcement by gossip.
    pub gossip: super::network_health::GossipSpread,
    /// CPU time (user and system) all nodes had used when every node was ready (s).
    pub cpu_seconds_to_ready: f64,
    /// CPU time all nodes had used when the testnet was taken down (s).
    pub cpu_seconds_total: f64,
    /// With sites: orders across the WAN.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub across_sites: Option<AcrossSites>,
}

/// Orders whose fiduciaries are all in other sites than the principal's.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AcrossSites {
    /// The WAN's figures.
    pub wan: String,
    /// Median milliseconds from asking the principal for a 2-of-3 order to its certificate,
    /// over [`ACROSS_SITES_ORDERS`] orders, as a client in the principal's namespace sees it.
    pub order_ms: Option<f64>,
    /// Median milliseconds of a call that does nothing (`GET /v2/health`) through the same
    /// client: what of `order_ms` is the client's own start, not the order.
    pub call_ms: Option<f64>,
    /// Orders that failed.
    pub orders_failed: usize,
    /// Why the first failed.
    pub error: Option<String>,
}

/// Orders across sites each benchmark makes; the figure is their median.
pub const ACROSS_SITES_ORDERS: usize = 7;

/// What the orders between strangers gave.
#[derive(Debug, Default)]
struct StrangerOrders {
    median_ms: Option<f64>,
    failed: usize,
    error: Option<String>,
}

/// Runs one testnet per size in `sizes`, each in a fresh directory under `dir`, and takes each
/// down again.
pub async fn run(
    sizes: &[usize],
    placement: Placement,
    dir: PathBuf,
    binary: PathBuf,
    mut progress: impl FnMut(&str),
) -> Result<Vec<TestnetFigures>, TestnetError> {
    let mut figures = Vec::with_capacity(sizes.len());
    for &nodes in sizes {
        let net_dir = dir.join(format!("bench-{nodes}"));
        let config = UpConfig {
            dir: net_dir.clone(),
            nodes,
            principals: 1,
            fiduciaries: nodes.saturating_sub(2),
            beneficiaries: 1,
            threshold: None,
            binary: binary.clone(),
            pkcs11_module: None,
            placement: placement.clone(),
            misbehave: Default::default(),
        };
        // The clock starts when the last home is made, just before the first process starts.
        let last_home = format!("home {nodes}/{nodes} created");
        let mut started = None;
        let up = process::up(config, |stage| {
            if stage == last_home {
                started = Some(Instant::now());
            }
            progress(&format!("{nodes} nodes: {stage}"));
        })
        .await;
        // A failed `up` has removed what it made.
        let testnet = up?;
        let ready_seconds = started.map_or(0.0, |s| s.elapsed().as_secs_f64());
        let pids = || testnet.nodes.iter().map(|n| n.pid);
        let cpu_seconds_to_ready = super::network_health::cpu_seconds(pids());
        let memory_now = |field: &str, file: &str| -> Vec<f64> {
            testnet
                .nodes
                .iter()
                .filter_map(|n| memory_mib(n.pid, file, field))
                .collect()
        };
        let rss = memory_now("VmRSS:", "/proc/{pid}/status");
        let pss = memory_now("Pss:", "/proc/{pid}/smaps_rollup");
        let anon = memory_now("Anonymous:", "/proc/{pid}/smaps_rollup");
        let strangers = order_between_strangers(&testnet).await;
        progress(&format!("{nodes} nodes: probing the DHT"));
        let dht = super::network_health::probe_dht(&testnet).await;
        progress(&format!("{nodes} nodes: timing gossip"));
        let gossip = gossip_of_an_order(&testnet).await;
        let across_sites = match &placement {
            Placement::Sites { sites, link } => {
                Some(orders_across_sites(&testnet, *sites, link.to_string()).await)
            }
            _ => None,
        };
        progress(&format!("{nodes} nodes: settling for {SETTLE:?}"));
        tokio::time::sleep(SETTLE).await;
        let settled = memory_now("Anonymous:", "/proc/{pid}/smaps_rollup");
        let cpu_seconds_total = super::network_health::cpu_seconds(pids());
        process::down(&net_dir, process::Logs::Purge).await?;
        let _ = std::fs::remove_dir(&net_dir);
        figures.push(TestnetFigures {
            nodes,
            ready_seconds,
            rss_mean_mib: rss.iter().sum::<f64>() / rss.len().max(1) as f64,
            rss_max_mib: rss.iter().copied().fold(0.0, f64::max),
            pss_mean_mib: pss.iter().sum::<f64>() / pss.len().max(1) as f64,
            anon_mean_mib: anon.iter().sum::<f64>() / anon.len().max(1) as f64,
            anon_max_mib: anon.iter().copied().fold(0.0, f64::max),
            settled_anon_mean_mib: settled.iter().sum::<f64>() / settled.len().max(1) as f64,
            settled_anon_max_mib: settled.iter().copied().fold(0.0, f64::max),
            stranger_order_ms: strangers.median_ms,
            stranger_orders_failed: strangers.failed,
            stranger_order_error: strangers.error,
            dht,
            gossip,
            cpu_seconds_to_ready,
            cpu_seconds_total,
            across_sites,
        });
    }
    Ok(figures)
}

/// How long after its orders a testnet's memory is measured again: past the time the nodes
/// trim idle connections and give freed memory back (`dta_node::memory::INTERVAL`).
pub const SETTLE: std::time::Duration = std::time::Duration::from_secs(45);

/// Orders between strangers each benchmark makes; the figure is their median.
pub const STRANGER_ORDERS: usize = 3;

/// Times 2-of-2 orders from the principal (node 0) to two fiduciaries it does not know, for
/// the beneficiary (the last node): from the call until the principal holds the certificate.
/// Each order takes two other strangers; the median of [`STRANGER_ORDERS`] (fewer when the
/// principal knows too many nodes; none when it knows every fiduciary).
async fn order_between_strangers(testnet: &TestnetFile) -> StrangerOrders {
    let mut outcome = StrangerOrders::default();
    let (Some(principal), Some(beneficiary)) = (testnet.nodes.first(), testnet.nodes.last()) else {
        return outcome;
    };
    let client = principal.client(&testnet.binary);
    let known = match client.get("/v2/identities").await {
        Ok(known) => known,
        Err(err) => {
            outcome.failed += 1;
            outcome.error = Some(err.to_string());
            return outcome;
        }
    };
    let known: Vec<&str> = known
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|identity| identity["cid"].as_str())
        .collect();
    let strangers: Vec<&str> = testnet
        .nodes
        .iter()
        .filter(|node| node.roles.iter().any(|role| role == "fiduciary"))
        .map(|node| node.identity.as_str())
        .filter(|identity| !known.contains(identity))
        .collect();
    let mut times = Vec::with_capacity(STRANGER_ORDERS);
    for (index, pair) in strangers.chunks_exact(2).take(STRANGER_ORDERS).enumerate() {
        let reference = format!("bench-strangers-{index}");
        match certify(&client, &reference, pair, &beneficiary.identity).await {
            Ok(ms) => times.push(ms),
            Err(error) => {
                outcome.failed += 1;
                outcome.error.get_or_insert(error);
            }
        }
    }
    outcome.median_ms = median(&mut times);
    outcome
}

/// How long the order whose head is timed may be refused because the principal cannot find
/// a party's identity yet (in a large testnet the last nodes started are found only later).
pub const GOSSIP_ORDER_PATIENCE: std::time::Duration = std::time::Duration::from_secs(120);

/// Has the principal certify an order with the first fiduciaries (two, or one in a testnet of
/// one), trying again while a party's identity is not found (for [`GOSSIP_ORDER_PATIENCE`]),
/// and times the spread of its head announcement.
async fn gossip_of_an_order(testnet: &TestnetFile) -> super::network_health::GossipSpread {
    let failed = |error: String| super::network_health::GossipSpread {
        error: Some(error),
        ..Default::default()
    };
    let (Some(principal), Some(beneficiary)) = (testnet.nodes.first(), testnet.nodes.last()) else {
        return failed("no nodes".into());
    };
    let fiduciaries: Vec<&str> = testnet
        .nodes
        .iter()
        .filter(|node| node.roles.iter().any(|role| role == "fiduciary"))
        .map(|node| node.identity.as_str())
        .take(2)
        .collect();
    let client = principal.client(&testnet.binary);
    let started = Instant::now();
    let mut attempt = 0;
    let reference = loop {
        let reference = format!("bench-gossip-{attempt}");
        match certify(&client, &reference, &fiduciaries, &beneficiary.identity).await {
            Ok(_) => break reference,
            Err(error)
                if error.contains("unknown or unverified identity")
                    && started.elapsed() < GOSSIP_ORDER_PATIENCE =>
            {
                attempt += 1;
                tokio::time::sleep(std::time::Duration::from_secs(5)).await;
            }
            Err(error) => return failed(error),
        }
    };
    let head = match client.get(&format!("/v2/orders/{reference}")).await {
        Ok(records) => records[0]["head"].as_str().map(str::to_owned),
        Err(err) => return failed(err.to_string()),
    };
    match head {
        Some(head) => super::network_health::gossip_spread(testnet, &head).await,
        None => failed("the order's record names no head".into()),
    }
}

/// Times 2-of-3 orders from the principal (node 0, in site 0) to the first three fiduciaries
/// in other sites, for the beneficiary (the last node), and a call that does nothing.
async fn orders_across_sites(testnet: &TestnetFile, sites: usize, wan: String) -> AcrossSites {
    let mut outcome = AcrossSites {
        wan,
        ..AcrossSites::default()
    };
    let (Some(principal), Some(beneficiary)) = (testnet.nodes.first(), testnet.nodes.last()) else {
        return outcome;
    };
    let fiduciaries: Vec<&str> = testnet
        .nodes
        .iter()
        .enumerate()
        .filter(|(index, node)| {
            process::sites::site_of(*index, sites) != 0
                && node.roles.iter().any(|role| role == "fiduciary")
        })
        .map(|(_, node)| node.identity.as_str())
        .take(3)
        .collect();
    if fiduciaries.len() < 3 {
        outcome.error = Some("fewer than three fiduciaries outside site 0".into());
        return outcome;
    }
    let client = principal.client(&testnet.binary);
    let mut calls = Vec::with_capacity(ACROSS_SITES_ORDERS);
    let mut orders = Vec::with_capacity(ACROSS_SITES_ORDERS);
    for index in 0..ACROSS_SITES_ORDERS {
        let started = Instant::now();
        if client.get("/v2/health").await.is_ok() {
            calls.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        let reference = format!("bench-across-sites-{index}");
        match certify(&client, &reference, &fiduciaries, &beneficiary.identity).await {
            Ok(ms) => orders.push(ms),
            Err(error) => {
                outcome.orders_failed += 1;
                outcome.error.get_or_insert(error);
            }
        }
    }
    outcome.order_ms = median(&mut orders);
    outcome.call_ms = median(&mut calls);
    outcome
}

/// Has the principal behind `client` order a 2-of-n custody (1-of-1 with one fiduciary) of a
/// secret from `fiduciaries` for `beneficiary`, and waits (30 s at most) until it holds the certificate; the
/// milliseconds that took, or why it failed.
async fn certify(
    client: &dta_node::client::ApiClient,
    reference: &str,
    fiduciaries: &[&str],
    beneficiary: &str,
) -> Result<f64, String> {
    let order = serde_json::json!({
        "reference": reference,
        "plugin": "safeguardsecret",
        "fiduciaries": fiduciaries,
        "threshold": fiduciaries.len().min(2),
        "beneficiary": beneficiary,
        "secret": "a benchmark's secret",
    });
    let started = Instant::now();
    match client.post("/v2/orders?wait=30", &order).await {
        Ok(answer) if answer["waited"]["reached"].as_bool() == Some(true) => {
            Ok(started.elapsed().as_secs_f64() * 1000.0)
        }
        Ok(answer) => Err(format!("not certified in 30 s: {answer}")),
        Err(err) => Err(err.to_string()),
    }
}

/// A memory figure of a process (MiB): the `field` line (in kB) of a file under /proc.
fn memory_mib(pid: u32, file: &str, field: &str) -> Option<f64> {
    let status = std::fs::read_to_string(file.replace("{pid}", &pid.to_string())).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}
