//! Bitswap 1.2.0 over libp2p streams: serves this node's blocks to any peer that wants them
//! and fetches blocks from connected peers, as IPFS peers do.
//!
//! Streams: dta opens one long-lived outbound stream per peer and sends everything (wants,
//! blocks, presences) on it; inbound streams are only read, however many a peer opens (kubo
//! opens one per answer). Outbound streams come from `libp2p_stream::Control`; inbound ones
//! from [`dta_protocol::inbound`], queued by the swarm task. The engine is one task that owns
//! the wantlist and the outbound streams (commands in, through a bounded channel); one reader
//! task per inbound stream decodes frames, answers that peer's wants itself (one message at a
//! time, so a stream never has more than one request in flight), and hands blocks and
//! presences to the engine.
//!
//! A fetch asks one connected peer for the block (want-block) and every other one whether it
//! has it (want-have), all with send-dont-have, as kubo's sessions do: the block crosses the
//! wire once, not once per peer. The peer asked for the block is the one with the best score:
//! one point per block delivered, halved at each DONT_HAVE to a want-block, so a peer that
//! stops having what is asked for soon loses its rank. When it says DONT_HAVE, a peer that said HAVE is asked for the block;
//! a want unanswered for a second goes again, as want-block to every peer that may have it.
//! A fetch ends with the first block whose bytes hash to the CID (the check happens as the
//! message is decoded, see [`dta_protocol::bitswap`]) and cancels the want everywhere else;
//! with `NotFound` once every asked peer said DONT_HAVE; or with `Timeout`. Fetched blocks are
//! returned, not stored: the caller decides.
//!
//! A Bitswap block carries no CID, only a prefix (version, codec, hash): the CID is computed
//! from the bytes, so a corrupted block arrives as a block nobody asked for and is dropped.
//! When exactly one pending want from that peer has the same prefix, the block was meant for
//! it: that peer counts as refusing, and a fetch every peer refused this way ends with
//! `Rejected`, not `NotFound`. Duplicates of blocks fetched a moment ago are not counted.
//!
//! What it does not do: remember a peer's wants it cannot serve and send the block when it
//! arrives later (peers ask again: kubo and Helia resend their wantlists), or speak Bitswap
//! 1.0.0/1.1.0 (answers go out on dta's own 1.2.0 stream, which such peers cannot open).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dta_protocol::Cid;
use dta_protocol::bitswap::{
    MAX_BLOCK_SIZE, MAX_MESSAGE_SIZE, Message, PROTOCOL, Presence, Want, WantType,
};
use dta_protocol::network::BlockSource;
use futures::{AsyncReadExt, AsyncWriteExt};
use libp2p::{PeerId, StreamProtocol};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::network::NetworkSnapshot;

/// How long a fetch waits for a block.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(20);
/// Most fetches in progress at once.
pub const MAX_FETCHES: usize = 1024;
/// Capacity of the command channel.
pub const COMMAND_CAPACITY: usize = 256;
/// Messages queued for one peer's outbound stream.
const OUTBOX_CAPACITY: usize = 64;
/// Messages from all readers waiting for the engine.
const INBOX_CAPACITY: usize = 256;
/// Block bytes in one answer before it is split into several messages.
const ANSWER_BYTES: usize = MAX_MESSAGE_SIZE - 64 * 1024;

/// Why a fetch failed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum FetchError {
    /// Every connected peer said it does not have the block (or none is connected).
    #[error("no connected peer has block {0}")]
    NotFound(String),
    /// No answer in time.
    #[error("block {0} did not arrive within {1:?}")]
    Timeout(String, Duration),
    /// Peers sent bytes for the block that do not hash to its CID; nothing was kept.
    #[error("block {cid}: {peers} peer(s) sent bytes that do not match the CID; refused")]
    Rejected {
        /// The block.
        cid: String,
        /// How many peers sent bad bytes.
        peers: usize,
    },
    /// Too many fetches in progress.
    #[error("too many block fetches in progress")]
    Busy,
    /// The network is not running.
    #[error("the network is not running")]
    Closed,
}

/// What the engine is asked to do.
#[derive(Debug)]
pub enum BitswapCommand {
    /// Fetch a block from connected peers.
    Fetch {
        /// The block.
        cid: Cid,
        /// The block's bytes (checked against the CID), or why not.
        reply: oneshot::Sender<Result<Vec<u8>, FetchError>>,
    },
}

/// What readers tell the engine.
enum Inbound {
    /// Blocks and presences a peer sent.
    Message(PeerId, Message),
    /// A reader's answer to a peer's wants, to go out on that peer's stream.
    Answer(PeerId, Message),
}

struct Fetch {
    replies: Vec<oneshot::Sender<Result<Vec<u8>, FetchError>>>,
    /// Every peer told about the want.
    asked: HashSet<PeerId>,
    /// Peers asked for the block itself (want-block); the others got want-have.
    block_asked: HashSet<PeerId>,
    /// Peers that said HAVE.
    have: HashSet<PeerId>,
    /// Peers that said DONT_HAVE.
    dont_have: HashSet<PeerId>,
    /// Peers whose block for this CID did not hash to it (also in `dont_have`).
    rejected: HashSet<PeerId>,
    deadline: Instant,
    sent: Instant,
}

/// How long a want waits for an answer before it is sent again: a stream can be lost with a
/// peer that restarts, and kubo resends its wantlist too.
const RESEND_AFTER: Duration = Duration::from_secs(1);

/// Inbound streams queued between the swarm task and the engine.
pub const INBOUND_STREAMS: usize = 256;

/// The engine's parts, handed over by the network actor.
pub struct Engine {
    /// Opens outbound streams.
    pub control: libp2p_stream::Control,
    /// Inbound streams, from the swarm task.
    pub inbound: mpsc::Receiver<(PeerId, libp2p::Stream)>,
    /// Where served blocks are read (called off the async workers).
    pub blocks: Arc<dyn BlockSource>,
    /// Connected peers.
    pub snapshot: watch::Receiver<NetworkSnapshot>,
    /// Commands.
    pub commands: mpsc::Receiver<BitswapCommand>,
    /// Stops the engine and its tasks.
    pub cancel: CancellationToken,
    /// Blocks and bytes in and out are counted here.
    pub metrics: Arc<crate::metrics::Metrics>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("bitswap::Engine").finish_non_exhaustive()
    }
}

struct State {
    control: libp2p_stream::Control,
    outboxes: HashMap<PeerId, mpsc::Sender<Message>>,
    fetches: HashMap<Cid, Fetch>,
    /// Each connected peer's score (blocks delivered, halved at each DONT_HAVE to a
    /// want-block): the best is asked for the block first.
    delivered: HashMap<PeerId, u64>,
    /// Blocks fetched lately, so late duplicates from other peers are not taken for bad ones.
    recent: RecentBlocks,
    cancel: CancellationToken,
    metrics: Arc<crate::metrics::Metrics>,
}

/// The last [`RECENT_BLOCKS`] fetched CIDs.
#[derive(Default)]
struct RecentBlocks {
    order: VecDeque<Cid>,
    set: HashSet<Cid>,
}

const RECENT_BLOCKS: usize = 4096;

impl RecentBlocks {
    fn insert(&mut self, cid: Cid) {
        if self.set.insert(cid) {
            self.order.push_back(cid);
            if self.order.len() > RECENT_BLOCKS
                && let Some(old) = self.order.pop_front()
            {
                self.set.remove(&old);
            }
        }
    }

    fn contains(&self, cid: &Cid) -> bool {
        self.set.contains(cid)
    }
}

fn protocol() -> StreamProtocol {
    StreamProtocol::new(PROTOCOL)
}

impl Engine {
    /// Runs until cancelled.
    pub async fn run(self) {
        let Engine {
            control,
            inbound: mut streams,
            blocks,
            mut snapshot,
            mut commands,
            cancel,
            metrics,
        } = self;
        let (inbox, mut inbound) = mpsc::channel(INBOX_CAPACITY);
        // Inbound streams get a reader each, from a task of its own so none waits behind the
        // engine's other work.
        let accept_inbox = inbox.clone();
        let accept_cancel = cancel.clone();
        tokio::spawn(async move {
            loop {
                let next = tokio::select! {
                    () = accept_cancel.cancelled() => break,
                    next = streams.recv() => next,
                };
                let Some((peer, stream)) = next else { break };
                tokio::spawn(read(
                    peer,
                    stream,
                    blocks.clone(),
                    accept_inbox.clone(),
                    accept_cancel.child_token(),
                ));
            }
        });
        let mut state = State {
            control,
            outboxes: HashMap::new(),
            fetches: HashMap::new(),
            delivered: HashMap::new(),
            recent: RecentBlocks::default(),
            cancel: cancel.clone(),
            metrics,
        };
        let mut connected: HashSet<PeerId> = snapshot
            .borrow_and_update()
            .connected
            .iter()
            .copied()
            .collect();
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                () = cancel.cancelled() => break,
                Some(inbound) = inbound.recv() => match inbound {
                    Inbound::Message(peer, message) => state.on_message(peer, message),
                    Inbound::Answer(peer, message) => {
                        state.count_served(&message);
                        state.send(peer, message);
                    }
                },
                Some(command) = commands.recv() => match command {
                    BitswapCommand::Fetch { cid, reply } => {
                        let peers: Vec<PeerId> =
                            snapshot.borrow().connected.iter().copied().collect();
                        state.fetch(cid, reply, &peers);
                    }
                },
                Ok(()) = snapshot.changed() => {
                    let now: HashSet<PeerId> =
                        snapshot.borrow_and_update().connected.iter().copied().collect();
                    for peer in now.difference(&connected) {
                        state.want_from(*peer);
                    }
                    state.outboxes.retain(|peer, _| now.contains(peer));
                    state.delivered.retain(|peer, _| now.contains(peer));
                    connected = now;
                }
                _ = tick.tick() => state.expire(&connected),
            }
        }
    }
}

impl State {
    /// Starts (or joins) a fetch.
    fn fetch(
        &mut self,
        cid: Cid,
        reply: oneshot::Sender<Result<Vec<u8>, FetchError>>,
        peers: &[PeerId],
    ) {
        if let Some(fetch) = self.fetches.get_mut(&cid) {
            fetch.replies.push(reply);
            return;
        }
        if self.fetches.len() >= MAX_FETCHES {
            let _ = reply.send(Err(FetchError::Busy));
            return;
        }
        if peers.is_empty() {
            let _ = reply.send(Err(FetchError::NotFound(cid.to_string())));
            return;
        }
        let best = self.best_of(peers.iter());
        self.fetches.insert(
            cid,
            Fetch {
                replies: vec![reply],
                asked: peers.iter().copied().collect(),
                block_asked: best.into_iter().collect(),
                have: HashSet::new(),
                dont_have: HashSet::new(),
                rejected: HashSet::new(),
                deadline: Instant::now() + FETCH_TIMEOUT,
                sent: Instant::now(),
            },
        );
        for peer in peers {
            let ask = if Some(*peer) == best {
                Ask::Block
            } else {
                Ask::Have
            };
            self.send(*peer, wants(&[cid], ask));
        }
    }

    /// The peer with the best score (any, if none has one).
    fn best_of<'a>(&self, peers: impl Iterator<Item = &'a PeerId>) -> Option<PeerId> {
        peers
            .max_by_key(|peer| self.delivered.get(peer).copied().unwrap_or(0))
            .copied()
    }

    /// Sends every pending want to a peer that just connected: want-block where no other
    /// peer is asked for the block, want-have elsewhere.
    fn want_from(&mut self, peer: PeerId) {
        let (mut block, mut have) = (Vec::new(), Vec::new());
        for (cid, fetch) in &mut self.fetches {
            fetch.asked.insert(peer);
            if fetch.block_holder().is_none() {
                fetch.block_asked.insert(peer);
                block.push(*cid);
            } else {
                have.push(*cid);
            }
        }
        self.send(peer, wants(&block, Ask::Block));
        self.send(peer, wants(&have, Ask::Have));
    }

    /// Counts the blocks of an answer to a peer's wants.
    fn count_served(&self, answer: &Message) {
        let bytes: usize = answer.blocks.iter().map(|(_, data)| data.len()).sum();
        self.metrics.bitswap_blocks_sent.fetch_add(
            answer.blocks.len() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        self.metrics
            .bitswap_bytes_sent
            .fetch_add(bytes as u64, std::sync::atomic::Ordering::Relaxed);
    }

    fn on_message(&mut self, peer: PeerId, message: Message) {
        for (cid, data) in message.blocks {
            // The CID was computed from the bytes: a block we asked for is the right one.
            let Some(fetch) = self.fetches.remove(&cid) else {
                self.on_unwanted_block(peer, cid);
                continue;
            };
            self.recent.insert(cid);
            *self.delivered.entry(peer).or_default() += 1;
            self.metrics
                .bitswap_blocks_received
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.metrics
                .bitswap_bytes_received
                .fetch_add(data.len() as u64, std::sync::atomic::Ordering::Relaxed);
            for reply in fetch.replies {
                let _ = reply.send(Ok(data.clone()));
            }
            for other in fetch.asked.iter().filter(|p| **p != peer) {
                self.send(*other, wants(&[cid], Ask::Cancel));
            }
        }
        let mut promoted: Vec<(PeerId, Cid)> = Vec::new();
        for (cid, presence) in message.presences {
            let Some(fetch) = self.fetches.get_mut(&cid) else {
                continue;
            };
            if !fetch.asked.contains(&peer) {
                continue;
            }
            match presence {
                Presence::Have => {
                    fetch.have.insert(peer);
                }
                Presence::DontHave => {
                    fetch.dont_have.insert(peer);
                    if fetch.block_asked.contains(&peer)
                        && let Some(score) = self.delivered.get_mut(&peer)
                    {
                        *score /= 2;
                    }
                }
            }
            // Nobody left to send the block: ask a peer that has it.
            if fetch.block_holder().is_none()
                && let Some(next) = fetch.have.difference(&fetch.dont_have).next().copied()
            {
                fetch.block_asked.insert(next);
                promoted.push((next, cid));
            }
        }
        for (next, cid) in promoted {
            self.send(next, wants(&[cid], Ask::Block));
        }
    }

    /// A block that hashes to no pending want: a late duplicate, or bad bytes for a want with
    /// the same prefix. With a single such want from this peer, the block was meant for it.
    fn on_unwanted_block(&mut self, peer: PeerId, cid: Cid) {
        if self.recent.contains(&cid) {
            return;
        }
        let same_prefix = |wanted: &Cid| {
            wanted.version() == cid.version()
                && wanted.codec() == cid.codec()
                && wanted.hash().code() == cid.hash().code()
        };
        let mut candidates = self.fetches.iter_mut().filter(|(wanted, fetch)| {
            same_prefix(wanted) && fetch.asked.contains(&peer) && !fetch.dont_have.contains(&peer)
        });
        match (candidates.next(), candidates.next()) {
            (Some((wanted, fetch)), None) => {
                warn!(%peer, %wanted, "a peer sent bytes that do not match the block; refused");
                fetch.rejected.insert(peer);
                fetch.dont_have.insert(peer);
            }
            _ => debug!(%peer, %cid, "unrequested block dropped"),
        }
    }

    /// Ends fetches that timed out or that every asked (and still connected) peer refused.
    fn expire(&mut self, connected: &HashSet<PeerId>) {
        let now = Instant::now();
        let ended: Vec<(Cid, FetchError)> = self
            .fetches
            .iter()
            .filter_map(|(cid, fetch)| {
                let refused = fetch
                    .asked
                    .iter()
                    .filter(|p| connected.contains(p))
                    .all(|p| fetch.dont_have.contains(p));
                if (refused || now >= fetch.deadline) && !fetch.rejected.is_empty() {
                    Some((
                        *cid,
                        FetchError::Rejected {
                            cid: cid.to_string(),
                            peers: fetch.rejected.len(),
                        },
                    ))
                } else if refused {
                    Some((*cid, FetchError::NotFound(cid.to_string())))
                } else if now >= fetch.deadline {
                    Some((*cid, FetchError::Timeout(cid.to_string(), FETCH_TIMEOUT)))
                } else {
                    None
                }
            })
            .collect();
        for (cid, error) in ended {
            if let Some(fetch) = self.fetches.remove(&cid) {
                for reply in fetch.replies {
                    let _ = reply.send(Err(error.clone()));
                }
            }
        }
        // Wants still unanswered go out again: want-block to every peer that was asked for
        // the block or said HAVE, and to the best silent one if there is no such peer;
        // want-have to the rest that have not said no.
        let mut block_again: HashMap<PeerId, Vec<Cid>> = HashMap::new();
        let mut have_again: HashMap<PeerId, Vec<Cid>> = HashMap::new();
        let delivered = &self.delivered;
        for (cid, fetch) in &mut self.fetches {
            if now.duration_since(fetch.sent) < RESEND_AFTER {
                continue;
            }
            fetch.sent = now;
            let live =
                |peer: &&PeerId| connected.contains(*peer) && !fetch.dont_have.contains(*peer);
            let mut holders: Vec<PeerId> = fetch
                .block_asked
                .union(&fetch.have)
                .filter(live)
                .copied()
                .collect();
            if holders.is_empty()
                && let Some(best) = fetch
                    .asked
                    .iter()
                    .filter(live)
                    .max_by_key(|peer| delivered.get(peer).copied().unwrap_or(0))
            {
                holders.push(*best);
            }
            for peer in fetch.asked.iter().filter(live) {
                if holders.contains(peer) {
                    block_again.entry(*peer).or_default().push(*cid);
                } else {
                    have_again.entry(*peer).or_default().push(*cid);
                }
            }
            fetch.block_asked.extend(holders);
        }
        for (peer, cids) in block_again {
            self.send(peer, wants(&cids, Ask::Block));
        }
        for (peer, cids) in have_again {
            self.send(peer, wants(&cids, Ask::Have));
        }
    }

    /// Queues a message on the peer's outbound stream, opening it if needed. A full queue
    /// drops the message: wants are sent again to peers that reconnect, and a fetch that gets
    /// no answer times out.
    fn send(&mut self, peer: PeerId, message: Message) {
        if message.is_empty() {
            return;
        }
        let outbox = self
            .outboxes
            .entry(peer)
            .and_modify(|outbox| {
                if outbox.is_closed() {
                    *outbox = open(peer, self.control.clone(), self.cancel.child_token());
                }
            })
            .or_insert_with(|| open(peer, self.control.clone(), self.cancel.child_token()));
        if let Err(err) = outbox.try_send(message) {
            debug!(%peer, %err, "bitswap message dropped");
        }
    }
}

/// What a wantlist entry asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ask {
    /// Send the block (or DONT_HAVE).
    Block,
    /// Say HAVE or DONT_HAVE.
    Have,
    /// Forget the want.
    Cancel,
}

/// A wantlist message asking the same of every CID (empty for no CIDs, and then not sent).
fn wants(cids: &[Cid], ask: Ask) -> Message {
    Message {
        wants: cids
            .iter()
            .map(|cid| Want {
                cid: *cid,
                priority: 1,
                cancel: ask == Ask::Cancel,
                want_type: if ask == Ask::Have {
                    WantType::Have
                } else {
                    WantType::Block
                },
                send_dont_have: ask != Ask::Cancel,
            })
            .collect(),
        ..Message::default()
    }
}

impl Fetch {
    /// A peer asked for the block that has not said DONT_HAVE.
    fn block_holder(&self) -> Option<PeerId> {
        self.block_asked.difference(&self.dont_have).next().copied()
    }
}

/// Starts the writer of a peer's outbound stream and returns its queue.
fn open(
    peer: PeerId,
    mut control: libp2p_stream::Control,
    cancel: CancellationToken,
) -> mpsc::Sender<Message> {
    let (outbox, mut queue) = mpsc::channel::<Message>(OUTBOX_CAPACITY);
    tokio::spawn(async move {
        let mut stream = tokio::select! {
            () = cancel.cancelled() => return,
            opened = control.open_stream(peer, protocol()) => match opened {
                Ok(stream) => stream,
                Err(err) => {
                    debug!(%peer, %err, "cannot open a bitswap stream");
                    return;
                }
            },
        };
        loop {
            let message = tokio::select! {
                () = cancel.cancelled() => break,
                message = queue.recv() => match message {
                    Some(message) => message,
                    None => break,
                },
            };
            let frame = message.encode_frame();
            if let Err(err) = async {
                stream.write_all(&frame).await?;
                stream.flush().await
            }
            .await
            {
                debug!(%peer, %err, "bitswap stream closed");
                break;
            }
        }
        let _ = stream.close().await;
    });
    outbox
}

/// Reads a peer's inbound stream: answers its wants from `blocks`, passes blocks and
/// presences to the engine.
async fn read(
    peer: PeerId,
    mut stream: libp2p::Stream,
    blocks: Arc<dyn BlockSource>,
    inbox: mpsc::Sender<Inbound>,
    cancel: CancellationToken,
) {
    let mut buffer: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        // Decode everything already buffered before reading more.
        match Message::decode_frame(&buffer) {
            Ok(Some((message, used))) => {
                buffer.drain(..used);
                if !handle(peer, message, &blocks, &inbox).await {
                    return;
                }
                continue;
            }
            Ok(None) => {}
            Err(err) => {
                warn!(%peer, %err, "bad bitswap message; closing the stream");
                return;
            }
        }
        let read = tokio::select! {
            () = cancel.cancelled() => return,
            read = stream.read(&mut chunk) => read,
        };
        match read {
            Ok(0) | Err(_) => return,
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
        }
    }
}

/// One message from a peer: answers its wants, forwards the rest. False once the engine is
/// gone.
async fn handle(
    peer: PeerId,
    message: Message,
    blocks: &Arc<dyn BlockSource>,
    inbox: &mpsc::Sender<Inbound>,
) -> bool {
    let wanted: Vec<Want> = message
        .wants
        .iter()
        .filter(|w| !w.cancel)
        .cloned()
        .collect();
    if !wanted.is_empty() {
        let source = blocks.clone();
        let answers = tokio::task::spawn_blocking(move || answer(&wanted, source.as_ref()))
            .await
            .unwrap_or_default();
        for answer in answers {
            if inbox.send(Inbound::Answer(peer, answer)).await.is_err() {
                return false;
            }
        }
    }
    if !message.blocks.is_empty() || !message.presences.is_empty() {
        let rest = Message {
            blocks: message.blocks,
            presences: message.presences,
            ..Message::default()
        };
        if inbox.send(Inbound::Message(peer, rest)).await.is_err() {
            return false;
        }
    }
    true
}

/// The answers to a peer's wants, split so no message exceeds the size cap.
fn answer(wants: &[Want], blocks: &dyn BlockSource) -> Vec<Message> {
    let mut answers = vec![Message::default()];
    let mut bytes = 0;
    for want in wants {
        let found = blocks
            .block(&want.cid)
            .filter(|b| b.len() <= MAX_BLOCK_SIZE);
        let Some(current) = answers.last_mut() else {
            break;
        };
        match (found, want.want_type) {
            (Some(data), WantType::Block) => {
                if bytes + data.len() > ANSWER_BYTES && !current.is_empty() {
                    answers.push(Message::default());
                    bytes = 0;
                }
                bytes += data.len();
                if let Some(current) = answers.last_mut() {
                    current.blocks.push((want.cid, data));
                }
            }
            (Some(_), WantType::Have) => current.presences.push((want.cid, Presence::Have)),
            (None, _) if want.send_dont_have => {
                current.presences.push((want.cid, Presence::DontHave));
            }
            (None, _) => {}
        }
    }
    answers.retain(|m| !m.is_empty());
    answers
}

#[cfg(test)]
#[path = "bitswap_tests.rs"]
mod tests;
