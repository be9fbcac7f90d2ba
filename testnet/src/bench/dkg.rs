//! `dta bench dkg`: keys generated without a dealer, and custody that moves and refreshes, on
//! an in-process testnet where every node plays one part.
//!
//! 1. For each committee size n (t = ⌊2n/3⌋ + 1, but at most n - 1, since an n-of-n
//!    secp256k1 key is added up without a key generation): keys generated one after the other, each
//!    timed from the order to its certificate (the key generation's two rounds, the
//!    commitment, every fiduciary's signature and the aggregate certificate), with the CPU
//!    the whole process (every node) spent per key.
//! 2. Custody moved from 3-of-5 to 5-of-9 (fiduciaries 1-5 to 1-9) and refreshed there, each
//!    timed from the request to the new certificate.
//! 3. Refreshes on a schedule while orders flow: some orders that refresh themselves every
//!    period (`refresh_every_ms`), and meanwhile many order-and-release cycles on the same
//!    committee (2-of-3); then each refreshed order is released (a release asked for during
//!    its refresh is refused with a conflict, and asked for again). Any other failure ends the
//!    phase with an error: a report means no order failed.
//!
//! It reports figures and judges none.

use std::time::{Duration, Instant};

use dta_actors::custody::OrderState;
use dta_actors::roles::{Role, RoleMsg};
use dta_protocol::Cid;
use serde::Serialize;

use super::custody::{Events, Principal, cpu_ms_per, cycles, percentile, process_cpu, run_all};
use super::{BenchError, identity_of};
use crate::harness::Testnet;

/// What to measure.
#[derive(Debug, Clone)]
pub struct DkgBench {
    /// Committee sizes.
    pub sizes: Vec<usize>,
    /// Keys per size, and moves and refreshes.
    pub runs: usize,
    /// A plugin whose keys the fiduciaries generate (`milagro`, `bitcoinwallet`,
    /// `mpin-master`).
    pub plugin: String,
    /// Whether to measure moving custody 3-of-5 → 5-of-9 and refreshing it too.
    pub reshare: bool,
    /// Refreshes while orders flow, if measured.
    pub flow: Option<FlowBench>,
}

/// Phase 3: orders that refresh themselves while other orders flow.
#[derive(Debug, Clone)]
pub struct FlowBench {
    /// Orders that refresh themselves.
    pub refreshed: usize,
    /// Their refresh period (ms).
    pub refresh_every_ms: u64,
    /// Order-and-release cycles meanwhile.
    pub cycles: usize,
}

/// What phase 3 measured.
#[derive(Debug, Clone, Serialize)]
pub struct FlowFigures {
    /// Orders that refreshed themselves.
    pub refreshed_orders: usize,
    /// Their refresh period (ms).
    pub refresh_every_ms: u64,
    /// Refreshes they went through, all together.
    pub refreshes: u64,
    /// Order-and-release cycles that ran meanwhile, every one completed.
    pub cycles: usize,
    /// How long the cycles took (s).
    pub cycles_seconds: f64,
    /// Releases of a refreshed order asked for again because a refresh was under way.
    pub releases_deferred: usize,
    /// Orders that failed: 0 (any failure ends the phase with an error instead).
    pub failed_orders: usize,
}

/// Key generation at one committee size.
#[derive(Debug, Clone, Serialize)]
pub struct DkgSize {
    /// n.
    pub fiduciaries: usize,
    /// t.
    pub threshold: u32,
    /// Median time from the order to its certificate (ms).
    pub certified_p50_ms: f64,
    /// The slowest (ms).
    pub certified_max_ms: f64,
    /// CPU time of the whole process (every node) per key (ms).
    pub cpu_ms_per_key: Option<f64>,
}

/// Moving custody and refreshing it.
#[derive(Debug, Clone, Serialize)]
pub struct ReshareFigures {
    /// Median time from the request to the new certificate, 3-of-5 → 5-of-9 (ms).
    pub reshare_p50_ms: f64,
    /// Median time of a refresh of the 5-of-9 shares (ms).
    pub refresh_p50_ms: f64,
    /// CPU per move (ms).
    pub cpu_ms_per_reshare: Option<f64>,
    /// CPU per refresh (ms).
    pub cpu_ms_per_refresh: Option<f64>,
}

/// What it measured.
#[derive(Debug, Clone, Serialize)]
pub struct DkgReport {
    /// The plugin.
    pub plugin: String,
    /// Runs per figure.
    pub runs: usize,
    /// Key generation by committee size.
    pub sizes: Vec<DkgSize>,
    /// Moving and refreshing custody, when measured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reshare: Option<ReshareFigures>,
    /// Refreshes while orders flow, when measured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flow: Option<FlowFigures>,
}

/// The threshold of a committee of `n` (at least 2) the benchmark uses: ⌊2n/3⌋ + 1, but at
/// most n - 1.
pub fn threshold_of(n: usize) -> u32 {
    (2 * n / 3 + 1).min(n - 1).max(2) as u32
}

/// A testnet of a principal, `fiduciaries` fiduciaries and a beneficiary, and its principal
/// ordering `plugin` keys `threshold`-of-n from the first `committee` fiduciaries.
pub(super) async fn network(
    fiduciaries: usize,
    committee: usize,
    threshold: u32,
    plugin: &str,
) -> Result<(Testnet, Principal, Vec<Cid>), BenchError> {
    let net = Testnet::builder()
        .nodes(fiduciaries + 2)
        .one_role_each(|i| match i {
            0 => Role::Principal,
            i if i <= fiduciaries => Role::Fiduciary,
            _ => Role::Beneficiary,
        })
        .build()
        .await?;
    let all: Vec<Cid> = (1..=fiduciaries)
        .map(|i| identity_of(&net, i))
        .collect::<Result<_, _>>()?;
    let principal = Principal::new(
        &net,
        all[..committee].to_vec(),
        identity_of(&net, fiduciaries + 1)?,
        threshold,
        plugin.to_owned(),
    )?;
    Ok((net, principal, all))
}

/// Runs the benchmark.
pub async fn run(config: DkgBench) -> Result<DkgReport, BenchError> {
    let generated = dta_actors::plugin::find(&config.plugin)
        .is_some_and(|p| p.key_source() == dta_actors::plugin::KeySource::Generated);
    if !generated {
        return Err(BenchError::Custody(format!(
            "plugin {:?} has no key the fiduciaries generate: use milagro, bitcoinwallet or \
             mpin-master",
            config.plugin
        )));
    }
    if config.runs == 0 || config.sizes.iter().any(|n| *n < 2) {
        return Err(BenchError::Custody(
            "at least one run, and committees of at least 2".into(),
        ));
    }
    let mut sizes = Vec::with_capacity(config.sizes.len());
    for &n in &config.sizes {
        let threshold = threshold_of(n);
        let (net, principal, _) = Box::pin(network(n, n, threshold, &config.plugin)).await?;
        let mut events = Events(net.node(0).custody_events());
        let cpu_before = process_cpu();
        let mut times = Vec::with_capacity(config.runs);
        for run in 0..config.runs {
            let reference = format!("dkg-{n}-{run}");
            let started = Instant::now();
            principal.create(reference.clone()).await?;
            events.wait(&reference, OrderState::Certified, 1).await?;
            times.push(started.elapsed().as_secs_f64() * 1e3);
        }
        let cpu_ms_per_key = cpu_ms_per(cpu_before, config.runs);
        net.stop().await;
        times.sort_by(f64::total_cmp);
        sizes.push(DkgSize {
            fiduciaries: n,
            threshold,
            certified_p50_ms: percentile(&times, 50.0),
            certified_max_ms: times.last().copied().unwrap_or_default(),
            cpu_ms_per_key,
        });
    }
    let reshare = if config.reshare && config.plugin != dta_actors::plugin::MPIN_MASTER {
        Some(Box::pin(reshare(&config)).await?)
    } else {
        None
    };
    let flow = match (&config.flow, config.plugin.as_str()) {
        (Some(flow), plugin) if plugin != dta_actors::plugin::MPIN_MASTER => {
            Some(Box::pin(flow_phase(&config.plugin, flow)).await?)
        }
        _ => None,
    };
    Ok(DkgReport {
        plugin: config.plugin,
        runs: config.runs,
        sizes,
        reshare,
        flow,
    })
}

/// Asks `principal` to move (or, without `next`, refresh) `reference` and waits for the new
/// certificate: the time it took (ms).
async fn moved(
    principal: &Principal,
    events: &mut Events,
    reference: &str,
    next: Option<(Vec<Cid>, u32)>,
) -> Result<f64, BenchError> {
    let started = Instant::now();
    ractor::call_t!(
        principal.actor,
        |reply| RoleMsg::Reshare {
            reference: reference.to_owned(),
            next,
            reply
        },
        dta_actors::roles::CALL_TIMEOUT_MS
    )
    .map_err(|e| BenchError::Custody(e.to_string()))?
    .map_err(|e| BenchError::Custody(e.to_string()))?;
    events.wait(reference, OrderState::Certified, 1).await?;
    Ok(started.elapsed().as_secs_f64() * 1e3)
}

/// Phase 2: 3-of-5 on fiduciaries 1-5, moved to 5-of-9 on 1-9, then refreshed there.
async fn reshare(config: &DkgBench) -> Result<ReshareFigures, BenchError> {
    let (net, principal, all) = Box::pin(network(9, 5, 3, &config.plugin)).await?;
    let mut events = Events(net.node(0).custody_events());
    let references: Vec<String> = (0..config.runs).map(|r| format!("move-{r}")).collect();
    for reference in &references {
        principal.create(reference.clone()).await?;
        events.wait(reference, OrderState::Certified, 1).await?;
    }
    let mut reshares = Vec::with_capacity(config.runs);
    let cpu_before = process_cpu();
    for reference in &references {
        let next = Some((all.clone(), 5));
        reshares.push(moved(&principal, &mut events, reference, next).await?);
    }
    let cpu_ms_per_reshare = cpu_ms_per(cpu_before, config.runs);
    let mut refreshes = Vec::with_capacity(config.runs);
    let cpu_before = process_cpu();
    for reference in &references {
        refreshes.push(moved(&principal, &mut events, reference, None).await?);
    }
    let cpu_ms_per_refresh = cpu_ms_per(cpu_before, config.runs);
    net.stop().await;
    reshares.sort_by(f64::total_cmp);
    refreshes.sort_by(f64::total_cmp);
    Ok(ReshareFigures {
        reshare_p50_ms: percentile(&reshares, 50.0),
        refresh_p50_ms: percentile(&refreshes, 50.0),
        cpu_ms_per_reshare,
        cpu_ms_per_refresh,
    })
}

/// Phase 3 (see the module's documentation).
async fn flow_phase(plugin: &str, config: &FlowBench) -> Result<FlowFigures, BenchError> {
    let (net, mut principal, _) = Box::pin(network(3, 3, 2, plugin)).await?;
    let mut events = Events(net.node(0).custody_events());
    principal.refresh_every_ms = Some(config.refresh_every_ms);
    let (created, certified) = tokio::join!(
        run_all(&principal, "kept-", config.refreshed, |p, r| p.create(r)),
        events.wait("kept-", OrderState::Certified, config.refreshed),
    );
    created.and(certified)?;
    principal.refresh_every_ms = None;
    let started = Instant::now();
    cycles(&principal, &mut events, "flow-", config.cycles).await?;
    let cycles_seconds = started.elapsed().as_secs_f64();
    // Every refreshed order refreshes at least once before it is released: due after its
    // period, asked for at the principal's next check.
    let at_least_once =
        Duration::from_millis(config.refresh_every_ms) + dta_actors::roles::RESUME_INTERVAL * 2;
    tokio::time::sleep(at_least_once.saturating_sub(started.elapsed())).await;
    let mut releases_deferred = 0;
    for kept in 0..config.refreshed {
        let reference = format!("kept-{kept}");
        loop {
            match Principal::release(principal.actor.clone(), reference.clone()).await {
                Ok(_) => break,
                Err(BenchError::Custody(why)) if why.contains("being refreshed") => {
                    releases_deferred += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(err) => return Err(err),
            }
        }
    }
    events
        .wait("kept-", OrderState::Released, config.refreshed)
        .await?;
    let me = identity_of(&net, 0)?;
    let mut refreshes = 0;
    for kept in 0..config.refreshed {
        let record = dta_actors::custody::stored_record(
            net.node(0).store(),
            Role::Principal,
            &me,
            &format!("kept-{kept}"),
        )
        .map_err(|e| BenchError::Custody(e.to_string()))?
        .ok_or_else(|| BenchError::Custody(format!("kept-{kept} has no record")))?;
        refreshes += u64::from(record.epoch);
    }
    net.stop().await;
    Ok(FlowFigures {
        refreshed_orders: config.refreshed,
        refresh_every_ms: config.refresh_every_ms,
        refreshes,
        cycles: config.cycles,
        cycles_seconds,
        releases_deferred,
        failed_orders: 0,
    })
}

impl std::fmt::Display for DkgReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cpu = |ms: Option<f64>| ms.map_or("n/a".to_owned(), |ms| format!("{ms:.0} ms"));
        writeln!(
            f,
            "key generation benchmark ({}): {} run(s) per figure, one process, every node one part",
            self.plugin, self.runs
        )?;
        for size in &self.sizes {
            writeln!(
                f,
                "  {:>2}-of-{:<3} order to certificate p50 {:>8.1} ms  max {:>8.1} ms  CPU per key {}",
                size.threshold,
                size.fiduciaries,
                size.certified_p50_ms,
                size.certified_max_ms,
                cpu(size.cpu_ms_per_key)
            )?;
        }
        if let Some(reshare) = &self.reshare {
            writeln!(
                f,
                "  3-of-5 -> 5-of-9 reshare p50 {:>8.1} ms  CPU {}",
                reshare.reshare_p50_ms,
                cpu(reshare.cpu_ms_per_reshare)
            )?;
            writeln!(
                f,
                "  5-of-9 refresh         p50 {:>8.1} ms  CPU {}",
                reshare.refresh_p50_ms,
                cpu(reshare.cpu_ms_per_refresh)
            )?;
        }
        if let Some(flow) = &self.flow {
            writeln!(
                f,
                "  {} orders refreshed every {} ms: {} refreshes, while {} order-and-release cycles ran in {:.1} s; {} failed orders, {} releases asked again after a refresh",
                flow.refreshed_orders,
                flow.refresh_every_ms,
                flow.refreshes,
                flow.cycles,
                flow.cycles_seconds,
                flow.failed_orders,
                flow.releases_deferred
            )?;
        }
        Ok(())
    }
}
