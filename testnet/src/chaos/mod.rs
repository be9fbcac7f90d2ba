//! `dta scenario run --chaos SEED --duration D`: a seeded schedule of faults on a process
//! testnet while orders and releases flow, then every invariant checked.
//!
//! The network: two principals that both use every reference, three fiduciaries (t = 2), one
//! beneficiary, and an auditor (a fiduciary named in no order, never faulted). The principals
//! place orders, try to release each to the auditor (which must always be refused: the order
//! names its beneficiary) and release it to its beneficiary, for the run's duration. Faults, at
//! seeded times among the parties: SIGKILL and a restart, and partitions (one party cut off
//! from the rest through every running node's block list) that heal later.
//!
//! Once the time is up, every partition heals and every node runs, and each order must
//! settle: certified, released once (no fiduciary serves a release twice), one receipt, the
//! secret received byte for byte, the auditor audits its log, and every node audits it to
//! the same head; and no node accused another of misconduct (all are honest). Anything else
//! is a violation, named in the report. The seed is in the
//! report: the same seed gives the same schedule of faults (the network's own timing still
//! varies from run to run).
//!
//! Beside the orders, M-Pin issuances and authentications flow (`chaos/mpin.rs`): a right PIN must
//! pass and a wrong one fail at whichever principal, whatever was killed.
//!
//! What it does not do: dishonest nodes are not part of the schedule (the Byzantine
//! scenarios are), and partitions cut one node off at a time.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use dta_node::client::Method;
use futures::{StreamExt, TryFutureExt};
use serde::Serialize;
use serde_json::{Value, json};

use crate::live::LiveNet;
use crate::process::{self, TestnetError, UpConfig};

mod mpin;

/// Both place orders under every reference.
pub const PRINCIPALS: [&str; 2] = ["node-0", "node-1"];
/// Every order's committee (t = 2).
pub const FIDUCIARIES: [&str; 3] = ["node-2", "node-3", "node-4"];
/// Every order's beneficiary.
pub const BENEFICIARY: &str = "node-5";
/// A fiduciary named in no order and never faulted: it audits.
pub const AUDITOR: &str = "node-6";
/// The nodes faults may hit.
pub const PARTIES: [&str; 6] = [
    "node-0",
    "node-1",
    "node-2",
    "node-3",
    "node-4",
    BENEFICIARY,
];

/// How long each order may take to be placed or released while faults go on, and to settle
/// once they stop.
const SETTLE: Duration = Duration::from_secs(120);

/// Orders checked at once while settling.
const SETTLING_AT_ONCE: usize = 8;
/// Settling time allowed per order past [`SETTLE`] (checking an order takes some 20 calls).
const SETTLE_PER_ORDER: Duration = Duration::from_millis(250);

/// A chaos run.
#[derive(Debug, Clone)]
pub struct ChaosConfig {
    /// Where the homes go (and the logs stay).
    pub dir: PathBuf,
    /// The `dta` binary the nodes run.
    pub binary: PathBuf,
    /// Picks the faults and their times.
    pub seed: u64,
    /// How long orders are placed while faults go on.
    pub duration: Duration,
    /// Time between two faults.
    pub fault_every: Duration,
    /// The nodes faults may hit (default [`PARTIES`]).
    pub victims: Vec<String>,
    /// Whether partitions are among the faults (SIGKILLs always are).
    pub partitions: bool,
    /// At most this many orders per principal (none: as many as the duration allows).
    pub orders: Option<usize>,
}

impl ChaosConfig {
    /// A run of `duration` with `seed`: a fault every 2 s, every party a victim, partitions
    /// too.
    pub fn new(dir: PathBuf, binary: PathBuf, seed: u64, duration: Duration) -> Self {
        Self {
            dir,
            binary,
            seed,
            duration,
            fault_every: Duration::from_secs(2),
            victims: PARTIES.iter().map(|p| (*p).to_owned()).collect(),
            partitions: true,
            orders: None,
        }
    }
}

/// What a chaos run did and found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ChaosReport {
    /// The seed (run again with it to replay the schedule).
    pub seed: u64,
    /// Orders placed, over both principals.
    pub orders: usize,
    /// Releases to another identity than the order's beneficiary, all refused.
    pub misdirected_refused: usize,
    /// Nodes SIGKILLed (each started again).
    pub kills: usize,
    /// Partitions made (each healed).
    pub partitions: usize,
    /// Seconds faults went on.
    pub seconds: f64,
    /// M-Pin client secrets issued while faults went on.
    pub mpin_issued: usize,
    /// Authentications with the right PIN, each passed.
    pub mpin_authenticated: usize,
    /// Authentications with a wrong PIN, each refused.
    pub mpin_wrong_refused: usize,
    /// Every invariant that did not hold, by order.
    pub violations: Vec<String>,
}

impl std::fmt::Display for ChaosReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "chaos seed {}: {} orders, {} misdirected releases refused, {} M-Pin client secrets ({} right PINs let in, {} wrong ones refused), {} kills, {} partitions in {:.1} s; {} invariant violations",
            self.seed,
            self.orders,
            self.misdirected_refused,
            self.mpin_issued,
            self.mpin_authenticated,
            self.mpin_wrong_refused,
            self.kills,
            self.partitions,
            self.seconds,
            self.violations.len()
        )
    }
}

/// Why a chaos run could not be made (a violation is not an error: it is in the report).
#[derive(Debug, thiserror::Error)]
pub enum ChaosError {
    /// The network.
    #[error(transparent)]
    Testnet(#[from] TestnetError),
    /// A fault could not be applied or undone (a node that would not restart, a block list
    /// that would not change).
    #[error("fault: {0}")]
    Fault(String),
    /// A call the workload needs was refused for a reason no fault explains.
    #[error("workload: {0}")]
    Workload(String),
}

/// The seeded generator (xorshift64*): the same seed, the same faults.
#[derive(Debug, Clone)]
pub struct Schedule {
    state: u64,
}

impl Schedule {
    /// A schedule from `seed` (0 is taken as 1).
    pub fn new(seed: u64) -> Self {
        Self { state: seed.max(1) }
    }

    /// The next number below `bound` (at least 1).
    pub fn below(&mut self, bound: usize) -> usize {
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        let value = self.state.wrapping_mul(0x2545_f491_4f6c_dd1d);
        (value >> 33) as usize % bound.max(1)
    }
}

/// One fault of the schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Fault {
    /// SIGKILL a node and start it again.
    Kill(String),
    /// Cut a node off from every other.
    Partition(String),
    /// Undo the partition.
    Heal,
}

/// Runs a chaos campaign: brings the network up under `config.dir`, runs the workload and the
/// faults, settles, checks, and takes the network down (the logs stay in `DIR/logs`).
/// `progress` hears of each fault and stage.
pub async fn run(
    config: ChaosConfig,
    progress: impl Fn(&str) + Send + Sync + 'static,
) -> Result<ChaosReport, ChaosError> {
    if config.victims.is_empty() {
        return Err(ChaosError::Fault("no node to fault".into()));
    }
    let progress = Arc::new(progress);
    progress(&format!(
        "chaos seed {}: {:?} of faults, one every {:?}",
        config.seed, config.duration, config.fault_every
    ));
    process::up(
        UpConfig {
            dir: config.dir.clone(),
            nodes: 7,
            principals: PRINCIPALS.len(),
            // Nodes past principals, fiduciaries and beneficiaries are fiduciaries too: the
            // auditor.
            fiduciaries: FIDUCIARIES.len(),
            beneficiaries: 1,
            threshold: Some(2),
            binary: config.binary.clone(),
            pkcs11_module: None,
            placement: crate::process::Placement::Loopback,
            misbehave: Default::default(),
        },
        |_| {},
    )
    .await?;
    let net = Net(LiveNet {
        dir: config.dir.clone(),
        binary: config.binary.clone(),
        timeout: Duration::from_secs(30),
    });
    // A node that did not come back says how its log ended in the error itself.
    let outcome = campaign(&config, &net, progress.clone()).await;
    let _ = process::down(&config.dir, process::Logs::Keep).await;
    outcome
}

async fn campaign(
    config: &ChaosConfig,
    net: &Net,
    progress: Arc<impl Fn(&str) + Send + Sync + 'static>,
) -> Result<ChaosReport, ChaosError> {
    let fiduciaries: Vec<String> = FIDUCIARIES
        .iter()
        .map(|f| net.identity(f))
        .collect::<Result<_, _>>()?;
    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let faults = {
        let (net, stop, config, progress) =
            (net.clone(), stop.clone(), config.clone(), progress.clone());
        tokio::spawn(async move { inject(&net, &config, &stop, &*progress).await })
    };
    let workload = PRINCIPALS.iter().enumerate().map(|(p, _)| {
        let (net, fiduciaries) = (net.clone(), fiduciaries.clone());
        let (duration, limit) = (config.duration, config.orders.unwrap_or(usize::MAX));
        tokio::spawn(async move {
            let mut placed = 0;
            while started.elapsed() < duration && placed < limit {
                order_and_release(&net, p, placed, &fiduciaries).await?;
                placed += 1;
            }
            Ok::<_, ChaosError>(placed)
        })
    });
    // M-Pin flows for as long as orders do (a run limited by its number of orders ends
    // before its duration).
    let orders_done = Arc::new(AtomicBool::new(false));
    let mpin = {
        let (net, fiduciaries, done) = (net.clone(), fiduciaries.clone(), orders_done.clone());
        tokio::spawn(async move { mpin::workload(&net, &fiduciaries, &done).await })
    };
    let placed: Vec<Result<usize, ChaosError>> = futures::future::join_all(workload)
        .await
        .into_iter()
        .map(|joined| joined.map_err(|e| ChaosError::Workload(e.to_string()))?)
        .collect();
    orders_done.store(true, Ordering::Relaxed);
    let mpin = mpin
        .await
        .map_err(|e| ChaosError::Workload(e.to_string()))??;
    stop.store(true, Ordering::Relaxed);
    let (kills, partitions) = faults
        .await
        .map_err(|e| ChaosError::Fault(e.to_string()))??;
    let seconds = started.elapsed().as_secs_f64();
    let placed: Vec<usize> = placed.into_iter().collect::<Result<_, _>>()?;
    progress(&format!(
        "{} orders placed in {seconds:.1} s while {kills} nodes were killed and {partitions} partitions made; settling",
        placed.iter().sum::<usize>()
    ));
    let mut report = ChaosReport {
        seed: config.seed,
        orders: placed.iter().sum(),
        misdirected_refused: placed.iter().sum(),
        kills,
        partitions,
        seconds,
        mpin_issued: mpin.issued,
        mpin_authenticated: mpin.authenticated,
        mpin_wrong_refused: mpin.wrong_refused,
        violations: mpin.violations,
    };
    // Orders settle side by side, a few at a time: checked one after another, a long run's
    // hundreds of orders took longer to check than the network took to settle.
    let orders: Vec<(usize, usize)> = placed
        .iter()
        .enumerate()
        .flat_map(|(p, count)| (0..*count).map(move |i| (p, i)))
        .collect();
    let deadline = Instant::now() + SETTLE.max(SETTLE_PER_ORDER * orders.len() as u32);
    let settled: Vec<Result<(), String>> = futures::stream::iter(orders.iter().copied())
        .map(|(p, i)| {
            settle(net, p, i, deadline)
                .map_err(move |v| format!("{}/{}: {v}", PRINCIPALS[p], reference(i)))
        })
        .buffered(SETTLING_AT_ONCE)
        .collect()
        .await;
    report
        .violations
        .extend(settled.into_iter().filter_map(Result::err));
    // Every node is honest: none may have accused another (a connection cut by a kill is
    // no malformed request, a restart's identity requests no flood).
    for node in net.0.testnet().map_err(ChaosError::Workload)?.nodes {
        let metrics = net.get(&node.name, "/metrics").await;
        let text = metrics
            .as_ref()
            .and_then(|(_, m)| m.as_str())
            .unwrap_or_default();
        for accusation in text
            .lines()
            .filter(|l| l.starts_with("dta_misconduct_total{"))
        {
            report.violations.push(format!(
                "{} accused an honest node: {accusation}",
                node.name
            ));
        }
    }
    progress(&report.to_string());
    Ok(report)
}

/// The faults, one every `fault_every`, until `stop`; then every partition heals. Returns how
/// many kills and partitions it made.
async fn inject(
    net: &Net,
    config: &ChaosConfig,
    stop: &AtomicBool,
    progress: &(impl Fn(&str) + ?Sized),
) -> Result<(usize, usize), ChaosError> {
    let mut schedule = Schedule::new(config.seed);
    let (mut kills, mut partitions) = (0, 0);
    let mut cut_off: Option<String> = None;
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(config.fault_every).await;
        let victim = config.victims[schedule.below(config.victims.len())].clone();
        let fault = match (&cut_off, config.partitions && schedule.below(4) == 0) {
            (Some(_), _) if schedule.below(2) == 0 => Fault::Heal,
            (None, true) => Fault::Partition(victim),
            _ => Fault::Kill(victim),
        };
        progress(&format!("fault: {fault:?}"));
        match fault {
            Fault::Kill(victim) => {
                process::stop_node(&net.0.dir, &victim, true).await?;
                process::restart_node(&net.0.dir, &victim).await?;
                kills += 1;
            }
            Fault::Partition(victim) => {
                net.cut_off(&victim).await?;
                cut_off = Some(victim);
                partitions += 1;
            }
            Fault::Heal => {
                net.heal().await?;
                cut_off = None;
            }
        }
    }
    net.heal().await?;
    Ok((kills, partitions))
}

fn reference(i: usize) -> String {
    format!("chaos-{i}")
}

/// The secret of principal `p`'s order `i`: binary, so that "intact" means every byte.
fn secret_of(p: usize, i: usize) -> Vec<u8> {
    (0..48u8)
        .map(|b| b.wrapping_mul(31).wrapping_add(i as u8) ^ (p as u8 * 0x55))
        .collect()
}

/// Principal `p` places order `i`, tries to release it to the auditor (which must be
/// refused), and asks for its release, trying again while nodes are down or cut off, until
/// the principal has taken each (a call cut short by a kill may have taken effect: "exists"
/// and "all used" count as done).
async fn order_and_release(
    net: &Net,
    p: usize,
    i: usize,
    fiduciaries: &[String],
) -> Result<(), ChaosError> {
    let (principal, reference) = (PRINCIPALS[p], reference(i));
    let body = json!({
        "reference": reference,
        "plugin": "safeguardsecret",
        "fiduciaries": fiduciaries,
        "threshold": 2,
        "beneficiary": net.identity(BENEFICIARY)?,
        "secret_hex": hex::encode(secret_of(p, i)),
    });
    let deadline = Instant::now() + SETTLE;
    let late = |what: &str| ChaosError::Workload(format!("{principal}/{reference} {what}"));
    loop {
        if Instant::now() > deadline {
            return Err(late("was never ordered"));
        }
        match net
            .call(principal, Method::POST, "/v2/orders", Some(body.clone()))
            .await
        {
            Some((201, _)) => break,
            Some((409, error)) if error.to_string().contains("already exists") => break,
            Some((status, error)) if status < 500 && status != 409 => {
                return Err(late(&format!("was refused: {status} {error}")));
            }
            _ => tokio::time::sleep(Duration::from_millis(300)).await,
        }
    }
    let release = format!("/v2/orders/{reference}/release");
    let misdirected = json!({ "beneficiary": net.identity(AUDITOR)? });
    loop {
        if Instant::now() > deadline {
            return Err(late("had no answer to a misdirected release"));
        }
        match net
            .call(principal, Method::POST, &release, Some(misdirected.clone()))
            .await
        {
            Some((400, error)) if error.to_string().contains("is for beneficiary") => break,
            Some((status, answer)) if status < 500 && status != 409 => {
                return Err(late(&format!(
                    "was released to another beneficiary: {status} {answer}"
                )));
            }
            // Down, or not certified yet.
            _ => tokio::time::sleep(Duration::from_millis(300)).await,
        }
    }
    loop {
        if Instant::now() > deadline {
            return Err(late("was never released"));
        }
        match net
            .call(principal, Method::POST, &release, Some(json!({})))
            .await
        {
            Some((200, _)) => return Ok(()),
            Some((409, error)) if error.to_string().contains("all used") => return Ok(()),
            // Not certified yet, a beneficiary or fiduciaries down: later.
            _ => tokio::time::sleep(Duration::from_millis(300)).await,
        }
    }
}

/// Waits until principal `p`'s order `i` is released, then checks it: the beneficiary holds
/// its exact bytes, no fiduciary released it twice, one receipt, the auditor audits its log,
/// and every node audits it to the same head. The first invariant that does not hold is the
/// error.
async fn settle(net: &Net, p: usize, i: usize, deadline: Instant) -> Result<(), String> {
    let (principal, reference) = (PRINCIPALS[p], reference(i));
    let path = format!("/v2/orders/{reference}");
    let whose = format!(
        "principal={}",
        net.identity(principal).map_err(|e| e.to_string())?
    );
    let shown = loop {
        let shown = net
            .get(principal, &path)
            .await
            .and_then(|(_, body)| record(&body, "principal").cloned());
        if let Some(shown) = shown.filter(|s| s["state"] == "released") {
            break shown;
        }
        if Instant::now() > deadline {
            return Err("stuck: never released".into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    match net
        .get(BENEFICIARY, &format!("{path}/secret?{whose}"))
        .await
    {
        Some((200, body)) if body["secret_hex"] == hex::encode(secret_of(p, i)) => {}
        other => return Err(format!("lost: the beneficiary holds {other:?}")),
    }
    for fiduciary in FIDUCIARIES {
        let held = net
            .get(fiduciary, &format!("{path}?{whose}"))
            .await
            .and_then(|(_, body)| record(&body, "fiduciary").cloned());
        if let Some(held) = held
            && held["releases"].as_object().map_or(0, |r| r.len()) > 1
        {
            return Err(format!("released twice by {fiduciary}: {held}"));
        }
    }
    let receipts = shown["receipts"].as_object().map_or(0, |r| r.len());
    if receipts != 1 {
        return Err(format!("{receipts} receipts: {shown}"));
    }
    // The principal's head, given: a head announcement gossiped while the auditor was cut
    // off may not have reached it.
    let head = shown["head"].as_str().unwrap_or_default().to_owned();
    let audit = net
        .get(AUDITOR, &format!("{path}/audit?head={head}&{whose}"))
        .await;
    match audit {
        Some((200, report)) if report["passed"] == true && report["receipts"] == 1 => {}
        other => return Err(format!("does not audit on {AUDITOR}: {other:?}")),
    }
    net.converged(&path, &whose, &head, deadline).await
}

fn record<'a>(records: &'a Value, role: &str) -> Option<&'a Value> {
    records.as_array()?.iter().find(|r| r["role"] == role)
}

/// The testnet as the workload and the faults see it: a node that is down answers `None`.
#[derive(Debug, Clone)]
struct Net(LiveNet);

impl Net {
    fn identity(&self, name: &str) -> Result<String, ChaosError> {
        Ok(self.0.node(name).map_err(ChaosError::Workload)?.identity)
    }

    /// One call; a node that is down (or dies mid-call) answers `None`.
    async fn call(
        &self,
        name: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Option<(u16, Value)> {
        match self.0.call_named(name, method, path, body).await {
            (0, _) => None,
            answer => Some(answer),
        }
    }

    async fn get(&self, name: &str, path: &str) -> Option<(u16, Value)> {
        self.call(name, Method::GET, path, None).await
    }

    /// Every running node blocks `victim`, and `victim` blocks every node.
    async fn cut_off(&self, victim: &str) -> Result<(), ChaosError> {
        self.0
            .partition(&[vec![victim.to_owned()]])
            .await
            .map_err(ChaosError::Fault)?;
        Ok(())
    }

    /// Every node unblocks whatever it blocked.
    async fn heal(&self) -> Result<(), ChaosError> {
        self.0.heal().await.map_err(ChaosError::Fault)?;
        Ok(())
    }

    /// Waits until every node audits the order at `path` to `head`.
    async fn converged(
        &self,
        path: &str,
        whose: &str,
        head: &str,
        deadline: Instant,
    ) -> Result<(), String> {
        for node in self.0.testnet()?.nodes {
            loop {
                let audit = self.get(&node.name, &format!("{path}/audit?{whose}")).await;
                let at = match &audit {
                    Some((200, report)) if report["passed"] == true => {
                        report["head"].as_str().map(str::to_owned)
                    }
                    _ => None,
                };
                if at.as_deref() == Some(head) {
                    break;
                }
                if Instant::now() > deadline {
                    return Err(format!(
                        "not converged: {} audits it as {audit:?}, not at {head}",
                        node.name
                    ));
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_schedule() {
        let draws = |seed| {
            let mut schedule = Schedule::new(seed);
            (0..32).map(|_| schedule.below(6)).collect::<Vec<_>>()
        };
        assert_eq!(draws(7), draws(7));
        assert_ne!(draws(7), draws(8));
        assert!(draws(7).iter().all(|d| *d < 6));
        assert_eq!(draws(0), draws(1), "0 is taken as 1");
    }
}
