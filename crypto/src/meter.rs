//! How many of this crate's costly operations ran in this process, and how long they took:
//! a benchmark reads the counters before and after a run to tell what part of its CPU went
//! to cryptography and what part to everything else.
//!
//! Each public operation that does group arithmetic, a pairing, a KEM or a signature counts
//! itself once per call. An operation that calls another (a proof of possession checked as
//! part of a decode, say) is counted only as the outer one, so the times add up. The time is
//! the wall clock around the call on the calling thread: a thread preempted in the middle of
//! a call counts the wait as well, so on a busy machine the figure is an upper bound.
//!
//! Not here: a profiler (the operations are this crate's entry points, not blst's or
//! dalek's functions), and anything below a microsecond (hashes, encodings).

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// A costly operation of this crate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Operation {
    /// A BLS signature or proof of possession made (hash to G2, a G2 multiplication).
    BlsSign,
    /// One BLS pairing check: a signature, a proof of possession, both, or an aggregate.
    BlsVerify,
    /// Several BLS aggregate signatures checked in one pairing product.
    BlsVerifyBatch,
    /// The half of a check made before the signature is in (see `PreparedVerification`).
    BlsPrepare,
    /// A BLS public key or signature decoded, with its subgroup check.
    BlsDecode,
    /// BLS signatures or keys added up.
    BlsAggregate,
    /// An Ed25519 envelope signature made.
    Ed25519Sign,
    /// An Ed25519 envelope signature checked.
    Ed25519Verify,
    /// A body sealed to its recipients (X-Wing encapsulations, ChaCha20-Poly1305).
    Seal,
    /// A sealed body opened (an X-Wing decapsulation, or a content key already known).
    Open,
    /// An X-Wing key expanded from its seed, or a public key decoded.
    KemKey,
    /// A secret split into Shamir shares with Feldman commitments.
    ShamirSplit,
    /// A share checked against Feldman commitments.
    FeldmanVerify,
    /// Feldman commitments decoded, with their subgroup checks.
    FeldmanDecode,
    /// A secret or a signature rebuilt from t shares (Lagrange).
    Recover,
    /// A threshold BLS partial signature made or checked.
    PartialSignature,
}

impl Operation {
    /// Every operation, in the order reports list them.
    pub const ALL: [Operation; 16] = [
        Operation::BlsSign,
        Operation::BlsVerify,
        Operation::BlsVerifyBatch,
        Operation::BlsPrepare,
        Operation::BlsDecode,
        Operation::BlsAggregate,
        Operation::Ed25519Sign,
        Operation::Ed25519Verify,
        Operation::Seal,
        Operation::Open,
        Operation::KemKey,
        Operation::ShamirSplit,
        Operation::FeldmanVerify,
        Operation::FeldmanDecode,
        Operation::Recover,
        Operation::PartialSignature,
    ];

    /// Its name in reports: `bls.sign`, `ed25519.verify`, ...
    pub fn name(self) -> &'static str {
        match self {
            Operation::BlsSign => "bls.sign",
            Operation::BlsVerify => "bls.verify",
            Operation::BlsVerifyBatch => "bls.verify_batch",
            Operation::BlsPrepare => "bls.prepare",
            Operation::BlsDecode => "bls.decode",
            Operation::BlsAggregate => "bls.aggregate",
            Operation::Ed25519Sign => "ed25519.sign",
            Operation::Ed25519Verify => "ed25519.verify",
            Operation::Seal => "seal.seal",
            Operation::Open => "seal.open",
            Operation::KemKey => "seal.kem_key",
            Operation::ShamirSplit => "shamir.split",
            Operation::FeldmanVerify => "feldman.verify",
            Operation::FeldmanDecode => "feldman.decode",
            Operation::Recover => "shamir.recover",
            Operation::PartialSignature => "threshold.partial",
        }
    }

    fn slot(self) -> usize {
        self as usize
    }
}

/// Calls and nanoseconds per operation.
struct Meter {
    calls: [AtomicU64; Operation::ALL.len()],
    nanos: [AtomicU64; Operation::ALL.len()],
}

impl Meter {
    const fn new() -> Self {
        Self {
            calls: [const { AtomicU64::new(0) }; Operation::ALL.len()],
            nanos: [const { AtomicU64::new(0) }; Operation::ALL.len()],
        }
    }

    fn read(&self) -> Reading {
        Reading(
            Operation::ALL
                .iter()
                .map(|&operation| Usage {
                    operation,
                    calls: self.calls[operation.slot()].load(Ordering::Relaxed),
                    nanos: self.nanos[operation.slot()].load(Ordering::Relaxed),
                })
                .collect(),
        )
    }
}

/// The process's meter.
static METER: Meter = Meter::new();

thread_local! {
    /// Metered calls under way on this thread: only the outermost is counted.
    static DEPTH: Cell<u32> = const { Cell::new(0) };
}

/// Leaves a metered call, even one that unwinds.
struct Depth;

impl Drop for Depth {
    fn drop(&mut self) {
        DEPTH.with(|depth| depth.set(depth.get().saturating_sub(1)));
    }
}

/// Runs `work` as one `operation`, counted and timed unless it runs inside another.
pub(crate) fn measure<T>(operation: Operation, work: impl FnOnce() -> T) -> T {
    measure_in(&METER, operation, work)
}

fn measure_in<T>(meter: &Meter, operation: Operation, work: impl FnOnce() -> T) -> T {
    let outermost = DEPTH.with(|depth| {
        let current = depth.get();
        depth.set(current + 1);
        current == 0
    });
    let _depth = Depth;
    let started = outermost.then(Instant::now);
    let out = work();
    if let Some(started) = started {
        let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        meter.calls[operation.slot()].fetch_add(1, Ordering::Relaxed);
        meter.nanos[operation.slot()].fetch_add(nanos, Ordering::Relaxed);
    }
    out
}

/// One operation's calls and time so far (or between two readings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// The operation.
    pub operation: Operation,
    /// Calls.
    pub calls: u64,
    /// Nanoseconds spent in them, in all.
    pub nanos: u64,
}

/// Every operation's usage at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reading(Vec<Usage>);

/// The process's counters now.
pub fn read() -> Reading {
    METER.read()
}

impl Reading {
    /// What ran between `earlier` and this reading.
    pub fn since(&self, earlier: &Reading) -> Reading {
        Reading(
            self.0
                .iter()
                .zip(&earlier.0)
                .map(|(now, then)| Usage {
                    operation: now.operation,
                    calls: now.calls.saturating_sub(then.calls),
                    nanos: now.nanos.saturating_sub(then.nanos),
                })
                .collect(),
        )
    }

    /// Each operation's usage, in [`Operation::ALL`]'s order.
    pub fn usages(&self) -> &[Usage] {
        &self.0
    }

    /// Nanoseconds in all operations.
    pub fn total_nanos(&self) -> u64 {
        self.0.iter().map(|u| u.nanos).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_operation_inside_another_counts_once_as_the_outer_one() {
        let meter = Meter::new();
        let out = measure_in(&meter, Operation::BlsVerify, || {
            measure_in(&meter, Operation::BlsDecode, || {
                std::thread::sleep(std::time::Duration::from_millis(2));
                7
            })
        });
        assert_eq!(out, 7);
        measure_in(&meter, Operation::BlsDecode, || ());
        let used = meter.read().since(&Meter::new().read());
        let usage = |op: Operation| used.usages()[op.slot()];
        assert_eq!(usage(Operation::BlsVerify).calls, 1);
        assert!(usage(Operation::BlsVerify).nanos >= 2_000_000);
        assert_eq!(
            usage(Operation::BlsDecode).calls,
            1,
            "only the call of its own"
        );
        assert!(usage(Operation::BlsDecode).nanos < 2_000_000);
        assert_eq!(
            used.total_nanos(),
            usage(Operation::BlsVerify).nanos + usage(Operation::BlsDecode).nanos
        );
    }

    #[test]
    fn a_call_that_panics_leaves_the_next_one_counted() {
        let caught = std::panic::catch_unwind(|| {
            measure_in(&Meter::new(), Operation::Recover, || -> () {
                panic!("inside")
            })
        });
        assert!(caught.is_err());
        let depth = DEPTH.with(Cell::get);
        assert_eq!(depth, 0, "the unwound call left the thread's depth at zero");
    }

    #[test]
    fn every_operation_has_its_own_slot_and_name() {
        for (index, operation) in Operation::ALL.iter().enumerate() {
            assert_eq!(operation.slot(), index);
        }
        let names: std::collections::HashSet<&str> =
            Operation::ALL.iter().map(|o| o.name()).collect();
        assert_eq!(names.len(), Operation::ALL.len());
    }
}
