//! The issuance steps: a requester's request (signed by the hosted identity it names, if
//! any), an authority's answer under its policy (a share sealed to the requester, or a signed
//! refusal), and the requester taking each answer, adding the shares up once all are in, or
//! recording every authority's refusal.

use std::collections::BTreeMap;

use dta_crypto::mpin::{self, G1Point, G2Point, MpinScalar};
use dta_protocol::Cid;
use dta_protocol::envelope::{Kind, VerifiedEnvelope};
use dta_protocol::mpin::{MpinAnswer, MpinRequest, MpinSecret, MpinSharePoint};

use super::record::{MpinRecord, combined_name, record, save, share_name};
use super::{MASTER_SHARE, MAX_AUTHORITIES, MAX_IDENTITY_LEN, SERVER_SECRET};
use crate::context::{CustodyError, Delivery, RoleContext, encode, internal};
use crate::states::{MpinSide, MpinState};
use crate::store::Column;

/// A request to make.
#[derive(Debug, Clone)]
pub struct NewMpinRequest {
    /// What to ask for.
    pub secret: MpinSecret,
    /// The M-Pin identity (client secrets and permits).
    pub identity: Option<String>,
    /// The permit's date, in days since the Unix epoch (permits).
    pub date: Option<u32>,
    /// The authorities to ask (identity CIDs).
    pub authorities: Vec<Cid>,
}

/// Requester: checks, signs and stores a request; the record and a delivery per authority.
pub async fn create_request(
    ctx: &RoleContext,
    new: NewMpinRequest,
) -> Result<(MpinRecord, Vec<Delivery>), CustodyError> {
    let invalid = |m: &str| Err(CustodyError::Invalid(m.to_owned()));
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
    let share = match policy(ctx, &request, requester_identity.name(), &requester) {
        Err(reason) => Err(reason),
        Ok(()) => {
            let master = master_share(ctx).await?;
            share_of(&master, &request).map_err(Refusal::from)
        }
    };
    let answer = MpinAnswer {
        request: cid,
        secret: request.secret,
        refused: share.as_ref().err().map(ToString::to_string),
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
    if record.answers.len() == record.authorities.len() && !record.refusals.is_empty() {
        record.state = MpinState::Refused;
    } else if record.answers.len() == record.authorities.len() {
        let mut points = Vec::with_capacity(record.authorities.len());
        for authority in &record.authorities {
            points.push(ctx.load_secret(&share_name(&reference, authority)).await?);
        }
        let combined = combine(record.secret, &points)
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

pub(super) fn combine(
    secret: MpinSecret,
    points: &[dta_protocol::order::SecretBytes],
) -> Result<Vec<u8>, mpin::MpinError> {
    Ok(match secret {
        MpinSecret::Server => {
            let shares = points
                .iter()
                .map(|p| G2Point::from_bytes(p.expose()))
                .collect::<Result<Vec<_>, _>>()?;
            mpin::recombine_g2(&shares)?.to_bytes().to_vec()
        }
        MpinSecret::Client | MpinSecret::Permit => {
            let shares = points
                .iter()
                .map(|p| G1Point::from_bytes(p.expose()))
                .collect::<Result<Vec<_>, _>>()?;
            mpin::recombine_g1(&shares)?.to_bytes().to_vec()
        }
    })
}

// ---------------------------------------------------------------------------------------------
// Authentication server
