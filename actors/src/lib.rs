//! The actors of a dta node.
//!
//! ```text
//! NodeSupervisor
//!  ├─ StoreActor        the single writer of acknowledged state (rocksdb, synced writes)
//!  ├─ KeystoreActor     wraps, stores and unwraps secrets (dta_hsm::Keystore)
//!  ├─ IdentitiesActor   verifies received identity documents, keeps the directory
//!  ├─ NetworkActor ──── owns the swarm task (commands in, events out, snapshots by watch)
//!  └─ RoleActor ×n      principal, fiduciary, beneficiary: the custody flow (see `custody`)
//! ```
//!
//! The role actors' steps run on a `context::RoleContext`; `custody` (orders) and `mpin`
//! (M-Pin issuance) are the steps, one file per role or concern, and `roles` routes each
//! network event to its step.
//!
//! `metrics` holds the counters and histograms `/metrics` shows; `record_states` counts
//! records entering a state from the record changes.
//!
//! `byzantine` lets a test build play a role dishonestly (the `byzantine` feature; release
//! builds have none of it).
//!
//! The supervisor restarts any child that fails or stops unexpectedly, and gives up (failing
//! the node) after too many restarts in a short time.
//!
//! This is the only crate that depends on ractor and rocksdb. It parses no command lines and
//! manages no processes.

#![warn(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod attention;
pub mod batches;
pub mod block_list;
pub mod byzantine;
pub mod certificates;
pub mod context;
pub mod custody;
pub mod hosted;
pub mod hosting;
pub mod identities;
pub mod identity_lookup;
pub mod keystore;
pub mod log;
pub mod metrics;
pub mod mpin;
pub mod network;
pub mod nonces;
pub mod peer_book;
pub mod plugin;
pub mod record_states;
pub mod registry;
pub mod revocations;
pub mod role;
pub mod roles;
pub mod schema;
pub mod spare_commitments;
pub mod states;
pub mod store;
pub mod supervisor;
