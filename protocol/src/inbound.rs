//! Inbound streams of one protocol, queued per connection and handed to the swarm's owner as
//! behaviour events (Bitswap's inbound side).
//!
//! `libp2p-stream` hands inbound streams over through a channel with a single slot and drops
//! any stream that arrives before the previous one was taken; kubo answers every Bitswap
//! message on a new stream, in bursts. This behaviour keeps a bounded queue instead: a stream
//! is dropped only when [`MAX_QUEUED`] are already waiting. Outbound streams still go through
//! `libp2p_stream::Control`.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::task::{Context, Poll};

use libp2p::PeerId;
use libp2p::core::transport::PortUse;
use libp2p::core::upgrade::{DeniedUpgrade, ReadyUpgrade};
use libp2p::core::{Endpoint, Multiaddr};
use libp2p::swarm::handler::{ConnectionEvent, FullyNegotiatedInbound};
use libp2p::swarm::{
    ConnectionDenied, ConnectionHandler, ConnectionHandlerEvent, ConnectionId, FromSwarm,
    NetworkBehaviour, Stream, StreamProtocol, SubstreamProtocol, THandler, THandlerInEvent,
    THandlerOutEvent, ToSwarm,
};

/// Streams waiting to be taken, per connection and in the behaviour.
pub const MAX_QUEUED: usize = 256;

/// Accepts inbound streams of `protocol` on every connection.
#[derive(Debug)]
pub struct Behaviour {
    protocol: StreamProtocol,
    streams: VecDeque<(PeerId, Stream)>,
}

impl Behaviour {
    /// Accepts `protocol`.
    pub fn new(protocol: StreamProtocol) -> Self {
        Self {
            protocol,
            streams: VecDeque::new(),
        }
    }
}

impl NetworkBehaviour for Behaviour {
    type ConnectionHandler = Handler;
    type ToSwarm = (PeerId, Stream);

    fn handle_established_inbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(Handler::new(self.protocol.clone()))
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(Handler::new(self.protocol.clone()))
    }

    fn on_swarm_event(&mut self, _: FromSwarm) {}

    fn on_connection_handler_event(
        &mut self,
        peer: PeerId,
        _: ConnectionId,
        stream: THandlerOutEvent<Self>,
    ) {
        if self.streams.len() < MAX_QUEUED {
            self.streams.push_back((peer, stream));
        } else {
            tracing::warn!(%peer, protocol = %self.protocol, "too many inbound streams waiting; one dropped");
        }
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        match self.streams.pop_front() {
            Some(stream) => Poll::Ready(ToSwarm::GenerateEvent(stream)),
            None => Poll::Pending,
        }
    }
}

/// One connection's side: negotiates inbound streams of the protocol and queues them.
#[derive(Debug)]
pub struct Handler {
    protocol: StreamProtocol,
    streams: VecDeque<Stream>,
}

impl Handler {
    fn new(protocol: StreamProtocol) -> Self {
        Self {
            protocol,
            streams: VecDeque::new(),
        }
    }
}

impl ConnectionHandler for Handler {
    type FromBehaviour = Infallible;
    type ToBehaviour = Stream;
    type InboundProtocol = ReadyUpgrade<StreamProtocol>;
    type OutboundProtocol = DeniedUpgrade;
    type InboundOpenInfo = ();
    type OutboundOpenInfo = Infallible;

    fn listen_protocol(&self) -> SubstreamProtocol<Self::InboundProtocol, Self::InboundOpenInfo> {
        SubstreamProtocol::new(ReadyUpgrade::new(self.protocol.clone()), ())
    }

    fn poll(
        &mut self,
        _: &mut Context<'_>,
    ) -> Poll<
        ConnectionHandlerEvent<Self::OutboundProtocol, Self::OutboundOpenInfo, Self::ToBehaviour>,
    > {
        match self.streams.pop_front() {
            Some(stream) => Poll::Ready(ConnectionHandlerEvent::NotifyBehaviour(stream)),
            None => Poll::Pending,
        }
    }

    fn on_behaviour_event(&mut self, event: Self::FromBehaviour) {
        match event {}
    }

    fn on_connection_event(
        &mut self,
        event: ConnectionEvent<
            Self::InboundProtocol,
            Self::OutboundProtocol,
            Self::InboundOpenInfo,
            Self::OutboundOpenInfo,
        >,
    ) {
        if let ConnectionEvent::FullyNegotiatedInbound(FullyNegotiatedInbound {
            protocol: stream,
            ..
        }) = event
        {
            if self.streams.len() < MAX_QUEUED {
                self.streams.push_back(stream);
            } else {
                tracing::warn!(protocol = %self.protocol, "too many inbound streams on one connection; one dropped");
            }
        }
    }
}
