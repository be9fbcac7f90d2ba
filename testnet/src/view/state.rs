//! What the testnet view knows: each node's roles, whether it answers, its peers and the
//! state of each of its records, and a feed of what happened (nodes going down and coming
//! back, records changing state), built from the nodes' event streams.
//!
//! It is plain data: the watchers feed it, the server shows it. What it does not do: talk to
//! nodes or judge orders (a node's own state for its record is what is shown).

use std::collections::{BTreeMap, VecDeque};

use serde::Serialize;
use serde_json::Value;

use crate::process::TestnetNode;

/// Entries the feed keeps.
pub const FEED_LENGTH: usize = 100;

/// Whether a node answers its event stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Liveness {
    /// Not heard from yet.
    Unknown,
    /// Its stream is open and sends heartbeats.
    Up,
    /// Its stream ended or fell silent.
    Down,
}

/// One record of one node, as its node last said.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordView {
    /// `order` or `mpin`.
    pub kind: String,
    /// The reference.
    pub reference: String,
    /// The role the node plays in it.
    pub role: String,
    /// Its state there.
    pub state: String,
}

/// One node.
#[derive(Debug, Clone, Serialize)]
pub struct NodeView {
    /// Its name.
    pub name: String,
    /// Its roles.
    pub roles: Vec<String>,
    /// Its identity CID.
    pub identity: String,
    /// Its libp2p peer id.
    pub peer_id: String,
    /// Whether it answers.
    pub liveness: Liveness,
    /// Since when (ms since the Unix epoch), and why it is down, if it is.
    pub since_ms: u64,
    /// Why it is down.
    pub reason: Option<String>,
    /// The names (or peer ids, for peers outside the testnet) of its connected peers.
    pub peers: Vec<String>,
    /// Its records, by (kind, reference, role).
    #[serde(serialize_with = "values")]
    pub records: BTreeMap<(String, String, String), RecordView>,
}

fn values<S: serde::Serializer>(
    records: &BTreeMap<(String, String, String), RecordView>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(records.values())
}

/// One line of the feed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FeedItem {
    /// When the view learned it (ms since the Unix epoch).
    pub at_ms: u64,
    /// The node it is about.
    pub node: String,
    /// A fault (a node down), shown apart from ordinary progress.
    pub fault: bool,
    /// What happened.
    pub text: String,
}

/// The whole testnet.
#[derive(Debug, Clone, Serialize)]
pub struct TestnetView {
    /// The nodes, in `testnet.json`'s order.
    pub nodes: Vec<NodeView>,
    /// What happened, newest last.
    pub feed: VecDeque<FeedItem>,
    /// Changes so far (the page redraws when it grows).
    pub version: u64,
}

impl TestnetView {
    /// A view of `nodes`, none heard from yet.
    pub fn new(nodes: &[TestnetNode], now_ms: u64) -> Self {
        Self {
            nodes: nodes
                .iter()
                .map(|node| NodeView {
                    name: node.name.clone(),
                    roles: node.roles.clone(),
                    identity: node.identity.clone(),
                    peer_id: node.peer_id.clone(),
                    liveness: Liveness::Unknown,
                    since_ms: now_ms,
                    reason: None,
                    peers: Vec::new(),
                    records: BTreeMap::new(),
                })
                .collect(),
            feed: VecDeque::new(),
            version: 0,
        }
    }

    fn say(&mut self, node: usize, fault: bool, text: String, now_ms: u64) {
        if self.feed.len() == FEED_LENGTH {
            self.feed.pop_front();
        }
        self.feed.push_back(FeedItem {
            at_ms: now_ms,
            node: self.nodes[node].name.clone(),
            fault,
            text,
        });
    }

    /// The name of the testnet node with `peer_id`, or the peer id itself.
    fn peer_name(&self, peer_id: &str) -> String {
        self.nodes
            .iter()
            .find(|n| n.peer_id == peer_id)
            .map_or_else(|| peer_id.to_owned(), |n| n.name.clone())
    }

    fn peers_of(&self, data: &Value) -> Vec<String> {
        let mut peers: Vec<String> = data
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["peer_id"].as_str())
            .map(|p| self.peer_name(p))
            .collect();
        peers.sort();
        peers
    }

    /// Applies one event of node `node`'s stream; whether anything shown changed.
    pub fn apply(&mut self, node: usize, name: &str, data: &Value, now_ms: u64) -> bool {
        if node >= self.nodes.len() {
            return false;
        }
        let changed = match name {
            "snapshot" => {
                let peers = self.peers_of(&data["peers"]);
                let records: BTreeMap<_, _> = data["records"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(record)
                    .map(|r| ((r.kind.clone(), r.reference.clone(), r.role.clone()), r))
                    .collect();
                let came_back = self.nodes[node].liveness != Liveness::Up;
                if came_back {
                    let text = match self.nodes[node].liveness {
                        Liveness::Down => "answers again",
                        _ => "up",
                    };
                    self.say(node, false, text.into(), now_ms);
                }
                let shown = &mut self.nodes[node];
                if came_back {
                    shown.liveness = Liveness::Up;
                    shown.since_ms = now_ms;
                    shown.reason = None;
                }
                shown.peers = peers;
                shown.records = records;
                true
            }
            "peers" => {
                let peers = self.peers_of(&data["peers"]);
                let shown = &mut self.nodes[node];
                let changed = shown.peers != peers;
                shown.peers = peers;
                changed
            }
            "record" => match record(data) {
                Some(change) => {
                    let key = (
                        change.kind.clone(),
                        change.reference.clone(),
                        change.role.clone(),
                    );
                    let text = format!(
                        "{} {}: {} {}",
                        change.kind, change.reference, change.role, change.state
                    );
                    self.nodes[node].records.insert(key, change);
                    self.say(node, false, text, now_ms);
                    true
                }
                None => false,
            },
            _ => false,
        };
        if changed {
            self.version += 1;
        }
        changed
    }

    /// Node `node` stopped answering, for `reason`; whether that is news.
    pub fn down(&mut self, node: usize, reason: &str, now_ms: u64) -> bool {
        if node >= self.nodes.len() || self.nodes[node].liveness == Liveness::Down {
            return false;
        }
        let was_up = self.nodes[node].liveness == Liveness::Up;
        let shown = &mut self.nodes[node];
        shown.liveness = Liveness::Down;
        shown.since_ms = now_ms;
        shown.reason = Some(reason.to_owned());
        shown.peers.clear();
        if was_up {
            self.say(node, true, format!("down: {reason}"), now_ms);
        }
        self.version += 1;
        true
    }
}

/// A record as an event or snapshot carries it.
fn record(data: &Value) -> Option<RecordView> {
    let text = |field: &str| data[field].as_str().map(str::to_owned);
    Some(RecordView {
        kind: text("kind")?,
        reference: text("reference")?,
        role: text("role")?,
        state: text("state")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, peer_id: &str) -> TestnetNode {
        TestnetNode {
            name: name.into(),
            roles: vec!["fiduciary".into()],
            identity: format!("cid-{name}"),
            peer_id: peer_id.into(),
            api: String::new(),
            pid: 0,
            home: Default::default(),
            namespace: None,
            command: Vec::new(),
        }
    }

    #[test]
    fn a_snapshot_brings_a_node_up_and_names_its_peers() {
        let mut view = TestnetView::new(&[node("node-0", "p0"), node("node-1", "p1")], 1);
        let snapshot = json!({
            "peers": [{"peer_id": "p1"}, {"peer_id": "outsider"}],
            "records": [{"kind": "order", "reference": "r", "role": "principal", "state": "certified"}],
        });
        assert!(view.apply(0, "snapshot", &snapshot, 2));
        let shown = &view.nodes[0];
        assert_eq!(shown.liveness, Liveness::Up);
        assert_eq!(
            shown.peers,
            vec!["node-1".to_owned(), "outsider".to_owned()]
        );
        assert_eq!(shown.records.len(), 1);
        assert_eq!(view.nodes[1].liveness, Liveness::Unknown);
        assert_eq!(view.version, 1);
    }

    #[test]
    fn a_record_change_replaces_the_nodes_state_for_it_and_is_fed() {
        let mut view = TestnetView::new(&[node("node-0", "p0")], 1);
        view.apply(0, "snapshot", &json!({"peers": [], "records": []}), 2);
        let change = |state: &str| json!({"kind": "order", "reference": "r", "role": "fiduciary", "state": state});
        view.apply(0, "record", &change("holding"), 3);
        view.apply(0, "record", &change("certified"), 4);
        let records: Vec<_> = view.nodes[0].records.values().collect();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].state, "certified");
        assert_eq!(
            view.feed.back().unwrap().text,
            "order r: fiduciary certified"
        );
        // Heartbeats and malformed changes change nothing.
        let version = view.version;
        assert!(!view.apply(0, "heartbeat", &json!({}), 5));
        assert!(!view.apply(0, "record", &json!({"kind": "order"}), 5));
        assert!(!view.apply(7, "snapshot", &json!({}), 5));
        assert_eq!(view.version, version);
    }

    #[test]
    fn down_is_news_once_and_a_snapshot_brings_the_node_back() {
        let mut view = TestnetView::new(&[node("node-0", "p0")], 1);
        view.apply(
            0,
            "snapshot",
            &json!({"peers": [{"peer_id": "x"}], "records": []}),
            2,
        );
        assert!(view.down(0, "the stream ended", 3));
        assert!(!view.down(0, "the stream ended", 4));
        let shown = &view.nodes[0];
        assert_eq!(shown.liveness, Liveness::Down);
        assert!(shown.peers.is_empty());
        assert!(view.feed.back().unwrap().fault);
        view.apply(0, "snapshot", &json!({"peers": [], "records": []}), 5);
        assert_eq!(view.nodes[0].liveness, Liveness::Up);
        assert_eq!(view.feed.back().unwrap().text, "answers again");
    }

    #[test]
    fn the_feed_keeps_the_newest_entries() {
        let mut view = TestnetView::new(&[node("node-0", "p0")], 1);
        view.apply(0, "snapshot", &json!({"peers": [], "records": []}), 2);
        for n in 0..FEED_LENGTH + 5 {
            let change = json!({"kind": "order", "reference": n.to_string(), "role": "fiduciary", "state": "holding"});
            view.apply(0, "record", &change, 3);
        }
        assert_eq!(view.feed.len(), FEED_LENGTH);
        assert_eq!(
            view.feed.back().unwrap().text,
            format!("order {}: fiduciary holding", FEED_LENGTH + 4)
        );
    }
}
