//! The actors of a dta node. Not built yet: this crate is the place for them.
//!
//! It will own the ractor supervision tree: a node supervisor, the network actor that owns
//! the single libp2p swarm task, the rocksdb store, the keystore actor, and the Principal,
//! Fiduciary and Beneficiary role actors with their plugins.
//!
//! It will be the only crate that depends on ractor and rocksdb, and it will not parse command
//! lines or manage processes.
