//! The sites of a WAN testnet (`dta testnet up --sites S --wan FIGURES`): each site a LAN of
//! network namespaces like [`super::lan`]'s (a bridge namespace, one namespace per node, mDNS
//! within it), and one router namespace joined to every site's bridge. Node `i` is in site
//! `i mod S`, at `10.214.SITE.HOST/24`; each site's gateway is the router's `10.214.SITE.254`,
//! and nodes have a route to the other sites (`10.214.0.0/16`) through it and no default
//! route. The router namespace sends every packet between sites through the TUN device
//! [`router::TUN_DEVICE`], where the WAN router ([`crate::wan::router`]) delays, jitters
//! and drops it; written back, it is routed on to its site. Nothing is added to the root
//! namespace. Needs root.
//!
//! This module makes and removes the namespaces; it moves no packet.

use crate::wan::router::{self, SITE_NETWORK};

use super::TestnetError;

/// Most sites (each is one `/24` of `10.214.0.0/16`).
pub const MAX_SITES: usize = 64;

/// Most nodes a site holds (a `/24`, less the network, the gateway and broadcast addresses).
pub const MAX_NODES_PER_SITE: usize = 252;

/// The routing table the router namespace sends packets between sites by, into the TUN.
const WAN_TABLE: &str = "214";

/// The site of node `index`.
pub fn site_of(index: usize, sites: usize) -> usize {
    index % sites
}

/// Node `index`'s address.
pub fn address(index: usize, sites: usize) -> String {
    let [a, b] = SITE_NETWORK;
    format!("{a}.{b}.{}.{}", site_of(index, sites), index / sites + 1)
}

/// A site's gateway: the router's address on it.
fn gateway(site: usize) -> String {
    let [a, b] = SITE_NETWORK;
    format!("{a}.{b}.{site}.254")
}

/// Every site's addresses.
fn all_sites() -> String {
    let [a, b] = SITE_NETWORK;
    format!("{a}.{b}.0.0/16")
}

/// The namespaces of a WAN testnet.
#[derive(Debug, Clone)]
pub struct Sites {
    /// The router's namespace.
    pub router: String,
    /// Each site's bridge namespace.
    pub bridges: Vec<String>,
    /// Each node's namespace.
    pub nodes: Vec<String>,
}

impl Sites {
    /// Every namespace: the router, the bridges, then the nodes.
    pub fn namespaces(&self) -> Vec<String> {
        std::iter::once(self.router.clone())
            .chain(self.bridges.iter().cloned())
            .chain(self.nodes.iter().cloned())
            .collect()
    }
}

/// Whether `nodes` nodes in `sites` sites can be made here, checked before anything is made.
pub fn check(sites: usize, nodes: usize) -> Result<(), TestnetError> {
    super::lan::check_root("--sites")?;
    if !(2..=MAX_SITES).contains(&sites) {
        return Err(TestnetError::Invalid(format!(
            "--sites {sites}: a WAN testnet has 2 to {MAX_SITES} sites"
        )));
    }
    if nodes.div_ceil(sites) > MAX_NODES_PER_SITE {
        return Err(TestnetError::Invalid(format!(
            "a site holds at most {MAX_NODES_PER_SITE} nodes"
        )));
    }
    if !std::path::Path::new("/dev/net/tun").exists() {
        return Err(TestnetError::Invalid(
            "--sites needs /dev/net/tun for its WAN router".into(),
        ));
    }
    Ok(())
}

/// Creates the namespaces of `sites` sites holding `nodes` nodes, named after `tag`. On
/// failure, what was made is removed again.
pub fn create(tag: &str, sites: usize, nodes: usize) -> Result<Sites, TestnetError> {
    check(sites, nodes)?;
    let made = Sites {
        router: format!("dta-{tag}-wan"),
        bridges: (0..sites).map(|s| format!("dta-{tag}-s{s}")).collect(),
        nodes: (0..nodes).map(|i| format!("dta-{tag}-{i}")).collect(),
    };
    let built = build(&made);
    if built.is_err() {
        super::lan::remove(&made.namespaces());
    }
    built.map(|()| made)
}

fn ip(args: &[&str]) -> Result<(), TestnetError> {
    super::lan::ip(args)
}

/// Sets kernel settings of a namespace (`/proc/sys/net/...` as seen from inside it).
fn sysctl(namespace: &str, settings: &[(&str, &str)]) -> Result<(), TestnetError> {
    let script: Vec<String> = settings
        .iter()
        .map(|(key, value)| format!("echo {value} > /proc/sys/net/{key}"))
        .collect();
    ip(&["netns", "exec", namespace, "sh", "-c", &script.join(" && ")])
}

fn build(sites: &Sites) -> Result<(), TestnetError> {
    let router = sites.router.as_str();
    let tun = router::TUN_DEVICE;
    ip(&["netns", "add", router])?;
    ip(&["-n", router, "link", "set", "lo", "up"])?;
    // A router that forwards, and takes packets back from the TUN whose sources its routes
    // place elsewhere (no reverse-path check), and sends no redirects.
    sysctl(
        router,
        &[
            ("ipv4/ip_forward", "1"),
            ("ipv4/conf/all/rp_filter", "0"),
            ("ipv4/conf/default/rp_filter", "0"),
            ("ipv4/conf/all/send_redirects", "0"),
            ("ipv4/conf/default/send_redirects", "0"),
        ],
    )?;
    ip(&["-n", router, "tuntap", "add", "dev", tun, "mode", "tun"])?;
    ip(&["-n", router, "link", "set", tun, "up"])?;
    // Packets the WAN router writes back are routed by the main table (to their site);
    // every other packet for a site goes into the TUN.
    ip(&[
        "-n", router, "rule", "add", "pref", "100", "iif", tun, "lookup", "main",
    ])?;
    let everywhere = all_sites();
    ip(&[
        "-n",
        router,
        "rule",
        "add",
        "pref",
        "200",
        "to",
        &everywhere,
        "lookup",
        WAN_TABLE,
    ])?;
    ip(&[
        "-n",
        router,
        "route",
        "add",
        &everywhere,
        "dev",
        tun,
        "table",
        WAN_TABLE,
    ])?;
    for (site, bridge) in sites.bridges.iter().enumerate() {
        let uplink = format!("s{site}");
        super::lan::add_bridge(bridge)?;
        ip(&[
            "-n", router, "link", "add", &uplink, "type", "veth", "peer", "name", "wan", "netns",
            bridge,
        ])?;
        ip(&["-n", bridge, "link", "set", "wan", "master", "br0"])?;
        ip(&["-n", bridge, "link", "set", "wan", "up"])?;
        ip(&[
            "-n",
            router,
            "addr",
            "add",
            &format!("{}/24", gateway(site)),
            "dev",
            &uplink,
        ])?;
        ip(&["-n", router, "link", "set", &uplink, "up"])?;
    }
    let count = sites.bridges.len();
    for (index, namespace) in sites.nodes.iter().enumerate() {
        let site = site_of(index, count);
        let bridge = sites.bridges[site].as_str();
        // mDNS stays on the site's LAN: the router forwards no multicast.
        super::lan::add_node(
            namespace,
            bridge,
            &format!("p{index}"),
            &address(index, count),
        )?;
        ip(&[
            "-n",
            namespace,
            "route",
            "add",
            &everywhere,
            "via",
            &gateway(site),
        ])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_are_dealt_to_sites_in_turn() {
        assert_eq!(address(0, 3), "10.214.0.1");
        assert_eq!(address(1, 3), "10.214.1.1");
        assert_eq!(address(2, 3), "10.214.2.1");
        assert_eq!(address(3, 3), "10.214.0.2");
        assert_eq!(address(8, 3), "10.214.2.3");
        assert_eq!(site_of(7, 3), 1);
        assert_eq!(gateway(2), "10.214.2.254");
    }
}
