//! `dta bench mpin`: M-Pin share issuance over an in-process testnet, and the server's check.
//!
//! 1. One authority: a client asks it for N client-secret shares (16 requests in flight) and
//!    waits for every one: shares issued per second by one D-TA, each a signed request
//!    checked, a share computed (hash to G1 and a scalar multiplication), sealed, signed,
//!    stored and delivered.
//! 2. Three authorities: N client secrets, each combined from three shares.
//! 3. The server's check (two Miller loops and a final exponentiation, after hashing the
//!    identity) on every core: checks per second.

use std::time::{Duration, Instant};

use dta_actors::custody::CustodyEvent;
use dta_actors::mpin::NewMpinRequest;
use dta_actors::roles::{Role, RoleMsg};
use dta_actors::states::MpinState;
use dta_crypto::mpin::{self, MpinScalar};
use dta_protocol::Cid;
use dta_protocol::mpin::MpinSecret;
use futures::StreamExt;
use ractor::ActorRef;
use serde::Serialize;

use super::{BenchError, PHASE_TIMEOUT, identity_of, principal_of};
use crate::harness::Testnet;

/// Requests kept in flight at once.
pub const IN_FLIGHT: usize = 16;

/// What to run.
#[derive(Debug, Clone, Copy)]
pub struct MpinBench {
    /// Client secrets per issuance phase.
    pub issuances: usize,
    /// Server checks.
    pub checks: usize,
}

/// What it measured.
#[derive(Debug, Clone, Serialize)]
pub struct MpinReport {
    /// Client secrets per issuance phase.
    pub issuances: usize,
    /// Shares one D-TA issued per second.
    pub shares_per_second_one_authority: f64,
    /// Client secrets from three D-TAs per second (the three share the machine).
    pub secrets_per_second_three_authorities: f64,
    /// Server checks.
    pub checks: usize,
    /// Server checks per second, on every core.
    pub checks_per_second: f64,
    /// Cores used for the checks.
    pub cores: usize,
}

/// Runs the benchmark.
pub async fn run(config: MpinBench) -> Result<MpinReport, BenchError> {
    if config.issuances == 0 || config.checks == 0 {
        return Err(BenchError::Custody(
            "need at least one issuance and one check".into(),
        ));
    }
    let net = Testnet::builder().nodes(4).build().await?;
    let client = net.node(0);
    let principal = principal_of(&net, 0)?;
    let cid = |i: usize| identity_of(&net, i);
    let name = client.info().name.clone();
    let one = issue_all(
        &principal,
        &client.custody_events(),
        &name,
        vec![cid(1)?],
        config.issuances,
    )
    .await?;
    let three = issue_all(
        &principal,
        &client.custody_events(),
        &name,
        vec![cid(1)?, cid(2)?, cid(3)?],
        config.issuances,
    )
    .await?;
    net.stop().await;

    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let checks_per_second =
        tokio::task::spawn_blocking(move || server_checks(config.checks, cores))
            .await
            .map_err(|e| BenchError::Custody(e.to_string()))??;
    Ok(MpinReport {
        issuances: config.issuances,
        shares_per_second_one_authority: config.issuances as f64 / one.as_secs_f64(),
        secrets_per_second_three_authorities: config.issuances as f64 / three.as_secs_f64(),
        checks: config.checks,
        checks_per_second,
        cores,
    })
}

/// Asks for `count` client secrets from `authorities`; the wall time until all are issued.
async fn issue_all(
    principal: &ActorRef<RoleMsg>,
    events: &tokio::sync::broadcast::Receiver<CustodyEvent>,
    name: &str,
    authorities: Vec<Cid>,
    count: usize,
) -> Result<Duration, BenchError> {
    let mut events = events.resubscribe();
    let started = Instant::now();
    // The events are read while the requests run: the channel is bounded.
    let requested = futures::stream::iter(0..count)
        .map(|_| {
            let request = NewMpinRequest {
                secret: MpinSecret::Client,
                identity: Some(name.to_owned()),
                date: None,
                authorities: authorities.clone(),
                master: None,
            };
            async move {
                ractor::call_t!(
                    principal,
                    |reply| RoleMsg::MpinRequest { request, reply },
                    dta_actors::roles::CALL_TIMEOUT_MS
                )
                .map_err(|e| BenchError::Custody(e.to_string()))?
                .map(|record| record.reference)
                .map_err(|e| BenchError::Custody(e.to_string()))
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect::<Vec<Result<String, BenchError>>>();
    let mut issued = std::collections::HashSet::new();
    let issued_all = tokio::time::timeout(PHASE_TIMEOUT, async {
        while issued.len() < count {
            match events.recv().await {
                Ok(event)
                    if event.role == Role::Principal && event.state == MpinState::Issued.into() =>
                {
                    issued.insert(event.reference);
                }
                Ok(event)
                    if event.role == Role::Principal
                        && event.state == MpinState::Refused.into() =>
                {
                    return Err(BenchError::Custody(format!(
                        "{} was refused",
                        event.reference
                    )));
                }
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    return Err(BenchError::Custody(
                        "the benchmark fell behind the events".into(),
                    ));
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                    return Err(BenchError::Custody("the client stopped".into()));
                }
            }
        }
        Ok(())
    });
    let (results, issued_all) = tokio::join!(requested, issued_all);
    for result in results {
        result?;
    }
    issued_all.map_err(|_| BenchError::Timeout)??;
    Ok(started.elapsed())
}

/// `count` server checks of one valid authentication, spread over `cores` threads.
fn server_checks(count: usize, cores: usize) -> Result<f64, BenchError> {
    let share = MpinScalar::random();
    let id = b"bench@example.org";
    let server = mpin::server_secret(&share);
    let token = mpin::extract_pin(&mpin::client_secret(&share, id), id, 1234)
        .map_err(|e| BenchError::Custody(e.to_string()))?;
    let first = mpin::client_first(&token, id, 1234, None, None)
        .map_err(|e| BenchError::Custody(e.to_string()))?;
    let u = first.u;
    let y = MpinScalar::random();
    let v = mpin::client_second(first.state, &y).map_err(|e| BenchError::Custody(e.to_string()))?;
    let started = Instant::now();
    let per_thread = count.div_ceil(cores);
    let failures: usize = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..cores)
            .map(|_| {
                scope.spawn(|| {
                    (0..per_thread)
                        .filter(|_| mpin::server_check(id, None, &y, &server, &u, &v).is_err())
                        .count()
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or(per_thread))
            .sum()
    });
    if failures > 0 {
        return Err(BenchError::Custody(format!(
            "{failures} valid authentications failed"
        )));
    }
    Ok((per_thread * cores) as f64 / started.elapsed().as_secs_f64())
}

impl std::fmt::Display for MpinReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "M-Pin benchmark: {} client secrets per phase",
            self.issuances
        )?;
        writeln!(
            f,
            "  shares issued by one D-TA           {:.1} /s",
            self.shares_per_second_one_authority
        )?;
        writeln!(
            f,
            "  client secrets from three D-TAs     {:.1} /s   (all nodes share the machine)",
            self.secrets_per_second_three_authorities
        )?;
        write!(
            f,
            "  server checks                       {:.1} /s   ({} checks on {} cores)",
            self.checks_per_second, self.checks, self.cores
        )
    }
}
