//! dta's documents and how they travel: canonical DAG-CBOR blocks addressed by CIDv1.
//!
//! What this crate owns:
//! - [`dagcbor`]: a strict DAG-CBOR codec (canonical encodings only, size and depth limits).
//! - [`block`]: CIDs (v1 with sha2-256; v0 parsed) and blocks checked against their CID.
//! - [`identity`]: a node's identity document, self-signed, with a BLS key and its proof of
//!   possession, an X-Wing KEM key and a secp256k1 key; its CID is the node's identity.
//! - [`envelope`]: signed, sealed envelopes, hash-linked into per-order chains.
//! - [`order`]: the payloads the custody flow carries in envelopes.
//! - [`dkg`]: the payloads of a key the fiduciaries generate without a dealer, and their checks.
//! - [`reshare`]: the payloads that deal an order's shares anew (a refresh) without its key.
//! - [`policy`]: release policies (approver groups, time locks, vetoes) and their evaluation.
//! - [`signing`]: the payloads of a threshold signature with an order's key (FROST, BLS).
//! - [`signing_policy`]: what an order's key may sign, and how many times.
//! - [`audit`]: offline verification of an order's whole log.
//! - [`archive`]: the audit of a whole order from a CAR archive alone, identities included.
//! - [`links`]: the links of a DAG-CBOR block, and every block reachable from a root.
//! - [`network`]: the libp2p behaviour, the request-response protocol and the size limits.
//! - [`new_port`]: TCP dials from a new local port, so that two dials that cross stay two.
//! - [`rpc_codec`]: the request-response codec, which tells a malformed or oversized request
//!   from a broken connection.
//! - [`bitswap`]: Bitswap 1.2.0 messages as IPFS peers exchange them, checked (no I/O).
//! - [`car`]: CAR v1 archives, every block checked against its CID on reading.
//! - [`misconduct`]: offences a node can be shown to commit, and their evidence.
//! - [`inbound`]: inbound streams of one protocol (Bitswap's), queued rather than dropped.
//!
//! Verification comes before use: a document is only trusted through the `Verified…` value
//! its verifier returns, and an envelope can only be opened once its signature has been
//! checked.
//!
//! What it does not do: it runs no swarm (the network actor does), stores nothing and has no
//! actors. It never depends on ractor, rocksdb or clap.

#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod archive;
pub mod audit;
pub mod batch;
pub mod bitswap;
pub mod block;
pub mod car;
pub mod dagcbor;
pub mod dkg;
pub mod envelope;
pub mod evidence;
pub mod identity;
pub mod inbound;
pub mod links;
pub mod misconduct;
pub mod mpin;
pub mod network;
pub mod new_port;
pub mod order;
pub mod policy;
pub mod reshare;
pub mod revocation;
pub mod rpc_codec;
pub mod signing;
pub mod signing_policy;

pub use cid::Cid;
