//! The role actors: principal, fiduciary and beneficiary. Each takes the network events of
//! its part of the custody flow (see [`crate::custody`]); the principal also takes orders and
//! releases from the API.
//!
//! Handlers never wait on the network: deliveries run in spawned tasks, and a release's answer
//! goes to its reply port from that task.

use dta_protocol::Cid;
use dta_protocol::envelope::{Kind, SignedEnvelope};
use dta_protocol::network::Request;
use dta_protocol::order::ReleaseRequest;
use libp2p::PeerId;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tracing::{Instrument, debug, info, warn};

use crate::context::{CustodyError, RoleContext};
use crate::custody::{self, NewOrder, OrderRecord};
use crate::metrics::{Metrics, PolicyStep};
use crate::mpin;
use crate::network::{NetworkEvent, NetworkHandle, Taken};
pub use crate::role::Role;

/// How long a caller waits for a role actor's answer to an order, a release or an M-Pin
/// request before giving up (the step may still finish).
pub const CALL_TIMEOUT_MS: u64 = 60_000;

/// Identities a delivered step may look up before it runs to its end (see
/// [`RoleContext`]'s `ensure_known`).
pub const MAX_LOOKUPS_PER_STEP: usize = 4;

/// How often a principal sends again what its stalled orders and open releases still need,
/// and a beneficiary asks again for the shares an open release lacks.
pub const RESUME_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

impl Role {
    /// Whether envelopes of `kind` are this role's business.
    fn handles(self, kind: Kind) -> bool {
        match self {
            // The principal role asks for M-Pin secrets, so it takes the answers.
            Self::Principal => matches!(
                kind,
                Kind::KeyShare
                    | Kind::ReshareDeal
                    | Kind::ReshareComplaint
                    | Kind::SignCommitment
                    | Kind::SignatureShare
                    | Kind::PartialSignature
                    | Kind::ShareDeleted
                    | Kind::DkgCommitment
                    | Kind::DkgComplaint
                    | Kind::CommitmentSignature
                    | Kind::BatchSignature
                    | Kind::Receipt
                    | Kind::MpinShare
                    | Kind::Approval
                    | Kind::Veto
            ),
            // A fiduciary is also an M-Pin trust authority.
            Self::Fiduciary => matches!(
                kind,
                Kind::OrderRequest
                    | Kind::SignRequest
                    | Kind::SignPackage
                    | Kind::Signature
                    | Kind::DkgRound
                    | Kind::DkgShare
                    | Kind::DkgAbort
                    | Kind::DkgAbandon
                    | Kind::ReshareRequest
                    | Kind::ReshareDeal
                    | Kind::Commitment
                    | Kind::ShareDeal
                    | Kind::CustodyBatch
                    | Kind::Certificate
                    | Kind::ReleaseRequest
                    | Kind::MpinRequest
                    | Kind::OrderCancel
                    | Kind::Approval
                    | Kind::Veto
            ),
            Self::Beneficiary => matches!(
                kind,
                Kind::OrderRequest
                    | Kind::DkgRound
                    | Kind::Commitment
                    | Kind::Certificate
                    | Kind::ReleaseRequest
                    | Kind::ShareRelease
            ),
        }
    }
}

/// Messages to a role actor.
#[derive(Debug)]
pub enum RoleMsg {
    /// Which role this actor plays.
    Describe(RpcReplyPort<Role>),
    /// Something arrived from the network.
    Network(NetworkEvent),
    /// Principal: send the deals of the orders made and held since the last of these, in
    /// batches where they share fiduciaries (see [`custody::batching`]). Queued by the first
    /// order held, so it comes after every order that was waiting.
    SendBatches,
    /// Principal: start an order.
    CreateOrder {
        /// The order (boxed: it is by far the largest message).
        order: Box<NewOrder>,
        /// The stored record, once the deals are sent off.
        reply: RpcReplyPort<Result<OrderRecord, CustodyError>>,
    },
    /// Principal: send again what stalled orders and open releases still need (see
    /// [`custody::resume`]); beneficiary: ask again for missing shares (see
    /// [`custody::resume_receiving`]).
    Resume,
    /// Principal: ask trust authorities for M-Pin shares (see [`mpin::create_request`]).
    MpinRequest {
        /// The request.
        request: mpin::NewMpinRequest,
        /// The stored record, once the request is sent off.
        reply: RpcReplyPort<Result<mpin::MpinRecord, CustodyError>>,
    },
    /// Any role: approve or veto a release request as an identity of this node.
    Vote {
        /// The vote.
        vote: custody::NewVote,
        /// Its envelope's CID, once made and sent off.
        reply: RpcReplyPort<Result<Cid, CustodyError>>,
    },
    /// Principal: give up a generated key that waits for fiduciaries that do not answer.
    Abandon {
        /// The order reference.
        reference: String,
        /// The record, and the fiduciaries named as missing, once the abandon is sent off.
        reply: RpcReplyPort<Result<(OrderRecord, Vec<Cid>), CustodyError>>,
    },
    /// Principal: deal an order's shares anew, to its own committee (a refresh) or another.
    Reshare {
        /// The order reference.
        reference: String,
        /// The next committee and threshold; none for a refresh.
        next: Option<(Vec<Cid>, u32)>,
        /// The record, once the request is sent off.
        reply: RpcReplyPort<Result<OrderRecord, CustodyError>>,
    },
    /// Principal: have the order's fiduciaries sign a message with its key.
    Sign {
        /// The order reference.
        reference: String,
        /// The bytes to sign.
        message: Vec<u8>,
        /// The record, once the request is sent off.
        reply: RpcReplyPort<Result<OrderRecord, CustodyError>>,
    },
    /// Principal: cancel an order: its holders delete their shares.
    Cancel {
        /// The order reference.
        reference: String,
        /// The record, once the cancel is sent off.
        reply: RpcReplyPort<Result<OrderRecord, CustodyError>>,
    },
    /// Principal: release an order.
    Release {
        /// The order reference.
        reference: String,
        /// Overrides the order's beneficiary.
        beneficiary: Option<Cid>,
        /// Answered once the fiduciaries took the request (or too few could).
        reply: RpcReplyPort<Result<OrderRecord, CustodyError>>,
    },
    /// Another message, sent on behalf of a caller (an API call): handled inside the caller's
    /// span, so that every line it logs carries the call's request id.
    Traced(Box<RoleMsg>, tracing::Span),
}

impl RoleMsg {
    /// This message, to be handled inside the current span (see [`RoleMsg::Traced`]).
    pub fn traced(self) -> Self {
        Self::Traced(Box::new(self), tracing::Span::current())
    }
}

impl From<NetworkEvent> for RoleMsg {
    fn from(event: NetworkEvent) -> Self {
        Self::Network(event)
    }
}

impl TryFrom<RoleMsg> for NetworkEvent {
    type Error = ();
    fn try_from(message: RoleMsg) -> Result<Self, ()> {
        match message {
            RoleMsg::Network(event) => Ok(event),
            _ => Err(()),
        }
    }
}

/// Start-up arguments.
#[derive(Debug, Clone)]
pub struct RoleArgs {
    /// Which role.
    pub role: Role,
    /// Shared context.
    pub context: RoleContext,
    /// Open M-Pin challenges of this node as an authentication server (the principal answers
    /// peers' authentication steps with them).
    pub mpin_sessions: mpin::AuthSessions,
    /// Fiduciary: held releases with a timer set for the end of their delay.
    pub delay_timers: DelayTimers,
    /// Fiduciary: the stalled commitments it has shown to their orders' other fiduciaries
    /// since it started (see [`custody::crosscheck`]).
    pub shown_commitments: std::collections::HashSet<Cid>,
}

/// The release requests a fiduciary set a timer for, each once however often the principal
/// sends it again while it waits; a timer takes its request out when it fires.
#[derive(Debug, Clone, Default)]
pub struct DelayTimers(std::sync::Arc<std::sync::Mutex<std::collections::HashSet<Cid>>>);

impl DelayTimers {
    /// Whether a timer may be set for `request` (none is set yet); it counts as set from now.
    fn arm(&self, request: Cid) -> bool {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(request)
    }

    fn fired(&self, request: &Cid) {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(request);
    }
}

/// One role actor.
#[derive(Debug)]
pub struct RoleActor;

/// Logs and counts a refused delivery or step. One cut short because the node is stopping
/// was not refused: it is only noted, at debug level.
fn rejected(args: &RoleArgs, peer: PeerId, reason: &CustodyError, what: &str) {
    if *reason == CustodyError::Stopping {
        debug!(role = args.role.name(), %peer, what, "cut short: the node is stopping");
        return;
    }
    warn!(role = args.role.name(), %peer, %reason, "{what} rejected");
    args.context
        .metrics
        .custody_rejected
        .bump(&[reason.reason()]);
}

/// Sends each delivery from a task of its own; one that fails every attempt is counted (the
/// step that made it is durable, and the flow's own retries send it again).
fn send_all(ctx: &RoleContext, deliveries: Vec<custody::Delivery>) {
    for (peer, blocks) in deliveries {
        let network = ctx.network.clone();
        let metrics = ctx.metrics.clone();
        tokio::spawn(
            async move {
                if !RoleContext::deliver(&network, &metrics, peer, blocks).await {
                    Metrics::bump(&metrics.deliveries_abandoned);
                }
            }
            .in_current_span(),
        );
    }
}

impl RoleActor {
    /// Whether this role needs to look at a delivered block, and whether it acts on it: it
    /// is this role's business and either this role acts on it or no role of this node has
    /// kept it yet. Blocks are only ever stored after their signature was verified, so a kept
    /// block needs no second look.
    fn wants(args: &RoleArgs, block: &[u8]) -> Option<(bool, Kind)> {
        // Only routes the block: what a role acts on is decoded strictly when verified.
        let Ok(envelope) = SignedEnvelope::decode_seen(block) else {
            return None;
        };
        let kind = envelope.envelope.kind;
        if !args.role.handles(kind) {
            return None;
        }
        let acts = matches!(
            (args.role, kind),
            (Role::Principal, _)
                | (
                    Role::Fiduciary,
                    Kind::OrderRequest
                        | Kind::SignRequest
                        | Kind::SignPackage
                        | Kind::Signature
                        | Kind::DkgRound
                        | Kind::DkgShare
                        | Kind::DkgAbort
                        | Kind::DkgAbandon
                        | Kind::ReshareRequest
                        | Kind::ReshareDeal
                        | Kind::Commitment
                        | Kind::ShareDeal
                        | Kind::CustodyBatch
                        | Kind::Certificate
                        | Kind::ReleaseRequest
                        | Kind::MpinRequest
                        | Kind::OrderCancel
                        | Kind::Approval
                        | Kind::Veto
                )
                | (Role::Beneficiary, Kind::ShareRelease)
                // Kept for the release that needs it: a release's chain reaches the
                // beneficiary in pieces once the order request no longer links to the
                // commitment in force (after a refresh), and a piece with nothing else to act
                // on would be left alone.
                | (Role::Beneficiary, Kind::OrderRequest)
        ) || (args.role == Role::Beneficiary
            && kind == Kind::ReleaseRequest
            && Self::names_own_beneficiary(args, &envelope));
        if args.role == Role::Beneficiary
            && kind == Kind::ShareRelease
            && custody::share_is_late(&args.context, &envelope)
        {
            return None;
        }
        let cid = dta_protocol::block::cid_of(dta_protocol::block::DAG_CBOR, block);
        (acts || args.context.block(&cid).is_none()).then_some((acts, kind))
    }

    /// Whether a release request names this node (or an identity it hosts) as beneficiary:
    /// the principal delivers the order's chain ending in it before any share, and the
    /// beneficiary must keep that chain even when no other role of this node does.
    fn names_own_beneficiary(args: &RoleArgs, envelope: &SignedEnvelope) -> bool {
        envelope
            .envelope
            .public
            .as_ref()
            .and_then(|public| {
                dta_protocol::dagcbor::decode::<ReleaseRequest>(
                    public,
                    dta_protocol::dagcbor::Limits::default(),
                )
                .ok()
            })
            .is_some_and(|request| args.context.own(&request.beneficiary).is_some())
    }

    /// A delivered bundle: one signature check for all of it, then each block in order.
    /// A principal checks custody signatures in the aggregate instead.
    ///
    /// A bundle this role acts on nothing of is left alone: its blocks are kept by the role
    /// that acts on them (a fiduciary's order request and commitment reach the beneficiary
    /// role of the same node too, and are no business of it then).
    async fn on_bundle(
        myself: &ActorRef<RoleMsg>,
        args: &RoleArgs,
        peer: PeerId,
        blocks: Vec<Vec<u8>>,
        taken: &Option<Taken>,
    ) {
        let wanted: Vec<Option<(bool, Kind)>> =
            blocks.iter().map(|b| Self::wants(args, b)).collect();
        if !wanted.iter().any(|w| matches!(w, Some((true, _)))) {
            return;
        }
        let role = args.role.name();
        let steps = &args.context.metrics.custody_steps;
        // A custody signature comes alone, to the principal.
        let custody_signature = match (args.role, blocks.as_slice()) {
            (Role::Principal, [block]) => wanted
                .first()
                .and_then(Option::as_ref)
                .filter(|(_, kind)| {
                    matches!(kind, Kind::BatchSignature | Kind::CommitmentSignature)
                })
                // Decoded strictly by the network loop already.
                .and_then(|_| SignedEnvelope::decode_seen(block).ok()),
            _ => None,
        };
        if let Some(signed) = &custody_signature
            && signed.envelope.kind == Kind::BatchSignature
        {
            let started = std::time::Instant::now();
            let outcome = custody::batching::on_batch_signature(&args.context, peer, signed).await;
            steps.observe(&[role, Kind::BatchSignature.name()], started.elapsed());
            if let Err(reason) = outcome {
                rejected(args, peer, &reason, "batch signature");
            }
            return;
        }
        if let Some(signed) = &custody_signature
            && signed.envelope.kind == Kind::CommitmentSignature
        {
            let started = std::time::Instant::now();
            let outcome = custody::on_commitment_signature(&args.context, peer, signed).await;
            steps.observe(&[role, Kind::CommitmentSignature.name()], started.elapsed());
            match outcome {
                Ok(None) => {}
                Ok(Some(pending)) => {
                    let again = (peer, blocks, taken.clone());
                    Self::check_then_retry(myself, &args.context, pending, again).await;
                }
                Err(reason) => rejected(args, peer, &reason, "custody signature"),
            }
            return;
        }
        let mut verified = args.context.verify_bundle(&blocks);
        // A sender this node never met is looked up, and the bundle checked again.
        if let Err(CustodyError::UnknownIdentity(sender)) = &verified
            && let Ok(sender) = dta_protocol::block::parse_cid(sender)
        {
            verified = match args.context.ensure_known(&[sender]).await {
                Ok(()) => args.context.verify_bundle(&blocks),
                Err(reason) => Err(reason),
            };
        }
        if let Err(reason) = verified {
            rejected(args, peer, &reason, "delivery");
            return;
        }
        for (block, wanted) in blocks.into_iter().zip(wanted) {
            let Some((_, kind)) = wanted else {
                continue;
            };
            let started = std::time::Instant::now();
            let mut outcome = Self::on_envelope(myself, args, peer, block.clone(), taken).await;
            // A step that needs an identity this node does not know (an order's beneficiary,
            // another fiduciary) runs again once it is found.
            for _ in 0..MAX_LOOKUPS_PER_STEP {
                let Err(CustodyError::UnknownIdentity(unknown)) = &outcome else {
                    break;
                };
                let Ok(unknown) = dta_protocol::block::parse_cid(unknown) else {
                    break;
                };
                if let Err(reason) = args.context.ensure_known(&[unknown]).await {
                    outcome = Err(reason);
                    break;
                }
                outcome = Self::on_envelope(myself, args, peer, block.clone(), taken).await;
            }
            steps.observe(&[role, kind.name()], started.elapsed());
            if let Err(reason) = outcome {
                rejected(args, peer, &reason, "custody step");
            }
        }
    }

    /// Has a certificate checked off this role's queue (see [`crate::certificates`]); once
    /// the outcome is in, the delivery that needed it comes back as if delivered again, and
    /// its step finds the outcome. The delivery is acknowledged once that step ran.
    async fn check_then_retry(
        myself: &ActorRef<RoleMsg>,
        ctx: &RoleContext,
        pending: custody::PendingCheck,
        (peer, blocks, taken): (PeerId, Vec<Vec<u8>>, Option<Taken>),
    ) {
        let myself = myself.clone();
        Metrics::bump(&ctx.metrics.certificate_checks);
        ctx.certificate_checks
            .submit(pending.key, pending.check, move || {
                let again = RoleMsg::Network(NetworkEvent::EnvelopesReceived {
                    peer,
                    blocks,
                    taken,
                });
                if myself.cast(again).is_err() {
                    warn!(%peer, "a checked certificate's step is dropped: the role stopped");
                }
            })
            .await;
    }

    /// Has `requests` (release requests this fiduciary holds for their policy) go through
    /// their step again, from this role's queue.
    fn recheck(myself: &ActorRef<RoleMsg>, peer: PeerId, requests: Vec<Vec<u8>>) {
        for request in requests {
            let again = RoleMsg::Network(NetworkEvent::EnvelopesReceived {
                peer,
                blocks: vec![request],
                taken: None,
            });
            if myself.cast(again).is_err() {
                warn!("a held release is not looked at again: the role stopped");
            }
        }
    }

    /// Fiduciary: a release held only by its policy's delay goes through its release step
    /// again when the delay ends, rather than at the next [`RESUME_INTERVAL`] tick (which
    /// still finds it after a restart, when this timer is gone).
    fn recheck_when_delay_ends(
        myself: &ActorRef<RoleMsg>,
        args: &RoleArgs,
        peer: PeerId,
        (cid, request): (Cid, Vec<u8>),
        waiting: &dta_protocol::policy::Waiting,
    ) {
        let Some(ends_ms) = waiting.delay_ends_ms.filter(|_| waiting.short.is_empty()) else {
            return;
        };
        if !args.delay_timers.arm(cid) {
            return;
        }
        let wait_ms = ends_ms.saturating_sub(crate::context::now_millis()) + 1;
        let timers = args.delay_timers.clone();
        myself.send_after(std::time::Duration::from_millis(wait_ms), move || {
            timers.fired(&cid);
            RoleMsg::Network(NetworkEvent::EnvelopesReceived {
                peer,
                blocks: vec![request],
                taken: None,
            })
        });
    }

    /// Principal: asks for the refreshes that are due (orders with `refresh_every_ms`); their
    /// deliveries. One that cannot start is logged, and tried again at the next tick.
    async fn refresh_due(ctx: &RoleContext) -> Vec<crate::context::Delivery> {
        let due = match custody::refresh::due(ctx) {
            Ok(due) => due,
            Err(err) => {
                warn!(%err, "cannot read the refreshes due");
                return Vec::new();
            }
        };
        let mut deliveries = Vec::new();
        for reference in due {
            match custody::refresh::create_reshare(ctx, &reference, None).await {
                Ok((_, out)) => deliveries.extend(out),
                Err(err) => warn!(order = %reference, %err, "scheduled refresh not started"),
            }
        }
        deliveries
    }

    /// Principal: sends again, in the background, the releases no receipt answered yet.
    fn resend_releases(ctx: &RoleContext) {
        match custody::resume_releases(ctx, RESUME_INTERVAL) {
            Ok(plans) => {
                for plan in plans {
                    let network = ctx.network.clone();
                    let metrics = ctx.metrics.clone();
                    tokio::spawn(async move {
                        let reference = plan.record.reference.clone();
                        if let Err(err) = release(network, metrics, plan).await {
                            debug!(order = %reference, %err, "open release not delivered");
                        }
                    });
                }
            }
            Err(err) => warn!(%err, "cannot resume open releases"),
        }
    }

    async fn on_envelope(
        myself: &ActorRef<RoleMsg>,
        args: &RoleArgs,
        peer: PeerId,
        block: Vec<u8>,
        taken: &Option<Taken>,
    ) -> Result<(), CustodyError> {
        let ctx = &args.context;
        let started = std::time::Instant::now();
        let envelope = ctx.verify(&block)?;
        let kind = envelope.envelope().kind;
        let cid = custody::keep_block(ctx, &block).await?;
        let me = ctx.local.cid();
        match (args.role, kind) {
            (Role::Principal, Kind::KeyShare) => {
                let deliveries = custody::on_key_share(ctx, &envelope, cid).await?;
                send_all(ctx, deliveries);
            }
            (Role::Principal, Kind::DkgCommitment) => {
                send_all(
                    ctx,
                    custody::keygen::on_commitment(ctx, &envelope, cid).await?,
                );
            }
            (Role::Principal, Kind::ReshareDeal) => {
                send_all(ctx, custody::refresh::on_deal(ctx, &envelope, cid).await?);
            }
            (Role::Fiduciary, Kind::DkgAbandon) => {
                custody::keygen::on_abandon(ctx, &envelope, cid).await?;
            }
            (Role::Principal, Kind::SignCommitment) => {
                send_all(
                    ctx,
                    custody::signing::on_commitment(ctx, &envelope, cid).await?,
                );
            }
            (Role::Principal, Kind::SignatureShare) => {
                send_all(ctx, custody::signing::on_share(ctx, &envelope, cid).await?);
            }
            (Role::Principal, Kind::PartialSignature) => {
                send_all(
                    ctx,
                    custody::threshold_bls::on_partial(ctx, &envelope, cid).await?,
                );
            }
            (Role::Fiduciary, Kind::SignRequest) => {
                if let Some(delivery) = custody::signing::on_request(ctx, &envelope, cid).await? {
                    send_all(ctx, vec![delivery]);
                }
            }
            (Role::Fiduciary, Kind::SignPackage) => {
                if let Some(delivery) = custody::signing::on_package(ctx, &envelope, cid).await? {
                    send_all(ctx, vec![delivery]);
                }
            }
            (Role::Fiduciary, Kind::Signature) => {
                custody::signing::on_signature(ctx, &envelope, cid).await?;
            }
            (Role::Principal, Kind::ReshareComplaint) => {
                send_all(
                    ctx,
                    custody::exclusion::on_complaint(ctx, &envelope, cid).await?,
                );
            }
            (Role::Principal, Kind::ShareDeleted) => {
                custody::refresh::on_share_deleted(ctx, &envelope, cid).await?;
            }
            (Role::Fiduciary, Kind::OrderCancel) => {
                if let Some(delivery) = custody::ending::on_cancel(ctx, &envelope, cid).await? {
                    send_all(ctx, vec![delivery]);
                }
            }
            (Role::Fiduciary, Kind::ReshareRequest) => {
                if let Some(delivery) = custody::refresh::on_request(ctx, &envelope, cid).await? {
                    send_all(ctx, vec![delivery]);
                }
            }
            (Role::Principal, Kind::DkgComplaint) => {
                send_all(
                    ctx,
                    custody::keygen::on_complaint(ctx, &envelope, cid).await?,
                );
            }
            (Role::Fiduciary, Kind::DkgRound) => {
                send_all(ctx, custody::keygen::on_round(ctx, &envelope, cid).await?);
            }
            (Role::Fiduciary, Kind::DkgShare)
                if envelope
                    .envelope()
                    .recipients
                    .iter()
                    .any(|r| r.identity == me) =>
            {
                send_all(ctx, custody::keygen::on_share(ctx, &envelope, cid).await?);
            }
            (Role::Fiduciary, Kind::DkgAbort) => {
                custody::keygen::on_abort(ctx, &envelope, cid).await?
            }
            (Role::Principal, Kind::Receipt) => custody::on_receipt(ctx, &envelope, cid).await?,
            (Role::Principal | Role::Fiduciary, Kind::Approval | Kind::Veto) => {
                let outcome = custody::on_vote(ctx, args.role, &envelope, cid).await?;
                ctx.metrics
                    .observe_policy(PolicyStep::Vote, started.elapsed());
                match outcome {
                    // The held request goes through its step again, now with the vote.
                    custody::VoteOutcome::Recheck(request) => {
                        Self::recheck(myself, peer, vec![request]);
                    }
                    custody::VoteOutcome::Forward(deliveries) => send_all(ctx, deliveries),
                    custody::VoteOutcome::Kept => {}
                }
            }
            (Role::Fiduciary, Kind::OrderRequest) => {
                if let Some(delivery) = custody::on_order_request(ctx, &envelope, cid).await? {
                    send_all(ctx, vec![delivery]);
                }
            }
            (Role::Fiduciary, Kind::Commitment) => {
                if let Some(delivery) = custody::on_commitment(ctx, &envelope, cid).await? {
                    send_all(ctx, vec![delivery]);
                }
            }
            (Role::Fiduciary, Kind::ShareDeal)
                if envelope
                    .envelope()
                    .recipients
                    .iter()
                    .any(|r| r.identity == me) =>
            {
                match custody::on_share_deal(ctx, &envelope, cid).await {
                    Ok(delivery) => send_all(ctx, delivery.into_iter().collect()),
                    Err(refused) => {
                        // A batch that waited for it is signed without it, if it was the last.
                        if let Some(commitment) = envelope.envelope().prev {
                            let principal = envelope.envelope().sender;
                            let order = &envelope.envelope().order;
                            let signed =
                                custody::batching::deal_refused(ctx, &principal, order, commitment);
                            if let Some(delivery) = signed.await? {
                                send_all(ctx, vec![delivery]);
                            }
                        }
                        return Err(refused);
                    }
                }
            }
            (Role::Fiduciary, Kind::CustodyBatch) => {
                send_all(
                    ctx,
                    custody::batching::on_custody_batch(ctx, &envelope, cid).await?,
                );
            }
            (Role::Fiduciary, Kind::Certificate) => {
                custody::on_certificate(ctx, &envelope, cid).await?
            }
            // A node that is also the beneficiary gets the request too; only holders act.
            (Role::Fiduciary, Kind::ReleaseRequest)
                if ctx
                    .record(
                        Role::Fiduciary,
                        &envelope.envelope().sender,
                        &envelope.envelope().order,
                    )?
                    .is_some() =>
            {
                match custody::on_release_request(ctx, &envelope, cid).await? {
                    custody::ReleaseStep::Deliver(delivery) => {
                        send_all(ctx, vec![delivery]);
                    }
                    custody::ReleaseStep::CheckCertificate(pending) => {
                        let again = (peer, vec![block], taken.clone());
                        Self::check_then_retry(myself, ctx, *pending, again).await;
                    }
                    custody::ReleaseStep::Held(waiting) => {
                        let held = (cid, block);
                        Self::recheck_when_delay_ends(myself, args, peer, held, &waiting);
                    }
                }
            }
            (Role::Beneficiary, Kind::ReleaseRequest) => {
                if let Some(delivery) = custody::receipt_again(ctx, &envelope, cid)? {
                    send_all(ctx, vec![delivery]);
                }
            }
            (Role::Beneficiary, Kind::ShareRelease)
                if envelope
                    .envelope()
                    .recipients
                    .iter()
                    .any(|r| ctx.own(&r.identity).is_some()) =>
            {
                if let Some(delivery) = custody::on_share_release(ctx, &envelope, cid).await? {
                    send_all(ctx, vec![delivery]);
                }
            }
            (Role::Fiduciary, Kind::MpinRequest) => {
                if let Some(delivery) = mpin::on_request(ctx, &envelope, cid).await? {
                    send_all(ctx, vec![delivery]);
                }
            }
            (Role::Principal, Kind::MpinShare)
                if envelope
                    .envelope()
                    .recipients
                    .iter()
                    .all(|r| ctx.own(&r.identity).is_some()) =>
            {
                mpin::on_share(ctx, &envelope, cid).await?
            }
            // Order requests, commitments, a refresh's deals (for the commitment that counts
            // them) and the rest are kept for later steps and audits.
            _ => {}
        }
        tracing::debug!(%peer, ?kind, %cid, "envelope handled");
        Ok(())
    }
}

impl Actor for RoleActor {
    type Msg = RoleMsg;
    type State = RoleArgs;
    type Arguments = RoleArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: RoleArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        match custody::migrate_unkeyed_records(&args.context, args.role).await {
            Ok(0) => {}
            Ok(moved) => {
                tracing::info!(role = args.role.name(), moved, "records keyed by principal")
            }
            Err(err) => warn!(role = args.role.name(), %err, "cannot move old records"),
        }
        // Orders and releases interrupted by a restart or by an unreachable node move on by
        // themselves, and a fiduciary's releases held for a delay go once it ends; the timer
        // stops with the actor.
        myself.send_interval(RESUME_INTERVAL, || RoleMsg::Resume);
        if args.role == Role::Principal
            && let Err(err) = custody::remember_settled_heads(&args.context)
        {
            warn!(%err, "cannot read the heads of settled orders");
        }
        Ok(args)
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        args: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let mut message = message;
        let mut span = tracing::Span::none();
        while let RoleMsg::Traced(inner, caller) = message {
            message = *inner;
            span = caller;
        }
        self.dispatch(myself, message, args).instrument(span).await
    }
}

impl RoleActor {
    /// Handles one message (a traced one already unwrapped, inside its caller's span).
    async fn dispatch(
        &self,
        myself: ActorRef<RoleMsg>,
        message: RoleMsg,
        args: &mut RoleArgs,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            RoleMsg::Describe(reply) => {
                let _ = reply.send(args.role);
            }
            RoleMsg::Network(NetworkEvent::EnvelopesReceived {
                peer,
                blocks,
                taken,
            }) => {
                if let Some(taken) = &taken {
                    taken.claim();
                }
                Self::on_bundle(&myself, args, peer, blocks, &taken).await;
                // Verified blocks kept by a step that stopped early are still worth keeping.
                if let Err(err) = args.context.flush().await {
                    warn!(role = args.role.name(), %err, "cannot store received blocks");
                }
                // `taken` was dropped with the bundle's steps done and durable: the sender
                // gets its acknowledgement now (or once a certificate check's step ran).
            }
            // The principal answers peers' M-Pin authentication steps and where its orders'
            // logs end, off its own queue.
            RoleMsg::Network(NetworkEvent::Answer { id, request, .. })
                if args.role == Role::Principal =>
            {
                let ctx = args.context.clone();
                let sessions = args.mpin_sessions.clone();
                tokio::spawn(async move {
                    let response = match request {
                        Request::Head {
                            principal,
                            reference,
                        } => custody::head_answer(&ctx, &principal, &reference),
                        request => mpin::serve(&ctx, &sessions, request).await,
                    };
                    let _ = ctx
                        .network
                        .send(crate::network::NetworkCommand::Respond { id, response })
                        .await;
                });
            }
            RoleMsg::Network(_) => {}
            RoleMsg::Resume => {
                let resumed = match args.role {
                    Role::Principal => {
                        custody::batching::forget_stalled(&args.context);
                        Self::resend_releases(&args.context);
                        let refreshed = Self::refresh_due(&args.context).await;
                        custody::resume(&args.context, RESUME_INTERVAL).map(|mut deliveries| {
                            deliveries.extend(refreshed);
                            deliveries
                        })
                    }
                    Role::Beneficiary => custody::resume_receiving(&args.context, RESUME_INTERVAL),
                    Role::Fiduciary => {
                        // Requests held for a policy: a delay may have ended.
                        match custody::held_requests(&args.context) {
                            Ok(held) => {
                                let me = args.context.network.snapshot().peer_id;
                                if let Some(me) = me {
                                    Self::recheck(&myself, me, held);
                                }
                            }
                            Err(err) => warn!(%err, "cannot read held releases"),
                        }
                        match custody::ending::sweep(&args.context).await {
                            Ok(deliveries) => send_all(&args.context, deliveries),
                            Err(err) => warn!(%err, "cannot delete the shares of expired orders"),
                        }
                        match custody::batching::sign_stalled(&args.context, RESUME_INTERVAL).await
                        {
                            Ok(deliveries) => send_all(&args.context, deliveries),
                            Err(err) => warn!(%err, "cannot sign stalled custody batches"),
                        }
                        custody::crosscheck::show_stalled(
                            &args.context,
                            &mut args.shown_commitments,
                        )
                    }
                };
                match resumed {
                    Ok(deliveries) => send_all(&args.context, deliveries),
                    Err(err) => warn!(%err, "cannot resume stalled orders"),
                }
            }
            RoleMsg::CreateOrder { order, reply } => {
                let result = custody::create_order(&args.context, *order).await;
                let _ = reply.send(result.map(|prepared| {
                    info!(order = %prepared.record.reference, "order made");
                    let record = prepared.record.clone();
                    match custody::batching::hold(&args.context, prepared) {
                        custody::batching::Held::First => {
                            if myself.cast(RoleMsg::SendBatches).is_err() {
                                warn!("held orders not sent: the role stopped");
                            }
                        }
                        custody::batching::Held::Behind => {}
                        custody::batching::Held::SendNow(deliveries) => {
                            send_all(&args.context, deliveries)
                        }
                    }
                    record
                }));
            }
            RoleMsg::SendBatches => match custody::batching::send_held(&args.context) {
                Ok(deliveries) => send_all(&args.context, deliveries),
                Err(err) => warn!(%err, "held orders not sent; resuming sends them"),
            },
            RoleMsg::Cancel { reference, reply } => {
                let result = custody::ending::create_cancel(&args.context, &reference).await;
                let _ = reply.send(result.map(|(record, deliveries)| {
                    send_all(&args.context, deliveries);
                    record
                }));
            }
            RoleMsg::MpinRequest { request, reply } => {
                let result = mpin::create_request(&args.context, request).await;
                let _ = reply.send(result.map(|(record, deliveries)| {
                    send_all(&args.context, deliveries);
                    record
                }));
            }
            RoleMsg::Vote { vote, reply } => {
                let result = custody::create_vote(&args.context, &vote).await;
                let _ = reply.send(result.map(|(cid, deliveries)| {
                    send_all(&args.context, deliveries);
                    cid
                }));
            }
            RoleMsg::Abandon { reference, reply } => {
                let made = custody::keygen::abandon(&args.context, &reference).await;
                let _ = reply.send(made.map(|(record, missing, deliveries)| {
                    send_all(&args.context, deliveries);
                    (record, missing)
                }));
            }
            RoleMsg::Sign {
                reference,
                message,
                reply,
            } => {
                let made = custody::signing::create_sign(&args.context, &reference, message).await;
                let _ = reply.send(made.map(|(record, deliveries)| {
                    send_all(&args.context, deliveries);
                    record
                }));
            }
            RoleMsg::Reshare {
                reference,
                next,
                reply,
            } => {
                let made = custody::refresh::create_reshare(&args.context, &reference, next).await;
                let _ = reply.send(made.map(|(record, deliveries)| {
                    send_all(&args.context, deliveries);
                    record
                }));
            }
            RoleMsg::Release {
                reference,
                beneficiary,
                reply,
            } => match custody::create_release(&args.context, &reference, beneficiary).await {
                Err(err) => {
                    let _ = reply.send(Err(err));
                }
                Ok(plan) => {
                    info!(order = %reference, "release requested");
                    let network = args.context.network.clone();
                    let metrics = args.context.metrics.clone();
                    tokio::spawn(
                        async move {
                            let _ = reply.send(release(network, metrics, plan).await);
                        }
                        .in_current_span(),
                    );
                }
            },
            // Unwrapped by `handle`.
            RoleMsg::Traced(..) => {}
        }
        Ok(())
    }
}

/// Delivers a release: the chain to the beneficiary first, then the request to every
/// fiduciary at once. Answers as soon as t fiduciaries took it (deliveries to the others go
/// on, so an unreachable one does not hold the answer back while it is retried); fails once
/// too few are left to reach t.
async fn release(
    network: NetworkHandle,
    metrics: std::sync::Arc<Metrics>,
    plan: custody::ReleasePlan,
) -> Result<OrderRecord, CustodyError> {
    use futures::StreamExt;
    let record = plan.record;
    let (peer, blocks) = plan.beneficiary;
    if !RoleContext::deliver(&network, &metrics, peer, blocks).await {
        return Err(CustodyError::Conflict(format!(
            "the beneficiary of {} cannot be reached",
            record.reference
        )));
    }
    let needed = record.threshold as usize;
    let mut deliveries: futures::stream::FuturesUnordered<_> = plan
        .fiduciaries
        .into_iter()
        .map(|(peer, blocks)| {
            let network = network.clone();
            let metrics = metrics.clone();
            tokio::spawn(
                async move { RoleContext::deliver(&network, &metrics, peer, blocks).await },
            )
        })
        .collect();
    let (mut reached, mut missed) = (0, 0);
    while let Some(delivered) = deliveries.next().await {
        if delivered.unwrap_or(false) {
            reached += 1;
        } else {
            missed += 1;
        }
        if reached >= needed {
            return Ok(record);
        }
        if record.fiduciaries.len() - missed < needed {
            break;
        }
    }
    Err(CustodyError::Unreachable {
        reached,
        fiduciaries: record.fiduciaries.len(),
        threshold: needed,
    })
}
