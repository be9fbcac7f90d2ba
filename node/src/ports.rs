//! Whether the ports a node is told to listen on are free, checked before the node starts.
//!
//! libp2p's TCP transport binds its listeners with `SO_REUSEPORT` (so that outgoing
//! connections can leave from the listening port), and the kernel then lets a second process
//! of the same user bind the very same address: two nodes would share one port, each getting
//! half of the incoming connections, and both would report ready. A plain bind, which
//! `SO_REUSEPORT` sockets do not admit, finds such a holder. The check binds and closes at
//! once; it does not reserve the port, so a process that takes it in between still wins.
//!
//! What it does not do: it does not check port 0 (the kernel picks a free port) or addresses
//! other than `/ip4|ip6/…/tcp/P` and `/ip4|ip6/…/udp/P/quic-v1`.

use std::net::{IpAddr, SocketAddr};

use libp2p::Multiaddr;
use libp2p::multiaddr::Protocol;

/// A listen address another process holds.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {address}: {source} (is another node or program using the port?)")]
pub struct PortInUse {
    /// The listen address.
    pub address: Multiaddr,
    /// Why the test bind failed.
    pub source: std::io::Error,
}

/// The transport and socket address a listen multiaddr binds, when it names a fixed port.
enum Binding {
    Tcp(SocketAddr),
    Udp(SocketAddr),
}

fn binding(address: &Multiaddr) -> Option<Binding> {
    let mut parts = address.iter();
    let ip: IpAddr = match parts.next()? {
        Protocol::Ip4(ip) => ip.into(),
        Protocol::Ip6(ip) => ip.into(),
        _ => return None,
    };
    match parts.next()? {
        Protocol::Tcp(port) if port != 0 => Some(Binding::Tcp(SocketAddr::new(ip, port))),
        Protocol::Udp(port) if port != 0 => Some(Binding::Udp(SocketAddr::new(ip, port))),
        _ => None,
    }
}

/// Fails on the first listen address whose port another process holds.
pub fn check_free(listen: &[Multiaddr]) -> Result<(), PortInUse> {
    for address in listen {
        let result = match binding(address) {
            Some(Binding::Tcp(socket)) => bind_tcp(socket),
            Some(Binding::Udp(socket)) => std::net::UdpSocket::bind(socket).map(drop),
            None => Ok(()),
        };
        result.map_err(|source| PortInUse {
            address: address.clone(),
            source,
        })?;
    }
    Ok(())
}

/// Binds with `SO_REUSEADDR` (as libp2p does) but without `SO_REUSEPORT`: connections of an
/// earlier run still in TIME_WAIT on the port do not count, a listener does.
fn bind_tcp(socket: SocketAddr) -> std::io::Result<()> {
    let probe = match socket {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    probe.set_reuseaddr(true)?;
    probe.bind(socket)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(port: u16) -> Multiaddr {
        format!("/ip4/127.0.0.1/tcp/{port}").parse().unwrap()
    }

    #[test]
    fn a_port_held_with_reuse_port_is_found() {
        // A holder like libp2p's listener: SO_REUSEADDR and SO_REUSEPORT.
        let holder =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        holder.set_reuse_address(true).unwrap();
        holder.set_reuse_port(true).unwrap();
        holder
            .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
            .unwrap();
        holder.listen(8).unwrap();
        let port = holder.local_addr().unwrap().as_socket().unwrap().port();
        let err = check_free(&[tcp(port)]).unwrap_err();
        assert_eq!(err.address, tcp(port));
        assert!(
            err.to_string()
                .contains(&format!("/ip4/127.0.0.1/tcp/{port}"))
        );

        drop(holder);
        check_free(&[tcp(port)]).unwrap();
    }

    #[test]
    fn a_held_udp_port_is_found_and_port_zero_is_not_checked() {
        let holder = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = holder.local_addr().unwrap().port();
        let quic: Multiaddr = format!("/ip4/127.0.0.1/udp/{port}/quic-v1")
            .parse()
            .unwrap();
        assert!(check_free(&[quic]).is_err());
        check_free(&[tcp(0), "/ip4/127.0.0.1/udp/0/quic-v1".parse().unwrap()]).unwrap();
    }
}
