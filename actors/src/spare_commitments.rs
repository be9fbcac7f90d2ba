//! A principal's spare FROST commitments: envelopes in which an order's fiduciaries committed
//! to nonces that no package used (commitments of signers not chosen, the next ones each
//! signature share carries). A later signature of the order puts t of them in its package
//! at once, with no round of commitments (FROST's preprocessing): the request and the package
//! go to those t signers only.
//!
//! In memory only, per order and commitment in force (after a refresh or a new committee, an
//! index may be another fiduciary, holding another share), at most [`MAX_PER_SIGNER`] per signer. Losing them costs a round, nothing
//! else: a signer whose nonces are gone answers a package naming them with fresh commitments.
//!
//! What it does not do: know whether a signer is reachable (the caller says), or hold
//! anything secret.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;

use dta_protocol::Cid;

/// Most spare commitments kept per signer of an order; the oldest go first.
pub const MAX_PER_SIGNER: usize = 16;
/// Most orders with spares kept; past it, an order's spares go to make room.
pub const MAX_ORDERS: usize = 1024;

/// Spare commitments of the orders this principal signs with.
#[derive(Debug, Default)]
pub struct SpareCommitments(Mutex<HashMap<String, Spares>>);

#[derive(Debug)]
struct Spares {
    commitment: Cid,
    /// The signer index the next choice starts from.
    turn: u32,
    /// Each signer's spares, oldest first.
    by_signer: BTreeMap<u32, VecDeque<Cid>>,
}

impl SpareCommitments {
    fn orders(&self) -> std::sync::MutexGuard<'_, HashMap<String, Spares>> {
        // Each change is one insert or remove: a panic leaves nothing half-changed.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Keeps `spares` (signer index, envelope carrying its unused commitments) of `order`
    /// under `commitment`; those under another commitment go.
    pub fn add(&self, order: &str, commitment: Cid, spares: impl IntoIterator<Item = (u32, Cid)>) {
        let mut orders = self.orders();
        if !orders.contains_key(order) && orders.len() >= MAX_ORDERS {
            let some = orders.keys().next().cloned();
            if let Some(some) = some {
                orders.remove(&some);
            }
        }
        let fresh = || Spares {
            commitment,
            turn: 0,
            by_signer: BTreeMap::new(),
        };
        let kept = orders.entry(order.to_owned()).or_insert_with(fresh);
        if kept.commitment != commitment {
            *kept = fresh();
        }
        for (index, envelope) in spares {
            let queue = kept.by_signer.entry(index).or_default();
            if !queue.contains(&envelope) {
                queue.push_back(envelope);
            }
            if queue.len() > MAX_PER_SIGNER {
                queue.pop_front();
            }
        }
    }

    /// One spare of each of `threshold` signers of `order` under `commitment` for whom
    /// `usable` says yes, by index, each its oldest. The choice goes round the committee, from
    /// where the last one ended, so every signer signs in turn and no spare waits long. None,
    /// and nothing taken, if fewer than `threshold` signers have one.
    pub fn take(
        &self,
        order: &str,
        commitment: Cid,
        threshold: usize,
        usable: impl Fn(u32) -> bool,
    ) -> Option<Vec<(u32, Cid)>> {
        let mut orders = self.orders();
        let kept = orders
            .get_mut(order)
            .filter(|k| k.commitment == commitment)?;
        let turn = kept.turn;
        let mut candidates: Vec<u32> = kept
            .by_signer
            .iter()
            .filter(|(index, queue)| !queue.is_empty() && usable(**index))
            .map(|(index, _)| *index)
            .collect();
        if candidates.len() < threshold || threshold == 0 {
            return None;
        }
        // From `turn` up, then from the lowest.
        candidates.sort_unstable_by_key(|index| (*index < turn, *index));
        candidates.truncate(threshold);
        if let Some(last) = candidates.last() {
            kept.turn = last + 1;
        }
        let mut chosen: Vec<(u32, Cid)> = candidates
            .into_iter()
            .filter_map(|index| {
                let envelope = kept.by_signer.get_mut(&index)?.pop_front()?;
                Some((index, envelope))
            })
            .collect();
        chosen.sort_unstable();
        Some(chosen)
    }

    /// How many spares of `order` are kept.
    pub fn count(&self, order: &str) -> usize {
        self.orders()
            .get(order)
            .map_or(0, |k| k.by_signer.values().map(VecDeque::len).sum())
    }

    /// Forgets the spares of `signer` of `order`: its share failed.
    pub fn forget_signer(&self, order: &str, signer: u32) {
        if let Some(kept) = self.orders().get_mut(order) {
            kept.by_signer.remove(&signer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cid(n: u64) -> Cid {
        dta_protocol::block::cid_of(dta_protocol::block::DAG_CBOR, &n.to_be_bytes())
    }

    #[test]
    fn t_usable_signers_are_taken_in_turn_each_spare_once() {
        let spares = SpareCommitments::default();
        let commitment = cid(1000);
        spares.add(
            "o",
            commitment,
            [(1, cid(1)), (2, cid(2)), (2, cid(3)), (3, cid(4))],
        );
        // Signer 3 cannot be used: 1 and 2, each its oldest.
        let taken = spares.take("o", commitment, 2, |i| i != 3).unwrap();
        assert_eq!(taken, vec![(1, cid(1)), (2, cid(2))]);
        // Signer 1 has none left and 3 is unusable: not two signers.
        assert_eq!(spares.take("o", commitment, 2, |i| i != 3), None);
        assert_eq!(spares.count("o"), 2, "nothing taken when too few");
        spares.add("o", commitment, [(1, cid(5))]);
        // The turn goes on from 3, then back to 1.
        assert_eq!(
            spares.take("o", commitment, 2, |_| true).unwrap(),
            vec![(1, cid(5)), (3, cid(4))]
        );
        assert_eq!(spares.count("o"), 1);
        spares.add("o", commitment, [(1, cid(6)), (3, cid(7))]);
        spares.forget_signer("o", 3);
        assert_eq!(spares.count("o"), 2);
    }

    #[test]
    fn another_commitment_starts_afresh_and_each_signer_keeps_a_bounded_number() {
        let spares = SpareCommitments::default();
        let (first, second) = (cid(1000), cid(1001));
        spares.add("o", first, [(1, cid(1)), (2, cid(2))]);
        assert_eq!(
            spares.take("o", second, 2, |_| true),
            None,
            "the shares changed"
        );
        spares.add("o", second, (0..40).map(|n| (1, cid(100 + n))));
        assert_eq!(spares.count("o"), MAX_PER_SIGNER);
        spares.add("o", second, [(2, cid(7))]);
        assert_eq!(
            spares.take("o", second, 2, |_| true).unwrap(),
            vec![(1, cid(100 + 40 - MAX_PER_SIGNER as u64)), (2, cid(7))]
        );
    }
}
