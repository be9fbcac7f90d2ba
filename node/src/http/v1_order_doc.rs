//! The original D-TA's `OrderDoc`, as `GET /v1/order/{ref}` answers it in its `order` string:
//! the envelope `Header` and the `OrderDocument` of the order's newest step, under the
//! original's own key names, filled from dta's log of the order.
//!
//! The original kept one document per order and rewrote it at every step (part 1 the order,
//! part 2 the fiduciary's commitment, part 3 the principal's redemption, part 4 the released
//! secret). dta logs each step as its own signed envelope instead; this module reads the
//! principal's record and the envelopes it points to and says what each original field
//! stands for:
//!
//! | original | dta |
//! |---|---|
//! | `IPFSID` | the CID of the newest envelope (the answer's `orderCID`) |
//! | `Version`, `DateTime`, `PreviousCID` | that envelope's version, time (seconds) and `prev` |
//! | `BodyTypeCode`, `EncryptedBodyTypeCode` | 101 (an order document) where it has a public or sealed payload, else 0 |
//! | `Recipients` | its sealed payload's recipients: `CID`, `EncapsulatedKey` (the KEM ciphertext), `CipherText` (the wrapped key) |
//! | `Type` | the plugin |
//! | `Coin` | the order's `coin` input (0 when it has none) |
//! | `PrincipalCID`, `Reference`, `Timestamp` | the order request's principal, reference and time |
//! | `BeneficiaryCID` | the beneficiary the order named, else the one its latest release named |
//! | `OrderPart2` | the commitment: its public key as `/v1` answers it, its `prev`, its time |
//! | `OrderPart3` | the latest release request: its CID as `Redemption`, its `prev`, its time |
//! | `OrderPart4` | the beneficiary's receipt of that release: its `prev`, its time, and `Secret` |
//!
//! A part the order has not reached yet is `null`. `OrderPart4.Secret` is the hex of the
//! secret only where `POST /v1/order/secret` would give it to the same caller: this node
//! received it as the beneficiary. Everywhere else the key is there and empty.
//!
//! It does not decrypt or verify anything (stored blocks were verified when they arrived),
//! and it does not reproduce the original's protobuf encoding, its SIKE key encapsulation
//! (`EncryptedBodyIV`, `Recipients[].IV` and `Recipients[].Version` stay empty), nor
//! `BeneficiaryEncryptedData`: dta seals no data to the beneficiary in the release request.

use axum::http::StatusCode;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use dta_actors::custody::OrderRecord;
use dta_actors::store::{Column, Store};
use dta_protocol::Cid;
use dta_protocol::dagcbor::{self, Limits};
use dta_protocol::envelope::{Envelope, SignedEnvelope};
use dta_protocol::order::{Commitment, OrderRequest, Receipt, ReleaseRequest};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::super::ApiError;

/// The original's type code of an order document (its `docList.go`).
const ORDER_DOCUMENT_TYPE: u32 = 101;
/// The original's type code of no document.
const NO_DOCUMENT_TYPE: u32 = 0;
/// The version the original gave every envelope and document type.
const ORIGINAL_VERSION: u32 = 1;

/// `Header` and `OrderDocument` side by side, as Go's JSON encoding of the original's
/// `OrderDoc` (two embedded structs) puts them. No `Debug`: it may hold the secret.
#[derive(Serialize)]
pub(super) struct OrderDoc<'a> {
    #[serde(flatten)]
    header: Header,
    #[serde(flatten)]
    document: OrderDocument<'a>,
}

/// The original's envelope `Header`.
#[derive(Debug, Serialize)]
struct Header {
    #[serde(rename = "IPFSID")]
    ipfs_id: String,
    #[serde(rename = "Version")]
    version: u64,
    #[serde(rename = "DateTime")]
    date_time: u64,
    #[serde(rename = "PreviousCID")]
    previous_cid: String,
    #[serde(rename = "BodyTypeCode")]
    body_type_code: u32,
    #[serde(rename = "BodyVersion")]
    body_version: u32,
    #[serde(rename = "EncryptedBodyTypeCode")]
    encrypted_body_type_code: u32,
    #[serde(rename = "EncryptedBodyVersion")]
    encrypted_body_version: u32,
    /// Base64, as Go encodes bytes; dta's seal has no IV of its own here.
    #[serde(rename = "EncryptedBodyIV")]
    encrypted_body_iv: String,
    #[serde(rename = "Recipients")]
    recipients: Vec<Recipient>,
}

/// One recipient of the sealed payload, byte fields in base64 as Go encodes them.
#[derive(Debug, Serialize)]
struct Recipient {
    #[serde(rename = "Version")]
    version: u32,
    #[serde(rename = "CID")]
    cid: String,
    #[serde(rename = "EncapsulatedKey")]
    encapsulated_key: String,
    #[serde(rename = "CipherText")]
    cipher_text: String,
    #[serde(rename = "IV")]
    iv: String,
}

/// The original's `OrderDocument`. No `Debug`: it may hold the secret.
#[derive(Serialize)]
struct OrderDocument<'a> {
    #[serde(rename = "Type")]
    kind: String,
    #[serde(rename = "Coin")]
    coin: i64,
    #[serde(rename = "PrincipalCID")]
    principal_cid: String,
    #[serde(rename = "BeneficiaryCID")]
    beneficiary_cid: String,
    #[serde(rename = "Reference")]
    reference: String,
    #[serde(rename = "Timestamp")]
    timestamp: u64,
    #[serde(rename = "OrderPart2")]
    part2: Option<OrderPart2>,
    #[serde(rename = "OrderPart3")]
    part3: Option<OrderPart3>,
    #[serde(rename = "OrderPart4")]
    part4: Option<OrderPart4<'a>>,
}

/// The fiduciary's answer to the order: the commitment.
#[derive(Debug, Serialize)]
struct OrderPart2 {
    #[serde(rename = "CommitmentPublicKey")]
    commitment_public_key: String,
    #[serde(rename = "PreviousOrderCID")]
    previous_order_cid: String,
    #[serde(rename = "Timestamp")]
    timestamp: u64,
}

/// The principal's redemption: the release request.
#[derive(Debug, Serialize)]
struct OrderPart3 {
    #[serde(rename = "Redemption")]
    redemption: String,
    #[serde(rename = "PreviousOrderCID")]
    previous_order_cid: String,
    #[serde(rename = "BeneficiaryEncryptedData")]
    beneficiary_encrypted_data: String,
    #[serde(rename = "Timestamp")]
    timestamp: u64,
}

/// The released secret: the beneficiary's receipt, and the secret where it is held here.
/// No `Debug`: it may hold the secret.
#[derive(Serialize)]
struct OrderPart4<'a> {
    /// Borrowed, so that the only owned copy is the caller's, which it wipes.
    #[serde(rename = "Secret")]
    secret: &'a str,
    #[serde(rename = "PreviousOrderCID")]
    previous_order_cid: String,
    #[serde(rename = "Timestamp")]
    timestamp: u64,
}

/// What the original's `OrderDoc` is built from: the principal's record, the receipt of its
/// latest release if this node knows one, and the secret's hex if this node received it.
/// No `Debug`: it may hold the secret.
pub(super) struct Sources<'a> {
    /// This node's principal record of the order.
    pub(super) record: &'a OrderRecord,
    /// The receipt of the latest release, from the principal's record or, if the receipt is
    /// still on its way there, from this node's own beneficiary record.
    pub(super) receipt: Option<Cid>,
    /// The hex of the secret, if this node received it as the beneficiary.
    pub(super) secret_hex: Option<&'a str>,
    /// The `commitment` field as `/v1` answers it (see `commitment_hex`).
    pub(super) commitment_key: Option<String>,
}

impl<'a> OrderDoc<'a> {
    /// Reads the envelopes `sources` points to from `store`.
    pub(super) fn build(store: &Store, sources: Sources<'a>) -> Result<Self, ApiError> {
        let record = sources.record;
        let head = stored_envelope(store, &record.head)?;
        let (order_envelope, order) = envelope_with::<OrderRequest>(store, &record.order)?;
        let latest_release = record.releases.values().next_back();
        let release = latest_release
            .map(|cid| envelope_with::<ReleaseRequest>(store, cid).map(|r| (*cid, r)))
            .transpose()?;
        let part2 = match record.commitment {
            Some(cid) => {
                let (envelope, _) = envelope_with::<Commitment>(store, &cid)?;
                Some(OrderPart2 {
                    commitment_public_key: sources.commitment_key.unwrap_or_default(),
                    previous_order_cid: cid_text(envelope.prev),
                    timestamp: seconds(envelope.timestamp),
                })
            }
            None => None,
        };
        let part3 = release.as_ref().map(|(cid, (envelope, _))| OrderPart3 {
            redemption: cid.to_string(),
            previous_order_cid: cid_text(envelope.prev),
            beneficiary_encrypted_data: String::new(),
            timestamp: seconds(envelope.timestamp),
        });
        let part4 = match sources.receipt {
            Some(cid) => {
                let (envelope, _) = envelope_with::<Receipt>(store, &cid)?;
                Some(OrderPart4 {
                    secret: sources.secret_hex.unwrap_or(""),
                    previous_order_cid: cid_text(envelope.prev),
                    timestamp: seconds(envelope.timestamp),
                })
            }
            None => None,
        };
        let beneficiary = order
            .beneficiary
            .or_else(|| release.as_ref().map(|(_, (_, r))| r.beneficiary));
        Ok(Self {
            header: Header {
                ipfs_id: record.head.to_string(),
                version: head.version,
                date_time: seconds(head.timestamp),
                previous_cid: cid_text(head.prev),
                body_type_code: type_code(head.public.is_some()),
                body_version: ORIGINAL_VERSION,
                encrypted_body_type_code: type_code(head.ciphertext.is_some()),
                encrypted_body_version: ORIGINAL_VERSION,
                encrypted_body_iv: String::new(),
                recipients: head
                    .recipients
                    .iter()
                    .map(|r| Recipient {
                        version: 0,
                        cid: r.identity.to_string(),
                        encapsulated_key: BASE64.encode(&r.kem_ciphertext),
                        cipher_text: BASE64.encode(&r.wrapped_key),
                        iv: String::new(),
                    })
                    .collect(),
            },
            document: OrderDocument {
                kind: order.plugin.clone(),
                // Only bitcoinwallet takes a coin, and it checked the input when ordering.
                coin: order
                    .input
                    .get("coin")
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(0),
                principal_cid: order.principal.to_string(),
                beneficiary_cid: beneficiary.map(|c| c.to_string()).unwrap_or_default(),
                reference: order_envelope.order,
                timestamp: seconds(order_envelope.timestamp),
                part2,
                part3,
                part4,
            },
        })
    }
}

/// The type code the original gave a payload that is there, or not.
fn type_code(present: bool) -> u32 {
    if present {
        ORDER_DOCUMENT_TYPE
    } else {
        NO_DOCUMENT_TYPE
    }
}

/// Envelope times are milliseconds; the original's are Unix seconds.
fn seconds(millis: u64) -> u64 {
    millis / 1000
}

fn cid_text(cid: Option<Cid>) -> String {
    cid.map(|c| c.to_string()).unwrap_or_default()
}

fn internal(message: impl Into<String>) -> ApiError {
    ApiError(StatusCode::INTERNAL_SERVER_ERROR, message.into())
}

/// A stored envelope (stored blocks were verified when they arrived).
pub(super) fn stored_envelope(store: &Store, cid: &Cid) -> Result<Envelope, ApiError> {
    let bytes = store
        .get(Column::Blocks, &cid.to_bytes())
        .map_err(|e| internal(e.to_string()))?
        .ok_or_else(|| internal(format!("block {cid} missing")))?;
    SignedEnvelope::decode(&bytes)
        .map(|signed| signed.envelope)
        .map_err(|e| internal(e.to_string()))
}

/// A stored envelope and its public payload.
pub(super) fn envelope_with<T: DeserializeOwned + Serialize>(
    store: &Store,
    cid: &Cid,
) -> Result<(Envelope, T), ApiError> {
    let envelope = stored_envelope(store, cid)?;
    let public = envelope
        .public
        .as_ref()
        .ok_or_else(|| internal(format!("block {cid} has no payload")))?;
    let payload =
        dagcbor::decode(public, Limits::default()).map_err(|e| internal(e.to_string()))?;
    Ok((envelope, payload))
}
