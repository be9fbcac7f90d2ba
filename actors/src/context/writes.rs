//! A step's writes: records and blocks are staged on the [`RoleContext`] as the step goes
//! and written in one batch, synced when the step's results leave the node
//! ([`Durability::Synced`]) or buffered when they can be had again. Only the batch's
//! content is chosen here; the store writes it (`crate::store`).

use dta_protocol::Cid;
use dta_protocol::envelope::{SignedEnvelope, VerifiedEnvelope};

use crate::store::Column;

use crate::context::{CustodyError, RoleContext, internal, joined};

/// Whether a write waits for the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Durability {
    /// Synced before it returns: for steps whose results are sent to others.
    Synced,
    /// In the log, synced by the next synced write: for what can be had again.
    Buffered,
}

impl RoleContext {
    pub(crate) fn stage(&self, column: Column, key: Vec<u8>, value: Vec<u8>) {
        self.staged
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((column, key, value));
    }

    /// Writes everything staged in one synced batch.
    pub async fn commit(&self) -> Result<(), CustodyError> {
        self.write_staged(Durability::Synced).await
    }

    /// Writes everything staged (blocks kept for audits and later steps) without waiting for
    /// the disk; the next synced write makes it durable too.
    pub async fn flush(&self) -> Result<(), CustodyError> {
        self.write_staged(Durability::Buffered).await
    }

    pub(crate) async fn write_staged(&self, durability: Durability) -> Result<(), CustodyError> {
        let entries = std::mem::take(
            &mut *self
                .staged
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        if entries.is_empty() {
            return Ok(());
        }
        let store = self.store.clone();
        match durability {
            // A synced write blocks on the disk: keep it off the async workers.
            Durability::Synced => {
                joined(tokio::task::spawn_blocking(move || store.write_durable(entries)).await)?
                    .map_err(internal)
            }
            Durability::Buffered => store.write_buffered(entries).map_err(internal),
        }
    }

    pub(crate) fn staged_value(&self, column: Column, key: &[u8]) -> Option<Vec<u8>> {
        self.staged
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .rev()
            .find(|(c, k, _)| *c == column && k.as_slice() == key)
            .map(|(_, _, v)| v.clone())
    }

    /// Stages an envelope this node made, and remembers it as verified.
    pub(crate) async fn save_block(
        &self,
        envelope: &VerifiedEnvelope,
    ) -> Result<(Cid, Vec<u8>), CustodyError> {
        let (cid, bytes) = self.save_signed(envelope.signed())?;
        self.verified.insert(cid, envelope.clone());
        Ok((cid, bytes))
    }

    /// Stages an envelope checked by other means (custody signatures, in the aggregate).
    pub(crate) fn save_signed(
        &self,
        envelope: &SignedEnvelope,
    ) -> Result<(Cid, Vec<u8>), CustodyError> {
        let block = envelope.to_block().map_err(internal)?;
        let (cid, bytes) = (block.cid(), block.into_bytes());
        self.stage(Column::Blocks, cid.to_bytes(), bytes.clone());
        Ok((cid, bytes))
    }
}
