//! The original D-TA's `/v1` API, with its JSON field names, so that its clients keep
//! working: `GET /v1/status`, `POST /v1/identity` (an identity this node hosts: its keys stay
//! in this node's keystore and releases to it are received here), `GET /v1/identity`,
//! `GET /v1/identity/{cid}`, and for each plugin
//! `POST /v1/order`, `GET /v1/order`, `GET /v1/order/{ref}` and `POST /v1/order/secret`.
//!
//! A `/v1` order is a native order underneath: the plugin, fiduciaries and threshold come from
//! `dta run --plugin/--fiduciary/--threshold` (by default `milagro` with this node alone, like
//! the original's multi mode), and the calls wait for the step they stand for (certified, or
//! secret received). The `extension` fields keep the original's names:
//! - `safeguardsecret`: the order takes `plainText` and answers `cypherText` (dta's sealed
//!   secret), `v` (the commitment CID) and `t` (the order request CID); the secret call checks
//!   all three and answers `plainText`.
//! - `bitcoinwallet`: the order takes `coin` (0 mainnet, 1 testnet); both calls answer
//!   `address`, and `commitment` is the compressed public key.
//! - `milagro`: `commitment` is the uncompressed public key.
//!
//! `secret` is the hex of what the beneficiary rebuilt (the private key for the key plugins).
//! Only the node that is (or hosts) the beneficiary answers it; a release to another node
//! answers without it, and that node reads it from `/v2/orders/{ref}/secret`. A release that
//! would be received here, on a node that does not play the beneficiary role, is refused
//! before anything is published.
//!
//! `GET /v1/order/{ref}` answers the original's `OrderDoc` as a JSON string, read from the
//! order's log by [`order_doc`]. Request bodies are read as the original's Go decoder read
//! them: JSON whatever the content type, top-level keys in any case (see [`read_body`]).
//!
//! The safeguardsecret check fields (`cypherText`, `v`, `t`) are public: anyone reads them
//! from `GET /v2/orders/{ref}`. They catch a mistaken call, not an unauthorised one.

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use dta_actors::custody::{CustodyEvent, NewOrder, OrderRecord, OrderState};
use dta_actors::identities::KnownIdentity;
use dta_actors::plugin::{ADDRESS, BITCOIN_WALLET, MILAGRO, SAFEGUARD_SECRET};
use dta_actors::roles::{Role, RoleMsg};
use dta_actors::store::Column;
use dta_crypto::secp256k1;
use dta_protocol::Cid;
use dta_protocol::block::parse_cid;
use dta_protocol::dagcbor::{self, Limits};
use dta_protocol::order::{Commitment, OrderRequest, SecretBytes};
use serde::Deserialize;
use serde_json::Value;
use zeroize::Zeroizing;

use super::{ApiError, ApiState};

#[path = "v1_answers.rs"]
pub(super) mod answers;
#[path = "v1_order_doc.rs"]
mod order_doc;

use answers::{
    CreatedIdentityAnswer, Extension, GetOrderAnswer, IdentityAnswer, IdentityListAnswer,
    OrderAnswer, OrderListAnswer, SecretAnswer, SecretExtension, StatusAnswer,
};

/// What `/v1/status` reports as the node type: the original's names for role sets.
fn node_type(roles: &[String]) -> &'static str {
    let has = |r: &str| roles.iter().any(|x| x == r);
    match (has("principal"), has("fiduciary")) {
        (true, true) => "multi",
        (true, false) => "principal",
        (false, true) => "fiduciary",
        (false, false) => "beneficiary",
    }
}

pub async fn status(State(state): State<ApiState>) -> Json<StatusAnswer> {
    Json(StatusAnswer {
        application: "Milagro Distributed Trust",
        time_stamp: rfc3339_now(),
        api_version: "v1",
        node_cid: state.identity.clone(),
        extension_vendor: "dta",
        plugin: state.order_defaults.plugin.clone(),
        node_type: node_type(&state.roles),
        extension: Extension::new(),
    })
}

/// Paging of `GET /v1/identity` and `GET /v1/order`. The original required `page` and
/// `perPage`; they default to 0 and 10 here, the defaults its API description gave.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
pub struct Paging {
    page: Option<usize>,
    per_page: Option<usize>,
    sort_by: Option<String>,
}

/// Most entries one page lists.
const MAX_PER_PAGE: usize = 1000;

/// The entries of one page.
#[derive(Debug, Clone, Copy)]
struct Window {
    skip: usize,
    take: usize,
}

impl Paging {
    fn window(&self) -> Result<Window, ApiError> {
        let take = self.per_page.unwrap_or(10);
        if take == 0 || take > MAX_PER_PAGE {
            return Err(error(
                StatusCode::BAD_REQUEST,
                format!("perPage must be between 1 and {MAX_PER_PAGE}"),
            ));
        }
        // A page past the end is empty, however far past.
        let skip = self.page.unwrap_or(0).saturating_mul(take);
        Ok(Window { skip, take })
    }

    /// As the original: `dateCreatedAsc` lists the oldest first, anything else the newest.
    fn newest_first(&self) -> bool {
        self.sort_by.as_deref() != Some("dateCreatedAsc")
    }
}

impl Window {
    fn of<T>(&self, all: Vec<T>) -> impl Iterator<Item = T> {
        all.into_iter().skip(self.skip).take(self.take)
    }
}

pub async fn identities(
    State(state): State<ApiState>,
    query: Result<Query<Paging>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<IdentityListAnswer>, ApiError> {
    let Query(paging) = query.map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.body_text()))?;
    let window = paging.window()?;
    let mut all: Vec<KnownIdentity> = state
        .directory
        .borrow()
        .identities
        .values()
        .cloned()
        .collect();
    all.sort_by_key(|i| i.created_at);
    if paging.newest_first() {
        all.reverse();
    }
    Ok(Json(IdentityListAnswer {
        id_document_list: window.of(all).map(|i| IdentityAnswer::of(&i)).collect(),
    }))
}

pub async fn identity(
    State(state): State<ApiState>,
    Path(cid): Path<String>,
) -> Result<Json<IdentityAnswer>, ApiError> {
    Ok(Json(IdentityAnswer::of(&super::known_identity(
        &state, &cid,
    )?)))
}

/// The body of `POST /v1/identity` (the original 0.1.0 API), keys folded by [`read_body`].
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = V1IdentityBody)]
pub struct IdentityBody {
    name: Option<String>,
}

/// Creates an identity this node hosts, as the original's `POST /v1/identity` did: its keys
/// stay in this node's keystore, and releases to it are received here.
pub async fn create_identity(
    State(state): State<ApiState>,
    body: Bytes,
) -> Result<Json<CreatedIdentityAnswer>, ApiError> {
    let body: IdentityBody = read_body(&body, r#"{"name": string}"#)?;
    let name = body
        .name
        .ok_or_else(|| error(StatusCode::BAD_REQUEST, "name is required"))?;
    // The original accepted letters and digits only.
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "name must be letters and digits",
        ));
    }
    let known = super::host_identity(&state, &name).await?;
    Ok(Json(CreatedIdentityAnswer {
        id_document_cid: known.cid.to_string(),
    }))
}

/// Reads a `/v1` request body as the original's Go decoder did: as JSON whatever the
/// `Content-Type`, matching the top-level keys without regard to case (the bodies' field names
/// are lower case). Keys inside `extension` keep their case, as they did there. A body of the
/// wrong shape gets `expected` as its error, never serde's message, which would quote the
/// value it did not expect (a secret, for `plainText`).
fn read_body<T: serde::de::DeserializeOwned>(bytes: &[u8], expected: &str) -> Result<T, ApiError> {
    let wrong_shape = || {
        error(
            StatusCode::BAD_REQUEST,
            format!("the body must be {expected}"),
        )
    };
    // A syntax error names a line and column, never the text there.
    let fields = match serde_json::from_slice(bytes) {
        Ok(Value::Object(fields)) => fields,
        Ok(_) => return Err(wrong_shape()),
        Err(e) => {
            return Err(error(
                StatusCode::BAD_REQUEST,
                format!("bad JSON body: {e}"),
            ));
        }
    };
    let folded = fields
        .into_iter()
        .map(|(key, value)| (key.to_ascii_lowercase(), value))
        .collect();
    serde_json::from_value(Value::Object(folded)).map_err(|_| wrong_shape())
}

/// How long a `/v1` order call waits for its step.
const STEP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

fn error(status: StatusCode, message: impl Into<String>) -> ApiError {
    ApiError(status, message.into())
}

/// The body of `POST /v1/order`, keys folded by [`read_body`]. No `Debug`: safeguardsecret's
/// `extension.plainText` is the secret.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = V1OrderBody)]
pub struct OrderBody {
    #[serde(default, rename = "beneficiaryiddocumentcid")]
    beneficiary_id_document_cid: Option<String>,
    #[serde(default)]
    extension: BTreeMap<String, String>,
}

/// Waits until `reference`'s record for `role` on this node reaches `state`.
async fn wait_for(
    api: &ApiState,
    events: &mut tokio::sync::broadcast::Receiver<CustodyEvent>,
    reference: &str,
    role: Role,
    state: OrderState,
) -> Result<(), ApiError> {
    tokio::time::timeout(STEP_TIMEOUT, async {
        loop {
            match events.recv().await {
                Ok(event)
                    if event.reference == reference
                        && event.role == role
                        && event.state == state.into() =>
                {
                    return Ok(());
                }
                // Events were missed under load: the stored record says whether this was one.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_))
                    if record_of(api, role, reference).is_ok_and(|r| r.state == state) =>
                {
                    return Ok(());
                }
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                    return Err(error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "the node is stopping",
                    ));
                }
            }
        }
    })
    .await
    .map_err(|_| {
        error(
            StatusCode::GATEWAY_TIMEOUT,
            format!("order {reference} did not reach {state} in time"),
        )
    })?
}

/// This node's own identity.
fn own_identity(state: &ApiState) -> Result<Cid, ApiError> {
    state
        .identity
        .parse()
        .map_err(|_| error(StatusCode::INTERNAL_SERVER_ERROR, "bad own identity"))
}

fn principal_record(state: &ApiState, reference: &str) -> Result<OrderRecord, ApiError> {
    record_of(state, Role::Principal, reference)
}

/// This node's record of its own order `reference` (as principal, or as the beneficiary of
/// its own order).
fn record_of(state: &ApiState, role: Role, reference: &str) -> Result<OrderRecord, ApiError> {
    let me = own_identity(state)?;
    dta_actors::custody::stored_record(&state.store, role, &me, reference)
        .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .ok_or_else(|| error(StatusCode::NOT_FOUND, format!("no order {reference} here")))
}

fn commitment(state: &ApiState, record: &OrderRecord) -> Result<Commitment, ApiError> {
    let cid = record
        .commitment
        .ok_or_else(|| error(StatusCode::CONFLICT, "the order has no commitment yet"))?;
    super::stored_commitment(state, &cid)
}

/// The `commitment` field as the original's plugins wrote it: `milagro` the uncompressed
/// public key, the others the compressed one (or, for a dealt secret, its group key).
fn commitment_hex(commitment: &Commitment) -> String {
    if commitment.plugin == MILAGRO
        && let Ok(key) = secp256k1::PublicKey::from_sec1(&commitment.public_key)
    {
        return hex::encode(key.to_uncompressed());
    }
    hex::encode(&commitment.public_key)
}

/// The plugin's `extension` of an order or secret answer.
fn extension(record: &OrderRecord, commitment: &Commitment) -> Extension {
    match commitment.plugin.as_str() {
        SAFEGUARD_SECRET => Extension::from([
            (
                "cypherText",
                commitment
                    .output
                    .get("sealed_secret")
                    .cloned()
                    .unwrap_or_default(),
            ),
            (
                "v",
                record.commitment.map(|c| c.to_string()).unwrap_or_default(),
            ),
            ("t", record.order.to_string()),
        ]),
        BITCOIN_WALLET => commitment
            .output
            .get(ADDRESS)
            .map(|address| Extension::from([("address", address.clone())]))
            .unwrap_or_default(),
        _ => Extension::new(),
    }
}

fn optional_cid(text: Option<&str>) -> Result<Option<Cid>, ApiError> {
    match text {
        Some(cid) if !cid.is_empty() => parse_cid(cid)
            .map(Some)
            .map_err(|e| error(StatusCode::BAD_REQUEST, format!("{cid:?}: {e}"))),
        _ => Ok(None),
    }
}

fn principal(state: &ApiState) -> Result<ractor::ActorRef<RoleMsg>, ApiError> {
    ractor::registry::where_is(format!("{}/principal", state.prefix))
        .map(Into::into)
        .ok_or_else(|| {
            error(
                StatusCode::CONFLICT,
                "this node does not play the principal role",
            )
        })
}

pub async fn order(
    State(state): State<ApiState>,
    body: Bytes,
) -> Result<Json<OrderAnswer>, ApiError> {
    let body: OrderBody = read_body(
        &body,
        r#"{"beneficiaryIDDocumentCID": string, "extension": {string: string}}"#,
    )?;
    let defaults = &state.order_defaults;
    let plugin = defaults.plugin.clone();
    let mut input = body.extension;
    // The original's safeguardsecret took its secret as `extension.plainText`.
    let secret = if plugin == SAFEGUARD_SECRET {
        let plain_text = input
            .remove("plainText")
            .ok_or_else(|| error(StatusCode::BAD_REQUEST, "extension.plainText is required"))?;
        input.clear();
        Some(SecretBytes::new(plain_text.into_bytes()))
    } else {
        None
    };
    let me = own_identity(&state)?;
    let beneficiary = optional_cid(body.beneficiary_id_document_cid.as_deref())?;
    let fiduciaries = if defaults.fiduciaries.is_empty() {
        vec![me]
    } else {
        defaults.fiduciaries.clone()
    };
    let generated = dta_actors::plugin::find(&plugin)
        .is_some_and(|p| p.key_source() == dta_actors::plugin::KeySource::Generated);
    // Generated keys of `/v1` orders are n-of-n, as the original's were.
    let threshold = match defaults.threshold {
        Some(threshold) if !generated => threshold,
        _ => fiduciaries.len() as u32,
    };
    let reference = format!(
        "v1-{}",
        hex::encode(dta_crypto::Secret::<16>::random().expose())
    );
    let mut events = state.custody_events.subscribe();
    let new = NewOrder {
        reference: Some(reference.clone()),
        plugin,
        fiduciaries,
        threshold,
        beneficiary,
        policy: dta_protocol::policy::ReleasePolicy::default(),
        input,
        secret,
        refresh_every_ms: None,
    };
    ractor::call_t!(
        principal(&state)?,
        |reply| RoleMsg::CreateOrder {
            order: Box::new(new),
            reply
        }
        .traced(),
        60_000
    )
    .map_err(|e| error(StatusCode::GATEWAY_TIMEOUT, e.to_string()))?
    .map_err(ApiError::from)?;
    wait_for(
        &state,
        &mut events,
        &reference,
        Role::Principal,
        OrderState::Certified,
    )
    .await?;
    let record = principal_record(&state, &reference)?;
    let commitment = commitment(&state, &record)?;
    Ok(Json(OrderAnswer {
        commitment: commitment_hex(&commitment),
        created_at: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        extension: extension(&record, &commitment),
        order_reference: reference,
    }))
}

/// The body of `POST /v1/order/secret`, keys folded by [`read_body`]. No `Debug`, like
/// [`OrderBody`].
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = V1SecretBody)]
pub struct SecretBody {
    #[serde(rename = "orderreference")]
    order_reference: String,
    #[serde(default, rename = "beneficiaryiddocumentcid")]
    beneficiary_id_document_cid: Option<String>,
    #[serde(default)]
    extension: BTreeMap<String, String>,
}

pub async fn order_secret(
    State(state): State<ApiState>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let body: SecretBody = read_body(
        &body,
        r#"{"orderReference": string, "beneficiaryIDDocumentCID": string, "extension": {string: string}}"#,
    )?;
    let reference = body.order_reference;
    let record = principal_record(&state, &reference)?;
    let commitment = commitment(&state, &record)?;
    if commitment.plugin == SAFEGUARD_SECRET {
        let expected = extension(&record, &commitment);
        for field in ["cypherText", "v", "t"] {
            if body.extension.get(field) != expected.get(field) {
                return Err(error(
                    StatusCode::BAD_REQUEST,
                    format!("extension.{field} does not match order {reference}"),
                ));
            }
        }
    }
    let me = own_identity(&state)?;
    let ordered = record_beneficiary(&state, &record)?;
    let requested = optional_cid(body.beneficiary_id_document_cid.as_deref())?;
    let named = ordered.is_some() || requested.is_some();
    let beneficiary = match (ordered, requested) {
        (Some(ordered), Some(requested)) if ordered != requested => {
            return Err(error(
                StatusCode::BAD_REQUEST,
                format!("order {reference} is for beneficiary {ordered}, not {requested}"),
            ));
        }
        (Some(beneficiary), _) | (None, Some(beneficiary)) => beneficiary,
        // As the original: bitcoinwallet needs a beneficiary; the others default to this node.
        (None, None) if commitment.plugin == BITCOIN_WALLET => {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "no beneficiary: name beneficiaryIDDocumentCID in the order or here",
            ));
        }
        (None, None) => me,
    };
    // This node receives for its own identity and for those it hosts.
    let here = beneficiary == me || state.hosted.get(&beneficiary).is_some();
    // Only the beneficiary role takes shares in: without it a release here would wait out the
    // timeout and use up the order's release for nobody, so it is refused before anything is
    // published.
    if here && !state.roles.iter().any(|r| r == Role::Beneficiary.name()) {
        let message = if named {
            format!(
                "beneficiary {beneficiary} receives on this node, which does not play the \
                 beneficiary role: nothing here could take the shares of order {reference}"
            )
        } else {
            format!(
                "order {reference} names no beneficiary and this node does not play the \
                 beneficiary role: name one in beneficiaryIDDocumentCID"
            )
        };
        return Err(error(StatusCode::BAD_REQUEST, message));
    }
    let mut events = state.custody_events.subscribe();
    let already = if here {
        super::received_secret(&state, &me, &reference).await?
    } else {
        None
    };
    let done = match here {
        true => already.is_some(),
        false => !record.receipts.is_empty(),
    };
    if !done {
        let release_reference = reference.clone();
        ractor::call_t!(
            principal(&state)?,
            |reply| RoleMsg::Release {
                reference: release_reference,
                beneficiary: Some(beneficiary),
                reply
            }
            .traced(),
            60_000
        )
        .map_err(|e| error(StatusCode::GATEWAY_TIMEOUT, e.to_string()))?
        .map_err(ApiError::from)?;
        if here {
            wait_for(
                &state,
                &mut events,
                &reference,
                Role::Beneficiary,
                OrderState::Received,
            )
            .await?;
        } else {
            wait_for(
                &state,
                &mut events,
                &reference,
                Role::Principal,
                OrderState::Released,
            )
            .await?;
        }
    }
    let commitment_key = commitment_hex(&commitment);
    // Only a beneficiary holds the secret; another beneficiary reads it from its own node.
    if !here {
        return Ok(Json(SecretAnswer {
            secret: None,
            commitment: &commitment_key,
            order_reference: &reference,
            extension: SecretExtension::Public(extension(&record, &commitment)),
        })
        .into_response());
    }
    let secret = match already {
        Some(secret) => secret,
        None => super::received_secret(&state, &me, &reference)
            .await?
            .ok_or_else(|| error(StatusCode::INTERNAL_SERVER_ERROR, "secret missing"))?,
    };
    let secret_hex = Zeroizing::new(hex::encode(secret.expose()));
    let plain_text = Zeroizing::new(String::from_utf8_lossy(secret.expose()).into_owned());
    // The answer's own buffer goes to the socket and cannot be wiped; the copies here are.
    Ok(Json(SecretAnswer {
        secret: Some(&secret_hex),
        commitment: &commitment_key,
        order_reference: &reference,
        extension: if commitment.plugin == SAFEGUARD_SECRET {
            SecretExtension::PlainText {
                plain_text: &plain_text,
            }
        } else {
            SecretExtension::Public(extension(&record, &commitment))
        },
    })
    .into_response())
}

/// The beneficiary an order named when it was made.
fn record_beneficiary(state: &ApiState, record: &OrderRecord) -> Result<Option<Cid>, ApiError> {
    let (_, order) = order_doc::envelope_with::<OrderRequest>(&state.store, &record.order)?;
    Ok(order.beneficiary)
}

pub async fn orders(
    State(state): State<ApiState>,
    query: Result<Query<Paging>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<OrderListAnswer>, ApiError> {
    let Query(paging) = query.map_err(|e| error(StatusCode::BAD_REQUEST, e.body_text()))?;
    let window = paging.window()?;
    let mut orders: Vec<(u64, String)> = state
        .store
        .scan(Column::Orders)
        .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .into_iter()
        .filter_map(|(_, bytes)| {
            dagcbor::decode_lenient::<OrderRecord>(&bytes, Limits::default()).ok()
        })
        .filter(|r| r.role == Role::Principal)
        .map(|r| {
            // Records are keyed by reference: the order request's time says when it was made.
            order_doc::stored_envelope(&state.store, &r.order).map(|e| (e.timestamp, r.reference))
        })
        .collect::<Result<_, _>>()?;
    orders.sort();
    if paging.newest_first() {
        orders.reverse();
    }
    Ok(Json(OrderListAnswer {
        order_reference: window.of(orders).map(|(_, reference)| reference).collect(),
        extension: Extension::new(),
    }))
}

pub async fn get_order(
    State(state): State<ApiState>,
    Path(reference): Path<String>,
) -> Result<Response, ApiError> {
    let record = principal_record(&state, &reference)?;
    let me = own_identity(&state)?;
    let commitment_key = match record.commitment {
        Some(_) => Some(commitment_hex(&commitment(&state, &record)?)),
        None => None,
    };
    let receipt = latest_receipt(&state, &record, &me)?;
    let secret = match receipt {
        Some(_) => super::received_secret(&state, &me, &reference).await?,
        None => None,
    };
    let secret_hex = secret.map(|s| Zeroizing::new(hex::encode(s.expose())));
    let document = order_doc::OrderDoc::build(
        &state.store,
        order_doc::Sources {
            record: &record,
            receipt,
            secret_hex: secret_hex.as_deref().map(String::as_str),
            commitment_key,
        },
    )?;
    let order = Zeroizing::new(
        serde_json::to_string(&document)
            .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?,
    );
    let head = order_doc::stored_envelope(&state.store, &record.head)?;
    let extension = Extension::from([
        ("state", record.state.to_string()),
        ("threshold", record.threshold.to_string()),
        (
            "fiduciaries",
            record
                .fiduciaries
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(","),
        ),
        (
            "commitmentCID",
            record.commitment.map(|c| c.to_string()).unwrap_or_default(),
        ),
        (
            "certificateCID",
            record
                .certificate
                .map(|c| c.to_string())
                .unwrap_or_default(),
        ),
    ]);
    // The answer's own buffer goes to the socket and cannot be wiped; the copies here are.
    Ok(Json(GetOrderAnswer {
        order_cid: record.head.to_string(),
        order: &order,
        timestamp: head.timestamp / 1000,
        extension,
    })
    .into_response())
}

/// The receipt of the latest release of the principal's `record`: from the record itself,
/// or, when this node is the beneficiary and its receipt has not reached the principal's
/// record yet, from this node's beneficiary record.
fn latest_receipt(
    state: &ApiState,
    record: &OrderRecord,
    me: &Cid,
) -> Result<Option<Cid>, ApiError> {
    let Some((sequence, _)) = record.releases.iter().next_back() else {
        return Ok(None);
    };
    if let Some(receipt) = record.receipts.get(sequence) {
        return Ok(Some(*receipt));
    }
    let received =
        dta_actors::custody::stored_record(&state.store, Role::Beneficiary, me, &record.reference)
            .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(received.and_then(|r| r.receipts.get(sequence).copied()))
}

/// The current time as RFC 3339 (UTC, seconds), like Go's `time.Time` JSON.
fn rfc3339_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (h, m, s) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{d:02}T{h:02}:{m:02}:{s:02}Z")
}

#[cfg(test)]
#[path = "v1_tests.rs"]
mod tests;
