//! Custody certificate checks, batched. A fiduciary checks an order's certificate (one pairing
//! check) before it releases its share. When many releases arrive at once, their certificates
//! verify together in one pairing product: n + 1 Miller loops and one final exponentiation
//! instead of 2n and n; a principal certifying many orders at once does the same with the
//! aggregates it makes. The role actor hands a check here and goes on with its queue; once
//! the check ran, the step that needed it is handled again and finds the outcome here.
//!
//! A check that is alone when the task takes it runs alone (with blst's own two-thread
//! split), so a quiet node waits for no batch; a principal with a single order on its way
//! does not even hand it over: it prepares the half of the check that needs no signature (the
//! hashed custody message and the fiduciaries' aggregate key, through their Miller loop) while
//! its fiduciaries sign, and finishes it once they answered. This module decides nothing
//! about a release or a certificate (the custody steps do, before and after the check) and
//! remembers nothing across restarts (a restarted node checks again).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use dta_protocol::Cid;
use dta_protocol::identity::VerifiedIdentity;
use dta_protocol::order::{
    CertificateCheck, CertificateError, CheckDigest, PreparedCertificateCheck,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Checks that may wait; past this, submitting waits.
pub const QUEUE_LEN: usize = 1024;
/// Most checks in one pairing product. Past a few dozen the Miller loops dominate and a
/// batch saves little more, while one bad certificate makes the whole batch be checked again
/// one by one.
pub const MAX_BATCH: usize = 64;
/// Checks that passed lately, kept (by digest) so that the same check made again costs no
/// pairing, and a step that finds its check among them ([`CertificateChecks::passed_lately`])
/// need not even decode the signature or wait: every order of a batch makes its batch's check,
/// and each release of an order checks its certificate again. A check's outcome depends on
/// nothing but the check.
pub const REMEMBERED: usize = 64;
/// Prepared halves kept at most. Only a principal with one order on its way prepares one, so
/// more are only the leftovers of orders that stalled; the oldest goes first.
pub const MAX_PREPARED: usize = 4;

type Then = Box<dyn FnOnce() + Send>;
type Job = (Cid, CertificateCheck, Then);
type Prepared = VecDeque<(Cid, JoinHandle<Option<PreparedCertificateCheck>>)>;
type Passed = Arc<Mutex<VecDeque<CheckDigest>>>;

/// A handle on the task that runs the checks; the task ends when the last handle is dropped.
#[derive(Clone)]
pub struct CertificateChecks {
    queue: mpsc::Sender<Job>,
    outcomes: Arc<Mutex<HashMap<Cid, bool>>>,
    /// Halves of single checks being made or made ahead, by commitment, oldest first.
    prepared: Arc<Mutex<Prepared>>,
    /// The digests of the last [`REMEMBERED`] different checks that passed, oldest first.
    passed: Passed,
}

impl std::fmt::Debug for CertificateChecks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateChecks")
            .field("waiting", &(QUEUE_LEN - self.queue.capacity()))
            .finish_non_exhaustive()
    }
}

impl CertificateChecks {
    /// Starts the checking task on the current runtime.
    pub fn start() -> Self {
        let (queue, jobs) = mpsc::channel(QUEUE_LEN);
        let outcomes = Arc::new(Mutex::new(HashMap::new()));
        let passed = Passed::default();
        tokio::spawn(run(jobs, outcomes.clone(), passed.clone()));
        Self {
            queue,
            outcomes,
            prepared: Arc::default(),
            passed,
        }
    }

    /// Whether the check with this digest passed lately: if so, it passes again.
    pub fn passed_lately(&self, digest: &CheckDigest) -> bool {
        self.passed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(digest)
    }

    /// Starts making, off the async workers, the half of the check of a certificate over
    /// `commitment` by `signers` that needs no signature, for [`CertificateChecks::check_alone`]
    /// to finish.
    pub fn prepare(&self, commitment: Cid, signers: Vec<VerifiedIdentity>) {
        let making = tokio::task::spawn_blocking(move || {
            let signers: Vec<&VerifiedIdentity> = signers.iter().collect();
            PreparedCertificateCheck::new(commitment, &signers).ok()
        });
        let mut prepared = self.prepared.lock().unwrap_or_else(PoisonError::into_inner);
        if prepared.len() >= MAX_PREPARED {
            prepared.pop_front();
        }
        prepared.push_back((commitment, making));
    }

    /// Drops the prepared half for `commitment`, if there is one: its check goes another way.
    pub fn forget_prepared(&self, commitment: &Cid) {
        self.take_prepared(commitment);
    }

    fn take_prepared(
        &self,
        commitment: &Cid,
    ) -> Option<JoinHandle<Option<PreparedCertificateCheck>>> {
        let mut prepared = self.prepared.lock().unwrap_or_else(PoisonError::into_inner);
        let position = prepared.iter().position(|(c, _)| c == commitment)?;
        prepared.remove(position).map(|(_, making)| making)
    }

    /// Whether `check`, a certificate over `commitment`, passes: checked now and alone, and
    /// finished from its prepared half if one was made (waiting for it if it is still being
    /// made, since that is work the whole check would do again).
    pub async fn check_alone(&self, commitment: &Cid, check: &CertificateCheck) -> bool {
        if let Some(making) = self.take_prepared(commitment)
            && let Ok(Some(prepared)) = making.await
        {
            match prepared.verify(check) {
                // Prepared for other signers: only the whole check can tell.
                Err(CertificateError::Signers) => {}
                outcome => return outcome.is_ok(),
            }
        }
        check.verify().is_ok()
    }

    /// Queues a check under `key` (what it vouches for: a certificate's CID); `then` runs
    /// once its outcome is in. Waits while the queue is full, which holds the caller back
    /// until checks catch up. Once the task has ended (its runtime is shutting down, so the
    /// node is stopping) nothing is checked, recorded or run: the step is dropped unanswered,
    /// as any delivery is at shutdown, rather than answered as if the certificate were bad.
    pub async fn submit(
        &self,
        key: Cid,
        check: CertificateCheck,
        then: impl FnOnce() + Send + 'static,
    ) {
        if self.queue.send((key, check, Box::new(then))).await.is_err() {
            tracing::debug!(%key, "certificate check dropped: the node is stopping");
        }
    }

    /// The outcome of the check made under `key`, if one ran since this was last asked: each
    /// outcome is given once.
    pub fn take_outcome(&self, key: &Cid) -> Option<bool> {
        self.outcomes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key)
    }
}

fn record(into: &Mutex<HashMap<Cid, bool>>, outcomes: &[(Cid, bool)]) {
    let mut kept = into.lock().unwrap_or_else(PoisonError::into_inner);
    // Outcomes never asked for (their step failed on something else) must not pile up.
    if kept.len() > QUEUE_LEN {
        kept.clear();
    }
    kept.extend(outcomes.iter().copied());
}

async fn run(
    mut jobs: mpsc::Receiver<Job>,
    outcomes: Arc<Mutex<HashMap<Cid, bool>>>,
    passed: Passed,
) {
    while let Some(first) = jobs.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let (waiting, checks): (Vec<(Cid, Then)>, Vec<CertificateCheck>) = batch
            .into_iter()
            .map(|(key, check, then)| ((key, then), check))
            .unzip();
        let outcome = check_new(checks, &passed).await;
        let results: Vec<(Cid, bool)> = waiting
            .iter()
            .zip(&outcome)
            .map(|((key, _), ok)| (*key, *ok))
            .collect();
        record(&outcomes, &results);
        for (_, then) in waiting {
            then();
        }
    }
}

/// Whether each check passes, making each different check not passed lately once.
async fn check_new(checks: Vec<CertificateCheck>, passed: &Passed) -> Vec<bool> {
    let mut new: Vec<(CheckDigest, CertificateCheck)> = Vec::new();
    // Where each check's outcome is: passed lately, or the new check it is the same as.
    let places: Vec<Option<usize>> = {
        let passed = passed.lock().unwrap_or_else(PoisonError::into_inner);
        checks
            .into_iter()
            .map(|check| {
                let digest = check.digest();
                if passed.contains(&digest) {
                    return None;
                }
                Some(
                    new.iter()
                        .position(|(d, _)| *d == digest)
                        .unwrap_or_else(|| {
                            new.push((digest, check));
                            new.len() - 1
                        }),
                )
            })
            .collect()
    };
    let count = places.len();
    if new.is_empty() {
        return vec![true; count];
    }
    let (digests, new): (Vec<CheckDigest>, Vec<CertificateCheck>) = new.into_iter().unzip();
    let new_count = new.len();
    // Pairings are milliseconds of CPU: keep them off the async workers.
    let outcomes = tokio::task::spawn_blocking(move || check_all(&new))
        .await
        .unwrap_or_else(|_| vec![false; new_count]);
    let mut passed = passed.lock().unwrap_or_else(PoisonError::into_inner);
    for (digest, ok) in digests.into_iter().zip(&outcomes) {
        if *ok && !passed.contains(&digest) {
            if passed.len() == REMEMBERED {
                passed.pop_front();
            }
            passed.push_back(digest);
        }
    }
    places
        .into_iter()
        .map(|place| place.is_none_or(|i| outcomes[i]))
        .collect()
}

/// Whether each check passes: all at once, and one by one only if that fails.
fn check_all(checks: &[CertificateCheck]) -> Vec<bool> {
    if checks.len() > 1 {
        let refs: Vec<&CertificateCheck> = checks.iter().collect();
        if CertificateCheck::verify_batch(&refs).is_ok() {
            return vec![true; checks.len()];
        }
    }
    checks.iter().map(|check| check.verify().is_ok()).collect()
}

#[cfg(test)]
mod tests {
    use dta_crypto::Secret;
    use dta_protocol::block::Block;
    use dta_protocol::identity::{LocalIdentity, VerifiedIdentity};
    use dta_protocol::order::{Certificate, custody_message};

    use super::*;

    fn fiduciaries() -> Vec<LocalIdentity> {
        (0..3u8)
            .map(|i| {
                LocalIdentity::create(&Secret::new([i + 1; 32]), &format!("f{i}"), &[i], 0).unwrap()
            })
            .collect()
    }

    /// A certificate check by three fiduciaries on `commitment`, valid or made on another
    /// message.
    fn check(nodes: &[LocalIdentity], commitment: Cid, valid: bool) -> CertificateCheck {
        let signed = if valid {
            custody_message(&commitment)
        } else {
            b"something else".to_vec()
        };
        let signatures: Vec<(&VerifiedIdentity, [u8; 96])> = nodes
            .iter()
            .map(|n| (n.identity(), n.keys().bls().sign(&signed).to_bytes()))
            .collect();
        let refs: Vec<(&VerifiedIdentity, &[u8])> =
            signatures.iter().map(|(i, s)| (*i, &s[..])).collect();
        Certificate::aggregate_unchecked(commitment, &refs)
            .unwrap()
            .1
    }

    #[tokio::test]
    async fn outcomes_of_a_burst_are_right_and_given_once() {
        let nodes = fiduciaries();
        let checks = CertificateChecks::start();
        // Submitted at once, they are checked in batches; the bad ones make their batch be
        // checked one by one.
        let keys: Vec<(Cid, bool)> = (0..20u8)
            .map(|i| (Block::raw(vec![i]).cid(), i % 7 != 3))
            .collect();
        let (done, mut finished) = mpsc::channel(keys.len());
        for (key, valid) in &keys {
            let done = done.clone();
            checks
                .submit(*key, check(&nodes, *key, *valid), move || {
                    let _ = done.try_send(());
                })
                .await;
        }
        for _ in &keys {
            finished.recv().await.unwrap();
        }
        for (key, valid) in &keys {
            assert_eq!(checks.take_outcome(key), Some(*valid), "{key}");
            assert_eq!(checks.take_outcome(key), None, "given once");
        }
    }

    #[tokio::test]
    async fn the_same_check_is_made_once_and_not_again_while_it_is_remembered() {
        let nodes = fiduciaries();
        let commitment = Block::raw(vec![1]).cid();
        let good = check(&nodes, commitment, true);
        let bad = check(&nodes, commitment, false);
        let lately = Passed::default();
        let burst = vec![good.clone(), bad.clone(), good.clone(), bad.clone()];
        assert_eq!(check_new(burst, &lately).await, [true, false, true, false]);
        assert_eq!(
            *lately.lock().unwrap(),
            [good.digest()],
            "the passed check, once"
        );
        // One remembered is not made again: shown with a check that would fail if it were.
        let lately = Passed::new(Mutex::new(VecDeque::from([bad.digest()])));
        assert_eq!(check_new(vec![bad, good], &lately).await, [true, true]);
        assert_eq!(lately.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn a_check_alone_is_finished_from_its_prepared_half() {
        let nodes = fiduciaries();
        let signers: Vec<VerifiedIdentity> = nodes.iter().map(|n| n.identity().clone()).collect();
        let checks = CertificateChecks::start();
        let prepared_count = || checks.prepared.lock().unwrap().len();

        let good = Block::raw(vec![1]).cid();
        checks.prepare(good, signers.clone());
        assert!(checks.check_alone(&good, &check(&nodes, good, true)).await);
        assert_eq!(prepared_count(), 0, "a prepared half is used once");

        let bad = Block::raw(vec![2]).cid();
        checks.prepare(bad, signers.clone());
        assert!(!checks.check_alone(&bad, &check(&nodes, bad, false)).await);

        // Prepared for other signers, it leaves the decision to the whole check.
        let other = Block::raw(vec![3]).cid();
        checks.prepare(other, signers[1..].to_vec());
        assert!(
            checks
                .check_alone(&other, &check(&nodes, other, true))
                .await
        );
        checks.prepare(other, signers[1..].to_vec());
        assert!(
            !checks
                .check_alone(&other, &check(&nodes, other, false))
                .await
        );

        // None prepared: the whole check.
        assert!(checks.check_alone(&good, &check(&nodes, good, true)).await);
        assert!(!checks.check_alone(&good, &check(&nodes, good, false)).await);

        // Halves of orders that never got their signatures do not pile up.
        for i in 0..10u8 {
            checks.prepare(Block::raw(vec![10 + i]).cid(), signers.clone());
        }
        assert_eq!(prepared_count(), MAX_PREPARED);
        checks.forget_prepared(&Block::raw(vec![19]).cid());
        assert_eq!(prepared_count(), MAX_PREPARED - 1);
    }

    #[test]
    fn a_check_submitted_while_the_node_stops_is_neither_run_nor_failed() {
        let nodes = fiduciaries();
        let key = Block::raw(vec![1]).cid();
        let node_runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let checks = node_runtime.block_on(async { CertificateChecks::start() });
        // Shutting the runtime down ends the checking task, as when a node stops.
        node_runtime.shutdown_background();
        assert!(checks.queue.is_closed(), "the checking task still runs");
        let ran = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = ran.clone();
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(checks.submit(key, check(&nodes, key, true), move || {
                flag.store(true, std::sync::atomic::Ordering::SeqCst);
            }));
        assert!(
            !ran.load(std::sync::atomic::Ordering::SeqCst),
            "the step ran"
        );
        assert_eq!(checks.take_outcome(&key), None, "an outcome was recorded");
    }
}
