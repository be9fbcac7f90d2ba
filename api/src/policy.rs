//! Release policies as JSON gives them: the `policy` of `POST /v2/orders` (identity CIDs as
//! text, prefixes as hex), checked into a [`ReleasePolicy`] the way an order's is; and the
//! body of `POST /v2/orders/{reference}/approvals`.
//!
//! What it does not do: evaluate a policy. Fiduciaries do that in their release step.

use dta_protocol::Cid;
use dta_protocol::policy::{ApproverGroup, ReleasePolicy, Rule, SigningPolicy};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use serde_json::Value;

use crate::BodyError;

/// An approver group as JSON gives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupBody {
    /// The group's name.
    pub name: String,
    /// Its members' identity CIDs.
    pub members: Vec<String>,
    /// How many of them must approve.
    pub count: u32,
}

/// The `policy` of `POST /v2/orders` (and of `dta order create --policy FILE`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyBody {
    /// Approver groups.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<GroupBody>,
    /// `{"group": "legal"}`, `{"all": [...]}`, `{"any": [...]}`,
    /// `{"at-least": {"count": 2, "of": [...]}}`; every group when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub rule: Option<Rule>,
    /// No release before this time (ms since the Unix epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before_ms: Option<u64>,
    /// How long a fiduciary waits after it first sees a release request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
    /// Who may cancel a request during the delay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub veto: Option<GroupBody>,
    /// Approvals older than this do not count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_lifetime_ms: Option<u64>,
    /// What the order's key may sign with a threshold signature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing: Option<SigningBody>,
    /// From this time on (ms since the Unix epoch) nothing is released or signed, and the
    /// fiduciaries delete their shares.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<u64>,
}

/// The `signing` of a policy: `{"max_signatures": 10, "message_prefixes_hex": ["6474612f"]}`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SigningBody {
    /// Most signatures the key makes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_signatures: Option<u32>,
    /// A message must start with one of these; any message when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub message_prefixes_hex: Vec<String>,
}

fn unprocessable(message: String) -> BodyError {
    BodyError::Unprocessable(message)
}

fn signing(body: SigningBody) -> Result<SigningPolicy, BodyError> {
    let message_prefixes = body
        .message_prefixes_hex
        .iter()
        .map(|text| {
            hex::decode(text)
                .map(ByteBuf::from)
                .map_err(|e| unprocessable(format!("message prefix {text:?} is not hex: {e}")))
        })
        .collect::<Result<_, _>>()?;
    Ok(SigningPolicy {
        max_signatures: body.max_signatures,
        message_prefixes,
    })
}

fn member(text: &str) -> Result<Cid, BodyError> {
    dta_protocol::block::parse_cid(text)
        .map_err(|e| unprocessable(format!("{text:?} is not an identity CID: {e}")))
}

fn group(body: GroupBody) -> Result<ApproverGroup, BodyError> {
    Ok(ApproverGroup {
        members: body
            .members
            .iter()
            .map(|m| member(m))
            .collect::<Result<_, _>>()?,
        name: body.name,
        count: body.count,
    })
}

/// The order's release policy from a body's `max_releases` and `policy`, checked (a policy
/// that can never be met is refused here, before anything is made).
pub fn release_policy(
    max_releases: u32,
    body: Option<PolicyBody>,
) -> Result<ReleasePolicy, BodyError> {
    let body = body.unwrap_or_default();
    let policy = ReleasePolicy {
        max_releases,
        groups: body
            .groups
            .into_iter()
            .map(group)
            .collect::<Result<_, _>>()?,
        rule: body.rule,
        not_before_ms: body.not_before_ms,
        delay_ms: body.delay_ms,
        veto: body.veto.map(group).transpose()?,
        approval_lifetime_ms: body.approval_lifetime_ms,
        signing: body.signing.map(signing).transpose()?,
        expires_at_ms: body.expires_at_ms,
    };
    policy
        .validate()
        .map_err(|e| unprocessable(e.to_string()))?;
    Ok(policy)
}

/// A release policy given as JSON (the `policy` of `POST /v2/orders`, a benchmark's policy
/// file), checked as an order's would be; the error says what is wrong with it.
pub fn policy_from_json(max_releases: u32, policy: Value) -> Result<ReleasePolicy, String> {
    let body: PolicyBody =
        serde_json::from_value(policy).map_err(|e| format!("not a release policy: {e}"))?;
    release_policy(max_releases, Some(body)).map_err(|e| e.to_string())
}

impl From<&ApproverGroup> for GroupBody {
    fn from(group: &ApproverGroup) -> Self {
        Self {
            name: group.name.clone(),
            members: group.members.iter().map(ToString::to_string).collect(),
            count: group.count,
        }
    }
}

/// The body that gives `policy` (all but its `max_releases`, which an order body gives
/// beside it).
impl From<&ReleasePolicy> for PolicyBody {
    fn from(policy: &ReleasePolicy) -> Self {
        Self {
            groups: policy.groups.iter().map(GroupBody::from).collect(),
            rule: policy.rule.clone(),
            not_before_ms: policy.not_before_ms,
            delay_ms: policy.delay_ms,
            veto: policy.veto.as_ref().map(GroupBody::from),
            approval_lifetime_ms: policy.approval_lifetime_ms,
            signing: policy.signing.as_ref().map(|s| SigningBody {
                max_signatures: s.max_signatures,
                message_prefixes_hex: s.message_prefixes.iter().map(hex::encode).collect(),
            }),
            expires_at_ms: policy.expires_at_ms,
        }
    }
}

/// The body of `POST /v2/orders/{reference}/approvals`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VoteBody {
    /// The release or reshare request's CID.
    pub request: String,
    /// A veto rather than an approval.
    #[serde(default)]
    pub veto: bool,
    /// Sign as this identity (one the node hosts); the node's own by default.
    #[serde(default)]
    pub identity: Option<String>,
}

/// A vote's request and voter, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vote {
    /// The release or reshare request voted on.
    pub request: Cid,
    /// A veto rather than an approval.
    pub veto: bool,
    /// The identity that signs; the node's own when absent.
    pub approver: Option<Cid>,
}

impl VoteBody {
    /// The vote, its CIDs parsed.
    pub fn check(self) -> Result<Vote, BodyError> {
        Ok(Vote {
            request: member(&self.request)?,
            veto: self.veto,
            approver: self.identity.as_deref().map(member).transpose()?,
        })
    }
}
