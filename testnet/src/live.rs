//! A process testnet while it runs, reached through its `testnet.json` (a node's API moves
//! when it restarts): find a node, call its API, partition the network through the nodes'
//! block lists and heal it. Scenarios and chaos runs drive the network through here.
//!
//! What it does not do: start or stop nodes ([`crate::process`] does), or judge what a node
//! answers.

use std::path::PathBuf;
use std::time::Duration;

use dta_node::client::Method;
use serde_json::{Value, json};

use crate::process::{self, TestnetFile, TestnetNode};

/// A running testnet.
#[derive(Debug, Clone)]
pub(crate) struct LiveNet {
    /// The testnet's directory (its `testnet.json`).
    pub dir: PathBuf,
    /// The `dta` binary, which calls the API of a node in a namespace from inside it.
    pub binary: PathBuf,
    /// How long one call may take.
    pub timeout: Duration,
}

impl LiveNet {
    /// The testnet as its file says now.
    pub fn testnet(&self) -> Result<TestnetFile, String> {
        process::load(&self.dir).map_err(|e| e.to_string())
    }

    /// A node by name, or the first node with a role (`@principal`).
    pub fn node(&self, name: &str) -> Result<TestnetNode, String> {
        self.testnet()?
            .nodes
            .into_iter()
            .find(|n| n.name == name || n.roles.iter().any(|r| format!("@{r}") == name))
            .ok_or_else(|| format!("no node {name:?}"))
    }

    /// The nodes whose process runs.
    pub fn running(&self) -> Result<Vec<TestnetNode>, String> {
        Ok(self
            .testnet()?
            .nodes
            .into_iter()
            .filter(|n| process::is_our_node(n.pid, &n.home))
            .collect())
    }

    /// Calls a node's API at `path` (for a node in a network namespace, from inside it). A
    /// call that cannot be made has status 0 and the reason as its error.
    pub async fn call(
        &self,
        node: &TestnetNode,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let client = node.client(&self.binary).with_timeout(self.timeout);
        match client.call(method, path, body.as_ref()).await {
            Ok(answer) => (answer.status, answer.body),
            Err(e) => (0, json!({ "error": e.to_string() })),
        }
    }

    /// Calls the node named `name` (status 0 when there is none).
    pub async fn call_named(
        &self,
        name: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        match self.node(name) {
            Ok(node) => self.call(&node, method, path, body).await,
            Err(e) => (0, json!({ "error": e })),
        }
    }

    /// Cuts the network into `groups` of node names (the nodes no group names form one more):
    /// every running node blocks every node on another side. Returns how many blocks it made.
    pub async fn partition(&self, groups: &[Vec<String>]) -> Result<usize, String> {
        let testnet = self.testnet()?;
        let side_of = |name: &str| groups.iter().position(|g| g.iter().any(|n| n == name));
        let mut blocks = 0;
        for node in &self.running()? {
            for other in &testnet.nodes {
                if side_of(&other.name) == side_of(&node.name) {
                    continue;
                }
                let path = format!("/v2/peers/blocked/{}", other.peer_id);
                let (status, answer) = self.call(node, Method::PUT, &path, None).await;
                if status != 200 {
                    return Err(format!(
                        "{} cannot block {}: {status}: {}",
                        node.name, other.name, answer["error"]
                    ));
                }
                blocks += 1;
            }
        }
        Ok(blocks)
    }

    /// Every running node unblocks whatever it blocked. Returns how many blocks it lifted.
    pub async fn heal(&self) -> Result<usize, String> {
        let mut unblocked = 0;
        for node in self.running()? {
            let (status, blocked) = self
                .call(&node, Method::GET, "/v2/peers/blocked", None)
                .await;
            if status != 200 {
                return Err(format!("{}: {status}: {}", node.name, blocked["error"]));
            }
            for peer in blocked.as_array().into_iter().flatten() {
                let peer = peer["peer_id"].as_str().unwrap_or_default();
                let path = format!("/v2/peers/blocked/{peer}");
                let (status, answer) = self.call(&node, Method::DELETE, &path, None).await;
                if status != 200 {
                    return Err(format!(
                        "{} cannot unblock {peer}: {status}: {}",
                        node.name, answer["error"]
                    ));
                }
                unblocked += 1;
            }
        }
        Ok(unblocked)
    }
}
