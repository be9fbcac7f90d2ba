//! `dta scenario run FILE [--lan]`: a TOML file declares a network and a list of steps; the
//! runner launches the network as processes on 127.0.0.1, or each in a network namespace of
//! its own on a simulated LAN ([`crate::process`]), runs the steps in order through the
//! nodes' HTTP APIs (from inside a node's namespace, with `dta api`), reports each with its
//! result and time, and takes the network down again whatever happened.
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
//! `[network] sites = 3` (or `--sites 3`) spreads the nodes over sites joined by a simulated
//! WAN ([`crate::process::sites`]); the steps `netem` and `isolate-site` change it, and `heal`
//! rejoins isolated sites.
//!
//! Steps: `order` (with `max_releases`), `generate-key`, `release` (with `timeout`, to wait for
//! the receipt) and `wait` (each may say `expect = "failure"`), `stop`
//! (SIGTERM), `kill` (SIGKILL), `restart`, `partition` and `heal` (through each node's block
//! list, `/v2/peers/blocked`), `mpin-server-secret`, `mpin-client-secret`,
//! `mpin-authenticate`, and the assertions `assert-secret`, `assert-audit` (with the
//! misconduct the log must prove), `assert-misconduct` (a node counted an offence of a
//! culprit's), `assert-peers` and `assert-converged` (every running node audits an order to
//! the same head).
//!
//! `[network] misbehave = { "node-2" = "wrong-share" }` runs nodes that play a role
//! dishonestly; only the test build `dta-byzantine` runs such a scenario.
//!
//! In a testnet the fiduciaries are the M-Pin trust authorities and the principals the
//! authentication servers; an M-Pin client's identity is its node's name.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use dta_node::client::Method;
use serde::Serialize;
use serde_json::{Value, json};

pub use dta_api::scenario::{Expect, ExpectedMisconduct, NetworkSpec, Scenario, StepSpec};

use crate::live::LiveNet;
use crate::process::{self, TestnetError, UpConfig};

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

/// Reads a scenario file, and checks that this build can run its dishonest nodes.
pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
    let file = |message: String| ScenarioError::File {
        path: path.display().to_string(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| file(e.to_string()))?;
    let scenario = dta_api::scenario::parse(&text).map_err(file)?;
    misbehaving(&scenario.network).map_err(file)?;
    Ok(scenario)
}

/// The dishonest nodes of `network` by index, each misbehaviour checked; refused unless this
/// build can misbehave.
fn misbehaving(network: &NetworkSpec) -> Result<BTreeMap<usize, String>, String> {
    if !network.misbehave.is_empty() && !dta_actors::byzantine::COMPILED {
        return Err(
            "its dishonest nodes (misbehave) run only in a test build: use dta-byzantine \
             (cargo build -p dta-cli --features byzantine --bin dta-byzantine)"
                .into(),
        );
    }
    network
        .misbehave
        .iter()
        .map(|(name, misbehaviour)| {
            let index = dta_api::scenario::node_index(name, network.nodes).ok_or_else(|| {
                format!(
                    "misbehave: no node {name:?} in a network of {}",
                    network.nodes
                )
            })?;
            dta_actors::byzantine::Misbehaviour::parse(misbehaviour)
                .map_err(|e| format!("misbehave: {name}: {e}"))?;
            Ok((index, misbehaviour.clone()))
        })
        .collect()
}

/// Where a scenario's network runs: on a LAN with `lan`; in sites joined by a WAN with
/// `sites` (or when the file says so, unless `lan`), with the run's `wan` figures, the file's,
/// or [`DEFAULT_WAN`]; on loopback otherwise.
pub fn placement(
    network: &NetworkSpec,
    lan: bool,
    sites: Option<usize>,
    wan: Option<&str>,
) -> Result<process::Placement, ScenarioError> {
    let file = |message: String| ScenarioError::File {
        path: "the scenario".into(),
        message,
    };
    if lan {
        if sites.is_some() || wan.is_some() {
            return Err(file("--lan is one LAN: leave out --sites and --wan".into()));
        }
        return Ok(process::Placement::Lan);
    }
    let Some(sites) = sites.or(network.sites) else {
        if wan.is_some() || network.wan.is_some() {
            return Err(file(
                "a WAN joins sites: give --sites (or sites = N)".into(),
            ));
        }
        return Ok(process::Placement::Loopback);
    };
    let figures = wan.or(network.wan.as_deref()).unwrap_or(DEFAULT_WAN);
    let link = figures
        .parse()
        .map_err(|e| file(format!("wan {figures:?}: {e}")))?;
    Ok(process::Placement::Sites { sites, link })
}

/// The WAN between sites when nothing says otherwise.
pub const DEFAULT_WAN: &str = "delay=40ms jitter=10ms loss=0.5%";

/// Runs a scenario on a fresh network under `dir`, placed as `placement` says; `on_step`
/// hears each result as it comes.
pub async fn run(
    scenario: &Scenario,
    dir: PathBuf,
    binary: PathBuf,
    placement: process::Placement,
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
        placement,
        misbehave: misbehaving(spec).map_err(|message| ScenarioError::File {
            path: "the scenario".into(),
            message,
        })?,
    };
    let testnet = process::up(config, |_| {}).await?;
    let runner = Runner {
        net: LiveNet {
            dir: dir.clone(),
            binary: testnet.binary.clone(),
            timeout: CALL_TIMEOUT,
        },
        threshold: spec.threshold,
        fiduciaries: testnet
            .nodes
            .iter()
            .filter(|n| n.roles.iter().any(|r| r == "fiduciary"))
            .map(|n| n.identity.clone())
            .collect(),
        client_secrets: Mutex::new(BTreeMap::new()),
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
    process::down(&dir, process::Logs::Keep).await?;
    let passed = steps.iter().filter(|s| s.passed).count();
    Ok(ScenarioReport {
        failed: steps.len() - passed,
        passed,
        steps,
    })
}

/// How long one API call of a step may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

struct Runner {
    net: LiveNet,
    threshold: Option<u32>,
    fiduciaries: Vec<String>,
    /// M-Pin client secrets (hex) by node name.
    client_secrets: Mutex<BTreeMap<String, String>>,
}

impl Runner {
    /// Runs one step: its description and its outcome (a detail either way).
    async fn step(&self, step: &StepSpec) -> (String, Result<String, String>) {
        match step {
            StepSpec::Order {
                reference,
                secret,
                fiduciaries,
                threshold,
                policy,
                max_releases,
                expect,
            } => (
                format!("order {reference}"),
                self.order(
                    reference,
                    secret,
                    (fiduciaries.as_deref(), *threshold),
                    (policy.as_ref(), *max_releases),
                    *expect,
                )
                .await,
            ),
            StepSpec::GenerateKey {
                reference,
                plugin,
                fiduciaries,
                threshold,
                expect,
            } => (
                format!("generate a {plugin} key for {reference}"),
                self.generate_key(
                    reference,
                    plugin,
                    (fiduciaries.as_deref(), *threshold),
                    *expect,
                )
                .await,
            ),
            StepSpec::Refresh {
                reference,
                timeout,
                expect,
            } => (
                format!("refresh {reference}"),
                self.deal_anew(reference, None, timeout.unwrap_or(60), *expect)
                    .await,
            ),
            StepSpec::Reshare {
                reference,
                fiduciaries,
                threshold,
                timeout,
                expect,
            } => (
                format!(
                    "move {reference} to {} of {}",
                    threshold,
                    fiduciaries.join(",")
                ),
                self.deal_anew(
                    reference,
                    Some((fiduciaries, *threshold)),
                    timeout.unwrap_or(60),
                    *expect,
                )
                .await,
            ),
            StepSpec::Approve {
                node,
                reference,
                expect,
            } => (
                format!("{node} approves the release of {reference}"),
                self.vote(node, reference, false, *expect).await,
            ),
            StepSpec::Veto {
                node,
                reference,
                expect,
            } => (
                format!("{node} vetoes the release of {reference}"),
                self.vote(node, reference, true, *expect).await,
            ),
            StepSpec::WaitUntil { seconds } => {
                tokio::time::sleep(Duration::from_secs(*seconds)).await;
                (format!("let {seconds} s pass"), Ok("done".into()))
            }
            StepSpec::Release {
                reference,
                timeout,
                expect,
            } => (
                format!("release {reference}"),
                self.release(reference, *timeout, *expect).await,
            ),
            StepSpec::Wait {
                node,
                reference,
                role,
                state,
                timeout,
                expect,
            } => (
                match expect {
                    Expect::Success => {
                        format!("wait until {node}'s {role} record of {reference} is {state}")
                    }
                    Expect::Failure => {
                        format!("{node}'s {role} record of {reference} does not become {state}")
                    }
                },
                self.wait(node, reference, role, state, timeout.unwrap_or(30), *expect)
                    .await,
            ),
            StepSpec::Partition { groups } => (
                format!(
                    "partition {}",
                    groups
                        .iter()
                        .map(|g| g.join(","))
                        .collect::<Vec<_>>()
                        .join(" | ")
                ),
                self.partition(groups).await,
            ),
            StepSpec::Heal => ("heal every partition".into(), self.heal().await),
            StepSpec::Netem { site, link } => (
                match site {
                    Some(site) => format!("site {site}'s link: {link}"),
                    None => format!("every site's link: {link}"),
                },
                process::router::netem(&self.net.dir, *site, link)
                    .map(|wan| match site {
                        Some(site) => format!("site {site}: {}", wan.link_of(*site)),
                        None => format!("every site: {}", wan.link),
                    })
                    .map_err(|e| e.to_string()),
            ),
            StepSpec::IsolateSite { site } => (
                format!("isolate site {site}"),
                process::router::isolate(&self.net.dir, *site)
                    .map(|_| format!("site {site} is cut off"))
                    .map_err(|e| e.to_string()),
            ),
            StepSpec::AssertConverged { reference, timeout } => (
                format!("every running node audits {reference} to the same head"),
                self.assert_converged(reference, timeout.unwrap_or(30))
                    .await,
            ),
            StepSpec::MpinServerSecret { node } => (
                format!("{node} gets an M-Pin server secret"),
                self.mpin_server_secret(node).await,
            ),
            StepSpec::MpinClientSecret { node } => (
                format!("{node} gets an M-Pin client secret"),
                self.mpin_client_secret(node).await,
            ),
            StepSpec::MpinAuthenticate {
                node,
                server,
                pin,
                entered,
                expect,
            } => (
                format!("{node} authenticates to {server} with M-Pin"),
                self.mpin_authenticate(node, server, *pin, entered.unwrap_or(*pin), *expect)
                    .await,
            ),
            StepSpec::Stop { node } => (
                format!("stop {node}"),
                process::stop_node(&self.net.dir, node, false)
                    .await
                    .map(|()| "stopped".into())
                    .map_err(|e| e.to_string()),
            ),
            StepSpec::Kill { node } => (
                format!("kill {node}"),
                process::stop_node(&self.net.dir, node, true)
                    .await
                    .map(|()| "killed".into())
                    .map_err(|e| e.to_string()),
            ),
            StepSpec::Restart { node } => (
                format!("restart {node}"),
                process::restart_node(&self.net.dir, node)
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
            StepSpec::AssertAudit {
                node,
                reference,
                misconduct,
                timeout,
            } => (
                format!("the log of {reference} audits on {node}"),
                self.assert_audit(node, reference, misconduct, timeout.unwrap_or(30))
                    .await,
            ),
            StepSpec::AssertMisconduct {
                node,
                culprit,
                offence,
                timeout,
            } => (
                format!("{node} counted {offence} by {culprit}"),
                self.assert_misconduct(node, culprit, offence, timeout.unwrap_or(30))
                    .await,
            ),
            StepSpec::AssertPeers {
                node,
                at_least,
                timeout,
            } => (
                format!("{node} has at least {at_least} peers"),
                self.assert_peers(node, *at_least, timeout.unwrap_or(0))
                    .await,
            ),
        }
    }

    async fn order(
        &self,
        reference: &str,
        secret: &str,
        committee: (Option<&[String]>, Option<u32>),
        (policy, max_releases): (Option<&dta_api::policy::PolicyBody>, Option<u32>),
        expect: Expect,
    ) -> Result<String, String> {
        let principal = self.net.node("@principal")?;
        let beneficiary = self.net.node("@beneficiary")?.identity;
        let (fiduciaries, threshold) = self.committee(committee)?;
        let mut body = json!({
            "reference": reference,
            "plugin": "safeguardsecret",
            "fiduciaries": fiduciaries,
            "threshold": threshold,
            "beneficiary": beneficiary,
            "secret": secret,
        });
        if let Some(policy) = policy {
            body["policy"] = self.with_identities(policy)?;
        }
        if let Some(max_releases) = max_releases {
            body["max_releases"] = json!(max_releases);
        }
        let (status, answer) = self
            .net
            .call(&principal, Method::POST, "/v2/orders", Some(body))
            .await;
        expected(status, &answer, expect, "ordered")
    }

    async fn generate_key(
        &self,
        reference: &str,
        plugin: &str,
        committee: (Option<&[String]>, Option<u32>),
        expect: Expect,
    ) -> Result<String, String> {
        let principal = self.net.node("@principal")?;
        let (fiduciaries, threshold) = self.committee(committee)?;
        let body = json!({
            "reference": reference,
            "plugin": plugin,
            "fiduciaries": fiduciaries,
            "threshold": threshold,
        });
        let (status, answer) = self
            .net
            .call(&principal, Method::POST, "/v2/orders", Some(body))
            .await;
        expected(status, &answer, expect, "ordered")
    }

    /// The fiduciaries' identities (the nodes named, or every fiduciary) and the threshold
    /// (given, the network's, or all of them).
    fn committee(
        &self,
        (named, threshold): (Option<&[String]>, Option<u32>),
    ) -> Result<(Vec<String>, u32), String> {
        let fiduciaries = match named {
            Some(names) => self.identities(names)?,
            None => self.fiduciaries.clone(),
        };
        let threshold = threshold
            .or(self.threshold)
            .unwrap_or(fiduciaries.len() as u32);
        Ok((fiduciaries, threshold))
    }

    /// A scenario's policy with each group member's node name replaced by its identity.
    fn with_identities(&self, policy: &dta_api::policy::PolicyBody) -> Result<Value, String> {
        let policy = serde_json::to_value(policy).map_err(|e| e.to_string())?;
        let testnet = self.net.testnet()?;
        crate::named_policy::with_identities(policy, |name| {
            testnet
                .nodes
                .iter()
                .find(|n| n.name == name)
                .map(|n| n.identity.clone())
                .ok_or_else(|| format!("no node {name:?} to be a member"))
        })
    }

    /// `node` approves (or vetoes) the latest release request of `reference`, which the
    /// principal's record names.
    async fn vote(
        &self,
        node: &str,
        reference: &str,
        veto: bool,
        expect: Expect,
    ) -> Result<String, String> {
        let principal = self.net.node("@principal")?;
        let (status, records) = self
            .net
            .call(
                &principal,
                Method::GET,
                &format!("/v2/orders/{reference}"),
                None,
            )
            .await;
        let request = records
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["role"] == "principal")
            .and_then(|r| r["releases"].as_object())
            .and_then(|releases| {
                releases
                    .iter()
                    .max_by_key(|(sequence, _)| sequence.parse::<u32>().unwrap_or(0))
                    .map(|(_, request)| request)
            })
            .and_then(Value::as_str)
            .ok_or_else(|| format!("{reference} has no release request yet ({status})"))?
            .to_owned();
        let voter = self.net.node(node)?;
        let (status, answer) = self
            .net
            .call(
                &voter,
                Method::POST,
                &format!("/v2/orders/{reference}/approvals"),
                Some(json!({ "request": request, "veto": veto })),
            )
            .await;
        expected(
            status,
            &answer,
            expect,
            if veto { "vetoed" } else { "approved" },
        )
    }

    /// The identities of nodes by name.
    fn identities(&self, names: &[String]) -> Result<Vec<String>, String> {
        names
            .iter()
            .map(|name| self.net.node(name).map(|n| n.identity))
            .collect()
    }

    /// A refresh (`next` none) or a reshare, waited for until certified with the new shares.
    async fn deal_anew(
        &self,
        reference: &str,
        next: Option<(&[String], u32)>,
        timeout: u64,
        expect: Expect,
    ) -> Result<String, String> {
        let principal = self.net.node("@principal")?;
        let (path, body) = match next {
            None => (
                format!("/v2/orders/{reference}/refresh?wait={timeout}"),
                json!({}),
            ),
            Some((names, threshold)) => (
                format!("/v2/orders/{reference}/reshare?wait={timeout}"),
                json!({ "fiduciaries": self.identities(names)?, "threshold": threshold }),
            ),
        };
        let (status, answer) = self
            .net
            .call(&principal, Method::POST, &path, Some(body))
            .await;
        // A wait that ran out is not success.
        let status = match answer["waited"]["reached"].as_bool() {
            Some(false) => 504,
            _ => status,
        };
        expected(status, &answer, expect, "certified with the new shares")
    }

    async fn release(
        &self,
        reference: &str,
        timeout: Option<u64>,
        expect: Expect,
    ) -> Result<String, String> {
        let principal = self.net.node("@principal")?;
        let wait = timeout.map_or(String::new(), |seconds| format!("?wait={seconds}"));
        let (status, answer) = self
            .net
            .call(
                &principal,
                Method::POST,
                &format!("/v2/orders/{reference}/release{wait}"),
                Some(json!({})),
            )
            .await;
        // 202 after a wait: the receipt did not come in time.
        if let (Some(seconds), 202, Expect::Success) = (timeout, status, expect) {
            return Err(format!("no receipt after {seconds} s: {answer}"));
        }
        expected(status, &answer, expect, "released")
    }

    async fn wait(
        &self,
        node: &str,
        reference: &str,
        role: &str,
        state: &str,
        timeout: u64,
        expect: Expect,
    ) -> Result<String, String> {
        let reached = self.reach(node, reference, role, state, timeout).await;
        match (expect, reached) {
            (Expect::Success, outcome) => outcome,
            (Expect::Failure, Ok(reached)) => Err(format!("it did: {reached}")),
            (Expect::Failure, Err(_)) => Ok(format!("not {state} after {timeout} s")),
        }
    }

    async fn reach(
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
            let target = self.net.node(node)?;
            let (status, records) = self
                .net
                .call(
                    &target,
                    Method::GET,
                    &format!("/v2/orders/{reference}"),
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
        let target = self.net.node(node)?;
        let (status, answer) = self
            .net
            .call(
                &target,
                Method::GET,
                &format!("/v2/orders/{reference}/secret"),
                None,
            )
            .await;
        match (status, answer["secret"].as_str()) {
            (200, Some(secret)) if secret == equals => Ok("the secret matches".into()),
            (200, Some(_)) => Err("a different secret".into()),
            _ => Err(format!("no secret ({status}: {})", answer["error"])),
        }
    }

    /// Audits `reference` on `node` until the audit passes and proves exactly `expected`, or
    /// `timeout` seconds passed; then the last audit's result.
    async fn assert_audit(
        &self,
        node: &str,
        reference: &str,
        expected: &[ExpectedMisconduct],
        timeout: u64,
    ) -> Result<String, String> {
        let started = Instant::now();
        loop {
            let audited = self.audit_once(node, reference, expected).await;
            if audited.is_ok() || started.elapsed() >= Duration::from_secs(timeout) {
                return audited;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn audit_once(
        &self,
        node: &str,
        reference: &str,
        expected: &[ExpectedMisconduct],
    ) -> Result<String, String> {
        let target = self.net.node(node)?;
        let (status, report) = self
            .net
            .call(
                &target,
                Method::GET,
                &format!("/v2/orders/{reference}/audit"),
                None,
            )
            .await;
        if status != 200 || report["passed"] != true {
            return Err(format!("{status}: {}", report["error"]));
        }
        let nodes = self.net.testnet()?.nodes;
        let name_of = |cid: &Value| {
            nodes
                .iter()
                .find(|n| cid.as_str() == Some(n.identity.as_str()))
                .map_or_else(|| cid.to_string(), |n| n.name.clone())
        };
        let found: BTreeSet<(String, String)> = report["misconduct"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|m| {
                (
                    name_of(&m["culprit"]),
                    m["offence"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        let wanted: BTreeSet<(String, String)> = expected
            .iter()
            .map(|m| (m.culprit.clone(), m.offence.clone()))
            .collect();
        if found != wanted {
            return Err(format!(
                "the audit proves {found:?}, not {wanted:?}: {}",
                report["misconduct"]
            ));
        }
        Ok(format!(
            "{} envelopes, certified {}, {} receipts, misconduct {found:?}",
            report["envelopes"].as_array().map_or(0, Vec::len),
            report["certified"],
            report["receipts"]
        ))
    }

    /// Reads `node`'s `dta_misconduct_total` until it counts `offence` by `culprit`.
    async fn assert_misconduct(
        &self,
        node: &str,
        culprit: &str,
        offence: &str,
        timeout: u64,
    ) -> Result<String, String> {
        let culprit_identity = self.net.node(culprit)?.identity;
        let series = format!(
            "dta_misconduct_total{{offence=\"{offence}\",culprit=\"{culprit_identity}\"}} "
        );
        let started = Instant::now();
        loop {
            let target = self.net.node(node)?;
            let (status, metrics) = self.net.call(&target, Method::GET, "/metrics", None).await;
            let count = metrics
                .as_str()
                .into_iter()
                .flat_map(str::lines)
                .find_map(|line| line.strip_prefix(series.as_str()))
                .and_then(|count| count.trim().parse::<u64>().ok())
                .unwrap_or(0);
            if status == 200 && count > 0 {
                return Ok(format!(
                    "{count} after {:.1} s",
                    started.elapsed().as_secs_f64()
                ));
            }
            if started.elapsed() >= Duration::from_secs(timeout) {
                return Err(format!("none after {timeout} s ({status})"));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn assert_peers(
        &self,
        node: &str,
        at_least: usize,
        timeout: u64,
    ) -> Result<String, String> {
        let started = Instant::now();
        loop {
            let target = self.net.node(node)?;
            let (status, peers) = self.net.call(&target, Method::GET, "/v2/peers", None).await;
            let count = peers.as_array().map_or(0, Vec::len);
            if status == 200 && count >= at_least {
                return Ok(format!(
                    "{count} peers after {:.1} s",
                    started.elapsed().as_secs_f64()
                ));
            }
            if started.elapsed() >= Duration::from_secs(timeout) {
                // Which peers, so that the one missing can be told.
                let names: Vec<&str> = peers
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|peer| peer["name"].as_str().unwrap_or("an unknown peer"))
                    .collect();
                return Err(format!("{count} peers ({status}): {}", names.join(", ")));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn partition(&self, groups: &[Vec<String>]) -> Result<String, String> {
        let blocks = self.net.partition(groups).await?;
        Ok(format!(
            "{blocks} peers blocked on {} running nodes",
            self.net.running()?.len()
        ))
    }

    async fn heal(&self) -> Result<String, String> {
        let has_sites = process::load(&self.net.dir)
            .map_err(|e| e.to_string())?
            .router
            .is_some();
        let rejoined = if has_sites {
            process::router::rejoin(&self.net.dir)
                .map_err(|e| e.to_string())?
                .0
        } else {
            0
        };
        let unblocked = self.net.heal().await?;
        Ok(if rejoined > 0 {
            format!("{unblocked} peers unblocked, sites rejoined: {rejoined}")
        } else {
            format!("{unblocked} peers unblocked")
        })
    }

    async fn assert_converged(&self, reference: &str, timeout: u64) -> Result<String, String> {
        let started = Instant::now();
        loop {
            let mut heads: BTreeMap<String, Vec<String>> = BTreeMap::new();
            let mut failures = Vec::new();
            let running = self.net.running()?;
            for node in &running {
                let (status, report) = self
                    .net
                    .call(
                        node,
                        Method::GET,
                        &format!("/v2/orders/{reference}/audit"),
                        None,
                    )
                    .await;
                match report["head"].as_str() {
                    Some(head) if status == 200 && report["passed"] == true => heads
                        .entry(head.to_owned())
                        .or_default()
                        .push(node.name.clone()),
                    _ => failures.push(format!("{}: {status} {}", node.name, report["error"])),
                }
            }
            if failures.is_empty() && heads.len() == 1 {
                let head = heads.keys().next().cloned().unwrap_or_default();
                return Ok(format!(
                    "{} nodes at {head} after {:.1} s",
                    running.len(),
                    started.elapsed().as_secs_f64()
                ));
            }
            if started.elapsed() >= Duration::from_secs(timeout) {
                let split: Vec<String> = heads
                    .iter()
                    .map(|(head, nodes)| format!("{} at {head}", nodes.join(",")))
                    .chain(failures)
                    .collect();
                return Err(format!("not converged: {}", split.join("; ")));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn mpin_server_secret(&self, node: &str) -> Result<String, String> {
        let target = self.net.node(node)?;
        let (status, answer) = self
            .net
            .call(
                &target,
                Method::POST,
                "/v2/mpin/server-secret",
                Some(json!({ "from": self.fiduciaries })),
            )
            .await;
        expected(status, &answer, Expect::Success, "server secret kept")
    }

    async fn mpin_client_secret(&self, node: &str) -> Result<String, String> {
        let target = self.net.node(node)?;
        let (status, answer) = self
            .net
            .call(
                &target,
                Method::POST,
                "/v2/mpin/client-secret",
                Some(json!({ "identity": node, "from": self.fiduciaries })),
            )
            .await;
        let secret = match answer["client_secret"].as_str() {
            Some(secret) if status == 200 => secret.to_owned(),
            _ => return Err(format!("{status}: {}", answer["error"])),
        };
        self.client_secrets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(node.to_owned(), secret);
        Ok(format!(
            "client secret from {} authorities",
            self.fiduciaries.len()
        ))
    }

    /// The client's side of M-Pin here, the server's at the server node's API.
    async fn mpin_authenticate(
        &self,
        node: &str,
        server: &str,
        pin: u32,
        entered: u32,
        expect: Expect,
    ) -> Result<String, String> {
        let secret = self
            .client_secrets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(node)
            .cloned()
            .ok_or_else(|| format!("{node} has no client secret: mpin-client-secret first"))?;
        let target = self.net.node(server)?;
        let (status, verdict) =
            crate::mpin_client::authenticate(&self.net, &target, node, &secret, pin, entered)
                .await?;
        expected(status, &verdict, expect, "authenticated")
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
