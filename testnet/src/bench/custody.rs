//! `dta bench custody`: orders and releases on an in-process testnet, with latency
//! percentiles and throughput.
//!
//! Three phases, each on fresh orders of a principal, F fiduciaries and a beneficiary (each
//! node playing only its role) that all share the machine:
//! 1. latency: one order at a time, from the create call to the certificate stored at the
//!    principal;
//! 2. certified throughput: every order at once, until all are certified;
//! 3. cycles: every order at once until certified, then every release at once until the
//!    principal holds every receipt;
//! 4. with `--policy FILE` only, releases one at a time without and with the policy
//!    ([`super::policy`]).

use std::time::{Duration, Instant};

use dta_actors::custody::{CustodyEvent, NewOrder, OrderState};
use dta_actors::roles::{Role, RoleMsg};
use dta_protocol::Cid;
use dta_protocol::order::SecretBytes;
use ractor::ActorRef;
use serde::Serialize;
use tokio::sync::broadcast;

use super::policy::{BenchPolicy, PolicyReport};
use super::{BenchError, PHASE_TIMEOUT, identity_of, principal_of};
use crate::harness::Testnet;

/// Orders kept in flight at once in the throughput phases.
pub const IN_FLIGHT: usize = 64;

/// What to run.
#[derive(Debug, Clone)]
pub struct CustodyBench {
    /// The orders' plugin: `safeguardsecret` (a dealt secret) or a generated key
    /// (`milagro`, `bitcoinwallet`: without a dealer below n-of-n).
    pub plugin: String,
    /// Orders per phase.
    pub orders: usize,
    /// Fiduciaries.
    pub fiduciaries: usize,
    /// Threshold.
    pub threshold: u32,
    /// A release policy to measure (phase 4).
    pub policy: Option<BenchPolicy>,
}

/// What it measured.
#[derive(Debug, Clone, Serialize)]
pub struct CustodyReport {
    /// The orders' plugin.
    pub plugin: String,
    /// Orders per phase.
    pub orders: usize,
    /// Fiduciaries.
    pub fiduciaries: usize,
    /// Threshold.
    pub threshold: u32,
    /// Median time to a certified order, one at a time (ms).
    pub certified_p50_ms: f64,
    /// 99th percentile of the same (ms).
    pub certified_p99_ms: f64,
    /// Certified orders per second, all at once.
    pub certified_per_second: f64,
    /// Full order-and-release cycles per second, all at once.
    pub cycles_per_second: f64,
    /// CPU time of the whole process (every node) per order in the latency phase (ms).
    pub cpu_ms_per_order_alone: Option<f64>,
    /// The same in the certified throughput phase (ms).
    pub cpu_ms_per_certified_order: Option<f64>,
    /// The same per order-and-release cycle (ms).
    pub cpu_ms_per_cycle: Option<f64>,
    /// Time in dta-crypto's costly operations per order in the certified throughput phase
    /// (ms), timed around each call in the same run.
    pub crypto_ms_per_certified_order: f64,
    /// That time's share of the phase's CPU time: what is left is everything but the
    /// cryptography (actors, storage, encoding, the kernel).
    pub crypto_share_of_cpu: Option<f64>,
    /// The same per order-and-release cycle (ms).
    pub crypto_ms_per_cycle: f64,
    /// The certified throughput phase's cryptography, operation by operation.
    pub crypto_per_certified_order: Vec<CryptoCost>,
    /// What the release policy added, when one was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<PolicyReport>,
}

/// One cryptographic operation's part in each order.
#[derive(Debug, Clone, Serialize)]
pub struct CryptoCost {
    /// The operation (`bls.sign`, `ed25519.verify`, ...: see [`dta_crypto::meter`]).
    pub operation: &'static str,
    /// Calls per order.
    pub calls_per_order: f64,
    /// Mean time per call (µs).
    pub us_per_call: f64,
    /// Time per order (ms).
    pub ms_per_order: f64,
}

/// What the cryptography cost per order between two meter readings.
pub(super) fn crypto_costs(used: &dta_crypto::meter::Reading, orders: usize) -> Vec<CryptoCost> {
    let orders = orders.max(1) as f64;
    used.usages()
        .iter()
        .filter(|usage| usage.calls > 0)
        .map(|usage| CryptoCost {
            operation: usage.operation.name(),
            calls_per_order: usage.calls as f64 / orders,
            us_per_call: usage.nanos as f64 / 1e3 / usage.calls as f64,
            ms_per_order: usage.nanos as f64 / 1e6 / orders,
        })
        .collect()
}

#[derive(Clone)]
pub(super) struct Principal {
    pub(super) actor: ActorRef<RoleMsg>,
    pub(super) fiduciaries: Vec<Cid>,
    beneficiary: Cid,
    threshold: u32,
    plugin: String,
    pub(super) policy: dta_protocol::policy::ReleasePolicy,
    /// The orders' proactive refresh period, if any.
    pub(super) refresh_every_ms: Option<u64>,
}

impl Principal {
    /// Node 0's principal of `net`, ordering `plugin` keys `threshold`-of-n from
    /// `fiduciaries` for `beneficiary`.
    pub(super) fn new(
        net: &Testnet,
        fiduciaries: Vec<Cid>,
        beneficiary: Cid,
        threshold: u32,
        plugin: String,
    ) -> Result<Self, BenchError> {
        Ok(Self {
            actor: principal_of(net, 0)?,
            fiduciaries,
            beneficiary,
            threshold,
            plugin,
            policy: Default::default(),
            refresh_every_ms: None,
        })
    }

    fn order(&self, reference: String) -> NewOrder {
        let dealt = self.plugin == dta_actors::custody::SAFEGUARD_SECRET;
        let input = match self.plugin.as_str() {
            dta_actors::plugin::BITCOIN_WALLET => {
                [(dta_actors::plugin::COIN.to_owned(), "1".to_owned())].into()
            }
            _ => Default::default(),
        };
        NewOrder {
            reference: Some(reference),
            plugin: self.plugin.clone(),
            fiduciaries: self.fiduciaries.clone(),
            threshold: self.threshold,
            beneficiary: Some(self.beneficiary),
            policy: self.policy.clone(),
            input,
            secret: dealt.then(|| SecretBytes::new(vec![0x42; 32])),
            refresh_every_ms: self.refresh_every_ms,
        }
    }

    pub(super) async fn create(&self, reference: String) -> Result<(), BenchError> {
        let order = self.order(reference);
        ractor::call_t!(
            self.actor,
            |reply| RoleMsg::CreateOrder {
                order: Box::new(order),
                reply
            },
            dta_actors::roles::CALL_TIMEOUT_MS
        )
        .map_err(|e| BenchError::Custody(e.to_string()))?
        .map(drop)
        .map_err(|e| BenchError::Custody(e.to_string()))
    }

    /// Asks for a release; the principal's record once t fiduciaries took the request.
    pub(super) async fn release(
        actor: ActorRef<RoleMsg>,
        reference: String,
    ) -> Result<dta_actors::custody::OrderRecord, BenchError> {
        ractor::call_t!(
            actor,
            |reply| RoleMsg::Release {
                reference,
                beneficiary: None,
                reply
            },
            dta_actors::roles::CALL_TIMEOUT_MS
        )
        .map_err(|e| BenchError::Custody(e.to_string()))?
        .map_err(|e| BenchError::Custody(e.to_string()))
    }
}

/// The principal's custody events, read while orders run: the channel is bounded, and a
/// reader that waited for every call to return first would fall behind it.
pub(super) struct Events(pub(super) broadcast::Receiver<CustodyEvent>);

impl Events {
    /// Waits until `count` principal records of `prefix` reached `state`.
    pub(super) async fn wait(
        &mut self,
        prefix: &str,
        state: OrderState,
        count: usize,
    ) -> Result<(), BenchError> {
        let mut seen = std::collections::HashSet::new();
        tokio::time::timeout(PHASE_TIMEOUT, async {
            while seen.len() < count {
                match self.0.recv().await {
                    Ok(event) => {
                        if event.role == Role::Principal
                            && event.state == state.into()
                            && event.reference.starts_with(prefix)
                        {
                            seen.insert(event.reference);
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        return Err(BenchError::Custody(
                            "the benchmark fell behind the custody events".into(),
                        ));
                    }
                    Err(broadcast::error::RecvError::Closed) => {
                        return Err(BenchError::Custody("the principal stopped".into()));
                    }
                }
            }
            Ok(())
        })
        .await
        .map_err(|_| BenchError::Timeout)?
    }
}

pub(super) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// Runs the benchmark.
pub async fn run(config: CustodyBench) -> Result<CustodyReport, BenchError> {
    if dta_actors::plugin::find(&config.plugin).is_none() {
        return Err(BenchError::Custody(format!(
            "unknown plugin {:?}: use one of {}",
            config.plugin,
            dta_actors::plugin::names()
        )));
    }
    let nodes = match &config.policy {
        Some(policy) => policy.nodes(config.fiduciaries)?,
        None => config.fiduciaries + 2,
    };
    let beneficiary = config.fiduciaries + 1;
    // Each node plays only its part, as in a deployment.
    let net = Testnet::builder()
        .nodes(nodes)
        .one_role_each(|i| match i {
            0 => Role::Principal,
            i if i <= config.fiduciaries => Role::Fiduciary,
            // The beneficiary, and the approvers a policy adds (any role signs votes).
            _ => Role::Beneficiary,
        })
        .build()
        .await?;
    let principal_node = net.node(0);
    let cid = |i: usize| identity_of(&net, i);
    let principal = Principal::new(
        &net,
        (1..=config.fiduciaries)
            .map(cid)
            .collect::<Result<_, _>>()?,
        cid(beneficiary)?,
        config.threshold,
        config.plugin.clone(),
    )?;
    let mut events = Events(principal_node.custody_events());

    // 1. Latency, one order at a time.
    let cpu_before = process_cpu();
    let mut latencies = Vec::with_capacity(config.orders);
    for i in 0..config.orders {
        let started = Instant::now();
        let reference = format!("lat-{i}");
        principal.create(reference.clone()).await?;
        events.wait(&reference, OrderState::Certified, 1).await?;
        latencies.push(started.elapsed().as_secs_f64() * 1e3);
    }
    latencies.sort_by(f64::total_cmp);
    let cpu_ms_per_order_alone = cpu_ms_per(cpu_before, config.orders);

    // 2. Certified throughput.
    let cpu_before = process_cpu();
    let crypto_before = dta_crypto::meter::read();
    let started = Instant::now();
    let (created, certified) = tokio::join!(
        run_all(&principal, "thr-", config.orders, |p, r| p.create(r)),
        events.wait("thr-", OrderState::Certified, config.orders),
    );
    created.and(certified)?;
    let certified_per_second = config.orders as f64 / started.elapsed().as_secs_f64();
    let cpu_ms_per_certified_order = cpu_ms_per(cpu_before, config.orders);
    let crypto_certified = dta_crypto::meter::read().since(&crypto_before);
    let crypto_ms_per_certified_order =
        crypto_certified.total_nanos() as f64 / 1e6 / config.orders.max(1) as f64;

    // 3. Full cycles.
    let cpu_before = process_cpu();
    let crypto_before = dta_crypto::meter::read();
    let started = Instant::now();
    cycles(&principal, &mut events, "cyc-", config.orders).await?;
    let cycles_per_second = config.orders as f64 / started.elapsed().as_secs_f64();
    let cpu_ms_per_cycle = cpu_ms_per(cpu_before, config.orders);
    let crypto_ms_per_cycle = dta_crypto::meter::read()
        .since(&crypto_before)
        .total_nanos() as f64
        / 1e6
        / config.orders.max(1) as f64;

    // 4. What a release policy adds, releasing the orders of phase 1.
    let policy = match &config.policy {
        Some(policy) => {
            let plain: Vec<String> = (0..config.orders).map(|i| format!("lat-{i}")).collect();
            let phase = super::policy::run(&net, &principal, &mut events, &plain, policy);
            Some(phase.await?)
        }
        None => None,
    };

    net.stop().await;
    Ok(CustodyReport {
        plugin: config.plugin.clone(),
        orders: config.orders,
        fiduciaries: config.fiduciaries,
        threshold: config.threshold,
        certified_p50_ms: percentile(&latencies, 50.0),
        certified_p99_ms: percentile(&latencies, 99.0),
        certified_per_second,
        cycles_per_second,
        cpu_ms_per_order_alone,
        cpu_ms_per_certified_order,
        cpu_ms_per_cycle,
        crypto_ms_per_certified_order,
        crypto_share_of_cpu: cpu_ms_per_certified_order
            .filter(|cpu| *cpu > 0.0)
            .map(|cpu| crypto_ms_per_certified_order / cpu),
        crypto_ms_per_cycle,
        crypto_per_certified_order: crypto_costs(&crypto_certified, config.orders),
        policy,
    })
}

/// `count` orders `prefix0..` made, certified, released and received, all at once (at most
/// [`IN_FLIGHT`] calls at a time).
pub(super) async fn cycles(
    principal: &Principal,
    events: &mut Events,
    prefix: &str,
    count: usize,
) -> Result<(), BenchError> {
    let (created, certified) = tokio::join!(
        run_all(principal, prefix, count, |p, r| p.create(r)),
        events.wait(prefix, OrderState::Certified, count),
    );
    created.and(certified)?;
    let (requested, released) = tokio::join!(
        run_all(principal, prefix, count, |p, r| async move {
            Principal::release(p.actor.clone(), r).await.map(drop)
        }),
        events.wait(prefix, OrderState::Released, count),
    );
    requested.and(released)
}

/// CPU time this process has used, user plus system, from `/proc/self/stat`; `None` where
/// there is no procfs.
pub(super) fn process_cpu() -> Option<Duration> {
    // Fields 14 and 15 (utime, stime) follow the parenthesised command name, which may hold
    // spaces; they count USER_HZ ticks, 100 per second on every architecture this builds for.
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after_name = stat.get(stat.rfind(')')? + 2..)?;
    let mut fields = after_name.split_ascii_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 10))
}

pub(super) fn cpu_ms_per(before: Option<Duration>, count: usize) -> Option<f64> {
    let used = process_cpu()?.checked_sub(before?)?;
    Some(used.as_secs_f64() * 1e3 / count.max(1) as f64)
}

/// Runs `step` for references `prefix0..prefixN`, at most [`IN_FLIGHT`] at a time.
pub(super) async fn run_all<'a, F, Fut>(
    principal: &'a Principal,
    prefix: &str,
    orders: usize,
    step: F,
) -> Result<(), BenchError>
where
    F: Fn(&'a Principal, String) -> Fut,
    Fut: std::future::Future<Output = Result<(), BenchError>> + 'a,
{
    use futures::StreamExt;
    let results: Vec<Result<(), BenchError>> = futures::stream::iter(0..orders)
        .map(|i| step(principal, format!("{prefix}{i}")))
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    results.into_iter().collect()
}

impl std::fmt::Display for CustodyReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "custody benchmark ({}): {} orders per phase, {} fiduciaries, threshold {}",
            self.plugin, self.orders, self.fiduciaries, self.threshold
        )?;
        writeln!(
            f,
            "  certified order latency   p50 {:.2} ms   p99 {:.2} ms{}",
            self.certified_p50_ms,
            self.certified_p99_ms,
            cpu_note(self.cpu_ms_per_order_alone, "order")
        )?;
        writeln!(
            f,
            "  certified orders          {:.1} /s{}",
            self.certified_per_second,
            cpu_note(self.cpu_ms_per_certified_order, "order")
        )?;
        writeln!(
            f,
            "  order+release cycles      {:.1} /s{}",
            self.cycles_per_second,
            cpu_note(self.cpu_ms_per_cycle, "cycle")
        )?;
        let share = self
            .crypto_share_of_cpu
            .map_or_else(String::new, |s| format!(", {:.0} % of the CPU", s * 100.0));
        write!(
            f,
            "  cryptography              {:.2} ms per certified order{share}; {:.2} ms per cycle",
            self.crypto_ms_per_certified_order, self.crypto_ms_per_cycle
        )?;
        for cost in &self.crypto_per_certified_order {
            write!(
                f,
                "\n    {:<18} {:>5.1} calls  {:>7.1} µs each  {:>6.3} ms per order",
                cost.operation, cost.calls_per_order, cost.us_per_call, cost.ms_per_order
            )?;
        }
        match &self.policy {
            Some(policy) => write!(f, "\n{policy}"),
            None => Ok(()),
        }
    }
}

fn cpu_note(cpu_ms: Option<f64>, per: &str) -> String {
    cpu_ms.map_or_else(String::new, |ms| {
        format!("   (CPU, all nodes: {ms:.1} ms per {per})")
    })
}
