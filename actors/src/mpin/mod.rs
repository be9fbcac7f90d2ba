//! M-Pin share issuance across nodes: a requester asks k trust authorities (D-TAs) for shares
//! of a client secret, a server secret or a time permit; each authority answers from its
//! master-secret share, which it creates in its keystore on the first request and never
//! exports; the requester checks every answer and adds the shares up.
//!
//! - Requester ([`create_request`], principal role): signs an `MpinRequest` envelope naming the
//!   secret, the identity (and date) and the authorities asked, and delivers it to each.
//!   A client secret or permit for the name of an identity the node hosts is asked for, and
//!   signed, by that identity, so one node serves many end users.
//! - Authority ([`on_request`], fiduciary role): checks the policy (a client secret or permit
//!   only for the requester's own identity name; a server secret only for an identity on the
//!   operator's allow-list, `mpin_servers`), then answers with an `MpinShare` envelope whose
//!   share is sealed to the requester, or with a signed refusal. It records the issuance.
//!   The requester takes every answer, refusals too, so a refused request names every
//!   authority's reason.
//! - Requester ([`on_share`], principal role, which made the request): takes answers only from the authorities it
//!   asked, for its own request; checks each share is a valid point of the right group; keeps
//!   shares and their sum through its keystore. A server secret is also kept as this node's
//!   authentication-server secret ([`SERVER_SECRET`]).
//!
//! Every request and answer is a stored block whose `order` field is the request's reference:
//! the issuance log is the same kind of hash-linked, signed log as an order's.
//!
//! The steps are in `issuance`, the records in `record`, and this node as an authentication
//! server (open challenges, the check of a client's proof, and answers to peers' steps) in
//! `auth`. All of it runs on [`crate::context`]; none of it on the custody flow.

mod auth;
mod issuance;
mod record;

pub use auth::{
    AuthError, AuthSession, AuthSessions, MAX_SESSIONS, SESSION_TTL, check, serve, today,
};
pub use issuance::{MasterChoice, NewMpinRequest, Refusal, create_request, on_request, on_share};
pub use record::{MpinRecord, combined_name, record, records};

/// Keystore name of this node's master-secret share (as an authority).
pub const MASTER_SHARE: &str = "mpin/master-share";
/// Keystore name of this node's authentication-server secret (the latest issued to it).
pub const SERVER_SECRET: &str = "mpin/server-secret";
/// Longest M-Pin identity accepted, in bytes.
pub const MAX_IDENTITY_LEN: usize = 256;
/// Most authorities one request may ask.
pub const MAX_AUTHORITIES: usize = 32;
