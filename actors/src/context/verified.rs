//! The verified-envelope cache: envelopes whose signatures were checked, or that this node
//! signed, by CID, in two generations (the older dropped when the newer fills), and checks in
//! flight so that one envelope is checked once however many steps ask at once. It checks no
//! signature itself: the caller's check runs through [`VerifiedCache::once`].

use dta_protocol::Cid;
use dta_protocol::envelope::VerifiedEnvelope;

use crate::context::CustodyError;

/// How many verified envelopes a node remembers.
pub const VERIFIED_CACHE_CAPACITY: usize = 8192;

/// Envelopes whose signatures were checked (or that this node signed), by CID. Checking an
/// envelope costs a pairing; the custody steps read the same order, commitment and certificate
/// again and again.
#[derive(Debug, Clone, Default)]
pub struct VerifiedCache(std::sync::Arc<std::sync::Mutex<CacheGenerations>>);

/// Checks in progress, by CID, so that a check is done once however many ask at once.
type InFlight =
    std::collections::HashMap<Cid, std::sync::Arc<std::sync::OnceLock<Result<(), CustodyError>>>>;

/// Two generations: when the newer is full it becomes the older and the older is dropped, so
/// what was used recently stays and the size stays bounded.
#[derive(Debug, Default)]
pub struct CacheGenerations {
    newer: std::collections::HashMap<Cid, VerifiedEnvelope>,
    older: std::collections::HashMap<Cid, VerifiedEnvelope>,
    in_flight: InFlight,
}

impl VerifiedCache {
    pub(crate) fn get(&self, cid: &Cid) -> Option<VerifiedEnvelope> {
        let mut cache = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(envelope) = cache.newer.get(cid) {
            return Some(envelope.clone());
        }
        let envelope = cache.older.remove(cid)?;
        Self::put(&mut cache, *cid, envelope.clone());
        Some(envelope)
    }

    /// Whether `cid` is known good, without a copy of its envelope.
    pub(crate) fn contains(&self, cid: &Cid) -> bool {
        let cache = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        cache.newer.contains_key(cid) || cache.older.contains_key(cid)
    }

    /// Runs `check` for `cid` once: callers that come while it runs wait for its result
    /// (a signature check, well under a millisecond) and share it.
    pub(crate) fn once(
        &self,
        cid: Cid,
        check: impl FnOnce() -> Result<(), CustodyError>,
    ) -> Result<(), CustodyError> {
        let cell = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .in_flight
            .entry(cid)
            .or_default()
            .clone();
        let result = cell.get_or_init(check).clone();
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .in_flight
            .remove(&cid);
        result
    }

    pub(crate) fn insert(&self, cid: Cid, envelope: VerifiedEnvelope) {
        let mut cache = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Self::put(&mut cache, cid, envelope);
    }

    fn put(cache: &mut CacheGenerations, cid: Cid, envelope: VerifiedEnvelope) {
        if cache.newer.len() >= VERIFIED_CACHE_CAPACITY / 2 {
            cache.older = std::mem::take(&mut cache.newer);
        }
        cache.newer.insert(cid, envelope);
    }
}
