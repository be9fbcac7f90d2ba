//! `dta demo`: one custody order on a real network of five nodes, start to finish.
//!
//! Six full nodes start in this process on 127.0.0.1 (a principal, three fiduciaries, a
//! beneficiary and a spare fiduciary), each with its own home, keystore, rocksdb and libp2p
//! swarm, and find each other. The principal orders custody of a secret, 2-of-3: the
//! fiduciaries check and keep their shares and their signatures aggregate into one custody
//! certificate. One fiduciary is stopped; the principal releases to the beneficiary, which
//! rebuilds the secret from the two shares that still arrive. Custody then moves off the
//! stopped fiduciary to the spare one, same key. A fiduciary that took no part in the release
//! then audits the whole log, fetching over Bitswap the blocks it lacks. No root, no HSM, no
//! network beyond loopback.

use std::time::{Duration, Instant};

use dta_actors::custody::{CustodyEvent, NewOrder, OrderRecord, OrderState};
use dta_actors::keystore::KeystoreMsg;
use dta_actors::roles::{Role, RoleMsg};
use dta_actors::store::Column;
use dta_protocol::Cid;
use dta_protocol::order::SecretBytes;
use serde::Serialize;

use crate::harness::{HarnessError, Testnet};

/// Fiduciaries in the demo.
pub const FIDUCIARIES: usize = 3;
/// Shares needed to release.
pub const THRESHOLD: u32 = 2;
/// The order's reference.
pub const REFERENCE: &str = "demo-order";
const SECRET: &[u8] = b"the launch codes";
const PRINCIPAL: usize = 0;
const BENEFICIARY: usize = FIDUCIARIES + 1;
/// The fiduciary stopped before the release, and the one that audits.
const STOPPED: usize = 2;
const AUDITOR: usize = 3;
/// The fiduciary that takes the stopped one's place.
const SPARE: usize = FIDUCIARIES + 2;
const STEP_TIMEOUT: Duration = Duration::from_secs(60);

/// Why the demo failed. Each variant names the step.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// The network did not come up.
    #[error("starting the network: {0}")]
    Network(#[from] HarnessError),
    /// A custody step failed or did not finish in time.
    #[error("{step}: {message}")]
    Step {
        /// The step.
        step: &'static str,
        /// What went wrong.
        message: String,
    },
}

fn failed(step: &'static str) -> impl Fn(String) -> DemoError {
    move |message| DemoError::Step { step, message }
}

/// One node of the demo.
#[derive(Debug, Clone, Serialize)]
pub struct DemoNode {
    /// Its name.
    pub name: String,
    /// The part it plays.
    pub role: String,
    /// Its identity CID.
    pub identity: String,
    /// Its libp2p listen address.
    pub address: String,
}

/// One line of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// What happened.
    pub what: String,
    /// Milliseconds it took.
    pub millis: f64,
}

/// What the demo did, for people (`Display`) and scripts (`--json`).
#[derive(Debug, Clone, Serialize)]
pub struct DemoReport {
    /// The nodes.
    pub nodes: Vec<DemoNode>,
    /// The steps in order.
    pub steps: Vec<Step>,
    /// The order's reference.
    pub reference: String,
    /// The custody certificate's signers.
    pub certificate_signers: usize,
    /// Envelopes in the audited log.
    pub chain_length: usize,
    /// Blocks the auditor fetched from its peers.
    pub fetched_for_audit: usize,
    /// Whether the beneficiary's secret equals the principal's.
    pub secret_recovered: bool,
    /// Whether the audit of the whole log passed.
    pub audit_passed: bool,
    /// Whether custody moved off the stopped fiduciary, same key, and was certified again.
    pub custody_moved: bool,
}

/// Runs the demo.
pub async fn run() -> Result<DemoReport, DemoError> {
    let mut steps = Vec::new();
    let started = Instant::now();
    let role_of = |i: usize| match i {
        PRINCIPAL => Role::Principal,
        BENEFICIARY => Role::Beneficiary,
        _ => Role::Fiduciary,
    };
    let mut net = Testnet::builder()
        .nodes(FIDUCIARIES + 3)
        .one_role_each(role_of)
        .build()
        .await?;
    let nodes: Vec<DemoNode> = (0..net.len())
        .map(|i| DemoNode {
            name: net.node(i).info().name.clone(),
            role: role_of(i).name().into(),
            identity: net.node(i).info().identity.clone(),
            address: net.test_node_address(i).to_string(),
        })
        .collect();
    steps.push(Step {
        what: format!(
            "{} nodes started on 127.0.0.1; each verified every other's identity",
            net.len()
        ),
        millis: millis(started),
    });

    let cid = |i: usize| -> Result<Cid, DemoError> {
        net.node(i)
            .info()
            .identity
            .parse()
            .map_err(|_| failed("identities")("bad identity CID".into()))
    };
    let principal = role_actor(&net, PRINCIPAL, Role::Principal)?;
    // The committee custody moves to once a fiduciary is stopped.
    let committee: Vec<Cid> = [1, AUDITOR, SPARE]
        .into_iter()
        .map(cid)
        .collect::<Result<_, _>>()?;
    let mut events = net.node(PRINCIPAL).custody_events();
    let order = NewOrder {
        reference: Some(REFERENCE.into()),
        plugin: "safeguardsecret".into(),
        fiduciaries: (1..=FIDUCIARIES).map(cid).collect::<Result<_, _>>()?,
        threshold: THRESHOLD,
        beneficiary: Some(cid(BENEFICIARY)?),
        policy: dta_protocol::policy::ReleasePolicy::default(),
        input: Default::default(),
        secret: Some(SecretBytes::new(SECRET.to_vec())),
        refresh_every_ms: None,
    };
    let at = Instant::now();
    ractor::call_t!(
        principal,
        |reply| RoleMsg::CreateOrder {
            order: Box::new(order),
            reply
        },
        dta_actors::roles::CALL_TIMEOUT_MS
    )
    .map_err(|e| failed("order")(e.to_string()))?
    .map_err(|e| failed("order")(e.to_string()))?;
    wait(&mut events, Role::Principal, OrderState::Certified).await?;
    let record = principal_record(&net)?;
    let signers = record.signatures.len();
    steps.push(Step {
        what: format!(
            "order {REFERENCE}: the principal dealt {THRESHOLD}-of-{FIDUCIARIES} shares; each fiduciary checked and kept its share and signed; {signers} signatures aggregated into one custody certificate"
        ),
        millis: millis(at),
    });

    let at = Instant::now();
    let stopped = net.node(STOPPED).info().name.clone();
    net.test_node(STOPPED).stop().await;
    steps.push(Step {
        what: format!("fiduciary {stopped} stopped"),
        millis: millis(at),
    });

    let at = Instant::now();
    let mut received = net.node(BENEFICIARY).custody_events();
    ractor::call_t!(
        principal,
        |reply| RoleMsg::Release {
            reference: REFERENCE.into(),
            beneficiary: None,
            reply
        },
        dta_actors::roles::CALL_TIMEOUT_MS
    )
    .map_err(|e| failed("release")(e.to_string()))?
    .map_err(|e| failed("release")(e.to_string()))?;
    wait(&mut received, Role::Beneficiary, OrderState::Received).await?;
    wait(&mut events, Role::Principal, OrderState::Released).await?;
    let secret = received_secret(&net).await?;
    let secret_recovered = secret.expose() == SECRET;
    steps.push(Step {
        what: format!(
            "released to the beneficiary: {THRESHOLD} of {FIDUCIARIES} shares arrived, the secret was rebuilt and checked against the commitment, and a receipt went back"
        ),
        millis: millis(at),
    });

    let at = Instant::now();
    ractor::call_t!(
        principal,
        |reply| RoleMsg::Reshare {
            reference: REFERENCE.into(),
            next: Some((committee.clone(), THRESHOLD)),
            reply
        },
        dta_actors::roles::CALL_TIMEOUT_MS
    )
    .map_err(|e| failed("reshare")(e.to_string()))?
    .map_err(|e| failed("reshare")(e.to_string()))?;
    wait(&mut events, Role::Principal, OrderState::Certified).await?;
    let moved = principal_record(&net)?;
    let custody_moved = moved.fiduciaries == committee && moved.epoch == 1;
    steps.push(Step {
        what: format!(
            "custody moved off {stopped} to {}: the two fiduciaries left dealt their shares anew to the new committee, same key, {THRESHOLD}-of-{FIDUCIARIES} again, and it certified the order",
            net.node(SPARE).info().name
        ),
        millis: millis(at),
    });

    let at = Instant::now();
    let head = principal_record(&net)?.head;
    let auditor = net.node(AUDITOR);
    let fetched = dta_actors::custody::fetch_chain(auditor.store(), auditor.network(), head)
        .await
        .map_err(|e| failed("audit")(e.to_string()))?;
    let directory = auditor.directory().borrow().clone();
    let audit = dta_actors::custody::audit(auditor.store(), &directory, REFERENCE, head);
    let (audit_passed, chain_length) = match &audit {
        Ok(report) => (
            report.certified && report.receipts >= 1,
            report.envelopes.len(),
        ),
        Err(_) => (false, 0),
    };
    steps.push(Step {
        what: format!(
            "{} audited the whole log: {chain_length} signed, hash-linked envelopes, the certificate and the receipt ({fetched} blocks fetched over Bitswap)",
            net.node(AUDITOR).info().name
        ),
        millis: millis(at),
    });
    net.stop().await;
    Ok(DemoReport {
        nodes,
        steps,
        reference: REFERENCE.into(),
        certificate_signers: signers,
        chain_length,
        fetched_for_audit: fetched,
        secret_recovered,
        audit_passed,
        custody_moved,
    })
}

fn millis(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}

fn role_actor(
    net: &Testnet,
    node: usize,
    role: Role,
) -> Result<ractor::ActorRef<RoleMsg>, DemoError> {
    dta_actors::registry::role(&net.node(node).info().peer_id, role)
        .ok_or_else(|| failed("actors")(format!("no {} actor", role.name())))
}

async fn wait(
    events: &mut tokio::sync::broadcast::Receiver<CustodyEvent>,
    role: Role,
    state: OrderState,
) -> Result<(), DemoError> {
    let reached = tokio::time::timeout(STEP_TIMEOUT, async {
        loop {
            match events.recv().await {
                Ok(e) if e.reference == REFERENCE && e.role == role && e.state == state.into() => {
                    return true;
                }
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return false,
            }
        }
    })
    .await;
    match reached {
        Ok(true) => Ok(()),
        _ => Err(failed(state.name())(format!(
            "the {} never reached {state}",
            role.name()
        ))),
    }
}

fn principal_cid(net: &Testnet) -> Result<Cid, DemoError> {
    net.node(PRINCIPAL)
        .info()
        .identity
        .parse()
        .map_err(|_| failed("records")("the principal's identity is no CID".into()))
}

fn principal_record(net: &Testnet) -> Result<OrderRecord, DemoError> {
    dta_actors::custody::stored_record(
        net.node(PRINCIPAL).store(),
        Role::Principal,
        &principal_cid(net)?,
        REFERENCE,
    )
    .map_err(|e| failed("records")(e.to_string()))?
    .ok_or_else(|| failed("records")("the principal has no record".into()))
}

async fn received_secret(net: &Testnet) -> Result<SecretBytes, DemoError> {
    let node = net.node(BENEFICIARY);
    let name = dta_actors::custody::secret_name(&principal_cid(net)?, REFERENCE);
    let blob = node
        .store()
        .get(Column::Keystore, name.as_bytes())
        .map_err(|e| failed("release")(e.to_string()))?
        .ok_or_else(|| failed("release")("the beneficiary kept no secret".into()))?;
    let keystore = dta_actors::registry::keystore(&node.info().peer_id)
        .ok_or_else(|| failed("release")("no keystore actor".into()))?;
    ractor::call_t!(
        keystore,
        |reply| KeystoreMsg::Unwrap { name, blob, reply },
        dta_actors::context::KEYSTORE_TIMEOUT_MS
    )
    .map_err(|e| failed("release")(e.to_string()))?
    .map_err(|e| failed("release")(e.to_string()))
}

impl std::fmt::Display for DemoReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "dta demo: one custody order on five nodes, {THRESHOLD}-of-{FIDUCIARIES} fiduciaries\n"
        )?;
        for node in &self.nodes {
            writeln!(
                f,
                "  {:<8} {:<12} {}  {}",
                node.name, node.role, node.identity, node.address
            )?;
        }
        writeln!(f)?;
        for (i, step) in self.steps.iter().enumerate() {
            writeln!(f, "  {}. {} ({:.0} ms)", i + 1, step.what, step.millis)?;
        }
        writeln!(f)?;
        writeln!(f, "  certificate signers: {}", self.certificate_signers)?;
        writeln!(f, "  log length:          {} envelopes", self.chain_length)?;
        writeln!(f, "  secret recovered:    {}", self.secret_recovered)?;
        write!(f, "  audit passed:        {}", self.audit_passed)
    }
}
