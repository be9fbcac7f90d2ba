//! The release-policy phase of `dta bench custody --policy FILE`: what a policy adds to a
//! release, in latency, in CPU across the nodes, and in each fiduciary's own policy work
//! (checking and recording each vote, evaluating the held release).
//!
//! The policy file is a release policy as `dta order create --policy` takes it, with node
//! names (`node-K`) for members: `node-0` is the principal, `node-1`..`node-F` the
//! fiduciaries, `node-F+1` the beneficiary, and higher numbers approvers that the benchmark
//! adds. Every member of every approver group approves each release; the veto group never
//! vetoes. Releases run one at a time, first on orders without a policy, then on orders with
//! it, so the difference is the policy's.
//!
//! What it does not do: judge the figures, or measure a policy whose `not_before_ms` lies
//! ahead (its releases would wait until then).

use std::time::Instant;

use dta_actors::custody::{NewVote, OrderState};
use dta_actors::metrics::{Metrics, PolicyStep};
use dta_actors::roles::{CALL_TIMEOUT_MS, Role, RoleMsg};
use dta_protocol::Cid;
use dta_protocol::policy::ReleasePolicy;
use ractor::ActorRef;
use serde::Serialize;
use serde_json::Value;

use super::custody::{Events, Principal, cpu_ms_per, percentile, process_cpu, run_all};
use super::{BenchError, identity_of};
use crate::harness::Testnet;

/// Most approver nodes a benchmark adds beside its principal, fiduciaries and beneficiary.
pub const MAX_ADDED_APPROVERS: usize = 32;

/// A policy file, read: who it names, and the policy itself with names for members.
#[derive(Debug, Clone)]
pub struct BenchPolicy {
    policy: Value,
    approvers: Vec<usize>,
    highest_node: usize,
}

impl BenchPolicy {
    /// Reads which nodes a policy names; fails on a member that is not `node-K`.
    pub fn new(policy: Value) -> Result<Self, BenchError> {
        let members = crate::named_policy::members(&policy).map_err(BenchError::Policy)?;
        let approvers = members
            .approvers
            .iter()
            .map(|name| node_number(name))
            .collect::<Result<Vec<_>, _>>()?;
        let vetoers = members
            .vetoers
            .iter()
            .map(|name| node_number(name))
            .collect::<Result<Vec<_>, _>>()?;
        if approvers.is_empty() {
            return Err(BenchError::Policy(
                "the policy has no approver group: nothing to measure".into(),
            ));
        }
        let highest_node = approvers.iter().chain(&vetoers).copied().max().unwrap_or(0);
        let read = Self {
            policy,
            approvers,
            highest_node,
        };
        // Checked now, with stand-ins for the identities the testnet will have, so that a
        // policy that can never be met fails before anything runs.
        read.resolve_with(|number| {
            Ok(dta_protocol::block::cid_of(
                dta_protocol::block::RAW,
                format!("node-{number}").as_bytes(),
            ))
        })?;
        Ok(read)
    }

    /// Nodes the benchmark needs for `fiduciaries`: its principal, fiduciaries and
    /// beneficiary, and any approver beyond them.
    pub fn nodes(&self, fiduciaries: usize) -> Result<usize, BenchError> {
        let base = fiduciaries + 2;
        let nodes = base.max(self.highest_node + 1);
        if nodes - base > MAX_ADDED_APPROVERS {
            return Err(BenchError::Policy(format!(
                "node-{} would add {} approver nodes; at most {MAX_ADDED_APPROVERS}",
                self.highest_node,
                nodes - base
            )));
        }
        Ok(nodes)
    }

    /// The policy with the testnet's identities for names, checked as a node checks one.
    fn resolve(&self, net: &Testnet) -> Result<ReleasePolicy, BenchError> {
        self.resolve_with(|number| identity_of(net, number))
    }

    fn resolve_with(
        &self,
        identity_of: impl Fn(usize) -> Result<Cid, BenchError>,
    ) -> Result<ReleasePolicy, BenchError> {
        let policy = crate::named_policy::with_identities(self.policy.clone(), |name| {
            let number = node_number(name).map_err(|e| e.to_string())?;
            identity_of(number)
                .map(|cid| cid.to_string())
                .map_err(|e| e.to_string())
        })
        .map_err(BenchError::Policy)?;
        dta_api::policy::policy_from_json(1, policy).map_err(BenchError::Policy)
    }
}

fn node_number(name: &str) -> Result<usize, BenchError> {
    name.strip_prefix("node-")
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| {
            BenchError::Policy(format!(
                "member {name:?} is not a node of the benchmark (node-0, node-1, ...)"
            ))
        })
}

/// What a policy added.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyReport {
    /// Releases measured each way.
    pub releases: usize,
    /// Approvals each release had (every approver group's members).
    pub approvals_per_release: usize,
    /// The policy's delay (ms), part of every release under it.
    pub delay_ms: u64,
    /// Median time from the release call to the principal's receipt, without a policy (ms).
    pub release_p50_ms: f64,
    /// The same with the policy, its approvals made after the call (ms).
    pub policy_release_p50_ms: f64,
    /// The difference beyond the policy's delay (ms).
    pub added_p50_ms_beyond_delay: f64,
    /// CPU of the whole process (every node) per release without a policy (ms).
    pub cpu_ms_per_release: Option<f64>,
    /// The same with the policy, the approvers' signing included (ms).
    pub cpu_ms_per_policy_release: Option<f64>,
    /// Each fiduciary's time in policy steps per release: votes checked and recorded
    /// durably, and the held release evaluated each time a vote arrived (ms of wall time,
    /// so with waits for the disk and for the CPU the other nodes share; mean over
    /// fiduciaries).
    pub fiduciary_policy_ms_per_release: f64,
    /// Mean time a fiduciary spent on one vote (µs).
    pub fiduciary_vote_us: f64,
    /// Mean time a fiduciary spent on one evaluation of a held release (µs).
    pub fiduciary_check_us: f64,
}

/// Runs the phase: the orders `plain` name (certified, unreleased) are released one at a
/// time, then as many orders under `policy`.
pub(super) async fn run(
    net: &Testnet,
    principal: &Principal,
    events: &mut Events,
    plain: &[String],
    policy: &BenchPolicy,
) -> Result<PolicyReport, BenchError> {
    let fiduciaries = principal.fiduciaries.len();
    let releases = plain.len();
    let release_policy = policy.resolve(net)?;
    let approvers = policy
        .approvers
        .iter()
        .map(|i| voter_of(net, *i))
        .collect::<Result<Vec<_>, _>>()?;

    // Without a policy.
    let cpu_before = process_cpu();
    let mut plain_ms = Vec::with_capacity(releases);
    for reference in plain {
        let started = Instant::now();
        Principal::release(principal.actor.clone(), reference.clone()).await?;
        events.wait(reference, OrderState::Released, 1).await?;
        plain_ms.push(started.elapsed().as_secs_f64() * 1e3);
    }
    let cpu_ms_per_release = cpu_ms_per(cpu_before, releases);

    // Orders under the policy, certified first (not measured).
    let mut guarded = principal.clone();
    guarded.policy = release_policy.clone();
    let (created, certified) = tokio::join!(
        run_all(&guarded, "pol-", releases, |p, r| p.create(r)),
        events.wait("pol-", OrderState::Certified, releases),
    );
    created.and(certified)?;

    let before: Vec<_> = (1..=fiduciaries)
        .map(|i| policy_time(net.node(i).metrics()))
        .collect();
    let cpu_before = process_cpu();
    let mut policy_ms = Vec::with_capacity(releases);
    for i in 0..releases {
        let reference = format!("pol-{i}");
        let started = Instant::now();
        let record = Principal::release(principal.actor.clone(), reference.clone()).await?;
        let request = *record
            .releases
            .values()
            .next_back()
            .ok_or_else(|| BenchError::Custody(format!("{reference}: no release request")))?;
        let votes = approvers
            .iter()
            .map(|approver| vote(approver.clone(), &reference, request));
        for made in futures::future::join_all(votes).await {
            made?;
        }
        events.wait(&reference, OrderState::Released, 1).await?;
        policy_ms.push(started.elapsed().as_secs_f64() * 1e3);
    }
    let cpu_ms_per_policy_release = cpu_ms_per(cpu_before, releases);
    let (mut votes, mut vote_time, mut checks, mut check_time) = (0, 0.0, 0, 0.0);
    for (i, earlier) in (1..=fiduciaries).zip(before) {
        let now = policy_time(net.node(i).metrics());
        votes += now.0 - earlier.0;
        vote_time += now.1 - earlier.1;
        checks += now.2 - earlier.2;
        check_time += now.3 - earlier.3;
    }

    plain_ms.sort_by(f64::total_cmp);
    policy_ms.sort_by(f64::total_cmp);
    let release_p50_ms = percentile(&plain_ms, 50.0);
    let policy_release_p50_ms = percentile(&policy_ms, 50.0);
    let delay_ms = release_policy.delay_ms.unwrap_or(0);
    let mean_us = |time: f64, count: u64| time * 1e6 / count.max(1) as f64;
    Ok(PolicyReport {
        releases,
        approvals_per_release: approvers.len(),
        delay_ms,
        release_p50_ms,
        policy_release_p50_ms,
        added_p50_ms_beyond_delay: policy_release_p50_ms - release_p50_ms - delay_ms as f64,
        cpu_ms_per_release,
        cpu_ms_per_policy_release,
        fiduciary_policy_ms_per_release: (vote_time + check_time) * 1e3
            / (fiduciaries.max(1) * releases.max(1)) as f64,
        fiduciary_vote_us: mean_us(vote_time, votes),
        fiduciary_check_us: mean_us(check_time, checks),
    })
}

/// Votes counted and their time (s), evaluations counted and their time (s).
fn policy_time(metrics: &Metrics) -> (u64, f64, u64, f64) {
    let (votes, vote_time) = metrics.policy_time(PolicyStep::Vote);
    let (checks, check_time) = metrics.policy_time(PolicyStep::Check);
    (
        votes,
        vote_time.as_secs_f64(),
        checks,
        check_time.as_secs_f64(),
    )
}

/// A role actor of node `i`, through which its identity signs votes (any role votes).
fn voter_of(net: &Testnet, i: usize) -> Result<ActorRef<RoleMsg>, BenchError> {
    let peer = &net.node(i).info().peer_id;
    Role::ALL
        .iter()
        .find_map(|role| dta_actors::registry::role(peer, *role))
        .ok_or_else(|| BenchError::Custody(format!("node-{i} has no role actor to vote with")))
}

async fn vote(actor: ActorRef<RoleMsg>, reference: &str, request: Cid) -> Result<(), BenchError> {
    let vote = NewVote {
        reference: reference.to_owned(),
        request,
        veto: false,
        approver: None,
    };
    ractor::call_t!(
        actor,
        |reply| RoleMsg::Vote { vote, reply },
        CALL_TIMEOUT_MS
    )
    .map_err(|e| BenchError::Custody(e.to_string()))?
    .map(drop)
    .map_err(|e| BenchError::Custody(format!("{reference}: approval refused: {e}")))
}

impl std::fmt::Display for PolicyReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "  release policy            {} releases each way, {} approvals each, delay {} ms",
            self.releases, self.approvals_per_release, self.delay_ms
        )?;
        writeln!(
            f,
            "    release latency p50     {:.2} ms without, {:.2} ms with ({:+.2} ms beyond the delay)",
            self.release_p50_ms, self.policy_release_p50_ms, self.added_p50_ms_beyond_delay
        )?;
        if let (Some(without), Some(with)) =
            (self.cpu_ms_per_release, self.cpu_ms_per_policy_release)
        {
            writeln!(
                f,
                "    CPU, all nodes          {without:.1} ms per release without, {with:.1} ms with"
            )?;
        }
        write!(
            f,
            "    per fiduciary           {:.2} ms in policy steps per release, durable writes included ({:.0} µs a vote, {:.0} µs an evaluation)",
            self.fiduciary_policy_ms_per_release, self.fiduciary_vote_us, self.fiduciary_check_us
        )
    }
}
