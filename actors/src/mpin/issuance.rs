//! The issuance steps: a requester's request (signed by the hosted identity it names, if
//! any), an authority's answer under its policy (a share sealed to the requester, or a signed
//! refusal), and the requester taking each answer, adding the shares up once all are in (or,
//! for a master secret generated t-of-n, combining any t of them with Lagrange coefficients
//! once t are in), or recording every authority's refusal.

use std::collections::BTreeMap;

use dta_crypto::mpin::{self, G1Point, G2Point, MpinScalar};
use dta_protocol::Cid;
use dta_protocol::envelope::{Kind, VerifiedEnvelope};
use dta_protocol::mpin::{MasterSecret, MpinAnswer, MpinRequest, MpinSecret, MpinSharePoint};
use dta_protocol::order::OrderRequest;

use super::record::{MpinRecord, combined_name, record, save, share_name};
use super::{MASTER_SHARE, MAX_AUTHORITIES, MAX_IDENTITY_LEN, SERVER_SECRET};
use crate::context::{CustodyError, Delivery, RoleContext, encode, internal};
use crate::custody::{OrderRecord, held_share_name};
use crate::plugin::MPIN_MASTER;
use crate::role::Role;
use crate::states::{MpinSide, MpinState, OrderState};
use crate::store::Column;

pub use dta_api::{MasterChoice, NewMpinRequest};

/// The record of an `mpin-master` order this node keeps, as principal or fiduciary.
fn master_record(
    ctx: &RoleContext,
    principal: &Cid,
    reference: &str,
) -> Result<Option<OrderRecord>, CustodyError> {
    let role = if *principal == ctx.local.cid() {
        Role::Principal
    } else {
        Role::Fiduciary
    };
    let Some(record) = ctx.record(role, principal, reference)? else {
        return Ok(None);
    };
    let order: OrderRequest = ctx.stored_payload(&record.order)?;
    if order.plugin != MPIN_MASTER {
        return Err(CustodyError::Invalid(format!(
            "order {reference} is a {} order, not an {MPIN_MASTER} one",
            order.plugin
        )));
    }
    Ok(Some(record))
}

/// The master secret a request names, and the authorities it asks: the order's record fills
/// in what this node knows, and what is given must agree with it.
fn resolve_master(
    ctx: &RoleContext,
    choice: MasterChoice,
    authorities: &mut Vec<Cid>,
) -> Result<MasterSecret, CustodyError> {
    let principal = choice.principal.unwrap_or_else(|| ctx.local.cid());
    let invalid = |m: String| Err(CustodyError::Invalid(m));
    let threshold = match master_record(ctx, &principal, &choice.reference)? {
        Some(record) => {
            if choice.threshold.is_some_and(|t| t != record.threshold) {
                return invalid(format!(
                    "master secret {} is {}-of-{}",
                    choice.reference,
                    record.threshold,
                    record.fiduciaries.len()
                ));
            }
            if authorities.is_empty() {
                authorities.clone_from(&record.fiduciaries);
            }
            if let Some(stranger) = authorities.iter().find(|a| !record.fiduciaries.contains(a)) {
                return invalid(format!(
                    "{stranger} holds no share of master secret {}",
                    choice.reference
                ));
            }
            record.threshold
        }
        None => match choice.threshold {
            Some(threshold) if !authorities.is_empty() => threshold,
            _ => {
                return invalid(format!(
                    "this node does not know master secret {} of {principal}: name its \
                     threshold and the authorities to ask",
                    choice.reference
                ));
            }
        },
    };
    if threshold < 2 || authorities.len() < threshold as usize {
        return invalid(format!(
            "master secret {} needs {threshold} authorities' shares; {} asked",
            choice.reference,
            authorities.len()
        ));
    }
    Ok(MasterSecret {
        principal,
        reference: choice.reference,
        threshold,
    })
}

/// Requester: checks, signs and stores a request; the record and a delivery per authority.
pub async fn create_request(
    ctx: &RoleContext,
    mut new: NewMpinRequest,
) -> Result<(MpinRecord, Vec<Delivery>), CustodyError> {
    let invalid = |m: &str| Err(CustodyError::Invalid(m.to_owned()));
    let master = match new.master.take() {
        Some(choice) => Some(resolve_master(ctx, choice, &mut new.authorities)?),
        None => None,
    };
    if new.authorities.is_empty() || new.authorities.len() > MAX_AUTHORITIES {
        return invalid(&format!(
            "ask between 1 and {MAX_AUTHORITIES} trust authorities"
        ));
    }
    let mut distinct = new.authorities.clone();
    distinct.sort();
    distinct.dedup();
    if distinct.len() != new.authorities.len() {
        return invalid("an authority is listed twice");
    }
    match (new.secret, &new.identity, new.date) {
        (MpinSecret::Server, None, None) => {}
        (MpinSecret::Server, _, _) => return invalid("a server secret takes no identity or date"),
        (MpinSecret::Client, Some(_), None) | (MpinSecret::Permit, Some(_), Some(_)) => {}
        (MpinSecret::Client, _, _) => return invalid("a client secret needs an identity, no date"),
        (MpinSecret::Permit, _, _) => return invalid("a time permit needs an identity and a date"),
    }
    if let Some(identity) = &new.identity
        && (identity.is_empty() || identity.len() > MAX_IDENTITY_LEN)
    {
        return invalid(&format!(
            "an M-Pin identity is 1 to {MAX_IDENTITY_LEN} bytes"
        ));
    }
    let authorities = ctx.known_identities(&new.authorities)?;
    let peers = authorities
        .iter()
        .map(|a| {
            ctx.peer_of(&a.cid())
                .ok_or_else(|| CustodyError::UnknownIdentity(a.cid().to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let reference = format!(
        "mpin-{}",
        hex::encode(dta_crypto::Secret::<8>::random().expose())
    );
    let request = MpinRequest {
        secret: new.secret,
        identity: new.identity.clone(),
        date: new.date,
        authorities: new.authorities.clone(),
        master: master.clone(),
    };
    // A client secret or permit for an identity this node hosts is asked for by that
    // identity: an authority issues one only to the identity it names.
    let requester = match &new.identity {
        Some(name) if new.secret != MpinSecret::Server && ctx.local.identity().name() != name => {
            ctx.hosted.named(name).unwrap_or_else(|| ctx.local.clone())
        }
        _ => ctx.local.clone(),
    };
    let (request_cid, request_bytes) = ctx
        .publish_as(&requester, Kind::MpinRequest, &reference, None, &request)
        .await?;
    let record = MpinRecord {
        reference,
        side: MpinSide::Requester,
        secret: new.secret,
        identity: new.identity,
        date: new.date,
        requester: requester.cid(),
        authorities: new.authorities,
        request: request_cid,
        answers: BTreeMap::new(),
        refusals: BTreeMap::new(),
        state: MpinState::Requested,
        master,
    };
    save(ctx, &record).await?;
    let deliveries = peers
        .into_iter()
        .map(|peer| (peer, vec![request_bytes.clone()]))
        .collect();
    Ok((record, deliveries))
}

/// Authority: answers a request that names this node, once; a repeated request gets the same
/// answer again.
pub async fn on_request(
    ctx: &RoleContext,
    envelope: &VerifiedEnvelope,
    cid: Cid,
) -> Result<Option<Delivery>, CustodyError> {
    let me = ctx.local.cid();
    let request: MpinRequest = RoleContext::payload(envelope)?;
    if !request.authorities.contains(&me) {
        return Ok(None);
    }
    let reference = envelope.envelope().order.clone();
    let requester = envelope.envelope().sender;
    let peer = ctx
        .peer_of(&requester)
        .ok_or_else(|| CustodyError::UnknownIdentity(requester.to_string()))?;
    if let Some(done) = record(&ctx.store, MpinSide::Authority, &reference)? {
        let answer = done
            .answers
            .get(&me.to_string())
            .and_then(|cid| ctx.block(cid))
            .ok_or_else(|| internal("the recorded answer is missing"))?;
        return Ok(Some((peer, vec![answer])));
    }
    let requester_identity = ctx
        .identity(&requester)
        .ok_or_else(|| CustodyError::UnknownIdentity(requester.to_string()))?;
    let (share, index) = match policy(ctx, &request, requester_identity.name(), &requester) {
        Err(reason) => (Err(reason), None),
        Ok(()) => match &request.master {
            None => {
                let master = master_share(ctx).await?;
                (share_of(&master, &request).map_err(Refusal::from), None)
            }
            Some(master) => match generated_share(ctx, master).await? {
                Ok((index, share)) => (
                    share_of(&share, &request).map_err(Refusal::from),
                    Some(index),
                ),
                Err(refusal) => (Err(refusal), None),
            },
        },
    };
    let answer = MpinAnswer {
        request: cid,
        secret: request.secret,
        refused: share.as_ref().err().map(ToString::to_string),
        index: index.filter(|_| share.is_ok()),
    };
    let sealed = match &share {
        Ok(point) => Some(zeroize::Zeroizing::new(encode(&MpinSharePoint {
            point: point.clone(),
        })?)),
        Err(_) => None,
    };
    let recipients = [&requester_identity];
    let signed = ctx.envelope(
        Kind::MpinShare,
        &reference,
        Some(cid),
        Some(encode(&answer)?),
        sealed.as_ref().map(|s| s.as_slice()),
        if sealed.is_some() { &recipients } else { &[] },
    )?;
    let (answer_cid, answer_bytes) = ctx.save_block(&signed).await?;
    let mut record = MpinRecord {
        reference,
        side: MpinSide::Authority,
        secret: request.secret,
        identity: request.identity,
        date: request.date,
        requester,
        authorities: request.authorities,
        request: cid,
        answers: BTreeMap::from([(me.to_string(), answer_cid)]),
        refusals: BTreeMap::new(),
        state: MpinState::Issued,
        master: request.master,
    };
    if let Err(reason) = share {
        tracing::info!(order = %record.reference, %reason, "M-Pin request refused");
        record.refusals.insert(me.to_string(), reason.to_string());
        record.state = MpinState::Refused;
    } else {
        tracing::info!(order = %record.reference, secret = request.secret.name(), "M-Pin share issued");
    }
    save(ctx, &record).await?;
    Ok(Some((peer, vec![answer_bytes])))
}

/// Why an authority refused a request; its text is the refusal the requester reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// A server secret for an identity not on the operator's list.
    #[error("{0} is not on this authority's list of authentication servers")]
    NotAServer(Cid),
    /// A client secret or permit for another identity than the requester's own.
    #[error("{requester} may only ask for its own identity {own:?}, not {asked:?}")]
    NotItsOwn {
        /// Who asked (its identity CID).
        requester: String,
        /// The requester's identity name.
        own: String,
        /// The identity asked for.
        asked: String,
    },
    /// A client secret or permit naming no identity.
    #[error("no identity named")]
    NoIdentity,
    /// The share could not be made (a permit without its date).
    #[error(transparent)]
    Share(#[from] mpin::MpinError),
    /// A master secret this authority holds no share of, or not one it can use yet.
    #[error("this authority holds no usable share of master secret {reference}: {reason}")]
    NoMasterShare {
        /// The order's reference.
        reference: String,
        /// Why.
        reason: String,
    },
}

/// This authority's share of a master secret generated t-of-n, and its index; or why it
/// cannot answer from it.
async fn generated_share(
    ctx: &RoleContext,
    master: &MasterSecret,
) -> Result<Result<(u32, MpinScalar), Refusal>, CustodyError> {
    let refuse = |reason: String| {
        Ok(Err(Refusal::NoMasterShare {
            reference: master.reference.clone(),
            reason,
        }))
    };
    let record = match ctx.record(Role::Fiduciary, &master.principal, &master.reference)? {
        Some(record) => record,
        None => return refuse("not one of its fiduciaries".into()),
    };
    let order: OrderRequest = ctx.stored_payload(&record.order)?;
    if order.plugin != MPIN_MASTER {
        return refuse(format!("a {} order", order.plugin));
    }
    if record.threshold != master.threshold {
        return refuse(format!(
            "it is {}-of-{}, not {}-of-n",
            record.threshold,
            record.fiduciaries.len(),
            master.threshold
        ));
    }
    if !matches!(record.state, OrderState::Holding | OrderState::Certified) {
        return refuse(format!("the order is {} here", record.state));
    }
    let Some(index) = record.shares.keys().next().copied() else {
        return Err(internal("no share index recorded"));
    };
    let held = ctx
        .load_secret(&held_share_name(
            &master.principal,
            &master.reference,
            record.epoch,
        ))
        .await?;
    let share = MpinScalar::from_bytes(held.expose()).map_err(internal)?;
    Ok(Ok((index, share)))
}

/// Who may ask for what: client secrets and permits only for the requester's own identity
/// name; server secrets only for identities on the operator's allow-list.
pub(super) fn policy(
    ctx: &RoleContext,
    request: &MpinRequest,
    requester_name: &str,
    requester: &Cid,
) -> Result<(), Refusal> {
    match request.secret {
        MpinSecret::Server if ctx.mpin_servers.contains(requester) => Ok(()),
        MpinSecret::Server => Err(Refusal::NotAServer(*requester)),
        MpinSecret::Client | MpinSecret::Permit => match &request.identity {
            Some(identity) if identity == requester_name => Ok(()),
            Some(identity) => Err(Refusal::NotItsOwn {
                requester: requester.to_string(),
                own: requester_name.to_owned(),
                asked: identity.clone(),
            }),
            None => Err(Refusal::NoIdentity),
        },
    }
}

/// This node's master-secret share, created (and staged with the step) on first use.
pub(super) async fn master_share(ctx: &RoleContext) -> Result<MpinScalar, CustodyError> {
    let stored = ctx
        .store
        .get(Column::Keystore, MASTER_SHARE.as_bytes())
        .map_err(internal)?
        .is_some()
        || ctx
            .staged_value(Column::Keystore, MASTER_SHARE.as_bytes())
            .is_some();
    if stored {
        let bytes = ctx.load_secret(MASTER_SHARE).await?;
        return MpinScalar::from_bytes(bytes.expose()).map_err(internal);
    }
    let share = MpinScalar::random();
    ctx.keep_secret(MASTER_SHARE.to_owned(), share.to_bytes().to_vec())
        .await?;
    tracing::info!("M-Pin master-secret share created");
    Ok(share)
}

pub(super) fn share_of(
    master: &MpinScalar,
    request: &MpinRequest,
) -> Result<Vec<u8>, mpin::MpinError> {
    let identity = request.identity.as_deref().unwrap_or_default().as_bytes();
    Ok(match (request.secret, request.date) {
        (MpinSecret::Client, _) => mpin::client_secret(master, identity).to_bytes().to_vec(),
        (MpinSecret::Server, _) => mpin::server_secret(master).to_bytes().to_vec(),
        (MpinSecret::Permit, Some(date)) => mpin::time_permit(master, date, identity)
            .to_bytes()
            .to_vec(),
        (MpinSecret::Permit, None) => return Err(mpin::MpinError::NoShares),
    })
}

/// Requester: takes one authority's answer to its request.
pub async fn on_share(
    ctx: &RoleContext,
    envelope: &VerifiedEnvelope,
    cid: Cid,
) -> Result<(), CustodyError> {
    let reference = envelope.envelope().order.clone();
    let mut record = record(&ctx.store, MpinSide::Requester, &reference)?
        .ok_or_else(|| CustodyError::NotFound(reference.clone()))?;
    let authority = envelope.envelope().sender;
    if !record.authorities.contains(&authority) {
        return Err(CustodyError::Invalid(format!(
            "{authority} answered {reference}, but it was not asked"
        )));
    }
    let answer: MpinAnswer = RoleContext::payload(envelope)?;
    if answer.request != record.request
        || envelope.envelope().prev != Some(record.request)
        || answer.secret != record.secret
    {
        return Err(CustodyError::Invalid(format!(
            "{authority}'s answer does not answer {reference}"
        )));
    }
    let key = authority.to_string();
    if record.state != MpinState::Requested || record.answers.contains_key(&key) {
        return Ok(());
    }
    // A refusal does not end the request at once: the others' answers are still taken, so
    // that the requester learns every authority's reason.
    if let Some(reason) = answer.refused {
        record.answers.insert(key.clone(), cid);
        record.refusals.insert(key, reason);
        if record.answers.len() == record.authorities.len() {
            record.state = MpinState::Refused;
        }
        return save(ctx, &record).await;
    }
    if let Some(master) = &record.master {
        check_index(ctx, &record, master, &authority, answer.index)?;
    }
    let me = ctx
        .own(&record.requester)
        .ok_or_else(|| internal("the requester's identity is not here"))?;
    let sealed: MpinSharePoint = RoleContext::sealed_for(envelope, &me)?;
    // A share must be a point of the right group before it is kept.
    let valid = match record.secret {
        MpinSecret::Server => G2Point::from_bytes(&sealed.point).map(drop),
        MpinSecret::Client | MpinSecret::Permit => G1Point::from_bytes(&sealed.point).map(drop),
    };
    valid.map_err(|e| CustodyError::Invalid(format!("{authority}'s share: {e}")))?;
    ctx.keep_secret(share_name(&reference, &authority), sealed.point.clone())
        .await?;
    record.answers.insert(key, cid);
    let issued = record.answers.len() - record.refusals.len();
    let needed = record
        .master
        .as_ref()
        .map_or(record.authorities.len(), |m| m.threshold as usize);
    if issued < needed && record.answers.len() == record.authorities.len() {
        record.state = MpinState::Refused;
    } else if issued == needed {
        let mut points = Vec::with_capacity(needed);
        for authority in &record.authorities {
            let Some(answer) = record
                .answers
                .get(&authority.to_string())
                .filter(|_| !record.refusals.contains_key(&authority.to_string()))
            else {
                continue;
            };
            let index = ctx.stored_payload::<MpinAnswer>(answer)?.index;
            let point = ctx.load_secret(&share_name(&reference, authority)).await?;
            points.push((index.unwrap_or_default(), point));
        }
        let threshold = record.master.as_ref().map(|m| m.threshold as usize);
        let combined = combine(record.secret, &points, threshold)
            .map_err(|e| CustodyError::Invalid(format!("the shares do not combine: {e}")))?;
        if record.secret == MpinSecret::Server {
            ctx.keep_secret(SERVER_SECRET.to_owned(), combined.clone())
                .await?;
        }
        ctx.keep_secret(combined_name(&reference), combined).await?;
        record.state = MpinState::Issued;
    }
    save(ctx, &record).await
}

/// Refuses a share of a master secret whose index is missing, is another answer's, or (where
/// this node knows the order) is not its authority's place among the fiduciaries.
fn check_index(
    ctx: &RoleContext,
    record: &MpinRecord,
    master: &MasterSecret,
    authority: &Cid,
    index: Option<u32>,
) -> Result<(), CustodyError> {
    let invalid = |m: String| Err(CustodyError::Invalid(m));
    let Some(index) = index.filter(|i| *i >= 1) else {
        return invalid(format!(
            "{authority}'s share names no index in the master secret"
        ));
    };
    for (other, cid) in &record.answers {
        if !record.refusals.contains_key(other)
            && ctx.stored_payload::<MpinAnswer>(cid)?.index == Some(index)
        {
            return invalid(format!(
                "{authority}'s share claims {other}'s index {index}"
            ));
        }
    }
    if let Some(order) = master_record(ctx, &master.principal, &master.reference)?
        && order.fiduciaries.get(index as usize - 1) != Some(authority)
    {
        return invalid(format!(
            "{authority} is not fiduciary {index} of master secret {}",
            master.reference
        ));
    }
    Ok(())
}

/// The secret from its shares: all of them added up, or, of a master secret shared
/// `threshold`-of-n, the first `threshold` weighted by their Lagrange coefficients.
pub(super) fn combine(
    secret: MpinSecret,
    points: &[(u32, dta_protocol::order::SecretBytes)],
    threshold: Option<usize>,
) -> Result<Vec<u8>, mpin::MpinError> {
    Ok(match secret {
        MpinSecret::Server => {
            let shares = points
                .iter()
                .map(|(i, p)| Ok((*i, G2Point::from_bytes(p.expose())?)))
                .collect::<Result<Vec<_>, mpin::MpinError>>()?;
            match threshold {
                Some(t) => mpin::recombine_g2_threshold(&shares, t)?,
                None => {
                    mpin::recombine_g2(&shares.into_iter().map(|(_, p)| p).collect::<Vec<_>>())?
                }
            }
            .to_bytes()
            .to_vec()
        }
        MpinSecret::Client | MpinSecret::Permit => {
            let shares = points
                .iter()
                .map(|(i, p)| Ok((*i, G1Point::from_bytes(p.expose())?)))
                .collect::<Result<Vec<_>, mpin::MpinError>>()?;
            match threshold {
                Some(t) => mpin::recombine_g1_threshold(&shares, t)?,
                None => {
                    mpin::recombine_g1(&shares.into_iter().map(|(_, p)| p).collect::<Vec<_>>())?
                }
            }
            .to_bytes()
            .to_vec()
        }
    })
}

// ---------------------------------------------------------------------------------------------
// Authentication server
