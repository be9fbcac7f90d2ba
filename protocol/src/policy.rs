//! Release policies: how often an order's secret may be released, and who must approve a
//! release, when it may happen and who may stop it. A policy is part of the principal's
//! signed order request, so every fiduciary and every auditor reads the same rule.
//!
//! - **Approver groups**: each a name, a set of identity CIDs and a count. The rule over them
//!   is every group (the default), or any boolean of `all`, `any` and `at-least k of` over
//!   groups.
//! - **Not before**: no release before this time. **Delay**: after a fiduciary first sees a
//!   release request it waits this long before releasing; a **veto group** reaching its count
//!   within that time cancels the request.
//! - **Approval lifetime**: older approvals do not count. **Max releases**: how many releases
//!   the order allows.
//! - **Signing** ([`SigningPolicy`]): what the order's key may sign with a threshold signature,
//!   how many times.
//!
//! An approval (or veto) is a signed envelope whose public payload is an [`Approval`] naming
//! the order and the exact release request, with the request as its `prev`.
//!
//! Pure: the fiduciary that decides, the principal's node that shows progress and the auditor
//! that checks a log afterwards call the same [`ReleasePolicy::evaluate`] with what they know.
//! Signatures are checked by whoever built the [`Signed`] list; times are the caller's clock.

use std::collections::{BTreeMap, BTreeSet};

use cid::Cid;
use serde::{Deserialize, Serialize};

pub use crate::signing_policy::{SigningPolicy, SigningPolicyError, SigningRefusal};

/// How far clocks may disagree, by default: a time gate opens this much early, and an
/// approval may be this much in the future.
pub const DEFAULT_CLOCK_TOLERANCE_MS: u64 = 30_000;
/// Most approver groups in a policy.
pub const MAX_GROUPS: usize = 16;
/// Most members of one group.
pub const MAX_MEMBERS: usize = 64;
/// Deepest nesting of a rule.
pub const MAX_RULE_DEPTH: usize = 8;
/// Longest group name.
pub const MAX_NAME: usize = 64;

/// Named approvers and how many of them must approve.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct ApproverGroup {
    /// The group's name (`legal`, `ops`).
    pub name: String,
    /// Its members' identity CIDs.
    pub members: Vec<Cid>,
    /// How many distinct members must approve.
    pub count: u32,
}

/// Which groups must be satisfied.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rule {
    /// The named group reached its count.
    Group(String),
    /// Every rule holds.
    All(Vec<Rule>),
    /// At least one rule holds.
    Any(Vec<Rule>),
    /// At least `count` of the rules hold.
    AtLeast {
        /// How many.
        count: u32,
        /// Of these.
        of: Vec<Rule>,
    },
}

/// How an order's secret may be released. An order with only `max_releases` encodes exactly
/// as it did before the other rules existed.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct ReleasePolicy {
    /// Most releases allowed; 1 (one-time) by default.
    pub max_releases: u32,
    /// Approver groups.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<ApproverGroup>,
    /// Which groups must approve; every group when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<Rule>,
    /// No release before this time (ms since the Unix epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before_ms: Option<u64>,
    /// How long a fiduciary waits after it first sees a release request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
    /// Who may cancel a request during the delay, and how many of them it takes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub veto: Option<ApproverGroup>,
    /// Approvals older than this do not count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_lifetime_ms: Option<u64>,
    /// What the order's key may sign with a threshold signature; anything when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing: Option<SigningPolicy>,
    /// From this time on (ms since the Unix epoch) nothing is released or signed, and each
    /// fiduciary deletes its share and says so to the principal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<u64>,
}

impl Default for ReleasePolicy {
    fn default() -> Self {
        Self {
            max_releases: 1,
            groups: Vec::new(),
            rule: None,
            not_before_ms: None,
            delay_ms: None,
            veto: None,
            approval_lifetime_ms: None,
            signing: None,
            expires_at_ms: None,
        }
    }
}

/// The public payload of an approval or a veto envelope: what it is for.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Approval {
    /// The order request envelope.
    pub order: Cid,
    /// The release request approved or vetoed.
    pub request: Cid,
}

/// An approval or veto as its envelope carried it; its signature already checked.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Signed {
    /// Who signed it.
    pub signer: Cid,
    /// What it says.
    pub approval: Approval,
    /// The envelope's `prev`.
    pub prev: Option<Cid>,
    /// When it was signed, by the signer's clock (ms).
    pub signed_ms: u64,
}

/// What a decision about one release request is made on.
#[derive(Clone, Debug)]
pub struct Situation<'a> {
    /// The order request envelope.
    pub order: Cid,
    /// The release request.
    pub request: Cid,
    /// When the one deciding first saw the request (its own clock, ms).
    pub request_seen_ms: u64,
    /// Now, by the same clock.
    pub now_ms: u64,
    /// How far clocks may disagree.
    pub tolerance_ms: u64,
    /// Releases already made of this order.
    pub released: u32,
    /// Approvals at hand.
    pub approvals: &'a [Signed],
    /// Vetoes at hand.
    pub vetoes: &'a [Signed],
}

/// Why a policy is not one an order may carry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// `max_releases` is 0.
    #[error("max_releases must be at least 1")]
    NoReleases,
    /// Too many groups or members, or a rule too deep.
    #[error("the policy is too large: {0}")]
    TooLarge(String),
    /// A group without a name, or two with one name.
    #[error("group names must be 1 to {MAX_NAME} characters and distinct: {0:?}")]
    GroupName(String),
    /// A group whose count it can never reach (or 0).
    #[error("group {name} needs {count} of {members} members: it must be between 1 and its size")]
    Count {
        /// The group.
        name: String,
        /// Its count.
        count: u32,
        /// Its distinct members.
        members: usize,
    },
    /// A member twice in one group.
    #[error("group {0} lists a member twice")]
    DuplicateMember(String),
    /// A rule naming a group that does not exist.
    #[error("the rule names group {0:?}, which the policy does not define")]
    UnknownGroup(String),
    /// An `all`/`any` with nothing in it, or `at-least` with a count out of range.
    #[error("a rule can never be met: {0}")]
    Unsatisfiable(String),
    /// A rule, veto or lifetime without groups to apply to.
    #[error("{0} needs approver groups")]
    NoGroups(&'static str),
    /// An expiry at or before the first time a release is allowed.
    #[error("expires_at_ms must come after not_before_ms: the order could never be released")]
    ExpiresFirst,
    /// A veto group with no delay to veto within.
    #[error("a veto group needs a delay (delay_ms) to veto within")]
    VetoWithoutDelay,
    /// A lifetime of 0.
    #[error("approval_lifetime_ms must be above 0")]
    ZeroLifetime,
    /// A malformed signing policy.
    #[error("signing: {0}")]
    Signing(#[from] SigningPolicyError),
}

/// Why one approval does not count.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApprovalRefusal {
    /// Its signer is in no group that may approve (or veto).
    #[error("{0} is not a member of any group that may do this")]
    NotMember(String),
    /// It names another order.
    #[error("it is for order {0}, not this one")]
    OtherOrder(String),
    /// It names another release request (an approval replayed from an earlier release, or
    /// made for another).
    #[error("it approves release request {0}, not this one")]
    OtherRequest(String),
    /// Its `prev` is not the request it names.
    #[error("its envelope does not follow the request it names")]
    Unlinked,
    /// Older than the policy's approval lifetime.
    #[error("it is {age_ms} ms old; approvals count for {lifetime_ms} ms")]
    Expired {
        /// Its age.
        age_ms: u64,
        /// The lifetime.
        lifetime_ms: u64,
    },
    /// Signed further in the future than clocks may disagree.
    #[error("it is dated {ahead_ms} ms ahead of this node's clock")]
    FromTheFuture {
        /// How far ahead.
        ahead_ms: u64,
    },
}

/// Why a release request is refused for good.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyRefusal {
    /// Asked before `not_before`.
    #[error("no release before {not_before_ms} (ms since the epoch); it is {now_ms}")]
    TooEarly {
        /// The policy's time.
        not_before_ms: u64,
        /// The decider's clock.
        now_ms: u64,
    },
    /// Every release the policy allows was made.
    #[error("all {0} releases the policy allows were made")]
    NoReleasesLeft(u32),
    /// The veto group reached its count within the delay.
    #[error("vetoed by {}", .0.join(", "))]
    Vetoed(Vec<String>),
    /// The order expired.
    #[error("the order expired at {expires_at_ms} (ms since the epoch); it is {now_ms}")]
    Expired {
        /// The policy's time.
        expires_at_ms: u64,
        /// The decider's clock.
        now_ms: u64,
    },
}

/// What may happen with a release request now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The policy holds: release.
    Release,
    /// Not yet: approvals are missing, or the delay runs.
    Wait(Waiting),
    /// Never.
    Refused(PolicyRefusal),
}

/// What a request waits for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Waiting {
    /// Groups short of their count: (group, approvals counted, count).
    pub short: Vec<(String, u32, u32)>,
    /// When the delay ends, if it has not.
    pub delay_ends_ms: Option<u64>,
}

impl std::fmt::Display for Waiting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts: Vec<String> = self
            .short
            .iter()
            .map(|(name, have, need)| format!("{name}: {have} of {need} approvals"))
            .collect();
        if let Some(at) = self.delay_ends_ms {
            parts.push(format!("the delay ends at {at} (ms since the epoch)"));
        }
        f.write_str(&parts.join("; "))
    }
}

/// Who approved (or vetoed) what: the counted signers of each group.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Tally {
    /// Counted approvers by group name.
    pub approved: BTreeMap<String, BTreeSet<Cid>>,
    /// Counted vetoers.
    pub vetoed: BTreeSet<Cid>,
    /// Approvals and vetoes that do not count, and why.
    pub refused: Vec<(Cid, ApprovalRefusal)>,
}

impl ReleasePolicy {
    /// Whether releases need more than a principal's request.
    pub fn has_conditions(&self) -> bool {
        !self.groups.is_empty()
            || self.not_before_ms.is_some()
            || self.delay_ms.is_some()
            || self.veto.is_some()
    }

    /// Checks that the policy is well formed and can be met.
    pub fn validate(&self) -> Result<(), PolicyError> {
        if self.max_releases == 0 {
            return Err(PolicyError::NoReleases);
        }
        if self.groups.len() > MAX_GROUPS {
            return Err(PolicyError::TooLarge(format!(
                "{} groups; at most {MAX_GROUPS}",
                self.groups.len()
            )));
        }
        let mut names = BTreeSet::new();
        for group in &self.groups {
            check_group(group)?;
            if !names.insert(group.name.as_str()) {
                return Err(PolicyError::GroupName(group.name.clone()));
            }
        }
        if let Some(veto) = &self.veto {
            check_group(veto)?;
        }
        if self.groups.is_empty() {
            if self.rule.is_some() {
                return Err(PolicyError::NoGroups("a rule"));
            }
            if self.approval_lifetime_ms.is_some() {
                return Err(PolicyError::NoGroups("an approval lifetime"));
            }
        }
        if let Some(rule) = &self.rule {
            check_rule(rule, &names, 1)?;
        }
        if let (Some(not_before), Some(expires_at)) = (self.not_before_ms, self.expires_at_ms)
            && expires_at <= not_before
        {
            return Err(PolicyError::ExpiresFirst);
        }
        if self.veto.is_some() && self.delay_ms.is_none_or(|d| d == 0) {
            return Err(PolicyError::VetoWithoutDelay);
        }
        if self.approval_lifetime_ms == Some(0) {
            return Err(PolicyError::ZeroLifetime);
        }
        if let Some(signing) = &self.signing {
            signing.validate()?;
        }
        Ok(())
    }

    /// Whether `signed` counts for the request of `situation`, as an approval (`veto`
    /// false) or a veto.
    pub fn check_approval(
        &self,
        signed: &Signed,
        situation: &Situation<'_>,
        veto: bool,
    ) -> Result<(), ApprovalRefusal> {
        let member = if veto {
            self.veto
                .as_ref()
                .is_some_and(|g| g.members.contains(&signed.signer))
        } else {
            self.groups
                .iter()
                .any(|g| g.members.contains(&signed.signer))
        };
        if !member {
            return Err(ApprovalRefusal::NotMember(signed.signer.to_string()));
        }
        if signed.approval.order != situation.order {
            return Err(ApprovalRefusal::OtherOrder(
                signed.approval.order.to_string(),
            ));
        }
        if signed.approval.request != situation.request {
            return Err(ApprovalRefusal::OtherRequest(
                signed.approval.request.to_string(),
            ));
        }
        if signed.prev != Some(signed.approval.request) {
            return Err(ApprovalRefusal::Unlinked);
        }
        let ahead = signed.signed_ms.saturating_sub(situation.now_ms);
        if ahead > situation.tolerance_ms {
            return Err(ApprovalRefusal::FromTheFuture { ahead_ms: ahead });
        }
        if let Some(lifetime) = self.approval_lifetime_ms {
            let age = situation.now_ms.saturating_sub(signed.signed_ms);
            if age > lifetime {
                return Err(ApprovalRefusal::Expired {
                    age_ms: age,
                    lifetime_ms: lifetime,
                });
            }
        }
        Ok(())
    }

    /// Which approvals and vetoes count: one per signer, members only, for this request.
    pub fn tally(&self, situation: &Situation<'_>) -> Tally {
        let mut tally = Tally::default();
        for group in &self.groups {
            tally.approved.insert(group.name.clone(), BTreeSet::new());
        }
        for signed in situation.approvals {
            match self.check_approval(signed, situation, false) {
                Ok(()) => {
                    for group in &self.groups {
                        if group.members.contains(&signed.signer)
                            && let Some(approvers) = tally.approved.get_mut(&group.name)
                        {
                            approvers.insert(signed.signer);
                        }
                    }
                }
                Err(refusal) => tally.refused.push((signed.signer, refusal)),
            }
        }
        // A veto counts only if it was signed before the delay ended (give or take the
        // clocks' disagreement).
        let delay_end = self
            .delay_ms
            .map(|d| situation.request_seen_ms.saturating_add(d));
        for signed in situation.vetoes {
            match self.check_approval(signed, situation, true) {
                Ok(())
                    if delay_end.is_none_or(|end| {
                        signed.signed_ms <= end.saturating_add(situation.tolerance_ms)
                    }) =>
                {
                    tally.vetoed.insert(signed.signer);
                }
                Ok(()) => {}
                Err(refusal) => tally.refused.push((signed.signer, refusal)),
            }
        }
        tally
    }

    /// Why nothing may be released or signed at `now_ms` because the order expired, if it has.
    pub fn expired(&self, now_ms: u64) -> Option<PolicyRefusal> {
        self.expires_at_ms
            .filter(|expires_at_ms| now_ms >= *expires_at_ms)
            .map(|expires_at_ms| PolicyRefusal::Expired {
                expires_at_ms,
                now_ms,
            })
    }

    /// What may happen with the request of `situation` now.
    pub fn evaluate(&self, situation: &Situation<'_>) -> Verdict {
        if let Some(expired) = self.expired(situation.now_ms) {
            return Verdict::Refused(expired);
        }
        if situation.released >= self.max_releases {
            return Verdict::Refused(PolicyRefusal::NoReleasesLeft(self.max_releases));
        }
        if let Some(not_before) = self.not_before_ms
            && situation.now_ms.saturating_add(situation.tolerance_ms) < not_before
        {
            return Verdict::Refused(PolicyRefusal::TooEarly {
                not_before_ms: not_before,
                now_ms: situation.now_ms,
            });
        }
        let tally = self.tally(situation);
        if let Some(veto) = &self.veto
            && tally.vetoed.len() >= veto.count as usize
        {
            return Verdict::Refused(PolicyRefusal::Vetoed(
                tally.vetoed.iter().map(ToString::to_string).collect(),
            ));
        }
        let mut waiting = Waiting::default();
        let met = |name: &str| {
            let group = self.groups.iter().find(|g| g.name == name);
            let have = tally.approved.get(name).map_or(0, BTreeSet::len);
            group.is_some_and(|g| have >= g.count as usize)
        };
        let every_group = Rule::All(
            self.groups
                .iter()
                .map(|g| Rule::Group(g.name.clone()))
                .collect(),
        );
        let rule = self.rule.as_ref().unwrap_or(&every_group);
        if !rule.holds(&met) {
            for group in &self.groups {
                let have = tally.approved.get(&group.name).map_or(0, BTreeSet::len);
                if have < group.count as usize && rule.names(&group.name) {
                    waiting.short.push((
                        group.name.clone(),
                        u32::try_from(have).unwrap_or(u32::MAX),
                        group.count,
                    ));
                }
            }
        }
        if let Some(delay) = self.delay_ms {
            let end = situation.request_seen_ms.saturating_add(delay);
            if situation.now_ms < end {
                waiting.delay_ends_ms = Some(end);
            }
        }
        if waiting.short.is_empty() && waiting.delay_ends_ms.is_none() {
            Verdict::Release
        } else {
            Verdict::Wait(waiting)
        }
    }
}

impl Rule {
    fn holds(&self, met: &dyn Fn(&str) -> bool) -> bool {
        match self {
            Rule::Group(name) => met(name),
            Rule::All(rules) => rules.iter().all(|r| r.holds(met)),
            Rule::Any(rules) => rules.iter().any(|r| r.holds(met)),
            Rule::AtLeast { count, of } => {
                of.iter().filter(|r| r.holds(met)).count() >= *count as usize
            }
        }
    }

    /// Whether the rule mentions group `name`.
    fn names(&self, name: &str) -> bool {
        match self {
            Rule::Group(group) => group == name,
            Rule::All(rules) | Rule::Any(rules) | Rule::AtLeast { of: rules, .. } => {
                rules.iter().any(|r| r.names(name))
            }
        }
    }
}

fn check_group(group: &ApproverGroup) -> Result<(), PolicyError> {
    if group.name.is_empty()
        || group.name.chars().count() > MAX_NAME
        || group.name.chars().any(char::is_control)
    {
        return Err(PolicyError::GroupName(group.name.clone()));
    }
    if group.members.len() > MAX_MEMBERS {
        return Err(PolicyError::TooLarge(format!(
            "group {} has {} members; at most {MAX_MEMBERS}",
            group.name,
            group.members.len()
        )));
    }
    let distinct: BTreeSet<&Cid> = group.members.iter().collect();
    if distinct.len() != group.members.len() {
        return Err(PolicyError::DuplicateMember(group.name.clone()));
    }
    if group.count == 0 || group.count as usize > distinct.len() {
        return Err(PolicyError::Count {
            name: group.name.clone(),
            count: group.count,
            members: distinct.len(),
        });
    }
    Ok(())
}

fn check_rule(rule: &Rule, names: &BTreeSet<&str>, depth: usize) -> Result<(), PolicyError> {
    if depth > MAX_RULE_DEPTH {
        return Err(PolicyError::TooLarge(format!(
            "a rule nested deeper than {MAX_RULE_DEPTH}"
        )));
    }
    match rule {
        Rule::Group(name) => {
            if !names.contains(name.as_str()) {
                return Err(PolicyError::UnknownGroup(name.clone()));
            }
        }
        Rule::All(rules) | Rule::Any(rules) => {
            if rules.is_empty() {
                return Err(PolicyError::Unsatisfiable("an empty all or any".into()));
            }
            for rule in rules {
                check_rule(rule, names, depth + 1)?;
            }
        }
        Rule::AtLeast { count, of } => {
            if *count == 0 || *count as usize > of.len() {
                return Err(PolicyError::Unsatisfiable(format!(
                    "at-least {count} of {} rules",
                    of.len()
                )));
            }
            for rule in of {
                check_rule(rule, names, depth + 1)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
