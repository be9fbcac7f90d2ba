//! Local dta networks and demos.
//!
//! Today it holds [`demo`], the foundation walk-through the `dta demo` command prints: a
//! principal deals a secret to three fiduciaries 2-of-3 in sealed, signed envelopes, each
//! fiduciary checks its share and signs the commitment, the signatures aggregate into one
//! custody certificate, and a beneficiary rebuilds the secret from two released shares.
//!
//! It will own the in-process N-node harness, process-based testnets, the scenario runner
//! and the LAN (network namespace) mode once the node runtime exists. It does not define
//! protocol or cryptography of its own.

#![warn(missing_docs)]

pub mod demo;
