//! `dta bench sign`: threshold signatures with a key nobody holds on an in-process testnet
//! where every node plays one part: a principal coordinating, n fiduciaries holding a t-of-n
//! key they generated: secp256k1 signing with FROST (BIP-340), or BLS12-381 (an
//! `mpin-master` key) signing with threshold BLS.
//!
//! 1. Latency: signatures one after the other, each timed from the request to the signature
//!    in the principal's record (FROST: two rounds of messages between the principal and t
//!    fiduciaries, the signature checked with a BIP-340 verifier; BLS: one round, the
//!    signature checked under the group key).
//! 2. Throughput: many signatures asked for at once, up to a number in flight.
//!
//! CPU is the whole process's (every node) per signature. It reports figures and judges none.

use std::time::Instant;

use dta_actors::custody::OrderState;
use dta_actors::roles::{Role, RoleMsg};
use dta_protocol::signing::SignatureScheme;
use serde::Serialize;
use tokio::sync::broadcast;

use super::custody::{Events, cpu_ms_per, percentile, process_cpu};
use super::dkg::network;
use super::{BenchError, PHASE_TIMEOUT, identity_of};
use crate::harness::Testnet;

/// What to measure.
#[derive(Debug, Clone)]
pub struct SignBench {
    /// How the key signs.
    pub scheme: SignatureScheme,
    /// Signatures per phase.
    pub signatures: usize,
    /// Fiduciaries (n).
    pub fiduciaries: usize,
    /// Threshold (t).
    pub threshold: u32,
    /// Most signatures in flight in the throughput phase.
    pub in_flight: usize,
}

/// What it measured.
#[derive(Debug, Clone, Serialize)]
pub struct SignReport {
    /// How the key signed.
    pub scheme: SignatureScheme,
    /// n.
    pub fiduciaries: usize,
    /// t.
    pub threshold: u32,
    /// Signatures per phase.
    pub signatures: usize,
    /// Median time from the request to the signature, one at a time (ms).
    pub latency_p50_ms: f64,
    /// Its 99th percentile (ms).
    pub latency_p99_ms: f64,
    /// CPU per signature, one at a time (ms, every node).
    pub cpu_ms_per_signature: Option<f64>,
    /// Signatures in flight at most in the throughput phase.
    pub in_flight: usize,
    /// Signatures per second, many at once.
    pub signatures_per_second: f64,
    /// CPU per signature, many at once (ms).
    pub cpu_ms_per_signature_in_flight: Option<f64>,
}

/// The reference of the key the benchmark signs with.
const KEY: &str = "sign-key";

/// Runs the benchmark.
pub async fn run(config: SignBench) -> Result<SignReport, BenchError> {
    if config.signatures == 0 || config.in_flight == 0 {
        return Err(BenchError::Custody(
            "at least one signature, and one in flight".into(),
        ));
    }
    if config.threshold < 2 || config.threshold as usize >= config.fiduciaries {
        return Err(BenchError::Custody(format!(
            "a key the fiduciaries generate without a dealer is t-of-n with 2 <= t < n: not \
             {}-of-{}",
            config.threshold, config.fiduciaries
        )));
    }
    let (net, principal, _) = Box::pin(network(
        config.fiduciaries,
        config.fiduciaries,
        config.threshold,
        match config.scheme {
            SignatureScheme::Bip340 => dta_actors::plugin::MILAGRO,
            SignatureScheme::Bls12381 => dta_actors::plugin::MPIN_MASTER,
        },
    ))
    .await?;
    let mut events = Events(net.node(0).custody_events());
    principal.create(KEY.to_owned()).await?;
    events.wait(KEY, OrderState::Certified, 1).await?;
    let mut signed = Signed::new(&net)?;

    let mut times = Vec::with_capacity(config.signatures);
    let cpu_before = process_cpu();
    for n in 0..config.signatures {
        let started = Instant::now();
        ask(&principal.actor, n).await?;
        signed.until(&mut events, n + 1).await?;
        times.push(started.elapsed().as_secs_f64() * 1e3);
    }
    let cpu_ms_per_signature = cpu_ms_per(cpu_before, config.signatures);
    times.sort_by(f64::total_cmp);

    let cpu_before = process_cpu();
    let started = Instant::now();
    let first = config.signatures;
    let mut asked = 0;
    while asked < config.signatures {
        let done = signed.count()?.saturating_sub(first);
        while asked < config.signatures && asked < done + config.in_flight {
            ask(&principal.actor, first + asked).await?;
            asked += 1;
        }
        signed.until(&mut events, first + done + 1).await?;
    }
    signed.until(&mut events, first + config.signatures).await?;
    let seconds = started.elapsed().as_secs_f64();
    let cpu_ms_per_signature_in_flight = cpu_ms_per(cpu_before, config.signatures);
    net.stop().await;
    Ok(SignReport {
        scheme: config.scheme,
        fiduciaries: config.fiduciaries,
        threshold: config.threshold,
        signatures: config.signatures,
        latency_p50_ms: percentile(&times, 50.0),
        latency_p99_ms: percentile(&times, 99.0),
        cpu_ms_per_signature,
        in_flight: config.in_flight,
        signatures_per_second: config.signatures as f64 / seconds,
        cpu_ms_per_signature_in_flight,
    })
}

/// Asks the principal for signature `n` (a message of its own per signature).
async fn ask(principal: &ractor::ActorRef<RoleMsg>, n: usize) -> Result<(), BenchError> {
    let message = format!("benchmark message {n}").into_bytes();
    ractor::call_t!(
        principal,
        |reply| RoleMsg::Sign {
            reference: KEY.to_owned(),
            message,
            reply
        },
        dta_actors::roles::CALL_TIMEOUT_MS
    )
    .map_err(|e| BenchError::Custody(e.to_string()))?
    .map_err(|e| BenchError::Custody(e.to_string()))?;
    Ok(())
}

/// The principal's signatures made so far, read from its record.
struct Signed<'a> {
    net: &'a Testnet,
    me: dta_protocol::Cid,
}

impl<'a> Signed<'a> {
    fn new(net: &'a Testnet) -> Result<Self, BenchError> {
        Ok(Self {
            net,
            me: identity_of(net, 0)?,
        })
    }

    /// How many signatures of the key are made.
    fn count(&self) -> Result<usize, BenchError> {
        let record = dta_actors::custody::stored_record(
            self.net.node(0).store(),
            Role::Principal,
            &self.me,
            KEY,
        )
        .map_err(|e| BenchError::Custody(e.to_string()))?
        .ok_or_else(|| BenchError::Custody("the key has no record".into()))?;
        Ok(dta_actors::custody::signed::made_count(&record))
    }

    /// Waits until at least `count` signatures are made, looking at the record when the
    /// principal saved it: once for all the saves queued meanwhile (reading it costs CPU the
    /// figures count).
    async fn until(&mut self, events: &mut Events, count: usize) -> Result<(), BenchError> {
        tokio::time::timeout(PHASE_TIMEOUT, async {
            while self.count()? < count {
                match events.0.recv().await {
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => {
                        return Err(BenchError::Custody("the node stopped".into()));
                    }
                }
                while events.0.try_recv().is_ok() {}
            }
            Ok(())
        })
        .await
        .map_err(|_| BenchError::Timeout)?
    }
}

impl std::fmt::Display for SignReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cpu = |ms: Option<f64>| ms.map_or("n/a".to_owned(), |ms| format!("{ms:.2} ms"));
        writeln!(
            f,
            "threshold signature benchmark ({}): {}-of-{}, {} signatures per phase, one process, every node one part",
            match self.scheme {
                SignatureScheme::Bip340 => "FROST, BIP-340",
                SignatureScheme::Bls12381 => "threshold BLS, BLS12-381",
            },
            self.threshold,
            self.fiduciaries,
            self.signatures
        )?;
        writeln!(
            f,
            "  one at a time: p50 {:.2} ms  p99 {:.2} ms  CPU per signature {}",
            self.latency_p50_ms,
            self.latency_p99_ms,
            cpu(self.cpu_ms_per_signature)
        )?;
        writeln!(
            f,
            "  up to {} in flight: {:.0} signatures/s  CPU per signature {}",
            self.in_flight,
            self.signatures_per_second,
            cpu(self.cpu_ms_per_signature_in_flight)
        )
    }
}
