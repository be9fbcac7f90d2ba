//! `dta bench testnet`: launches process testnets of N nodes on 127.0.0.1, one after the other,
//! and measures the time from the first process start to full identity knowledge (every node
//! knows every identity) and each node's memory once it got there: resident (RSS), its
//! proportional share (PSS) and anonymous memory, the part that is the node's alone (heap,
//! stacks, rocksdb's buffers), which is what a thousand nodes on one machine multiply.

use std::path::PathBuf;
use std::time::Instant;

use serde::Serialize;

use crate::process::{self, TestnetError, UpConfig};

/// One size's figures.
#[derive(Debug, Clone, Serialize)]
pub struct TestnetFigures {
    /// Nodes.
    pub nodes: usize,
    /// Seconds from starting the first process to full knowledge.
    pub knowledge_seconds: f64,
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
}

/// Runs one testnet per size in `sizes`, each in a fresh directory under `dir`, and takes each
/// down again.
pub async fn run(
    sizes: &[usize],
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
            lan: false,
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
        let knowledge_seconds = started.map_or(0.0, |s| s.elapsed().as_secs_f64());
        let rss: Vec<f64> = testnet
            .nodes
            .iter()
            .filter_map(|n| memory_mib(n.pid, "/proc/{pid}/status", "VmRSS:"))
            .collect();
        let pss: Vec<f64> = testnet
            .nodes
            .iter()
            .filter_map(|n| memory_mib(n.pid, "/proc/{pid}/smaps_rollup", "Pss:"))
            .collect();
        let anon: Vec<f64> = testnet
            .nodes
            .iter()
            .filter_map(|n| memory_mib(n.pid, "/proc/{pid}/smaps_rollup", "Anonymous:"))
            .collect();
        process::down(&net_dir, process::Logs::Purge).await?;
        let _ = std::fs::remove_dir(&net_dir);
        figures.push(TestnetFigures {
            nodes,
            knowledge_seconds,
            rss_mean_mib: rss.iter().sum::<f64>() / rss.len().max(1) as f64,
            rss_max_mib: rss.iter().copied().fold(0.0, f64::max),
            pss_mean_mib: pss.iter().sum::<f64>() / pss.len().max(1) as f64,
            anon_mean_mib: anon.iter().sum::<f64>() / anon.len().max(1) as f64,
            anon_max_mib: anon.iter().copied().fold(0.0, f64::max),
        });
    }
    Ok(figures)
}

/// A memory figure of a process (MiB): the `field` line (in kB) of a file under /proc.
fn memory_mib(pid: u32, file: &str, field: &str) -> Option<f64> {
    let status = std::fs::read_to_string(file.replace("{pid}", &pid.to_string())).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}
