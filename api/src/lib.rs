//! What clients hand to a dta node and to its testnet runner, parsed and checked: the JSON
//! bodies of the HTTP API ([`orders`], [`policy`], [`mpin`]) and scenario files
//! ([`scenario`]). Each body checks into the protocol values a node acts on ([`NewOrder`],
//! a [`dta_protocol::policy::ReleasePolicy`], [`NewMpinRequest`]), or says what is wrong in a
//! [`BodyError`] that never quotes a secret.
//!
//! What it does not do: run anything. No actor, store, network or clock is here, which is
//! what lets the fuzz targets drive every body and scenario file through the very code the
//! node and the runner use, and what keeps the request formats in one place for clients.

pub mod error;
pub mod mpin;
pub mod orders;
pub mod policy;
pub mod scenario;
pub mod secret;

pub use error::BodyError;
pub use mpin::{MasterChoice, NewMpinRequest};
pub use orders::NewOrder;
