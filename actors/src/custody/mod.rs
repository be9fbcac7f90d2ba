//! The custody flow, as the three role actors run it across separate nodes. What differs
//! between plugins (where the key comes from, what it protects) is in [`crate::plugin`].
//!
//! Order of a dealt secret (`safeguardsecret`): the principal publishes the order request and a
//! commitment (Feldman commitments of a fresh scalar key `k`, the group public key, and the
//! plugin's outputs, such as the secret sealed under a key derived from `k`), then deals one
//! sealed share of `k` to each fiduciary. A fiduciary checks its share against the commitment
//! and keeps it through the keystore.
//!
//! Order of a generated key (`bitcoinwallet`, `milagro`): the principal sends the order request.
//! Below n-of-n the fiduciaries generate the key without a dealer (`keygen`) and each ends with
//! a share of it and every public share; n-of-n, each fiduciary generates a secp256k1 share in
//! its keystore and answers with its public half. With all of them the principal publishes the
//! commitment (every public share; the group key, or the shares' sum; plus the beneficiary's
//! identity key where the plugin includes it; and the outputs such as an address); each
//! fiduciary checks its own share is listed and the key and outputs follow.
//!
//! Either way each fiduciary then sends back its BLS signature on the commitment; with all n
//! signatures the principal publishes the certificate.
//!
//! Release: the principal's signed release request goes to every fiduciary. Each checks the
//! sender is the order's principal, the order is certified, the beneficiary is a verified
//! identity (and the one whose share the key includes, if any) and the policy allows this
//! release, records the release durably, then seals its share to the beneficiary. The
//! beneficiary rebuilds the key from the first t shares and checks it against the commitment's
//! public key (a dealt share is checked against the Feldman commitments only when that fails,
//! to find and drop the bad one; a generated share against its listed public half on arrival),
//! lets the plugin turn it into the secret, keeps that through its keystore and sends a signed
//! receipt.
//!
//! Log: order request ← (key generation round ←) commitment ← certificate ← release request ←
//! receipt, each `prev` linking to the one before; key shares hang off the order request (or
//! the round), the key generation's commitments off the order request, its shares,
//! complaints and abort off the round, deals and fiduciary
//! signatures off the commitment, share releases off the release request. Every block a node
//! sends or accepts is stored.

pub use crate::context::{
    CustodyError, CustodyEvent, Delivery, EVENT_CAPACITY, KEYSTORE_TIMEOUT_MS, RoleContext,
    VerifiedCache,
};

pub use crate::plugin::SAFEGUARD_SECRET;

mod approval;
mod attention;
pub mod batching;
#[cfg(test)]
mod batching_tests;
mod beneficiary;
mod chain;
pub mod crosscheck;
pub mod ending;
pub mod exclusion;
mod fiduciary;
pub mod keygen;
#[cfg(test)]
mod keygen_tests;
mod principal;
mod record;
pub mod refresh;
#[cfg(test)]
mod refresh_tests;
mod release;
mod resume;
#[cfg(test)]
mod rig;
pub mod signed;
pub mod signing;
#[cfg(test)]
mod signing_tests;
#[cfg(test)]
mod step_tests;
pub mod threshold_bls;
#[cfg(test)]
mod threshold_bls_tests;

pub use crate::states::OrderState;
pub use approval::{
    NewVote, VoteOutcome, create_vote, held_requests, on_vote, policy_of, votes_of,
};
pub use beneficiary::{on_share_release, share_is_late};
pub use chain::{audit, fetch_chain, head_answer, keep_block};
pub use fiduciary::{
    PendingCheck, ReleaseStep, on_certificate, on_commitment, on_order_request, on_release_request,
    on_share_deal,
};
pub use principal::{Prepared, create_order, on_commitment_signature, on_key_share};
pub use record::{
    Gated, Hold, OrderRecord, SigningRun, held_share_name, received_name, record_key, round_name,
    secret_name, share_name, stored_record, stored_records, stored_records_after,
};
pub use release::{ReleasePlan, create_release, on_receipt};
pub use resume::{
    Awaited, AwaitedStep, awaited, migrate_unkeyed_records, receipt_again, remember_settled_heads,
    resume, resume_receiving, resume_releases, settles_a_step,
};

/// Longest order reference.
pub const MAX_REFERENCE_LEN: usize = 128;
pub use dta_api::NewOrder;

/// The shortest period of an order's proactive refresh (ms).
pub const MIN_REFRESH_EVERY_MS: u64 = 1_000;
