//! A simulated LAN for `dta testnet up --lan`: one network namespace per node and one for a
//! bridge joining them, veth pairs made directly inside those namespaces, addresses from
//! 10.213.0.0/24 that exist only there, a multicast route so mDNS works, and no default route.
//! Nothing is added to the root namespace, so mDNS never multicasts on the machine's real
//! link. Needs root (`ip netns`).

use std::process::{Command, Stdio};

use super::TestnetError;

/// The node's address on the LAN.
pub fn address(index: usize) -> String {
    format!("10.213.0.{}", index + 1)
}

/// Most nodes a LAN holds (a /24, less the network and broadcast addresses).
pub const MAX_NODES: usize = 253;

/// The namespaces of one LAN: the bridge's first, then one per node.
#[derive(Debug, Clone)]
pub struct Lan {
    /// The bridge's namespace.
    pub bridge: String,
    /// Each node's namespace.
    pub nodes: Vec<String>,
}

impl Lan {
    /// Every namespace, bridge first.
    pub fn namespaces(&self) -> Vec<String> {
        std::iter::once(self.bridge.clone())
            .chain(self.nodes.iter().cloned())
            .collect()
    }
}

/// Runs `ip` with `args`; its error output becomes the error.
pub(super) fn ip(args: &[&str]) -> Result<(), TestnetError> {
    let output = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| TestnetError::Io {
            path: "ip".into(),
            source,
        })?;
    if output.status.success() {
        Ok(())
    } else {
        Err(TestnetError::Invalid(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        )))
    }
}

/// Whether this process runs as root.
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|uid| uid == "0"))
        })
        .unwrap_or(false)
}

/// Refuses `option` unless this process runs as root.
pub(super) fn check_root(option: &str) -> Result<(), TestnetError> {
    if is_root() {
        Ok(())
    } else {
        Err(TestnetError::Invalid(format!(
            "{option} needs root: it makes network namespaces (run as root, or leave out {option})"
        )))
    }
}

/// Whether a LAN for `nodes` nodes can be made here (root, and few enough nodes), checked
/// before anything else is made.
pub fn check(nodes: usize) -> Result<(), TestnetError> {
    check_root("--lan")?;
    if nodes > MAX_NODES {
        return Err(TestnetError::Invalid(format!(
            "a LAN holds at most {MAX_NODES} nodes"
        )));
    }
    Ok(())
}

/// Creates the LAN for `nodes` nodes, namespaces named after `tag`. On failure, what was made
/// is removed again.
pub fn create(tag: &str, nodes: usize) -> Result<Lan, TestnetError> {
    check(nodes)?;
    let lan = Lan {
        bridge: format!("dta-{tag}-br"),
        nodes: (0..nodes).map(|i| format!("dta-{tag}-{i}")).collect(),
    };
    let made = build(&lan);
    if made.is_err() {
        remove(&lan.namespaces());
    }
    made.map(|()| lan)
}

fn build(lan: &Lan) -> Result<(), TestnetError> {
    let bridge = lan.bridge.as_str();
    add_bridge(bridge)?;
    for (index, namespace) in lan.nodes.iter().enumerate() {
        add_node(namespace, bridge, &format!("p{index}"), &address(index))?;
    }
    Ok(())
}

/// Makes a namespace holding a bridge, `br0`.
pub(super) fn add_bridge(namespace: &str) -> Result<(), TestnetError> {
    ip(&["netns", "add", namespace])?;
    ip(&["-n", namespace, "link", "add", "br0", "type", "bridge"])?;
    ip(&["-n", namespace, "link", "set", "br0", "up"])
}

/// Makes a node's namespace and joins it to the bridge of `bridge`'s namespace through port
/// `port`, with `address` (in a /24), a multicast route for mDNS and no other route.
pub(super) fn add_node(
    namespace: &str,
    bridge: &str,
    port: &str,
    address: &str,
) -> Result<(), TestnetError> {
    ip(&["netns", "add", namespace])?;
    // Made from inside the node's namespace, straight into the bridge's: the root namespace
    // never sees either end.
    ip(&[
        "-n", namespace, "link", "add", "eth0", "type", "veth", "peer", "name", port, "netns",
        bridge,
    ])?;
    ip(&["-n", bridge, "link", "set", port, "master", "br0"])?;
    ip(&["-n", bridge, "link", "set", port, "up"])?;
    let address = format!("{address}/24");
    ip(&["-n", namespace, "addr", "add", &address, "dev", "eth0"])?;
    ip(&["-n", namespace, "link", "set", "eth0", "up"])?;
    ip(&["-n", namespace, "link", "set", "lo", "up"])?;
    ip(&[
        "-n",
        namespace,
        "route",
        "add",
        "224.0.0.0/4",
        "dev",
        "eth0",
    ])
}

/// Removes namespaces (and with them their links); missing ones are skipped.
pub fn remove(namespaces: &[String]) {
    for namespace in namespaces.iter().rev() {
        let _ = ip(&["netns", "del", namespace]);
    }
}
