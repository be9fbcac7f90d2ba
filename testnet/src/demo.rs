//! The foundation demo: one custody order, start to finish, on documents alone.
//!
//! Five identities (a principal, three fiduciaries, a beneficiary) exchange real blocks: every
//! step is a signed envelope, hash-linked to the one before, kept in an in-memory block map
//! that stands for the network until the node runtime exists. The demo stops one fiduciary
//! before the release, so the beneficiary must rebuild the secret from the other two, and at
//! the end an auditor re-verifies the whole chain from the blocks alone.

use std::collections::HashMap;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use dta_crypto::Secret;
use dta_crypto::threshold::{self, Commitments, SecretScalar, Share};
use dta_protocol::Cid;
use dta_protocol::block::Block;
use dta_protocol::dagcbor::{self, Limits};
use dta_protocol::envelope::{Draft, EnvelopeError, Kind, SignedEnvelope, VerifiedEnvelope};
use dta_protocol::identity::{IdentityError, LocalIdentity, VerifiedIdentity};
use dta_protocol::order::{
    Certificate, CertificateError, Commitment, OrderRequest, ReleasePolicy, ReleaseRequest,
    SecretBytes, ShareDeal, ShareRelease, custody_message,
};
use serde::Serialize;
use serde_bytes::ByteBuf;

/// Fiduciaries in the demo.
pub const FIDUCIARIES: usize = 3;
/// Shares needed to release.
pub const THRESHOLD: usize = 2;

/// Why the demo failed. Each variant names the step.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// An identity could not be made or checked.
    #[error("identity: {0}")]
    Identity(#[from] IdentityError),
    /// An envelope could not be made, checked or opened.
    #[error("envelope: {0}")]
    Envelope(#[from] EnvelopeError),
    /// A payload did not encode or decode.
    #[error("payload: {0}")]
    Payload(String),
    /// Sharing or recovery failed.
    #[error("threshold: {0}")]
    Threshold(String),
    /// The certificate did not verify.
    #[error("certificate: {0}")]
    Certificate(#[from] CertificateError),
    /// A block the chain links to is missing or altered.
    #[error("audit: {0}")]
    Audit(String),
}

/// One line of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// What happened.
    pub what: String,
    /// The envelope CID it produced, if any.
    pub cid: Option<String>,
    /// Milliseconds it took.
    pub millis: f64,
}

/// What the demo did, for people (`Display`) and scripts (`--json`).
#[derive(Debug, Clone, Serialize)]
pub struct DemoReport {
    /// Identity CIDs by name.
    pub identities: Vec<(String, String)>,
    /// The steps in order.
    pub steps: Vec<Step>,
    /// Envelopes in the order's chain.
    pub chain_length: usize,
    /// The group public key the secret was committed to (hex).
    pub committed_public_key: String,
    /// Whether the beneficiary's secret equals the principal's.
    pub secret_recovered: bool,
    /// Whether the independent audit of the chain passed.
    pub audit_passed: bool,
}

struct Ledger {
    blocks: HashMap<Cid, Vec<u8>>,
    head: Option<Cid>,
    identities: HashMap<Cid, VerifiedIdentity>,
}

impl Ledger {
    fn append(&mut self, envelope: &SignedEnvelope) -> Result<Cid, DemoError> {
        let block = envelope.to_block()?;
        let cid = block.cid();
        self.blocks.insert(cid, block.into_bytes());
        self.head = Some(cid);
        Ok(cid)
    }

    /// What a receiving node does: fetch the block, decode strictly, verify the sender.
    fn receive(&self, cid: Cid) -> Result<VerifiedEnvelope, DemoError> {
        let bytes = self
            .blocks
            .get(&cid)
            .ok_or_else(|| DemoError::Audit(format!("block {cid} missing")))?;
        let envelope = SignedEnvelope::decode(bytes)?;
        let sender = self
            .identities
            .get(&envelope.envelope.sender)
            .ok_or_else(|| DemoError::Audit(format!("unknown sender of {cid}")))?;
        Ok(envelope.verify(sender)?)
    }
}

fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn payload<T: Serialize>(value: &T) -> Result<Vec<u8>, DemoError> {
    dagcbor::encode(value).map_err(|e| DemoError::Payload(e.to_string()))
}

fn parse<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, DemoError> {
    dagcbor::decode(bytes, Limits::default()).map_err(|e| DemoError::Payload(e.to_string()))
}

/// A share as it arrives in a payload: index and 32 secret value bytes.
fn share_from(index: u32, value: &SecretBytes) -> Result<Share, DemoError> {
    let value = Secret::<32>::new(
        value
            .expose()
            .try_into()
            .map_err(|_| DemoError::Threshold("share is not 32 bytes".into()))?,
    );
    Share::from_parts(index, value.expose()).map_err(|e| DemoError::Threshold(e.to_string()))
}

/// Runs the demo and reports each step.
pub fn run() -> Result<DemoReport, DemoError> {
    let mut steps = Vec::new();
    let mut timed = |what: &str, cid: Option<Cid>, started: Instant| {
        steps.push(Step {
            what: what.to_owned(),
            cid: cid.map(|c| c.to_string()),
            millis: started.elapsed().as_secs_f64() * 1e3,
        })
    };
    let created = now_millis() / 1000;
    let make =
        |name: &str| LocalIdentity::create(&Secret::random(), name, name.as_bytes(), created);
    let started = Instant::now();
    let principal = make("principal")?;
    let fiduciaries: Vec<LocalIdentity> = (1..=FIDUCIARIES)
        .map(|i| make(&format!("fiduciary-{i}")))
        .collect::<Result<_, _>>()?;
    let beneficiary = make("beneficiary")?;
    let everyone: Vec<&LocalIdentity> = std::iter::once(&principal)
        .chain(&fiduciaries)
        .chain(std::iter::once(&beneficiary))
        .collect();
    let mut ledger = Ledger {
        blocks: HashMap::new(),
        head: None,
        identities: everyone
            .iter()
            .map(|n| (n.cid(), n.identity().clone()))
            .collect(),
    };
    timed(
        "created 5 identities (BLS + PoP, X-Wing, secp256k1)",
        None,
        started,
    );

    // Order: the principal deals a secret 2-of-3.
    let started = Instant::now();
    let order_ref = format!("demo-{}", now_millis());
    let request = OrderRequest {
        plugin: "safeguardsecret".into(),
        principal: principal.cid(),
        fiduciaries: fiduciaries.iter().map(LocalIdentity::cid).collect(),
        threshold: THRESHOLD as u32,
        beneficiary: Some(beneficiary.cid()),
        policy: ReleasePolicy::default(),
        input: Default::default(),
    };
    let envelope = |sender: &LocalIdentity,
                    kind: Kind,
                    prev: Option<Cid>,
                    public: Option<Vec<u8>>,
                    secret: Option<&[u8]>,
                    recipients: &[&VerifiedIdentity]| {
        SignedEnvelope::create(
            sender,
            Draft {
                kind,
                order: &order_ref,
                prev,
                timestamp: now_millis(),
                public,
                secret,
                recipients,
            },
        )
    };
    let order_cid = ledger.append(&envelope(
        &principal,
        Kind::OrderRequest,
        None,
        Some(payload(&request)?),
        None,
        &[],
    )?)?;
    timed(
        "principal published the order request",
        Some(order_cid),
        started,
    );

    let started = Instant::now();
    let secret = SecretScalar::random();
    let (shares, commitments) = threshold::split(&secret, THRESHOLD, FIDUCIARIES)
        .map_err(|e| DemoError::Threshold(e.to_string()))?;
    let feldman: Vec<ByteBuf> = commitments
        .to_bytes()
        .iter()
        .map(|c| ByteBuf::from(c.to_vec()))
        .collect();
    let mut deal_cids = Vec::new();
    for (fiduciary, share) in fiduciaries.iter().zip(&shares) {
        let deal = ShareDeal {
            order: order_cid,
            index: share.index(),
            share: SecretBytes::new(share.value_bytes().expose().to_vec()),
            commitments: feldman.clone(),
        };
        let sealed = payload(&deal)?;
        let cid = ledger.append(&envelope(
            &principal,
            Kind::ShareDeal,
            ledger.head,
            None,
            Some(&sealed),
            &[fiduciary.identity()],
        )?)?;
        deal_cids.push(cid);
    }
    let commitment = Commitment {
        order: order_cid,
        plugin: request.plugin.clone(),
        threshold: request.threshold,
        fiduciaries: request.fiduciaries.clone(),
        feldman,
        key_shares: Vec::new(),
        beneficiary_share: None,
        public_key: ByteBuf::from(commitments.group_public_key().to_bytes().to_vec()),
        output: Default::default(),
    };
    let commitment_cid = ledger.append(&envelope(
        &principal,
        Kind::Commitment,
        ledger.head,
        Some(payload(&commitment)?),
        None,
        &[],
    )?)?;
    timed(
        "principal dealt 3 sealed shares and published the commitment",
        Some(commitment_cid),
        started,
    );

    // Each fiduciary opens its deal, checks the share against the commitment, signs.
    let started = Instant::now();
    let custody = custody_message(&commitment_cid);
    let mut signatures = Vec::new();
    let mut held: Vec<Option<Share>> = Vec::new();
    for (fiduciary, deal_cid) in fiduciaries.iter().zip(&deal_cids) {
        let opened = ledger.receive(*deal_cid)?.open(fiduciary)?;
        let deal: ShareDeal = parse(&opened)?;
        let share = share_from(deal.index, &deal.share)?;
        Commitments::from_bytes(&deal.commitments)
            .map_err(|e| DemoError::Threshold(e.to_string()))?
            .verify_share(&share)
            .map_err(|e| DemoError::Threshold(e.to_string()))?;
        signatures.push((fiduciary.identity(), fiduciary.keys().bls().sign(&custody)));
        held.push(Some(share));
    }
    let certificate = Certificate::aggregate(commitment_cid, &signatures)?;
    let certificate_cid = ledger.append(&envelope(
        &principal,
        Kind::Certificate,
        ledger.head,
        Some(payload(&certificate)?),
        None,
        &[],
    )?)?;
    timed(
        "3 fiduciaries verified their shares; signatures aggregated into one certificate",
        Some(certificate_cid),
        started,
    );

    // One fiduciary goes away; the other two release to the beneficiary.
    let started = Instant::now();
    held[1] = None;
    let release = ReleaseRequest {
        order: order_cid,
        certificate: certificate_cid,
        beneficiary: beneficiary.cid(),
        sequence: 1,
    };
    let release_cid = ledger.append(&envelope(
        &principal,
        Kind::ReleaseRequest,
        ledger.head,
        Some(payload(&release)?),
        None,
        &[],
    )?)?;
    let mut release_cids = Vec::new();
    for (fiduciary, share) in fiduciaries.iter().zip(&held) {
        let Some(share) = share else { continue };
        let released = ShareRelease {
            release: release_cid,
            index: share.index(),
            share: SecretBytes::new(share.value_bytes().expose().to_vec()),
        };
        let sealed = payload(&released)?;
        release_cids.push(ledger.append(&envelope(
            fiduciary,
            Kind::ShareRelease,
            ledger.head,
            None,
            Some(&sealed),
            &[beneficiary.identity()],
        )?)?);
    }
    timed(
        "fiduciary-2 stopped; 2 of 3 released their shares sealed to the beneficiary",
        Some(release_cid),
        started,
    );

    let started = Instant::now();
    let mut received = Vec::new();
    for cid in &release_cids {
        let opened = ledger.receive(*cid)?.open(&beneficiary)?;
        let released: ShareRelease = parse(&opened)?;
        let share = share_from(released.index, &released.share)?;
        commitments
            .verify_share(&share)
            .map_err(|e| DemoError::Threshold(e.to_string()))?;
        received.push(share);
    }
    let rebuilt = threshold::recover(&received, THRESHOLD)
        .map_err(|e| DemoError::Threshold(e.to_string()))?;
    let secret_recovered = rebuilt == secret
        && rebuilt
            .to_bls()
            .map(|k| k.public_key() == commitments.group_public_key())
            .unwrap_or(false);
    timed(
        "beneficiary checked both shares and rebuilt the secret",
        None,
        started,
    );

    let started = Instant::now();
    let chain_length = audit(&ledger, certificate_cid, commitment_cid, &fiduciaries)?;
    timed(
        "auditor re-verified every link, signature and the certificate",
        ledger.head,
        started,
    );

    Ok(DemoReport {
        identities: everyone
            .iter()
            .map(|n| (n.identity().name().to_owned(), n.cid().to_string()))
            .collect(),
        steps,
        chain_length,
        committed_public_key: commitment
            .public_key
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
        secret_recovered,
        audit_passed: true,
    })
}

/// Walks the chain from the head to the first envelope, checking every block hash, signature
/// and link, then the certificate against the commitment.
fn audit(
    ledger: &Ledger,
    certificate_cid: Cid,
    commitment_cid: Cid,
    fiduciaries: &[LocalIdentity],
) -> Result<usize, DemoError> {
    let mut next = ledger.head;
    let mut length = 0;
    while let Some(cid) = next {
        let bytes = ledger
            .blocks
            .get(&cid)
            .ok_or_else(|| DemoError::Audit(format!("block {cid} missing")))?;
        Block::verified(cid, bytes.clone(), Limits::default())
            .map_err(|e| DemoError::Audit(e.to_string()))?;
        next = ledger.receive(cid)?.envelope().prev;
        length += 1;
    }
    let certificate: Certificate = ledger
        .receive(certificate_cid)?
        .public_payload()
        .map_err(|e| DemoError::Payload(e.to_string()))?
        .ok_or_else(|| DemoError::Audit("certificate envelope has no payload".into()))?;
    let signers: Vec<&VerifiedIdentity> = fiduciaries.iter().map(LocalIdentity::identity).collect();
    certificate.verify(commitment_cid, &signers)?;
    Ok(length)
}

impl std::fmt::Display for DemoReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "dta demo: one custody order, 2-of-3 fiduciaries\n")?;
        for (name, cid) in &self.identities {
            writeln!(f, "  {name:<12} {cid}")?;
        }
        writeln!(f)?;
        for (i, step) in self.steps.iter().enumerate() {
            writeln!(f, "  {}. {} ({:.1} ms)", i + 1, step.what, step.millis)?;
            if let Some(cid) = &step.cid {
                writeln!(f, "     {cid}")?;
            }
        }
        writeln!(f)?;
        writeln!(f, "  chain length:       {} envelopes", self.chain_length)?;
        writeln!(
            f,
            "  committed key:      {}…",
            &self.committed_public_key[..16]
        )?;
        writeln!(f, "  secret recovered:   {}", self.secret_recovered)?;
        write!(f, "  audit passed:       {}", self.audit_passed)
    }
}
