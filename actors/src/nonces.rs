//! A fiduciary's FROST signing nonces, in memory only, each kept under the envelope that sent
//! its commitments (a commitment, or a signature share carrying the next ones) and for the
//! order it was made for. A package names those envelopes, so a signer finds the nonces it
//! committed to, for the signature asked now or for a later one of the same order
//! (preprocessing: commitments go out before their message is known).
//!
//! Nonces leave when they sign ([`NonceStore::take`], which hands them out once) or, oldest
//! first, when more than [`MAX_NONCES`] are kept. Forgetting nonces is always safe: a package
//! that names them gets fresh commitments instead, and the principal makes a new one. After a
//! restart there are none, and none are ever made again the same.
//!
//! What it does not do: decide which nonces to make, or write anything anywhere.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use dta_crypto::signing::Nonces;
use dta_protocol::Cid;

/// Most nonces a node keeps across all its orders; the oldest go first.
pub const MAX_NONCES: usize = 4096;

/// The nonces a fiduciary committed to and has not signed with.
#[derive(Debug, Default)]
pub struct NonceStore(Mutex<Kept>);

#[derive(Debug, Default)]
struct Kept {
    /// Order of arrival, for forgetting the oldest.
    next: u64,
    by_envelope: HashMap<Cid, (u64, String, Nonces)>,
    arrival: BTreeMap<u64, Cid>,
}

impl NonceStore {
    fn kept(&self) -> std::sync::MutexGuard<'_, Kept> {
        // Nothing in it is left half-changed by a panic: each change is one insert or remove.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Keeps `nonces`, whose commitments `envelope` sent, for order `order`.
    pub fn keep(&self, envelope: Cid, order: &str, nonces: Nonces) {
        let mut kept = self.kept();
        let at = kept.next;
        kept.next += 1;
        if let Some((was, _, _)) = kept
            .by_envelope
            .insert(envelope, (at, order.to_owned(), nonces))
        {
            kept.arrival.remove(&was);
        }
        kept.arrival.insert(at, envelope);
        while kept.by_envelope.len() > MAX_NONCES {
            let Some((_, oldest)) = kept.arrival.pop_first() else {
                break;
            };
            kept.by_envelope.remove(&oldest);
        }
    }

    /// The nonces `envelope` committed to for order `order`, handed out once. None if they
    /// are gone (used, forgotten, a restart) or were made for another order.
    pub fn take(&self, envelope: &Cid, order: &str) -> Option<Nonces> {
        let mut kept = self.kept();
        if kept
            .by_envelope
            .get(envelope)
            .is_none_or(|(_, made_for, _)| made_for != order)
        {
            return None;
        }
        let (at, _, nonces) = kept.by_envelope.remove(envelope)?;
        kept.arrival.remove(&at);
        Some(nonces)
    }

    /// Whether the nonces `envelope` committed to are still here.
    pub fn holds(&self, envelope: &Cid) -> bool {
        self.kept().by_envelope.contains_key(envelope)
    }

    /// How many are kept.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.kept().by_envelope.len()
    }

    /// Whether none are.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets them all, as a restart does.
    #[cfg(test)]
    pub(crate) fn clear(&self) {
        let mut kept = self.kept();
        kept.by_envelope.clear();
        kept.arrival.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nonces() -> Nonces {
        let key = dta_crypto::secp256k1::SecretKey::random();
        let share = dta_crypto::dkg::KeyShare::from_secret(
            1,
            2,
            key.to_bytes().expose(),
            &key.public_key(),
        )
        .unwrap();
        dta_crypto::signing::commit(&share).unwrap().0
    }

    fn cid(n: u64) -> Cid {
        dta_protocol::block::cid_of(dta_protocol::block::DAG_CBOR, &n.to_be_bytes())
    }

    #[test]
    fn nonces_are_handed_out_once_and_only_for_their_order() {
        let store = NonceStore::default();
        store.keep(cid(1), "a/1", nonces());
        assert!(store.take(&cid(1), "a/2").is_none(), "another order's");
        assert!(store.holds(&cid(1)));
        assert!(store.take(&cid(1), "a/1").is_some());
        assert!(store.take(&cid(1), "a/1").is_none(), "used up");
        assert!(store.is_empty());
    }

    #[test]
    fn the_oldest_go_past_the_limit() {
        let store = NonceStore::default();
        for n in 0..(MAX_NONCES as u64 + 3) {
            store.keep(cid(n), "a/1", nonces());
        }
        assert_eq!(store.len(), MAX_NONCES);
        assert!(!store.holds(&cid(0)) && !store.holds(&cid(2)));
        assert!(store.holds(&cid(3)) && store.holds(&cid(MAX_NONCES as u64 + 2)));
    }
}
