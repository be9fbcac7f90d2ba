//! `dta bench bitswap`: one node fetches N blocks of S bytes from another over Bitswap, on
//! loopback, and reports the throughput. (The same run against kubo joins it with the
//! interop tier.)

use std::time::{Duration, Instant};

use dta_actors::store::Column;
use dta_protocol::Cid;
use dta_protocol::block::{RAW, cid_of};
use futures::StreamExt;
use serde::Serialize;

use crate::bench::BenchError;
use crate::harness::Testnet;

/// Fetches kept in flight at once.
pub const IN_FLIGHT: usize = 32;

/// What to run.
#[derive(Debug, Clone, Copy)]
pub struct BitswapBench {
    /// Blocks to fetch.
    pub blocks: usize,
    /// Bytes per block.
    pub size: usize,
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
}

/// Runs the benchmark.
pub async fn bitswap(config: BitswapBench) -> Result<BitswapReport, BenchError> {
    if config.blocks == 0 || config.size == 0 || config.size > dta_protocol::bitswap::MAX_BLOCK_SIZE
    {
        return Err(BenchError::Custody(format!(
            "need at least one block of 1 to {} bytes",
            dta_protocol::bitswap::MAX_BLOCK_SIZE
        )));
    }
    let net = Testnet::builder().nodes(2).build().await?;
    // Distinct blocks: a counter in the first bytes of otherwise equal data.
    let cids: Vec<Cid> = (0..config.blocks)
        .map(|i| {
            let mut data = vec![0xb5; config.size];
            let tag = (i as u64).to_be_bytes();
            let n = tag.len().min(data.len());
            data[..n].copy_from_slice(&tag[..n]);
            let cid = cid_of(RAW, &data);
            net.node(0)
                .store()
                .put_durable(Column::Blocks, &cid.to_bytes(), &data)
                .map(|()| cid)
                .map_err(|e| BenchError::Custody(e.to_string()))
        })
        .collect::<Result<_, _>>()?;
    let network = net.node(1).network().clone();
    let started = Instant::now();
    let results: Vec<Result<Vec<u8>, _>> = futures::stream::iter(cids)
        .map(|cid| {
            let network = network.clone();
            async move { network.fetch_block(cid).await }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    let elapsed = started.elapsed().max(Duration::from_micros(1));
    for result in results {
        let bytes = result.map_err(|e| BenchError::Custody(e.to_string()))?;
        if bytes.len() != config.size {
            return Err(BenchError::Custody(
                "a block came back the wrong size".into(),
            ));
        }
    }
    net.stop().await;
    let seconds = elapsed.as_secs_f64();
    Ok(BitswapReport {
        blocks: config.blocks,
        size: config.size,
        elapsed_ms: seconds * 1e3,
        blocks_per_second: config.blocks as f64 / seconds,
        mib_per_second: (config.blocks * config.size) as f64 / seconds / (1024.0 * 1024.0),
    })
}

impl std::fmt::Display for BitswapReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "bitswap benchmark: {} blocks of {} bytes, dta from dta over loopback",
            self.blocks, self.size
        )?;
        writeln!(f, "  time          {:.1} ms", self.elapsed_ms)?;
        writeln!(f, "  blocks        {:.0} /s", self.blocks_per_second)?;
        write!(f, "  throughput    {:.1} MiB/s", self.mib_per_second)
    }
}
