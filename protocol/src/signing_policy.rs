//! What an order's key may sign with a threshold signature: how many signatures in all, and
//! which messages (an allow-list of prefixes). Part of the order's release policy
//! ([`crate::policy::ReleasePolicy::signing`]), so the principal, every fiduciary and every
//! auditor read the same rule; each fiduciary checks it before it takes part in a signature,
//! as it checks a release.
//!
//! Signatures are counted by their request's number: a request that never gets its signature
//! still uses up its number, because no fiduciary can know whether another made it.
//!
//! What it does not do: approvals or delays for signatures (a policy with conditions does not
//! sign), or anything with a clock.

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

/// Most prefixes an allow-list holds.
pub const MAX_PREFIXES: usize = 16;
/// Longest prefix.
pub const MAX_PREFIX: usize = 256;

/// What an order's key may sign. Anything, any number of times, when an order has none.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct SigningPolicy {
    /// Most signatures the key makes (counted by request number); 0 forbids signing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_signatures: Option<u32>,
    /// A message must start with one of these; any message when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub message_prefixes: Vec<ByteBuf>,
}

/// Why a signing policy is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigningPolicyError {
    /// Too many prefixes.
    #[error("{0} message prefixes; at most {MAX_PREFIXES}")]
    TooManyPrefixes(usize),
    /// An empty prefix (which would allow everything) or one too long.
    #[error("a message prefix is 1 to {MAX_PREFIX} bytes, not {0}")]
    PrefixLength(usize),
}

/// Why a policy refuses a signature. The texts are what the API and the logs show.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigningRefusal {
    /// The order's signatures are used up.
    #[error("signature {sequence} is over the policy's max_signatures of {max}")]
    TooMany {
        /// The request's number.
        sequence: u32,
        /// The policy's limit.
        max: u32,
    },
    /// The message starts with no allowed prefix.
    #[error("the message starts with none of the policy's {0} allowed prefixes")]
    Prefix(usize),
}

impl SigningPolicy {
    /// Checks that the policy is well formed.
    pub fn validate(&self) -> Result<(), SigningPolicyError> {
        if self.message_prefixes.len() > MAX_PREFIXES {
            return Err(SigningPolicyError::TooManyPrefixes(
                self.message_prefixes.len(),
            ));
        }
        match self
            .message_prefixes
            .iter()
            .find(|p| p.is_empty() || p.len() > MAX_PREFIX)
        {
            Some(bad) => Err(SigningPolicyError::PrefixLength(bad.len())),
            None => Ok(()),
        }
    }

    /// Whether signature number `sequence` (from 1) of `message` is allowed.
    pub fn allows(&self, sequence: u32, message: &[u8]) -> Result<(), SigningRefusal> {
        if let Some(max) = self.max_signatures
            && sequence > max
        {
            return Err(SigningRefusal::TooMany { sequence, max });
        }
        if !self.message_prefixes.is_empty()
            && !self
                .message_prefixes
                .iter()
                .any(|prefix| message.starts_with(prefix))
        {
            return Err(SigningRefusal::Prefix(self.message_prefixes.len()));
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "signing_policy_tests.rs"]
mod tests;
