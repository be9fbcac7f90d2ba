//! What the `/v1` calls answer, as types with the original D-TA's field names: the handlers
//! in `v1` build these, and the OpenAPI document derives their schemas from them.
//!
//! What it does not do: hold a secret of its own. The answers that may carry one (an order's
//! document after a release, a received secret) borrow it from a buffer the handler wipes,
//! and have no `Debug`.

use std::collections::BTreeMap;

use dta_actors::identities::KnownIdentity;
use serde::Serialize;
use utoipa::ToSchema;

/// A plugin's `extension` fields (`cypherText`, `v` and `t` of `safeguardsecret`, `address`
/// of `bitcoinwallet`, `plainText` of a safeguarded secret), as the original's string map.
pub type Extension = BTreeMap<&'static str, String>;

/// `GET /v1/status`, as the original's `StatusResponse`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = V1StatusAnswer)]
#[serde(rename_all = "camelCase")]
pub struct StatusAnswer {
    /// `Milagro Distributed Trust`.
    pub application: &'static str,
    /// The node's clock, RFC 3339.
    pub time_stamp: String,
    /// `v1`.
    pub api_version: &'static str,
    /// This node's identity CID.
    #[serde(rename = "nodeCID")]
    pub node_cid: String,
    /// `dta`.
    pub extension_vendor: &'static str,
    /// The plugin `/v1` orders use.
    pub plugin: String,
    /// `multi`, `principal`, `fiduciary` or `beneficiary`.
    pub node_type: &'static str,
    /// Empty.
    #[schema(value_type = BTreeMap<String, String>)]
    pub extension: Extension,
}

/// An identity, as the original's `IDDocument` answer.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = V1IdentityAnswer)]
#[serde(rename_all = "camelCase")]
pub struct IdentityAnswer {
    /// Its CID.
    #[serde(rename = "idDocumentCID")]
    pub id_document_cid: String,
    /// Its name.
    pub authentication_reference: String,
    /// Its secp256k1 public key, hex.
    #[serde(rename = "beneficiaryECPublicKey")]
    pub beneficiary_ec_public_key: String,
    /// Empty: dta's identities carry an X-Wing key (`kemPublicKey`) where the original
    /// carried a SIKE key.
    pub sike_public_key: &'static str,
    /// Its X-Wing public key, hex.
    pub kem_public_key: String,
    /// Its BLS public key, hex.
    pub bls_public_key: String,
    /// When it was made, in milliseconds since the Unix epoch.
    pub timestamp: u64,
    /// Empty.
    #[schema(value_type = BTreeMap<String, String>)]
    pub extension: Extension,
}

impl IdentityAnswer {
    /// The answer for `identity`.
    pub fn of(identity: &KnownIdentity) -> Self {
        let claims = &identity.verified.document().claims;
        Self {
            id_document_cid: identity.cid.to_string(),
            authentication_reference: identity.name.clone(),
            beneficiary_ec_public_key: hex::encode(&claims.secp256k1_public_key),
            sike_public_key: "",
            kem_public_key: hex::encode(&claims.kem_public_key),
            bls_public_key: hex::encode(&claims.bls_public_key),
            timestamp: identity.created_at,
            extension: Extension::new(),
        }
    }
}

/// `GET /v1/identity`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = V1IdentityListAnswer)]
#[serde(rename_all = "camelCase")]
pub struct IdentityListAnswer {
    /// One page of the known identities.
    pub id_document_list: Vec<IdentityAnswer>,
}

/// `POST /v1/identity`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = V1CreatedIdentityAnswer)]
pub struct CreatedIdentityAnswer {
    /// The new identity's CID.
    #[serde(rename = "idDocumentCID")]
    pub id_document_cid: String,
}

/// `POST /v1/order`, as the original's `OrderResponse`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = V1OrderAnswer)]
#[serde(rename_all = "camelCase")]
pub struct OrderAnswer {
    /// The new order's reference.
    pub order_reference: String,
    /// The order's public key, hex (uncompressed for `milagro`, compressed otherwise).
    pub commitment: String,
    /// When it was made, in seconds since the Unix epoch.
    pub created_at: u64,
    /// The plugin's fields.
    #[schema(value_type = BTreeMap<String, String>)]
    pub extension: Extension,
}

/// `GET /v1/order`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = V1OrderListAnswer)]
#[serde(rename_all = "camelCase")]
pub struct OrderListAnswer {
    /// One page of this node's order references.
    pub order_reference: Vec<String>,
    /// Empty.
    #[schema(value_type = BTreeMap<String, String>)]
    pub extension: Extension,
}

/// `GET /v1/order/{ref}`, as the original's `GetOrderResponse`. No `Debug`: its `order` may
/// hold the secret.
#[derive(Serialize, ToSchema)]
#[schema(as = V1GetOrderAnswer)]
#[serde(rename_all = "camelCase")]
pub struct GetOrderAnswer<'a> {
    /// The CID of the order log's newest envelope.
    #[serde(rename = "orderCID")]
    pub order_cid: String,
    /// The original's `OrderDoc` as a JSON string, borrowed so that the owned copy is wiped.
    pub order: &'a str,
    /// When the newest envelope was made, in seconds since the Unix epoch.
    pub timestamp: u64,
    /// What dta adds about the order: `state`, `threshold`, `fiduciaries`, `commitmentCID`,
    /// `certificateCID`.
    #[schema(value_type = BTreeMap<String, String>)]
    pub extension: Extension,
}

/// `POST /v1/order/secret`, as the original's `OrderSecretResponse`. No `Debug`: it holds the
/// secret.
#[derive(Serialize, ToSchema)]
#[schema(as = V1SecretAnswer)]
#[serde(rename_all = "camelCase")]
pub struct SecretAnswer<'a> {
    /// The secret rebuilt, hex; present only where it was received.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<&'a str>,
    /// The order's public key, hex.
    pub commitment: &'a str,
    /// The order's reference.
    pub order_reference: &'a str,
    /// The plugin's fields; for `safeguardsecret`, where received, `plainText`.
    #[schema(value_type = BTreeMap<String, String>)]
    pub extension: SecretExtension<'a>,
}

/// The `extension` of a secret answer: the plugin's public fields, or safeguardsecret's
/// secret text, borrowed so that the owned copy is wiped. No `Debug`: it may hold the secret.
#[derive(Serialize)]
#[serde(untagged)]
pub enum SecretExtension<'a> {
    Public(Extension),
    PlainText {
        #[serde(rename = "plainText")]
        plain_text: &'a str,
    },
}
