//! TCP dials from a new local port, whatever the behaviour that dials asks for.
//!
//! libp2p's TCP transport dials from the node's listening port when a dial asks to reuse it,
//! which is the default of a dial and what Kademlia and request-response ask for (it helps
//! hole punching, which dta does not do). A node's dial of a peer and that peer's dial of the
//! node then name the same two ends: when the two cross on a slow link, TCP's simultaneous
//! open joins them into one connection on which both sides start the security handshake as
//! its initiator, and both fail (noise's "input error"). Nodes that start together look each
//! other up in step, so over a WAN a pair of sites stayed unconnected after its Kademlia
//! dials crossed at the start, again at the first announcement, and again at the second.
//! From a new port the two dials are two connections, and both succeed.
//!
//! This module only changes the port a dial goes out from; it listens, dials and upgrades
//! nothing itself.

use std::pin::Pin;
use std::task::{Context, Poll};

use libp2p::Multiaddr;
use libp2p::core::Transport;
use libp2p::core::transport::{DialOpts, ListenerId, PortUse, TransportError, TransportEvent};

/// A transport whose dials all go out from a new local port.
#[derive(Debug)]
pub struct NewPortDials<T>(T);

impl<T> NewPortDials<T> {
    /// Wraps `transport`.
    pub fn new(transport: T) -> Self {
        Self(transport)
    }
}

impl<T: Transport + Unpin> Transport for NewPortDials<T> {
    type Output = T::Output;
    type Error = T::Error;
    type ListenerUpgrade = T::ListenerUpgrade;
    type Dial = T::Dial;

    fn listen_on(
        &mut self,
        id: ListenerId,
        address: Multiaddr,
    ) -> Result<(), TransportError<Self::Error>> {
        self.0.listen_on(id, address)
    }

    fn remove_listener(&mut self, id: ListenerId) -> bool {
        self.0.remove_listener(id)
    }

    fn dial(
        &mut self,
        address: Multiaddr,
        opts: DialOpts,
    ) -> Result<Self::Dial, TransportError<Self::Error>> {
        let opts = DialOpts {
            port_use: PortUse::New,
            ..opts
        };
        self.0.dial(address, opts)
    }

    fn poll(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<TransportEvent<Self::ListenerUpgrade, Self::Error>> {
        Pin::new(&mut self.get_mut().0).poll(cx)
    }
}
