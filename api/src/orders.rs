//! The bodies of `POST /v2/orders` and of the calls on one order (`release`, `reshare`),
//! checked into what the principal role acts on.

use std::collections::BTreeMap;

use dta_protocol::Cid;
use dta_protocol::order::SecretBytes;
use dta_protocol::policy::ReleasePolicy;
use serde::Deserialize;

use crate::BodyError;
use crate::error::cid;
use crate::policy::{PolicyBody, release_policy};
use crate::secret::{SecretText, given_secret};

/// A principal's request for a new order.
#[derive(Debug, Clone)]
pub struct NewOrder {
    /// Unique reference; generated when absent.
    pub reference: Option<String>,
    /// Plugin name.
    pub plugin: String,
    /// Fiduciary identity CIDs, in share order.
    pub fiduciaries: Vec<Cid>,
    /// Shares needed to release.
    pub threshold: u32,
    /// Beneficiary, if known now.
    pub beneficiary: Option<Cid>,
    /// How many releases are allowed, and on what conditions.
    pub policy: ReleasePolicy,
    /// Plugin input (for example `coin` for `bitcoinwallet`).
    pub input: BTreeMap<String, String>,
    /// The secret to safeguard, for plugins that take one.
    pub secret: Option<SecretBytes>,
    /// Refresh the shares this often (ms) once the order is certified: the principal asks
    /// for a refresh when its last certificate is this old.
    pub refresh_every_ms: Option<u64>,
}

/// The body of `POST /v2/orders`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    /// Unique reference; generated when absent.
    pub reference: Option<String>,
    /// Plugin name; the node's default when absent.
    pub plugin: Option<String>,
    /// Fiduciary identity CIDs, in share order.
    pub fiduciaries: Vec<String>,
    /// Shares needed to release.
    pub threshold: u32,
    /// Beneficiary identity CID, if known now.
    pub beneficiary: Option<String>,
    /// Most releases (1 when absent).
    #[serde(default = "one")]
    pub max_releases: u32,
    /// Release conditions: approver groups, a rule, time locks, a veto group.
    #[serde(default)]
    pub policy: Option<PolicyBody>,
    /// Plugin input (for example `{"coin": "0"}` for `bitcoinwallet`).
    #[serde(default)]
    pub input: BTreeMap<String, String>,
    /// The secret, as UTF-8 text, for plugins that take one.
    #[schema(value_type = Option<String>, write_only)]
    pub secret: Option<SecretText>,
    /// The secret's bytes in hex, for secrets that are not text.
    #[schema(value_type = Option<String>, write_only)]
    pub secret_hex: Option<SecretText>,
    /// The secret's bytes in standard base64 (padding optional).
    #[schema(value_type = Option<String>, write_only)]
    pub secret_base64: Option<SecretText>,
    /// Refresh the shares this often (ms) once certified.
    pub refresh_every_ms: Option<u64>,
}

fn one() -> u32 {
    1
}

impl CreateBody {
    /// The order, its CIDs parsed, its policy and secret checked; `default_plugin` where the
    /// body names none.
    pub fn check(self, default_plugin: &str) -> Result<NewOrder, BodyError> {
        let secret = given_secret(self.secret, self.secret_hex, self.secret_base64)?;
        Ok(NewOrder {
            reference: self.reference,
            plugin: self.plugin.unwrap_or_else(|| default_plugin.to_owned()),
            fiduciaries: self
                .fiduciaries
                .iter()
                .map(|f| cid(f))
                .collect::<Result<_, _>>()?,
            threshold: self.threshold,
            beneficiary: self.beneficiary.as_deref().map(cid).transpose()?,
            policy: release_policy(self.max_releases, self.policy)?,
            input: self.input,
            secret,
            refresh_every_ms: self.refresh_every_ms,
        })
    }
}

/// The body of `POST /v2/orders/{ref}/release`.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReleaseBody {
    /// Release to this identity rather than the order's beneficiary.
    pub beneficiary: Option<String>,
}

impl ReleaseBody {
    /// The beneficiary named, parsed.
    pub fn check(self) -> Result<Option<Cid>, BodyError> {
        self.beneficiary.as_deref().map(cid).transpose()
    }
}

/// The body of `POST /v2/orders/{ref}/reshare`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReshareBody {
    /// The next committee's identity CIDs, in share order.
    pub fiduciaries: Vec<String>,
    /// The next threshold.
    pub threshold: u32,
}

impl ReshareBody {
    /// The next committee, parsed, and its threshold.
    pub fn check(self) -> Result<(Vec<Cid>, u32), BodyError> {
        let fiduciaries = self
            .fiduciaries
            .iter()
            .map(|f| cid(f))
            .collect::<Result<_, _>>()?;
        Ok((fiduciaries, self.threshold))
    }
}
