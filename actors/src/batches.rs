//! What custody batches are under way on one role, in memory: a principal's orders held for
//! the next batch and its batches waiting for signatures, a fiduciary's batches waiting for
//! their deals. Bookkeeping only: the steps that make, sign and certify batches are in
//! `crate::custody::batching`, and what a batch is on the wire in [`dta_protocol::batch`].
//! Nothing here survives a restart, and nothing needs to: resuming deals and signs the orders
//! one by one.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use dta_protocol::Cid;
use dta_protocol::batch::{BatchLeaf, BatchTree, Hash};
use libp2p::PeerId;

/// Batches a fiduciary waits for the deals of at once; past this the oldest is given up
/// (signed as far as its deals came).
pub const EXPECTED_AT_MOST: usize = 64;

/// The batches of one role, shared by its steps.
#[derive(Debug, Default, Clone)]
pub struct Batches(Arc<Mutex<State>>);

#[derive(Debug, Default)]
struct State {
    held: Vec<HeldOrder>,
    sent: HashMap<Hash, SentBatch>,
    expected: HashMap<Hash, ExpectedBatch>,
}

/// Principal: an order made whose deals are not sent yet.
#[derive(Debug)]
pub struct HeldOrder {
    /// Its leaf: reference and commitment.
    pub leaf: BatchLeaf,
    /// Its fiduciaries, in share-index order.
    pub fiduciaries: Vec<Cid>,
    /// Per fiduciary, in the same order: its peer and the blocks it is sent.
    pub deliveries: Vec<(PeerId, Vec<Vec<u8>>)>,
}

/// Principal: a batch sent, waiting for every fiduciary's signature over its root.
#[derive(Debug)]
pub struct SentBatch {
    /// Its orders, in leaf order.
    pub leaves: Vec<BatchLeaf>,
    /// Who must sign.
    pub fiduciaries: Vec<Cid>,
    /// The signatures in so far, by fiduciary.
    pub signatures: BTreeMap<Cid, Vec<u8>>,
    since: Instant,
}

/// Why a batch signature was not taken.
#[derive(Debug, PartialEq, Eq)]
pub enum NotTaken {
    /// No batch with that root waits: certified already, or forgotten.
    Unknown,
    /// The signer is not one of the batch's fiduciaries.
    NotAFiduciary,
}

/// Fiduciary: a batch announced, waiting for its deals.
#[derive(Debug)]
pub struct ExpectedBatch {
    /// Its principal.
    pub principal: Cid,
    /// The batch envelope's `order` field.
    pub reference: String,
    /// The batch envelope, which the signature links to.
    pub cid: Cid,
    /// Its orders, in leaf order.
    pub leaves: Vec<BatchLeaf>,
    /// Where each listed deal is, in leaf order.
    pub deals: Vec<Deal>,
    since: Instant,
}

/// Where one listed deal is at a fiduciary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deal {
    /// Not come yet.
    Awaited,
    /// Taken: the share is kept.
    Taken,
    /// Refused.
    Refused,
}

/// A batch at a fiduciary that waits for no deal any more (or was given up).
#[derive(Debug)]
pub struct ResolvedBatch {
    /// Its principal.
    pub principal: Cid,
    /// The batch envelope's `order` field.
    pub reference: String,
    /// The batch envelope.
    pub cid: Cid,
    /// The tree to sign the root of, if every deal was taken.
    pub tree: Option<BatchTree>,
    /// The orders taken, to sign one by one when there is no tree.
    pub taken: Vec<BatchLeaf>,
}

impl ExpectedBatch {
    /// A batch of `leaves` from `principal`, with where each deal is now.
    pub fn new(
        principal: Cid,
        reference: String,
        cid: Cid,
        leaves: Vec<BatchLeaf>,
        deals: Vec<Deal>,
    ) -> Self {
        Self {
            principal,
            reference,
            cid,
            leaves,
            deals,
            since: Instant::now(),
        }
    }

    fn resolve(self) -> ResolvedBatch {
        let all_taken = self.deals.iter().all(|d| *d == Deal::Taken);
        let tree = all_taken
            .then(|| BatchTree::new(&self.leaves.iter().map(|l| l.commitment).collect::<Vec<_>>()))
            .and_then(Result::ok);
        let taken = self
            .leaves
            .into_iter()
            .zip(self.deals)
            .filter(|(_, d)| *d == Deal::Taken)
            .map(|(l, _)| l)
            .collect();
        ResolvedBatch {
            principal: self.principal,
            reference: self.reference,
            cid: self.cid,
            tree,
            taken,
        }
    }
}

impl Batches {
    fn state(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Principal: holds an order for the next batch; true if it is the first held since the
    /// last [`Batches::take_held`].
    pub fn hold(&self, order: HeldOrder) -> bool {
        let mut state = self.state();
        state.held.push(order);
        state.held.len() == 1
    }

    /// Principal: every order held, oldest first.
    pub fn take_held(&self) -> Vec<HeldOrder> {
        std::mem::take(&mut self.state().held)
    }

    /// Principal: a batch sent under `root`, waiting for `fiduciaries` to sign.
    pub fn sent(&self, root: Hash, leaves: Vec<BatchLeaf>, fiduciaries: Vec<Cid>) {
        self.state().sent.insert(
            root,
            SentBatch {
                leaves,
                fiduciaries,
                signatures: BTreeMap::new(),
                since: Instant::now(),
            },
        );
    }

    /// Principal: `fiduciary`'s signature over `root`; the batch, taken out, once every
    /// signature is in.
    pub fn signed(
        &self,
        root: &Hash,
        fiduciary: Cid,
        signature: Vec<u8>,
    ) -> Result<Option<SentBatch>, NotTaken> {
        let mut state = self.state();
        let batch = state.sent.get_mut(root).ok_or(NotTaken::Unknown)?;
        if !batch.fiduciaries.contains(&fiduciary) {
            return Err(NotTaken::NotAFiduciary);
        }
        batch.signatures.insert(fiduciary, signature);
        if batch.signatures.len() < batch.fiduciaries.len() {
            return Ok(None);
        }
        Ok(state.sent.remove(root))
    }

    /// Principal: forgets the batches sent longer than `patience` ago.
    pub fn forget_sent_before(&self, patience: Duration) {
        self.state()
            .sent
            .retain(|_, batch| batch.since.elapsed() < patience);
    }

    /// Fiduciary: a batch announced under `root`. Resolved at once if it waits for no deal;
    /// the oldest waiting batch is given up to make room for it past [`EXPECTED_AT_MOST`].
    pub fn expect(&self, root: Hash, batch: ExpectedBatch) -> Vec<ResolvedBatch> {
        let mut state = self.state();
        let mut resolved = Vec::new();
        if state.expected.len() >= EXPECTED_AT_MOST {
            let oldest = state
                .expected
                .iter()
                .min_by_key(|(_, b)| b.since)
                .map(|(root, _)| *root);
            resolved.extend(
                oldest
                    .and_then(|root| state.expected.remove(&root))
                    .map(ExpectedBatch::resolve),
            );
        }
        if batch.deals.contains(&Deal::Awaited) {
            state.expected.insert(root, batch);
        } else {
            resolved.push(batch.resolve());
        }
        resolved
    }

    /// Fiduciary: where the deal of `order` (`commitment`) from `principal` now is. `None` if
    /// no batch waits for it, else the batch if that was the last deal it waited for.
    pub fn mark(
        &self,
        principal: &Cid,
        order: &str,
        commitment: Cid,
        deal: Deal,
    ) -> Option<Option<ResolvedBatch>> {
        let mut state = self.state();
        let (root, waits) = state.expected.iter_mut().find_map(|(root, batch)| {
            let position = batch
                .leaves
                .iter()
                .position(|l| l.order == order && l.commitment == commitment)?;
            (batch.principal == *principal && batch.deals[position] == Deal::Awaited).then(|| {
                batch.deals[position] = deal;
                (*root, batch.deals.contains(&Deal::Awaited))
            })
        })?;
        if waits {
            return Some(None);
        }
        Some(state.expected.remove(&root).map(ExpectedBatch::resolve))
    }

    /// Fiduciary: the batches announced longer than `patience` ago, given up.
    pub fn take_stalled(&self, patience: Duration) -> Vec<ResolvedBatch> {
        let mut state = self.state();
        let roots: Vec<Hash> = state
            .expected
            .iter()
            .filter(|(_, b)| b.since.elapsed() >= patience)
            .map(|(root, _)| *root)
            .collect();
        roots
            .iter()
            .filter_map(|root| state.expected.remove(root))
            .map(ExpectedBatch::resolve)
            .collect()
    }
}
