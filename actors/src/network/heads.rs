//! Where this node's order logs end, as the network spreads it: the newest heads of its own
//! orders ([`OwnHeads`], sent to every peer that connects), and head announcements batched
//! into gossip messages and decoded from them. Which heads to announce is the custody flow's
//! business; what a node does with announced heads is the directory's.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use dta_protocol::network::{HeadAnnouncement, MAX_HEADS_IN_IDENTITY};

/// How long head announcements gather before they are gossiped as one message.
pub const HEAD_BATCH_INTERVAL: Duration = Duration::from_millis(250);
/// Most heads in one gossip message (about 170 bytes each, well under the gossip size cap).
pub const MAX_HEADS_PER_MESSAGE: usize = 256;

/// When announced heads are gossiped: those announced after a quiet spell at once, those
/// announced in the [`HEAD_BATCH_INTERVAL`] after a message went out together at its end, and
/// so on while heads keep coming. An idle node arms no timer at all: a fixed 250 ms tick woke
/// every node of a testnet four times a second for nothing.
#[derive(Debug, Default)]
pub(super) struct HeadWindow {
    /// When the window opened by the last message closes, if one is open.
    open_until: Option<tokio::time::Instant>,
}

impl HeadWindow {
    /// Heads are pending at `now`: whether to gossip them at once (no window is open; one
    /// opens).
    pub(super) fn on_pending(&mut self, now: tokio::time::Instant) -> bool {
        if self.open_until.is_some() {
            return false;
        }
        self.open_until = Some(now + HEAD_BATCH_INTERVAL);
        true
    }

    /// The window closed at `now`: whether to gossip what gathered in it (`pending`), which
    /// opens the next window; with nothing pending, none is open any more.
    pub(super) fn on_close(&mut self, pending: bool, now: tokio::time::Instant) -> bool {
        self.open_until = pending.then_some(now + HEAD_BATCH_INTERVAL);
        pending
    }

    /// When the open window closes, if one is open.
    pub(super) fn open_until(&self) -> Option<tokio::time::Instant> {
        self.open_until
    }
}

/// A gossiped batch of heads, or a single announcement from a node that sends them one by one.
pub(super) fn decode_heads(
    data: &[u8],
) -> Result<Vec<HeadAnnouncement>, dta_protocol::dagcbor::DecodeError> {
    let limits = dta_protocol::dagcbor::Limits::default();
    dta_protocol::dagcbor::decode::<Vec<HeadAnnouncement>>(data, limits).or_else(|_| {
        dta_protocol::dagcbor::decode::<HeadAnnouncement>(data, limits).map(|one| vec![one])
    })
}

/// The newest heads of this node's own orders (as principal), at most
/// [`MAX_HEADS_IN_IDENTITY`], newest last: sent to every peer that connects, so that a node
/// that missed an announcement (it was down, or cut off) still learns where a log ends.
/// Shared by the handle and the swarm loop, so it outlives restarts of the network actor.
#[derive(Debug, Clone, Default)]
pub struct OwnHeads(Arc<std::sync::Mutex<VecDeque<HeadAnnouncement>>>);

impl OwnHeads {
    /// Records an order's newest head, replacing its previous one.
    pub fn remember(&self, announcement: HeadAnnouncement) {
        let mut heads = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        heads.retain(|h| h.reference != announcement.reference);
        heads.push_back(announcement);
        while heads.len() > MAX_HEADS_IN_IDENTITY {
            heads.pop_front();
        }
    }

    /// Every head kept, oldest first.
    pub fn all(&self) -> Vec<HeadAnnouncement> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(reference: &str) -> HeadAnnouncement {
        HeadAnnouncement {
            reference: reference.into(),
            head: dta_protocol::block::cid_of(dta_protocol::block::DAG_CBOR, reference.as_bytes()),
        }
    }

    #[test]
    fn heads_decode_as_a_batch_or_one_by_one_and_junk_is_refused() {
        let batch = vec![head("a"), head("b")];
        let encoded = dta_protocol::dagcbor::encode(&batch).unwrap();
        assert_eq!(decode_heads(&encoded).unwrap(), batch);
        let single = dta_protocol::dagcbor::encode(&head("c")).unwrap();
        assert_eq!(decode_heads(&single).unwrap(), vec![head("c")]);
        assert!(decode_heads(b"\xa1junk").is_err());
        assert!(decode_heads(&dta_protocol::dagcbor::encode(&7u64).unwrap()).is_err());
    }

    #[test]
    fn a_head_after_a_quiet_spell_goes_at_once_the_next_ones_at_the_windows_end() {
        let start = tokio::time::Instant::now();
        let mut window = HeadWindow::default();
        assert_eq!(window.open_until(), None, "an idle node waits for nothing");
        assert!(window.on_pending(start), "the first head goes at once");
        assert_eq!(window.open_until(), Some(start + HEAD_BATCH_INTERVAL));
        let soon = start + HEAD_BATCH_INTERVAL / 2;
        assert!(!window.on_pending(soon), "the next ones gather");
        let closed = start + HEAD_BATCH_INTERVAL;
        assert!(
            window.on_close(true, closed),
            "what gathered goes at the end"
        );
        assert_eq!(window.open_until(), Some(closed + HEAD_BATCH_INTERVAL));
        let quiet = closed + HEAD_BATCH_INTERVAL;
        assert!(!window.on_close(false, quiet));
        assert_eq!(window.open_until(), None, "nothing came: no timer");
        assert!(window.on_pending(quiet + HEAD_BATCH_INTERVAL * 4));
    }

    #[test]
    fn own_heads_keep_the_newest_per_order_and_are_bounded() {
        let heads = OwnHeads::default();
        heads.remember(head("a"));
        heads.remember(head("b"));
        let newer_a = HeadAnnouncement {
            head: head("a2").head,
            ..head("a")
        };
        heads.remember(newer_a.clone());
        assert_eq!(heads.all(), vec![head("b"), newer_a]);
        for i in 0..MAX_HEADS_IN_IDENTITY + 10 {
            heads.remember(head(&format!("order-{i}")));
        }
        let all = heads.all();
        assert_eq!(all.len(), MAX_HEADS_IN_IDENTITY);
        assert_eq!(
            all.last().unwrap().reference,
            format!("order-{}", MAX_HEADS_IN_IDENTITY + 9)
        );
    }
}
