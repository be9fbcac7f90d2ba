//! A real Helia (js-libp2p) node beside a testnet, for interop tests.
//!
//! Helia comes from npm: `tests/interop/helia/package.json` pins a light node (TCP, noise,
//! yamux, identify, Bitswap; no routers, no discovery, no gateways) and `scripts/test`
//! installs it with `npm ci` into a directory named by `DTA_HELIA_DIR`. The driver script
//! `tests/interop/helia/helia_peer.mjs` is compiled into this crate and written into a
//! temporary directory inside that one at each start, so Node finds the packages; it listens
//! on 127.0.0.1 and dials nothing else. Calls block, so async callers wrap them in
//! `tokio::task::block_in_place`.

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

use super::PeerError;
use super::peer_process::PeerProcess;

/// The environment variable naming the directory where Helia's packages are installed.
pub const DIR_ENV: &str = "DTA_HELIA_DIR";

const SCRIPT: &str = include_str!("../../../tests/interop/helia/helia_peer.mjs");

/// A running Helia node. Dropping it kills the process.
#[derive(Debug)]
pub struct Helia {
    process: PeerProcess,
    _dir: tempfile::TempDir,
    /// Helia's peer id (Ed25519: `12D3Koo…`).
    pub peer_id: String,
    /// Its loopback multiaddr, with `/p2p/`.
    pub addr: String,
}

impl Helia {
    /// Starts Helia from the packages in the directory named by `DTA_HELIA_DIR`.
    pub fn start() -> Result<Self, PeerError> {
        let dir = std::env::var_os(DIR_ENV).ok_or_else(|| {
            PeerError::NotInstalled(format!(
                "{DIR_ENV} is not set: it must name a directory where `npm ci` installed tests/interop/helia (scripts/test sets one up)"
            ))
        })?;
        Self::start_in(Path::new(&dir))
    }

    /// Starts Helia from the packages installed in `packages` (it has `node_modules/`).
    pub fn start_in(packages: &Path) -> Result<Self, PeerError> {
        if !packages.join("node_modules").join("helia").is_dir() {
            return Err(PeerError::NotInstalled(format!(
                "{} has no node_modules/helia: run `npm ci` there with tests/interop/helia/package.json and package-lock.json",
                packages.display()
            )));
        }
        let io = |source| PeerError::Io {
            peer: "helia",
            source,
        };
        let dir = tempfile::Builder::new()
            .prefix("run-")
            .tempdir_in(packages)
            .map_err(io)?;
        let script = dir.path().join("helia_peer.mjs");
        std::fs::write(&script, SCRIPT).map_err(io)?;
        let mut command = Command::new("node");
        command.arg(&script);
        let mut process = PeerProcess::spawn("helia", command)?;
        let (peer_id, addr) = process.start(json!({}))?;
        Ok(Self {
            process,
            _dir: dir,
            peer_id,
            addr,
        })
    }

    /// One command and its answer; an answer with `error` is an error.
    pub fn call(&mut self, command: Value) -> Result<Value, PeerError> {
        self.process.call(&command)
    }

    /// Connects Helia to a peer.
    pub fn connect(&mut self, addr: &str) -> Result<(), PeerError> {
        self.process.connect(addr)
    }
}
