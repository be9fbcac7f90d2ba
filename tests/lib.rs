//! dta's integration tests live in `it/`, one binary over the testnet harness. This library
//! is empty on purpose.
