//! An external peer process (kubo, Helia) driven by JSON lines: one command per line on its
//! stdin, one answer per line on its stdout. Calls block, so async callers wrap them in
//! `tokio::task::block_in_place`. Dropping the process kills it.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use serde_json::{Value, json};

/// Why an external peer could not be started or used.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// The runtime the peer needs is not configured.
    #[error("{0}")]
    NotInstalled(String),
    /// The process or a file could not be handled.
    #[error("{peer}: {source}")]
    Io {
        /// Which peer.
        peer: &'static str,
        /// What failed.
        source: std::io::Error,
    },
    /// The peer answered with an error or nonsense.
    #[error("{peer}: {message}")]
    Answer {
        /// Which peer.
        peer: &'static str,
        /// Its error, or what was wrong with its answer.
        message: String,
    },
}

#[derive(Debug)]
pub(crate) struct PeerProcess {
    name: &'static str,
    child: Child,
    input: ChildStdin,
    output: BufReader<ChildStdout>,
}

impl PeerProcess {
    /// Spawns `command` with piped stdin and stdout (stderr discarded: the peers are chatty).
    pub(crate) fn spawn(name: &'static str, mut command: Command) -> Result<Self, PeerError> {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|source| PeerError::Io { peer: name, source })?;
        let (Some(input), Some(output)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.kill();
            return Err(PeerError::Answer {
                peer: name,
                message: "no pipes to the process".into(),
            });
        };
        Ok(Self {
            name,
            child,
            input,
            output: BufReader::new(output),
        })
    }

    pub(crate) fn io_error(&self, source: std::io::Error) -> PeerError {
        PeerError::Io {
            peer: self.name,
            source,
        }
    }

    pub(crate) fn answer_error(&self, message: impl Into<String>) -> PeerError {
        PeerError::Answer {
            peer: self.name,
            message: message.into(),
        }
    }

    /// One command and its answer; an answer with `error` is an error.
    pub(crate) fn call(&mut self, command: &Value) -> Result<Value, PeerError> {
        writeln!(self.input, "{command}").map_err(|e| self.io_error(e))?;
        self.input.flush().map_err(|e| self.io_error(e))?;
        let mut line = String::new();
        if self
            .output
            .read_line(&mut line)
            .map_err(|e| self.io_error(e))?
            == 0
        {
            return Err(self.answer_error("the process ended"));
        }
        let answer: Value = serde_json::from_str(&line)
            .map_err(|_| self.answer_error(format!("unreadable answer {line:?}")))?;
        match answer["error"].as_str() {
            Some(error) => Err(self.answer_error(error)),
            None => Ok(answer),
        }
    }

    /// Starts the node inside the process (`{"op": "start", ...extra}`): its peer id and its
    /// loopback multiaddr with `/p2p/`.
    pub(crate) fn start(&mut self, extra: Value) -> Result<(String, String), PeerError> {
        let mut command = json!({ "op": "start" });
        if let (Some(command), Value::Object(extra)) = (command.as_object_mut(), extra) {
            command.extend(extra);
        }
        let started = self.call(&command)?;
        Ok((
            self.text(&started, "peer_id")?,
            self.text(&started, "addr")?,
        ))
    }

    /// Connects the node to a peer.
    pub(crate) fn connect(&mut self, addr: &str) -> Result<(), PeerError> {
        let answer = self.call(&json!({ "op": "connect", "addr": addr }))?;
        if answer["ok"] == true {
            Ok(())
        } else {
            Err(self.answer_error(format!("cannot connect to {addr}: {answer}")))
        }
    }

    fn text(&self, answer: &Value, field: &str) -> Result<String, PeerError> {
        answer[field]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| self.answer_error(format!("no {field} in {answer}")))
    }
}

impl Drop for PeerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
