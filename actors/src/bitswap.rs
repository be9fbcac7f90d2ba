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
//! A fetch asks every connected peer for the block (want-block, send-dont-have) and ends with
//! the first block whose bytes hash to the CID (the check happens as the message is decoded,
//! see [`dta_protocol::bitswap`]), with `NotFound` once every asked peer said DONT_HAVE, or
//! with `Timeout`. Blocks nobody asked for are dropped. Fetched blocks are returned, not
//! stored: the caller decides.
//!
//! What it does not do yet: sessions that rank peers, want-have before want-block, and
//! remembering wants it cannot serve until the block arrives.

use std::collections::{HashMap, HashSet};
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
    asked: HashSet<PeerId>,
    dont_have: HashSet<PeerId>,
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
    cancel: CancellationToken,
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
            cancel: cancel.clone(),
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
                    Inbound::Answer(peer, message) => state.send(peer, message),
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
        self.fetches.insert(
            cid,
            Fetch {
                replies: vec![reply],
                asked: peers.iter().copied().collect(),
                dont_have: HashSet::new(),
                deadline: Instant::now() + FETCH_TIMEOUT,
                sent: Instant::now(),
            },
        );
        for peer in peers {
            self.send(*peer, wants(&[cid], false));
        }
    }

    /// Sends every pending want to a peer that just connected.
    fn want_from(&mut self, peer: PeerId) {
        let cids: Vec<Cid> = self.fetches.keys().copied().collect();
        for fetch in self.fetches.values_mut() {
            fetch.asked.insert(peer);
        }
        if !cids.is_empty() {
            self.send(peer, wants(&cids, false));
        }
    }

    fn on_message(&mut self, peer: PeerId, message: Message) {
        for (cid, data) in message.blocks {
            // The CID was computed from the bytes: a block we asked for is the right one.
            let Some(fetch) = self.fetches.remove(&cid) else {
                debug!(%peer, %cid, "unrequested block dropped");
                continue;
            };
            for reply in fetch.replies {
                let _ = reply.send(Ok(data.clone()));
            }
            for other in fetch.asked.iter().filter(|p| **p != peer) {
                self.send(*other, wants(&[cid], true));
            }
        }
        for (cid, presence) in message.presences {
            if presence == Presence::DontHave
                && let Some(fetch) = self.fetches.get_mut(&cid)
                && fetch.asked.contains(&peer)
            {
                fetch.dont_have.insert(peer);
            }
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
                if refused {
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
        // Wants still unanswered go out again to the peers that have not said no.
        let mut again: HashMap<PeerId, Vec<Cid>> = HashMap::new();
        for (cid, fetch) in &mut self.fetches {
            if now.duration_since(fetch.sent) < RESEND_AFTER {
                continue;
            }
            fetch.sent = now;
            for peer in fetch.asked.difference(&fetch.dont_have) {
                if connected.contains(peer) {
                    again.entry(*peer).or_default().push(*cid);
                }
            }
        }
        for (peer, cids) in again {
            self.send(peer, wants(&cids, false));
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

/// A wantlist message: want-block with send-dont-have, or cancels.
fn wants(cids: &[Cid], cancel: bool) -> Message {
    Message {
        wants: cids
            .iter()
            .map(|cid| Want {
                cid: *cid,
                priority: 1,
                cancel,
                want_type: WantType::Block,
                send_dont_have: !cancel,
            })
            .collect(),
        ..Message::default()
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
