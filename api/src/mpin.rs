//! The body of the M-Pin issuance calls (`POST /v2/mpin/client-secret`, `server-secret`,
//! `permit`), checked into the request the principal role makes.

use dta_protocol::Cid;
use dta_protocol::mpin::MpinSecret;
use serde::Deserialize;

use crate::BodyError;
use crate::error::cid;

/// A request to make.
#[derive(Debug, Clone)]
pub struct NewMpinRequest {
    /// What to ask for.
    pub secret: MpinSecret,
    /// The M-Pin identity (client secrets and permits).
    pub identity: Option<String>,
    /// The permit's date, in days since the Unix epoch (permits).
    pub date: Option<u32>,
    /// The authorities to ask (identity CIDs). With a master secret this node knows, empty
    /// asks every one of its fiduciaries.
    pub authorities: Vec<Cid>,
    /// The master secret generated t-of-n to ask shares of, if any.
    pub master: Option<MasterChoice>,
}

/// Which master secret generated t-of-n a request is for: an `mpin-master` order. What the
/// node does not know of it (it is neither its principal nor one of its fiduciaries) must be
/// given.
#[derive(Debug, Clone)]
pub struct MasterChoice {
    /// The order's reference.
    pub reference: String,
    /// Its principal; the node itself by default.
    pub principal: Option<Cid>,
    /// Its threshold; the order's, where the node knows it.
    pub threshold: Option<u32>,
}

/// The body of an issuance call.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IssueBody {
    /// The M-Pin identity (client secrets and permits).
    pub identity: Option<String>,
    /// The permit's date, in days since the Unix epoch (permits).
    pub date: Option<u32>,
    /// The authorities to ask, by identity CID.
    #[serde(default)]
    pub from: Vec<String>,
    /// A master secret generated t-of-n to ask shares of.
    pub master: Option<MasterBody>,
    /// How long to wait for the authorities (ms).
    pub wait_ms: Option<u64>,
}

/// A master secret generated t-of-n, as a request names it.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MasterBody {
    /// The `mpin-master` order's reference.
    pub reference: String,
    /// Its principal's identity CID.
    pub principal: Option<String>,
    /// Its threshold.
    pub threshold: Option<u32>,
}

impl IssueBody {
    /// The request for `secret`, checked.
    pub fn request(&self, secret: MpinSecret) -> Result<NewMpinRequest, BodyError> {
        let missing = |field: &str| BodyError::Malformed(format!("{field} is required"));
        if secret == MpinSecret::Server && (self.identity.is_some() || self.date.is_some()) {
            return Err(BodyError::Malformed(
                "a server secret takes no identity or date".into(),
            ));
        }
        let master = self
            .master
            .as_ref()
            .map(|m| {
                Ok::<_, BodyError>(MasterChoice {
                    reference: m.reference.clone(),
                    principal: m.principal.as_deref().map(cid).transpose()?,
                    threshold: m.threshold,
                })
            })
            .transpose()?;
        if self.from.is_empty() && master.is_none() {
            return Err(missing("from"));
        }
        let identity = match secret {
            MpinSecret::Server => None,
            MpinSecret::Client | MpinSecret::Permit => {
                Some(self.identity.clone().ok_or_else(|| missing("identity"))?)
            }
        };
        let date = match secret {
            MpinSecret::Permit => Some(self.date.ok_or_else(|| missing("date"))?),
            MpinSecret::Client | MpinSecret::Server => None,
        };
        Ok(NewMpinRequest {
            secret,
            identity,
            date,
            authorities: self.from.iter().map(|t| cid(t)).collect::<Result<_, _>>()?,
            master,
        })
    }
}
