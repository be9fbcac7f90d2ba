//! Scenario files (`dta scenario run FILE`): a network and the steps to run on it, as TOML,
//! parsed and checked for what the file alone can tell (every step names a node of the
//! network, a partition puts each node in one group).
//!
//! What it does not do: run a step, or know which misbehaviours a build has; the testnet
//! runner does both.

use std::collections::{BTreeMap, BTreeSet};

use dta_protocol::policy::{MAX_RULE_DEPTH, Rule};
use serde::{Deserialize, Serialize};

use crate::policy::PolicyBody;

/// A scenario file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// The network.
    pub network: NetworkSpec,
    /// The steps, in order.
    #[serde(default)]
    pub steps: Vec<StepSpec>,
}

/// The network a scenario runs on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// Nodes that play a role dishonestly, by name, and how (`"node-2" = "wrong-share"`; see
    /// `dta run --misbehave`). Only a test build runs them (`dta-byzantine`).
    #[serde(default)]
    pub misbehave: BTreeMap<String, String>,
    /// Sites joined by a simulated WAN (node `i` in site `i mod sites`; needs root), unless
    /// the run says otherwise.
    pub sites: Option<usize>,
    /// The WAN's link figures between sites (`"delay=40ms jitter=10ms loss=0.5%"`).
    pub wan: Option<String>,
}

fn one() -> usize {
    1
}

/// Whether a step should succeed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Expect {
    /// It must succeed.
    #[default]
    Success,
    /// It must be refused.
    Failure,
}

/// One step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "do", rename_all = "kebab-case", deny_unknown_fields)]
pub enum StepSpec {
    /// The principal orders custody of a secret from every fiduciary (or those named), for
    /// the beneficiary.
    Order {
        /// The order's reference.
        reference: String,
        /// The secret.
        secret: String,
        /// The fiduciaries by node name (default: every fiduciary).
        fiduciaries: Option<Vec<String>>,
        /// The threshold (default: the network's).
        threshold: Option<u32>,
        /// A release policy, as `POST /v2/orders` takes it, with node names where identity
        /// CIDs go (`members = ["node-4", "node-5"]`).
        #[serde(default)]
        policy: Option<PolicyBody>,
        /// Releases allowed (default 1).
        max_releases: Option<u32>,
        /// Succeed or be refused.
        #[serde(default)]
        expect: Expect,
    },
    /// The principal has the fiduciaries generate a key without a dealer.
    GenerateKey {
        /// The order's reference.
        reference: String,
        /// The plugin whose key it is (`milagro`, a BLS12-381 key, by default).
        #[serde(default = "default_key_plugin")]
        plugin: String,
        /// The fiduciaries by node name (default: every fiduciary).
        fiduciaries: Option<Vec<String>>,
        /// The threshold (default: the network's).
        threshold: Option<u32>,
        /// Succeed or be refused.
        #[serde(default)]
        expect: Expect,
    },
    /// A node approves the latest release request of an order, as its own identity.
    Approve {
        /// The approving node.
        node: String,
        /// The order.
        reference: String,
        /// Be taken, or be refused.
        #[serde(default)]
        expect: Expect,
    },
    /// A node vetoes the latest release request of an order, as its own identity.
    Veto {
        /// The vetoing node.
        node: String,
        /// The order.
        reference: String,
        /// Be taken, or be refused.
        #[serde(default)]
        expect: Expect,
    },
    /// Lets time pass (a policy's delay).
    WaitUntil {
        /// Seconds from now.
        seconds: u64,
    },
    /// The principal has an order's committee deal its shares anew (same key), and waits until
    /// the order is certified with them.
    Refresh {
        /// The order's reference.
        reference: String,
        /// Seconds to wait for the certificate (default 60).
        timeout: Option<u64>,
        /// Succeed or be refused.
        #[serde(default)]
        expect: Expect,
    },
    /// The principal moves custody of an order to other fiduciaries (by node name) and
    /// threshold, same key, and waits until the new committee has certified it.
    Reshare {
        /// The order's reference.
        reference: String,
        /// The new committee.
        fiduciaries: Vec<String>,
        /// The new threshold.
        threshold: u32,
        /// Seconds to wait for the certificate (default 60).
        timeout: Option<u64>,
        /// Succeed or be refused.
        #[serde(default)]
        expect: Expect,
    },
    /// The principal releases an order to its beneficiary.
    Release {
        /// The order's reference.
        reference: String,
        /// Seconds to wait for the beneficiary's receipt (default: do not wait).
        timeout: Option<u64>,
        /// Succeed or be refused.
        #[serde(default)]
        expect: Expect,
    },
    /// Waits until a node's record of an order reaches a state (or, expecting failure,
    /// checks that it does not within the timeout).
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
        /// Reach the state, or stay out of it.
        #[serde(default)]
        expect: Expect,
    },
    /// Splits the network: every node blocks every node of the other groups, both ways.
    /// Every node is in exactly one group.
    Partition {
        /// The sides, by node name.
        groups: Vec<Vec<String>>,
    },
    /// Ends partitions: every running node unblocks every peer it blocked, and dials it; on a
    /// network of sites, isolated sites rejoin the WAN.
    Heal,
    /// Changes the WAN's link figures (network of sites only): of one site's link, or of every
    /// site's.
    Netem {
        /// The site (default: every site).
        site: Option<usize>,
        /// The figures to change (`"delay=100ms loss=2%"`); others keep theirs.
        link: String,
    },
    /// Cuts a site off the WAN (network of sites only): every packet to or from it is dropped
    /// until `heal`.
    IsolateSite {
        /// The site.
        site: usize,
    },
    /// Every running node audits an order, and all reach the same head.
    AssertConverged {
        /// The order.
        reference: String,
        /// Seconds to keep trying (default 30).
        timeout: Option<u64>,
    },
    /// A principal gets an M-Pin server secret from the fiduciaries, and keeps it.
    MpinServerSecret {
        /// The node.
        node: String,
    },
    /// A node gets an M-Pin client secret for its own name from the fiduciaries; the runner
    /// keeps it for `mpin-authenticate`.
    MpinClientSecret {
        /// The node.
        node: String,
    },
    /// A node's M-Pin identity authenticates to a server node with a token made for `pin`,
    /// typing `entered` (default: the same PIN).
    MpinAuthenticate {
        /// The client node (its name is the M-Pin identity).
        node: String,
        /// The authentication server node.
        server: String,
        /// The PIN the token was made for.
        pin: u32,
        /// The PIN typed.
        entered: Option<u32>,
        /// Be let in, or be refused.
        #[serde(default)]
        expect: Expect,
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
    /// An order's log audits on a node, proving exactly the misconduct listed (none unless
    /// listed).
    AssertAudit {
        /// The node.
        node: String,
        /// The order.
        reference: String,
        /// The offences the audit must find, each by culprit (a node name) and offence name.
        #[serde(default)]
        misconduct: Vec<ExpectedMisconduct>,
        /// Seconds to keep auditing until it proves exactly those (default 30): evidence that
        /// another node sends, such as a beneficiary's receipt, may arrive a moment after the
        /// step before saw that node done.
        timeout: Option<u64>,
    },
    /// A node counted at least one offence of a culprit's (its `dta_misconduct_total`).
    AssertMisconduct {
        /// The node that saw it.
        node: String,
        /// The culprit, by node name.
        culprit: String,
        /// The offence (`wrong-share`, `deal-off-commitment`, `bad-sub-share`, ...).
        offence: String,
        /// Seconds to keep trying (default 30).
        timeout: Option<u64>,
    },
    /// A node has at least this many peers.
    AssertPeers {
        /// The node.
        node: String,
        /// The least number of connected peers.
        at_least: usize,
        /// Seconds to keep trying (default: check once).
        timeout: Option<u64>,
    },
}

/// An offence an audit must prove.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedMisconduct {
    /// The culprit, by node name.
    pub culprit: String,
    /// The offence's name.
    pub offence: String,
}

/// The scenario in `text`, checked; the error says what is wrong and where.
pub fn parse(text: &str) -> Result<Scenario, String> {
    let scenario: Scenario = toml::from_str(text).map_err(|e| e.to_string())?;
    if scenario.steps.is_empty() {
        return Err("no steps".into());
    }
    for name in scenario.network.misbehave.keys() {
        if node_index(name, scenario.network.nodes).is_none() {
            return Err(format!(
                "misbehave: no node {name:?} in a network of {}",
                scenario.network.nodes
            ));
        }
    }
    for (index, step) in scenario.steps.iter().enumerate() {
        let checked = match step {
            StepSpec::Partition { groups } => check_groups(groups, scenario.network.nodes),
            StepSpec::Order {
                policy: Some(policy),
                ..
            } => check_rule_depth(policy),
            _ => Ok(()),
        };
        checked.map_err(|e| format!("step {}: {e}", index + 1))?;
    }
    Ok(scenario)
}

/// A policy's rule nested no deeper than an order's may be (the rest of the policy is checked
/// when the order is made, once node names are identities).
fn check_rule_depth(policy: &PolicyBody) -> Result<(), String> {
    fn depth(rule: &Rule) -> usize {
        match rule {
            Rule::Group(_) => 1,
            Rule::All(rules) | Rule::Any(rules) | Rule::AtLeast { of: rules, .. } => {
                1 + rules.iter().map(depth).max().unwrap_or(0)
            }
        }
    }
    match &policy.rule {
        Some(rule) if depth(rule) > MAX_RULE_DEPTH => Err(format!(
            "the policy's rule is nested deeper than {MAX_RULE_DEPTH}"
        )),
        _ => Ok(()),
    }
}

/// The index of node `name` (`node-3` is 3) in a network of `nodes`, if there is one.
pub fn node_index(name: &str, nodes: usize) -> Option<usize> {
    name.strip_prefix("node-")
        .and_then(|i| i.parse::<usize>().ok())
        .filter(|i| *i < nodes && format!("node-{i}") == name)
}

/// Every node of `nodes` in exactly one of at least two non-empty groups.
fn check_groups(groups: &[Vec<String>], nodes: usize) -> Result<(), String> {
    if groups.len() < 2 || groups.iter().any(Vec::is_empty) {
        return Err("a partition needs at least two non-empty groups".into());
    }
    let mut seen = BTreeSet::new();
    for name in groups.iter().flatten() {
        if node_index(name, nodes).is_none() {
            return Err(format!("no node {name:?} in a network of {nodes}"));
        }
        if !seen.insert(name.clone()) {
            return Err(format!("{name} is in two groups"));
        }
    }
    if seen.len() != nodes {
        let missing: Vec<String> = (0..nodes)
            .map(|i| format!("node-{i}"))
            .filter(|n| !seen.contains(n))
            .collect();
        return Err(format!("{} in no group", missing.join(", ")));
    }
    Ok(())
}

fn default_key_plugin() -> String {
    "milagro".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORDER: &str =
        "[network]\nnodes = 5\n\n[[steps]]\ndo = \"order\"\nreference = \"r\"\nsecret = \"s\"\n";

    #[test]
    fn a_policy_is_checked_as_a_policy_when_the_file_is_read() {
        let example = format!(
            "{ORDER}[steps.policy]\ndelay_ms = 3000\ngroups = [{{ name = \"legal\", members = [\"node-4\"], count = 1 }}]\nrule = {{ group = \"legal\" }}\n"
        );
        let scenario = parse(&example).unwrap();
        let written = toml::to_string(&scenario).unwrap();
        assert_eq!(parse(&written).unwrap(), scenario);

        // What the scenario fuzz target found: a field no policy has, a dotted key of many
        // parts, was taken as it was and written back as a table header the TOML reader
        // refuses. It is refused when the file is read.
        let key = ["delay_msrr"; 40].join(".");
        let unknown = format!("{ORDER}[steps.policy]\n{key} = \"received\"\n");
        let refused = parse(&unknown).unwrap_err();
        assert!(refused.contains("unknown field"), "{refused}");

        let mut rule = "{ group = \"legal\" }".to_owned();
        for _ in 0..MAX_RULE_DEPTH {
            rule = format!("{{ all = [{rule}] }}");
        }
        let deep = format!("{ORDER}[steps.policy]\nrule = {rule}\n");
        let refused = parse(&deep).unwrap_err();
        assert!(refused.contains("nested deeper"), "{refused}");
    }
}
