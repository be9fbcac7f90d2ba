//! The simulated WAN between the sites of `dta testnet up --sites`: [`link`] says what a
//! packet between two sites goes through, [`router`] moves the packets. The namespaces and
//! routes are made by [`crate::process::sites`].

pub mod link;
pub mod router;
