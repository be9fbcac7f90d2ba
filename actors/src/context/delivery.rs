//! Delivery of blocks to a peer: split into bundles of linked envelopes, sent over the
//! network with [`DELIVERY_ATTEMPTS`] tries and a doubling back-off; true once the peer took
//! them (its role actor made them durable). What to send and when to send it again is the
//! steps' business (`crate::custody`'s resumption).

use dta_protocol::envelope::{Bundle, MAX_BUNDLE};
use libp2p::PeerId;
use serde_bytes::ByteBuf;

use crate::metrics::Metrics;
use crate::network::NetworkHandle;

use crate::context::RoleContext;

/// How many times a delivery is tried.
pub const DELIVERY_ATTEMPTS: u32 = 4;
/// Wait before the first retry; doubled each time.
pub const DELIVERY_BACKOFF: std::time::Duration = std::time::Duration::from_millis(250);

impl RoleContext {
    /// Sends blocks to a peer in order; true if every one was accepted. Runs of blocks that
    /// form one sender's `prev` chain go as one bundle, checked with one signature. A peer that
    /// cannot be reached is tried again a few times, since a node that just restarted may not
    /// know every address yet.
    pub async fn deliver(
        network: &NetworkHandle,
        metrics: &Metrics,
        peer: PeerId,
        blocks: Vec<Vec<u8>>,
    ) -> bool {
        for bundle in bundles(blocks) {
            let mut attempt = 0;
            loop {
                match network
                    .request(
                        peer,
                        dta_protocol::network::Request::Deliver {
                            blocks: bundle.clone(),
                        },
                    )
                    .await
                {
                    Ok(dta_protocol::network::Response::Accepted) => break,
                    Ok(other) => {
                        tracing::warn!(%peer, ?other, "delivery refused");
                        return false;
                    }
                    Err(err) if attempt + 1 < DELIVERY_ATTEMPTS => {
                        tracing::debug!(%peer, %err, attempt, "delivery failed; trying again");
                        tokio::time::sleep(DELIVERY_BACKOFF * 2u32.pow(attempt)).await;
                        attempt += 1;
                        Metrics::bump(&metrics.delivery_retries);
                    }
                    Err(err) => {
                        tracing::warn!(%peer, %err, "delivery failed");
                        return false;
                    }
                }
            }
        }
        true
    }
}

/// Splits blocks, in order, into bundles: each run of blocks where every one links to the one
/// before (same sender, `prev` pointing to it) goes together.
pub(crate) fn bundles(blocks: Vec<Vec<u8>>) -> Vec<Vec<ByteBuf>> {
    let mut bundles: Vec<Vec<ByteBuf>> = Vec::new();
    for block in blocks {
        match bundles.last_mut() {
            Some(bundle)
                if bundle.len() < MAX_BUNDLE
                    && bundle
                        .last()
                        .is_some_and(|last| Bundle::links(last, &block)) =>
            {
                bundle.push(ByteBuf::from(block));
            }
            _ => bundles.push(vec![ByteBuf::from(block)]),
        }
    }
    bundles
}
