//! `dta scenario run FILE`: a TOML file declares a network and a list of steps; the runner
//! launches the network as processes on 127.0.0.1 ([`crate::process`]), runs the steps in
//! order through the nodes' HTTP APIs, reports each with its result and time, and takes the
//! network down again whatever happened.
//!
//! ```toml
//! [network]
//! nodes = 5            # node-0 is the principal, the last the beneficiary
//! threshold = 2
//!
//! [[steps]]
//! do = "order"         # the principal orders custody of a secret
//! reference = "alpha"
//! secret = "the launch codes"
//!
//! [[steps]]
//! do = "wait"          # until a node's record reaches a state
//! node = "node-0"
//! reference = "alpha"
//! role = "principal"
//! state = "certified"
//! ```
//!
//! Steps: `order`, `release` (both may say `expect = "failure"`), `wait`, `stop` (SIGTERM),
//! `kill` (SIGKILL), `restart`, `assert-secret`, `assert-audit`, `assert-peers`. Partitions
//! and M-Pin steps come later.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::process::{self, TestnetError, TestnetFile, UpConfig};

/// A scenario file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// The network.
    pub network: NetworkSpec,
    /// The steps, in order.
    #[serde(default)]
    pub steps: Vec<StepSpec>,
}

/// The network a scenario runs on.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSpec {
    /// Nodes.
    pub nodes: usize,
    /// Principals (the first nodes; default 1).
    #[serde(default = "one")]
    pub principals: usize,
    /// Beneficiaries (the last; default 1).
    #[serde(default = "one")]
    pub beneficiaries: usize,
    /// The orders' threshold (default: every fiduciary).
    pub threshold: Option<u32>,
}

fn one() -> usize {
    1
}

/// Whether a step should succeed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Expect {
    /// It must succeed.
    #[default]
    Success,
    /// It must be refused.
    Failure,
}

/// One step.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "do", rename_all = "kebab-case", deny_unknown_fields)]
pub enum StepSpec {
    /// The principal orders custody of a secret from every fiduciary, for the beneficiary.
    Order {
        /// The order's reference.
        reference: String,
        /// The secret.
        secret: String,
        /// Succeed or be refused.
        #[serde(default)]
        expect: Expect,
    },
    /// The principal releases an order to its beneficiary.
    Release {
        /// The order's reference.
        reference: String,
        /// Succeed or be refused.
        #[serde(default)]
        expect: Expect,
    },
    /// Waits until a node's record of an order reaches a state.
    Wait {
        /// The node.
        node: String,
        /// The order.
        reference: String,
        /// The role of the record.
        role: String,
        /// The state.
        state: String,
        /// Seconds to wait at most (default 30).
        timeout: Option<u64>,
    },
    /// Stops a node cleanly.
    Stop {
        /// The node.
        node: String,
    },
    /// Kills a node outright.
    Kill {
        /// The node.
        node: String,
    },
    /// Starts a stopped node again.
    Restart {
        /// The node.
        node: String,
    },
    /// A node received the secret of an order, and it is this.
    AssertSecret {
        /// The node.
        node: String,
        /// The order.
        reference: String,
        /// The secret expected.
        equals: String,
    },
    /// An order's log audits on a node.
    AssertAudit {
        /// The node.
        node: String,
        /// The order.
        reference: String,
    },
    /// A node has at least this many peers.
    AssertPeers {
        /// The node.
        node: String,
        /// The least number of connected peers.
        at_least: usize,
    },
}

/// One step's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct StepResult {
    /// What the step did.
    pub step: String,
    /// Whether it passed.
    pub passed: bool,
    /// Why not, or what it saw.
    pub detail: String,
    /// Milliseconds it took.
    pub millis: f64,
}

/// What a run did.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioReport {
    /// Every step, in order.
    pub steps: Vec<StepResult>,
    /// Steps that passed.
    pub passed: usize,
    /// Steps that failed.
    pub failed: usize,
}

/// Why a scenario could not run at all (a failed step is a result, not an error).
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// The network.
    #[error(transparent)]
    Testnet(#[from] TestnetError),
}

/// Reads a scenario file.
pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
    let file = |message: String| ScenarioError::File {
        path: path.display().to_string(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| file(e.to_string()))?;
    let scenario: Scenario = toml::from_str(&text).map_err(|e| file(e.to_string()))?;
    if scenario.steps.is_empty() {
        return Err(file("no steps".into()));
    }
    Ok(scenario)
}

/// Runs a scenario on a fresh network under `dir`; `on_step` hears each result as it comes.
pub async fn run(
    scenario: &Scenario,
    dir: PathBuf,
    binary: PathBuf,
    mut on_step: impl FnMut(usize, &StepResult),
) -> Result<ScenarioReport, ScenarioError> {
    let spec = &scenario.network;
    let config = UpConfig {
        dir: dir.clone(),
        nodes: spec.nodes,
        principals: spec.principals,
        fiduciaries: spec
            .nodes
            .saturating_sub(spec.principals + spec.beneficiaries),
        beneficiaries: spec.beneficiaries,
        threshold: spec.threshold,
        binary,
        pkcs11_module: None,
        lan: false,
    };
    let testnet = process::up(config, |_| {}).await?;
    let runner = Runner {
        dir: dir.clone(),
        threshold: spec.threshold,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| TestnetError::Invalid(e.to_string()))?,
        fiduciaries: testnet
            .nodes
            .iter()
            .filter(|n| n.roles.iter().any(|r| r == "fiduciary"))
            .map(|n| n.identity.clone())
            .collect(),
    };
    let mut steps = Vec::with_capacity(scenario.steps.len());
    for (index, step) in scenario.steps.iter().enumerate() {
        let started = Instant::now();
        let (name, outcome) = runner.step(step).await;
        let result = StepResult {
            step: name,
            passed: outcome.is_ok(),
            detail: outcome.unwrap_or_else(|e| e),
            millis: started.elapsed().as_secs_f64() * 1e3,
        };
        on_step(index + 1, &result);
        steps.push(result);
    }
    process::down(&dir).await?;
    let passed = steps.iter().filter(|s| s.passed).count();
    Ok(ScenarioReport {
        failed: steps.len() - passed,
        passed,
        steps,
    })
}

struct Runner {
    dir: PathBuf,
    threshold: Option<u32>,
    http: reqwest::Client,
    fiduciaries: Vec<String>,
}

impl Runner {
    fn testnet(&self) -> Result<TestnetFile, String> {
        process::load(&self.dir).map_err(|e| e.to_string())
    }

    /// The API URL and identity of a node, by name, or of the first node with a role.
    fn node(&self, name: &str) -> Result<(String, String), String> {
        let testnet = self.testnet()?;
        testnet
            .nodes
            .iter()
            .find(|n| n.name == name || n.roles.iter().any(|r| format!("@{r}") == name))
            .map(|n| (n.api.clone(), n.identity.clone()))
            .ok_or_else(|| format!("no node {name:?}"))
    }

    async fn call(
        &self,
        method: reqwest::Method,
        url: String,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self.http.request(method, url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                (status, response.json().await.unwrap_or(Value::Null))
            }
            Err(e) => (0, json!({ "error": e.to_string() })),
        }
    }

    /// Runs one step: its description and its outcome (a detail either way).
    async fn step(&self, step: &StepSpec) -> (String, Result<String, String>) {
        match step {
            StepSpec::Order {
                reference,
                secret,
                expect,
            } => (
                format!("order {reference}"),
                self.order(reference, secret, *expect).await,
            ),
            StepSpec::Release { reference, expect } => (
                format!("release {reference}"),
                self.release(reference, *expect).await,
            ),
            StepSpec::Wait {
                node,
                reference,
                role,
                state,
                timeout,
            } => (
                format!("wait until {node}'s {role} record of {reference} is {state}"),
                self.wait(node, reference, role, state, timeout.unwrap_or(30))
                    .await,
            ),
            StepSpec::Stop { node } => (
                format!("stop {node}"),
                process::stop_node(&self.dir, node, false)
                    .await
                    .map(|()| "stopped".into())
                    .map_err(|e| e.to_string()),
            ),
            StepSpec::Kill { node } => (
                format!("kill {node}"),
                process::stop_node(&self.dir, node, true)
                    .await
                    .map(|()| "killed".into())
                    .map_err(|e| e.to_string()),
            ),
            StepSpec::Restart { node } => (
                format!("restart {node}"),
                process::restart_node(&self.dir, node)
                    .await
                    .map(|n| format!("running again, pid {}", n.pid))
                    .map_err(|e| e.to_string()),
            ),
            StepSpec::AssertSecret {
                node,
                reference,
                equals,
            } => (
                format!("{node} holds the secret of {reference}"),
                self.assert_secret(node, reference, equals).await,
            ),
            StepSpec::AssertAudit { node, reference } => (
                format!("the log of {reference} audits on {node}"),
                self.assert_audit(node, reference).await,
            ),
            StepSpec::AssertPeers { node, at_least } => (
                format!("{node} has at least {at_least} peers"),
                self.assert_peers(node, *at_least).await,
            ),
        }
    }

    async fn order(&self, reference: &str, secret: &str, expect: Expect) -> Result<String, String> {
        let (api, _) = self.node("@principal")?;
        let (_, beneficiary) = self.node("@beneficiary")?;
        let body = json!({
            "reference": reference,
            "plugin": "safeguardsecret",
            "fiduciaries": self.fiduciaries,
            "threshold": self.threshold.unwrap_or(self.fiduciaries.len() as u32),
            "beneficiary": beneficiary,
            "secret": secret,
        });
        let (status, answer) = self
            .call(
                reqwest::Method::POST,
                format!("{api}/v2/orders"),
                Some(body),
            )
            .await;
        expected(status, &answer, expect, "ordered")
    }

    async fn release(&self, reference: &str, expect: Expect) -> Result<String, String> {
        let (api, _) = self.node("@principal")?;
        let (status, answer) = self
            .call(
                reqwest::Method::POST,
                format!("{api}/v2/orders/{reference}/release"),
                Some(json!({})),
            )
            .await;
        expected(status, &answer, expect, "released")
    }

    async fn wait(
        &self,
        node: &str,
        reference: &str,
        role: &str,
        state: &str,
        timeout: u64,
    ) -> Result<String, String> {
        let started = Instant::now();
        let mut last = String::from("no record");
        while started.elapsed() < Duration::from_secs(timeout) {
            let (api, _) = self.node(node)?;
            let (status, records) = self
                .call(
                    reqwest::Method::GET,
                    format!("{api}/v2/orders/{reference}"),
                    None,
                )
                .await;
            if status == 200
                && let Some(record) = records
                    .as_array()
                    .and_then(|r| r.iter().find(|r| r["role"] == role))
            {
                if record["state"] == state {
                    return Ok(format!(
                        "{state} after {:.1} s",
                        started.elapsed().as_secs_f64()
                    ));
                }
                last = format!("still {}", record["state"]);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(format!("not {state} within {timeout} s ({last})"))
    }

    async fn assert_secret(
        &self,
        node: &str,
        reference: &str,
        equals: &str,
    ) -> Result<String, String> {
        let (api, _) = self.node(node)?;
        let (status, answer) = self
            .call(
                reqwest::Method::GET,
                format!("{api}/v2/orders/{reference}/secret"),
                None,
            )
            .await;
        match (status, answer["secret"].as_str()) {
            (200, Some(secret)) if secret == equals => Ok("the secret matches".into()),
            (200, Some(_)) => Err("a different secret".into()),
            _ => Err(format!("no secret ({status}: {})", answer["error"])),
        }
    }

    async fn assert_audit(&self, node: &str, reference: &str) -> Result<String, String> {
        let (api, _) = self.node(node)?;
        let (status, report) = self
            .call(
                reqwest::Method::GET,
                format!("{api}/v2/orders/{reference}/audit"),
                None,
            )
            .await;
        if status == 200 && report["passed"] == true {
            Ok(format!(
                "{} envelopes, certified {}, {} receipts",
                report["envelopes"].as_array().map_or(0, Vec::len),
                report["certified"],
                report["receipts"]
            ))
        } else {
            Err(format!("{status}: {}", report["error"]))
        }
    }

    async fn assert_peers(&self, node: &str, at_least: usize) -> Result<String, String> {
        let (api, _) = self.node(node)?;
        let (status, peers) = self
            .call(reqwest::Method::GET, format!("{api}/v2/peers"), None)
            .await;
        let count = peers.as_array().map_or(0, Vec::len);
        if status == 200 && count >= at_least {
            Ok(format!("{count} peers"))
        } else {
            Err(format!("{count} peers ({status})"))
        }
    }
}

fn expected(status: u16, answer: &Value, expect: Expect, done: &str) -> Result<String, String> {
    let succeeded = (200..300).contains(&status);
    match (expect, succeeded) {
        (Expect::Success, true) => Ok(done.into()),
        (Expect::Success, false) => Err(format!("{status}: {}", answer["error"])),
        (Expect::Failure, false) => Ok(format!(
            "refused as expected ({status}: {})",
            answer["error"]
        )),
        (Expect::Failure, true) => Err("it succeeded, but should have been refused".into()),
    }
}

impl std::fmt::Display for ScenarioReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} steps: {} passed, {} failed",
            self.steps.len(),
            self.passed,
            self.failed
        )
    }
}
