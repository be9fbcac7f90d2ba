//! The network's health on a process testnet, for `dta bench testnet`: the DHT probed from
//! up to [`PROBED_NODES`] nodes spread over the testnet (a lookup of a random key each: time,
//! requests, failures), how fast a head announcement spreads by gossip (from the principal's
//! publishing it to the moment each node first saw it, read from each node's
//! `/v2/network/heads/{cid}`), and the CPU time the nodes' processes used.
//!
//! Here: asking the nodes and summing up. Not here: the testnet (`process`) and the orders
//! (`bench::testnet`).

use std::time::{Duration, Instant};

use dta_node::client::Method;
use serde::Serialize;

use crate::process::TestnetFile;

/// Nodes the DHT is probed from, at most.
pub const PROBED_NODES: usize = 50;
/// Longest wait for a head to reach the nodes.
pub const GOSSIP_WAIT: Duration = Duration::from_secs(30);

/// What probes of the DHT from many nodes found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DhtHealth {
    /// Nodes probed from.
    pub probes: usize,
    /// Probes that gave no report (with why, the first).
    pub probes_failed: usize,
    /// Why the first failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Median time of a lookup (ms).
    pub lookup_ms_median: Option<f64>,
    /// Slowest lookup (ms).
    pub lookup_ms_max: Option<f64>,
    /// Median requests a lookup sent.
    pub requests_median: Option<f64>,
    /// Of all requests sent, the share that failed.
    pub failed_share: Option<f64>,
    /// Median of peers found closest to the key (a healthy table finds 20).
    pub closest_median: Option<f64>,
}

/// How a head announcement spread.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GossipSpread {
    /// Nodes other than the principal.
    pub nodes: usize,
    /// Of those, nodes that saw the head within [`GOSSIP_WAIT`].
    pub reached: usize,
    /// Milliseconds from the principal's publishing to the moment 99 % of the other nodes
    /// had seen it; none if fewer did.
    pub ms_to_99_percent: Option<f64>,
    /// Milliseconds until half had.
    pub ms_to_half: Option<f64>,
    /// Why it could not be measured, if it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Probes the DHT from up to [`PROBED_NODES`] nodes spread over the testnet, one after the
/// other (at once they would measure each other's load).
pub async fn probe_dht(testnet: &TestnetFile) -> DhtHealth {
    let mut health = DhtHealth::default();
    let step = testnet.nodes.len().div_ceil(PROBED_NODES).max(1);
    let (mut times, mut requests, mut closest) = (Vec::new(), Vec::new(), Vec::new());
    let (mut sent, mut failed) = (0u64, 0u64);
    for node in testnet.nodes.iter().step_by(step).take(PROBED_NODES) {
        health.probes += 1;
        let client = node.client(&testnet.binary);
        match client
            .call(
                Method::POST,
                "/v2/network/probe",
                Some(&serde_json::json!({})),
            )
            .await
        {
            Ok(answer) if answer.status == 200 => {
                let figure = |name: &str| answer.body[name].as_f64().unwrap_or(0.0);
                times.push(figure("millis"));
                requests.push(figure("requests"));
                closest.push(figure("closest"));
                sent += answer.body["requests"].as_u64().unwrap_or(0);
                failed += answer.body["failures"].as_u64().unwrap_or(0);
            }
            Ok(answer) => {
                health.probes_failed += 1;
                health.error.get_or_insert_with(|| {
                    format!("{}: {}: {}", node.name, answer.status, answer.body)
                });
            }
            Err(err) => {
                health.probes_failed += 1;
                health
                    .error
                    .get_or_insert_with(|| format!("{}: {err}", node.name));
            }
        }
    }
    health.lookup_ms_median = median(&mut times);
    health.lookup_ms_max = times.last().copied();
    health.requests_median = median(&mut requests);
    health.closest_median = median(&mut closest);
    health.failed_share = (sent > 0).then(|| failed as f64 / sent as f64);
    health
}

/// Times the spread of `head`, which the principal (the testnet's first node) announced: asks
/// each other node when it first saw it, asking again those that had not, until all had or
/// [`GOSSIP_WAIT`] passed.
pub async fn gossip_spread(testnet: &TestnetFile, head: &str) -> GossipSpread {
    let mut spread = GossipSpread::default();
    let Some((principal, others)) = testnet.nodes.split_first() else {
        return spread;
    };
    spread.nodes = others.len();
    let path = format!("/v2/network/heads/{head}");
    let seen_at = |answer: &dta_node::client::Answer| {
        (answer.status == 200)
            .then(|| answer.body["seen_unix_ms"].as_u64())
            .flatten()
    };
    let started = Instant::now();
    let published = loop {
        let answer = principal
            .client(&testnet.binary)
            .call(Method::GET, &path, None)
            .await;
        match answer.as_ref().ok().and_then(seen_at) {
            Some(at) => break at,
            None if started.elapsed() < GOSSIP_WAIT => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            None => {
                spread.error = Some("the principal never published the head".into());
                return spread;
            }
        }
    };
    let mut delays = Vec::with_capacity(others.len());
    let mut waiting: Vec<_> = others.iter().collect();
    while !waiting.is_empty() {
        let mut still = Vec::new();
        for node in waiting {
            let answer = node
                .client(&testnet.binary)
                .call(Method::GET, &path, None)
                .await;
            match answer.as_ref().ok().and_then(seen_at) {
                Some(at) => delays.push(at.saturating_sub(published) as f64),
                None => still.push(node),
            }
        }
        waiting = still;
        if started.elapsed() >= GOSSIP_WAIT {
            break;
        }
        if !waiting.is_empty() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    spread.reached = delays.len();
    delays.sort_by(f64::total_cmp);
    spread.ms_to_99_percent = reached_by(&delays, others.len(), 0.99);
    spread.ms_to_half = reached_by(&delays, others.len(), 0.5);
    spread
}

/// The delay by which `share` of `total` nodes had seen the head, given the sorted delays of
/// those that saw it; none if fewer did.
fn reached_by(sorted: &[f64], total: usize, share: f64) -> Option<f64> {
    let needed = ((total as f64) * share).ceil() as usize;
    sorted.get(needed.max(1) - 1).copied()
}

/// CPU time (user and system, seconds) the processes `pids` used so far.
pub fn cpu_seconds(pids: impl Iterator<Item = u32>) -> f64 {
    // Clock ticks per second: 100 on every Linux this runs on (USER_HZ).
    const TICKS: f64 = 100.0;
    pids.filter_map(|pid| {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The fields after the command (which may hold spaces) closed by ')'.
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let user: f64 = fields.get(11)?.parse().ok()?;
        let system: f64 = fields.get(12)?.parse().ok()?;
        Some((user + system) / TICKS)
    })
    .sum()
}

/// The middle value (the upper one of an even count), sorting `values`; none when empty.
pub(super) fn median(values: &mut [f64]) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delay_by_which_a_share_had_seen_counts_those_that_never_did() {
        let delays = [5.0, 10.0, 20.0, 40.0];
        assert_eq!(reached_by(&delays, 4, 0.99), Some(40.0));
        assert_eq!(reached_by(&delays, 4, 0.5), Some(10.0));
        // Five nodes, four saw it: 99 % were never reached.
        assert_eq!(reached_by(&delays, 5, 0.99), None);
        assert_eq!(reached_by(&[], 0, 0.99), None);
    }

    #[test]
    fn this_process_used_some_cpu_and_a_missing_one_none() {
        let own = cpu_seconds(std::iter::once(std::process::id()));
        assert!(own >= 0.0);
        assert_eq!(cpu_seconds(std::iter::once(u32::MAX)), 0.0);
    }
}
