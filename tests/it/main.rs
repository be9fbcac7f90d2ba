//! One integration-test binary: each module drives dta the way a user would.

mod access;
mod blocks;
mod byzantine;
mod custody;
mod delivery;
mod demo;
mod faults;
mod first_hour;
mod hsm;
mod interop;
mod keygen;
mod lan;
mod log;
mod mpin;
mod mpin_master;
mod network;
mod operations;
mod policy;
mod process;
mod references;
mod refresh;
mod secrets;
mod signing;
mod signing_interop;
mod v1;
mod waiting;
