//! A rig for custody steps on their own: role contexts over temporary stores and soft
//! keystores, every party known to every other, and no swarm. Tests hand envelopes from step to
//! step themselves (what the role actor and the network do in a node), so each role's checks
//! can be tried with exactly the envelope that should fail them; or [`run`] hands them on
//! until nothing moves.

use std::sync::Arc;

use dta_protocol::Cid;
use dta_protocol::envelope::{Kind, SignedEnvelope, VerifiedEnvelope};
use dta_protocol::identity::LocalIdentity;
use libp2p::PeerId;
use serde::Serialize;
use tokio::sync::watch;

use std::collections::VecDeque;

use crate::context::{CustodyError, Delivery, EVENT_CAPACITY, RoleContext, encode};

use super::{
    exclusion, on_certificate, on_commitment, on_commitment_signature, on_order_request,
    on_share_deal, refresh,
};
use crate::identities::{Directory, KnownIdentity};
use crate::keystore::{KeystoreActor, KeystoreArgs};
use crate::network::NetworkChannels;
use crate::store::Store;

/// One party: its context and the directory that holds its store.
pub(crate) struct Party {
    pub(crate) ctx: RoleContext,
    _home: tempfile::TempDir,
}

impl Party {
    /// Its identity CID.
    pub(crate) fn cid(&self) -> Cid {
        self.ctx.local.cid()
    }

    /// Verifies and keeps a block that arrived, as the role actor does before a step; the
    /// verified envelope and its CID.
    pub(crate) async fn take(&self, block: &[u8]) -> Result<(VerifiedEnvelope, Cid), CustodyError> {
        let envelope = self.ctx.verify(block)?;
        let cid = super::keep_block(&self.ctx, block).await?;
        self.ctx.flush().await?;
        Ok((envelope, cid))
    }

    /// A public envelope this party signs (a payload, no recipients): its block bytes.
    pub(crate) fn publish<T: Serialize>(
        &self,
        kind: Kind,
        reference: &str,
        prev: Option<Cid>,
        payload: &T,
    ) -> Vec<u8> {
        self.sign(kind, reference, prev, Some(payload), None, &[])
    }

    /// An envelope this party signs: its block bytes.
    pub(crate) fn sign<T: Serialize>(
        &self,
        kind: Kind,
        reference: &str,
        prev: Option<Cid>,
        public: Option<&T>,
        sealed: Option<&T>,
        recipients: &[&Party],
    ) -> Vec<u8> {
        let recipients: Vec<_> = recipients
            .iter()
            .map(|p| p.ctx.local.identity().clone())
            .collect();
        let recipients: Vec<_> = recipients.iter().collect();
        let sealed = sealed.map(|s| encode(s).unwrap());
        let envelope = self
            .ctx
            .envelope(
                kind,
                reference,
                prev,
                public.map(|p| encode(p).unwrap()),
                sealed.as_deref(),
                &recipients,
            )
            .unwrap();
        envelope.signed().to_block().unwrap().into_bytes()
    }
}

/// Parties named `names`, each knowing every other.
pub(crate) async fn parties(names: &[&str]) -> Vec<Party> {
    let tag = hex::encode(dta_crypto::Secret::<4>::random().expose());
    let locals: Vec<(LocalIdentity, PeerId)> = names
        .iter()
        .map(|name| {
            let peer = PeerId::random();
            let seed = dta_crypto::Secret::<32>::random();
            let local = LocalIdentity::create(&seed, name, &peer.to_bytes(), 1).unwrap();
            (local, peer)
        })
        .collect();
    let mut directory = Directory::default();
    for (local, peer) in &locals {
        directory.identities.insert(
            local.cid().to_string(),
            KnownIdentity {
                cid: local.cid(),
                name: local.identity().name().to_owned(),
                peer_id: *peer,
                created_at: 1,
                document: dta_protocol::dagcbor::encode(local.identity().document()).unwrap(),
                verified: local.identity().clone(),
            },
        );
    }
    // The sender lives as long as the process: nothing changes the directory afterwards.
    let directory = Box::leak(Box::new(watch::channel(directory))).1.clone();
    let peers: Vec<PeerId> = locals.iter().map(|(_, peer)| *peer).collect();
    let mut made = Vec::with_capacity(locals.len());
    for (local, _) in locals {
        let home = tempfile::tempdir().unwrap();
        let store = Store::open(&home.path().join("db")).unwrap();
        let kdf = dta_hsm::KdfParams {
            memory_kib: 64,
            iterations: 1,
            ..dta_hsm::KdfParams::recommended()
        };
        let keystore = dta_hsm::SoftKeystore::derive(b"rig passphrase", &kdf).unwrap();
        let keystore_name = format!("rig-{tag}-{}/keystore", local.cid());
        ractor::Actor::spawn(
            Some(keystore_name.clone()),
            KeystoreActor,
            KeystoreArgs {
                keystore: Arc::new(keystore),
                store: store.clone(),
                metrics: Arc::new(crate::metrics::Metrics::default()),
            },
        )
        .await
        .unwrap();
        let (channels, network) = NetworkChannels::new();
        // Every party reaches every other, as if connected.
        channels.pretend_connected(peers.iter().copied());
        made.push(Party {
            ctx: RoleContext {
                local,
                directory: directory.clone(),
                store,
                network,
                keystore: keystore_name,
                events: tokio::sync::broadcast::channel(EVENT_CAPACITY).0,
                verified: Default::default(),
                hosted: Default::default(),
                staged: Default::default(),
                progress: Default::default(),
                releases_open: Default::default(),
                attention: Default::default(),
                mpin_servers: Arc::new(Vec::new()),
                certificate_checks: crate::certificates::CertificateChecks::start(),
                custody_batches: Default::default(),
                metrics: Arc::new(crate::metrics::Metrics::default()),
                clock_tolerance_ms: dta_protocol::policy::DEFAULT_CLOCK_TOLERANCE_MS,
                misbehaviour: None,
                nonces: Default::default(),
                spare_commitments: Default::default(),
            },
            _home: home,
        });
    }
    made
}

/// The index of the party whose node is `peer`.
pub(crate) fn party_of(parties: &[Party], peer: PeerId) -> usize {
    parties
        .iter()
        .position(|p| p.ctx.peer_of(&p.cid()) == Some(peer))
        .expect("a party's peer")
}

/// Every block of `deliveries`, in order, with the index of the party it is for: what a test
/// hands from step to step.
pub(crate) fn addressed(
    parties: &[Party],
    deliveries: Vec<Delivery>,
) -> impl Iterator<Item = (usize, Vec<u8>)> + '_ {
    deliveries.into_iter().flat_map(move |(peer, blocks)| {
        let to = party_of(parties, peer);
        blocks.into_iter().map(move |b| (to, b))
    })
}

/// Changes a block on its way to a party (by index), lets it through, or drops it (`None`).
pub(crate) type Tamper<'a> = &'a mut dyn FnMut(&[Party], usize, Vec<u8>) -> Option<Vec<u8>>;

/// Hands every delivery to its party's step, and what those steps send on, until nothing
/// moves. `tamper` sees each block first.
pub(crate) async fn run(parties: &[Party], deliveries: Vec<Delivery>, tamper: Tamper<'_>) {
    let mut queue: VecDeque<(usize, Vec<u8>)> = addressed(parties, deliveries).collect();
    while let Some((to, block)) = queue.pop_front() {
        let Some(block) = tamper(parties, to, block) else {
            continue;
        };
        let party = &parties[to];
        let ctx = &party.ctx;
        let signed = SignedEnvelope::decode(&block).unwrap();
        if signed.envelope.kind == Kind::CommitmentSignature {
            let peer = ctx.peer_of(&signed.envelope.sender).unwrap();
            // Checked alone, in place: no batch waits in the rig.
            assert!(
                on_commitment_signature(ctx, peer, &signed)
                    .await
                    .unwrap()
                    .is_none()
            );
            continue;
        }
        if signed.envelope.kind == Kind::BatchSignature {
            let peer = ctx.peer_of(&signed.envelope.sender).unwrap();
            super::batching::on_batch_signature(ctx, peer, &signed)
                .await
                .unwrap();
            continue;
        }
        let (envelope, cid) = party.take(&block).await.unwrap();
        let sent: Vec<Delivery> = match (to, signed.envelope.kind) {
            (0, Kind::ReshareDeal) => refresh::on_deal(ctx, &envelope, cid).await.unwrap(),
            (0, Kind::ReshareComplaint) => {
                exclusion::on_complaint(ctx, &envelope, cid).await.unwrap()
            }
            (0, Kind::DkgCommitment) => super::keygen::on_commitment(ctx, &envelope, cid)
                .await
                .unwrap(),
            (0, Kind::KeyShare) => super::on_key_share(ctx, &envelope, cid).await.unwrap(),
            (0, Kind::SignCommitment) => super::signing::on_commitment(ctx, &envelope, cid)
                .await
                .unwrap(),
            (0, Kind::SignatureShare) => {
                super::signing::on_share(ctx, &envelope, cid).await.unwrap()
            }
            (0, Kind::PartialSignature) => super::threshold_bls::on_partial(ctx, &envelope, cid)
                .await
                .unwrap(),
            (0, Kind::ShareDeleted) => {
                refresh::on_share_deleted(ctx, &envelope, cid)
                    .await
                    .unwrap();
                Vec::new()
            }
            (0, kind) => panic!("unexpected {kind:?} at the principal"),
            (_, Kind::OrderRequest) => on_order_request(ctx, &envelope, cid)
                .await
                .unwrap()
                .into_iter()
                .collect(),
            (_, Kind::Commitment) => on_commitment(ctx, &envelope, cid)
                .await
                .unwrap()
                .into_iter()
                .collect(),
            (_, Kind::ShareDeal) => on_share_deal(ctx, &envelope, cid)
                .await
                .unwrap()
                .into_iter()
                .collect(),
            (_, Kind::CustodyBatch) => super::batching::on_custody_batch(ctx, &envelope, cid)
                .await
                .unwrap(),
            (_, Kind::Certificate) => {
                on_certificate(ctx, &envelope, cid).await.unwrap();
                Vec::new()
            }
            (_, Kind::ReshareRequest) => refresh::on_request(ctx, &envelope, cid)
                .await
                .unwrap()
                .into_iter()
                .collect(),
            (_, Kind::DkgRound) => super::keygen::on_round(ctx, &envelope, cid).await.unwrap(),
            (_, Kind::DkgShare) => super::keygen::on_share(ctx, &envelope, cid).await.unwrap(),
            (_, Kind::SignRequest) => super::signing::on_request(ctx, &envelope, cid)
                .await
                .unwrap()
                .into_iter()
                .collect(),
            (_, Kind::SignPackage) => super::signing::on_package(ctx, &envelope, cid)
                .await
                .unwrap()
                .into_iter()
                .collect(),
            (_, Kind::Signature) => {
                super::signing::on_signature(ctx, &envelope, cid)
                    .await
                    .unwrap();
                Vec::new()
            }
            // Deals reach a holder with the commitment that counts them: kept for it.
            (_, Kind::ReshareDeal) => Vec::new(),
            (_, kind) => panic!("unexpected {kind:?}"),
        };
        queue.extend(addressed(parties, sent));
    }
}

/// A 2-of-n `milagro` order of `reference` by party 0, the key generated by every other party
/// without a dealer.
pub(crate) fn generated_key_order(parties: &[Party], reference: &str) -> super::NewOrder {
    super::NewOrder {
        reference: Some(reference.into()),
        plugin: crate::plugin::MILAGRO.into(),
        fiduciaries: parties[1..].iter().map(Party::cid).collect(),
        threshold: 2,
        beneficiary: None,
        policy: Default::default(),
        input: std::collections::BTreeMap::new(),
        secret: None,
        refresh_every_ms: None,
    }
}
