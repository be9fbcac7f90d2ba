//! A dta node as a library. Not built yet beyond this doc: this crate is the place for it.
//!
//! It will own configuration, logging setup, the HTTP API (axum; `/v1` compatible with the
//! original D-TA, `/v2` native, `/metrics`) and `run(config, shutdown)`, which starts the actor
//! tree and returns when `shutdown` fires, so tests can run whole nodes in one process.
//!
//! It will not contain protocol internals or the testnet harness.
