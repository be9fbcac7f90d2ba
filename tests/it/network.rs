//! In-process multi-node tests over the testnet harness.

use std::time::Duration;

use dta_actors::identities::verify_received;
use dta_actors::network::NetworkEvent;
use dta_actors::registry::Child;
use dta_actors::roles::Role;
use dta_actors::supervisor::SupervisorMsg;
use dta_crypto::Secret;
use dta_protocol::network::{MAX_REQUEST_SIZE, Request, Response};
use dta_testnet::harness::Testnet;
use libp2p::PeerId;

const TIMEOUT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nodes_learn_every_identity() {
    let net = Testnet::builder().nodes(5).build().await.expect("testnet");
    let elapsed = net.knowledge_time.expect("waited for knowledge");
    println!("5 in-process nodes reached full identity knowledge in {elapsed:?}");
    for i in 0..5 {
        let directory = net.node(i).directory().borrow().clone();
        assert_eq!(directory.identities.len(), 5, "node {i}");
        // Every identity's peer id is the one that node runs with.
        for j in 0..5 {
            let other = net.node(j).info();
            let known = &directory.identities[&other.identity];
            assert_eq!(known.peer_id.to_string(), other.peer_id);
        }
    }
    net.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_or_misattributed_identities_are_rejected_and_not_stored() {
    let net = Testnet::builder().nodes(2).build().await.expect("testnet");
    let victim = net.node(0);
    let sender: PeerId = net.node(1).info().peer_id.parse().unwrap();
    let genuine = net.node(1).directory().borrow().identities[&net.node(1).info().identity]
        .document
        .clone();

    // A flipped byte anywhere breaks the document.
    let mut tampered = genuine.clone();
    let middle = tampered.len() / 2;
    tampered[middle] ^= 0x01;
    assert!(verify_received(sender, &tampered, &Default::default()).is_err());
    // A genuine document relayed by someone else as if it were theirs is refused too.
    let impostor = PeerId::random();
    assert!(verify_received(impostor, &genuine, &Default::default()).is_err());

    // Fed through the same path the network uses, neither is stored.
    let stranger = dta_protocol::identity::LocalIdentity::create(
        &Secret::new([9; 32]),
        "stranger",
        &PeerId::random().to_bytes(),
        1,
    )
    .unwrap();
    let stranger_doc = dta_protocol::dagcbor::encode(stranger.identity().document()).unwrap();
    let identities = dta_actors::registry::identities(&victim.info().peer_id)
        .expect("identities actor registered");
    for (peer, document) in [(impostor, stranger_doc.clone()), (sender, tampered)] {
        identities
            .send_message(dta_actors::identities::IdentitiesMsg::Network(
                NetworkEvent::IdentityReceived { peer, document },
            ))
            .unwrap();
    }
    // A valid document from its own (unconnected) peer is accepted: proof the path works,
    // and a point after which the rejected ones have certainly been handled.
    let stranger_peer = PeerId::from_bytes(stranger.identity().peer_id()).unwrap();
    identities
        .send_message(dta_actors::identities::IdentitiesMsg::Network(
            NetworkEvent::IdentityReceived {
                peer: stranger_peer,
                document: stranger_doc,
            },
        ))
        .unwrap();
    let mut directory = victim.directory();
    tokio::time::timeout(
        TIMEOUT,
        directory.wait_for(|d| d.identities.contains_key(&stranger.cid().to_string())),
    )
    .await
    .expect("valid document accepted")
    .unwrap();
    let directory = victim.directory().borrow().clone();
    assert_eq!(
        directory.identities.len(),
        3,
        "only the valid stranger was added"
    );
    let metrics = victim.client().get_bytes("/metrics").await.unwrap();
    let metrics = String::from_utf8(metrics).unwrap();
    assert!(
        metrics.contains("dta_identity_documents_total{outcome=\"rejected\"} 2"),
        "{metrics}"
    );
    net.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_outside_the_allow_list_cannot_connect() {
    // Node 2 only accepts node 0.
    let net = Testnet::builder()
        .nodes(3)
        .allow_list(2, &[0])
        .no_wait()
        .build()
        .await
        .expect("testnet");
    let node2: PeerId = net.node(2).info().peer_id.parse().unwrap();
    let address: libp2p::Multiaddr = net.test_node_address(2);
    // The allowed peer gets an answer.
    net.node(0)
        .network()
        .send(dta_actors::network::NetworkCommand::Dial(address.clone()))
        .await
        .unwrap();
    let answer = tokio::time::timeout(
        TIMEOUT,
        net.node(0).network().request(node2, Request::Identity),
    )
    .await
    .expect("answer in time");
    assert!(
        matches!(answer, Ok(Response::Identity { .. })),
        "{answer:?}"
    );
    // The other one is refused at the connection.
    net.node(1)
        .network()
        .send(dta_actors::network::NetworkCommand::Dial(address))
        .await
        .unwrap();
    let refused = tokio::time::timeout(
        TIMEOUT,
        net.node(1).network().request(node2, Request::Identity),
    )
    .await
    .expect("failure in time");
    assert!(refused.is_err(), "{refused:?}");
    let node1: PeerId = net.node(1).info().peer_id.parse().unwrap();
    assert!(!net.node(2).network().snapshot().connected.contains(&node1));
    net.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_keeps_its_identity_and_peer_id() {
    let mut net = Testnet::builder().nodes(2).build().await.expect("testnet");
    let before = net.node(1).info().clone();
    net.test_node(1).stop().await;
    assert!(
        !net.test_node(1).home().join("node.json").exists(),
        "node.json removed on stop"
    );
    net.test_node(1).start().await.expect("restart");
    let after = net.node(1).info().clone();
    assert_eq!(after.identity, before.identity);
    assert_eq!(after.peer_id, before.peer_id);
    assert!(net.test_node(1).home().join("node.json").exists());
    // It still knows the identities it had stored.
    assert_eq!(net.node(1).directory().borrow().identities.len(), 2);
    net.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_dials_the_peers_it_met_before() {
    // Node 0 has no bootstrap address (the others bootstrapped from it): after a restart on
    // new ports only the peers it remembers bring it back into the network.
    let mut net = Testnet::builder().nodes(3).build().await.expect("testnet");
    let others: Vec<PeerId> = (1..3)
        .map(|i| net.node(i).info().peer_id.parse().unwrap())
        .collect();
    // Identify has told node 0 where the others listen.
    let identified = tokio::time::timeout(TIMEOUT, async {
        loop {
            let metrics = net.node(0).client().get_bytes("/metrics").await.unwrap();
            let metrics = String::from_utf8(metrics).unwrap();
            let received: u64 = metrics
                .lines()
                .find_map(|l| {
                    l.strip_prefix(
                        r#"dta_messages_total{protocol="identify",direction="received"} "#,
                    )
                })
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            if received >= 2 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(identified.is_ok(), "node 0 never identified its peers");
    // It comes back on other ports, so the others cannot find it: it must find them.
    net.test_node(0).stop().await;
    net.test_node(0).move_to_new_ports();
    net.test_node(0).start().await.expect("restart");
    let mut snapshot = net.node(0).network().watch();
    // `wait_for` answers a read guard of the snapshot: it is let go at once, or the swarm
    // could never publish again (and `stop` would wait for it forever).
    let reconnected = tokio::time::timeout(
        TIMEOUT,
        snapshot.wait_for(|s| others.iter().all(|p| s.connected.contains(p))),
    )
    .await
    .is_ok_and(|seen| seen.is_ok());
    assert!(reconnected, "node 0 stayed alone after its restart");
    net.stop().await;
}

/// A well-signed order request, encoded with one more key (`"zz": 0`) at the top: DAG-CBOR
/// sorts keys by length, so it goes first in a map of three.
fn an_envelope_with_a_key_added() -> Vec<u8> {
    use dta_protocol::envelope::{Draft, Kind, SignedEnvelope};
    let sender =
        dta_protocol::identity::LocalIdentity::create(&Secret::new([7; 32]), "padder", b"p", 1)
            .unwrap();
    let bytes = SignedEnvelope::create(
        &sender,
        Draft {
            kind: Kind::OrderRequest,
            order: "padded",
            prev: None,
            timestamp: 1,
            public: Some(vec![0xa0]),
            secret: None,
            recipients: &[],
        },
    )
    .unwrap()
    .to_block()
    .unwrap()
    .into_bytes();
    assert_eq!(bytes[0], 0xa2, "a map of two: envelope and signature");
    let mut padded = vec![0xa3, 0x62, b'z', b'z', 0x00];
    padded.extend_from_slice(&bytes[1..]);
    SignedEnvelope::decode(&bytes).unwrap();
    assert!(SignedEnvelope::decode_seen(&padded).is_ok());
    padded
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_requests_are_refused_and_the_receiver_survives() {
    let net = Testnet::builder().nodes(2).build().await.expect("testnet");
    let receiver: PeerId = net.node(1).info().peer_id.parse().unwrap();
    let deliver = |block: Vec<u8>| {
        tokio::time::timeout(
            TIMEOUT,
            net.node(0).network().request(
                receiver,
                Request::Deliver {
                    blocks: vec![block.into()],
                },
            ),
        )
    };
    let result = deliver(vec![0u8; MAX_REQUEST_SIZE as usize + 1024])
        .await
        .expect("answer in time");
    // Read no further than the limit, and answered with the reason.
    assert!(
        matches!(&result, Ok(Response::Rejected { reason }) if reason.contains("more than")),
        "an oversized request must be refused: {result:?}"
    );
    // A garbage envelope within the limit is answered with a reason.
    let rejected = deliver(vec![0xff; 16]).await.expect("answer in time");
    assert!(
        matches!(rejected, Ok(Response::Rejected { .. })),
        "{rejected:?}"
    );
    // A signed envelope with a key added is not its one encoding: refused here, since the
    // roles decode deliveries without checking that again.
    let rejected = deliver(an_envelope_with_a_key_added())
        .await
        .expect("answer in time");
    assert!(
        matches!(&rejected, Ok(Response::Rejected { reason }) if reason.contains("encodes to")),
        "{rejected:?}"
    );
    // The receiver still serves requests.
    let answer = tokio::time::timeout(
        TIMEOUT,
        net.node(0).network().request(receiver, Request::Identity),
    )
    .await
    .expect("answer in time");
    assert!(
        matches!(answer, Ok(Response::Identity { .. })),
        "{answer:?}"
    );
    // Every offence is counted against the sender's identity (by the identity directory,
    // which hears of them after the answers went out).
    let sender = net.node(0).info().identity.clone();
    for (offence, times) in [("oversized-message", 1), ("malformed-message", 2)] {
        let series =
            format!("dta_misconduct_total{{offence=\"{offence}\",culprit=\"{sender}\"}} {times}");
        let counted = tokio::time::timeout(TIMEOUT, async {
            loop {
                let metrics = net.node(1).client().get_bytes("/metrics").await.unwrap();
                if String::from_utf8(metrics)
                    .unwrap()
                    .lines()
                    .any(|l| l == series)
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        assert!(counted.is_ok(), "{series} never shown");
    }
    net.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_child_is_restarted_by_its_supervisor() {
    let net = Testnet::builder().nodes(1).build().await.expect("testnet");
    let supervisor = net.node(0).supervisor().clone();
    let child = |c| {
        let supervisor = supervisor.clone();
        async move {
            ractor::call_t!(supervisor, |reply| SupervisorMsg::Child(c, reply), 5_000)
                .unwrap()
                .expect("child running")
        }
    };
    for kind in [Child::Role(Role::Fiduciary), Child::Identities] {
        let before = child(kind).await;
        before.kill();
        let restarted = tokio::time::timeout(TIMEOUT, async {
            loop {
                let now = child(kind).await;
                if now.get_id() != before.get_id() {
                    return now;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("restarted in time");
        // The new actor answers (its mailbox queues messages while it finishes starting).
        if kind == Child::Role(Role::Fiduciary) {
            let role: ractor::ActorRef<dta_actors::roles::RoleMsg> = restarted.into();
            let described =
                ractor::call_t!(role, dta_actors::roles::RoleMsg::Describe, 5_000).unwrap();
            assert_eq!(described, Role::Fiduciary);
        }
    }
    let restarts = ractor::call_t!(supervisor, SupervisorMsg::Restarts, 5_000).unwrap();
    assert_eq!(restarts, 2);
    // The restarted identity directory still serves the API.
    let identities = net.node(0).client().get("/v2/identities").await.unwrap();
    assert_eq!(identities.as_array().unwrap().len(), 1);
    net.stop().await;
}

/// Two nodes that may only connect to a third find each other's identity when asked for it:
/// the DHT names a provider neither can reach, and the peer they share gives the document over
/// Bitswap. Nodes do not push their documents to every node any more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_that_cannot_connect_find_each_others_identity_through_a_shared_peer() {
    let net = Testnet::builder()
        .nodes(3)
        .allow_list(1, &[0])
        .allow_list(2, &[0])
        .no_wait()
        .build()
        .await
        .expect("testnet");
    let mut shared = net.node(0).directory();
    let everyone = tokio::time::timeout(TIMEOUT, shared.wait_for(|d| d.identities.len() == 3));
    assert!(everyone.await.is_ok(), "the shared peer meets both");
    let node1: PeerId = net.node(1).info().peer_id.parse().unwrap();
    let node2: PeerId = net.node(2).info().peer_id.parse().unwrap();
    assert!(!net.node(1).network().snapshot().connected.contains(&node2));
    assert!(!net.node(2).network().snapshot().connected.contains(&node1));
    for (asker, other) in [(1, 2), (2, 1)] {
        let cid = net.node(other).info().identity.clone();
        let known = net.node(asker).directory().borrow().identities.len();
        assert_eq!(
            known, 2,
            "node {asker} knows only itself and the shared peer"
        );
        let answer = net
            .node(asker)
            .client()
            .get(&format!("/v2/identities/{cid}"))
            .await
            .unwrap_or_else(|err| panic!("node {asker} finds node {other}: {err}"));
        assert_eq!(answer["cid"], cid.as_str());
    }
    net.stop().await;
}

/// A node's swarm dials from a new local port even when the dial asks to reuse the listening
/// port, as Kademlia's and request-response's dials do: two such dials that crossed on a slow
/// link became one TCP connection on which both ends failed the handshake, and two sites of
/// a WAN testnet stayed unconnected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dial_asking_for_the_listening_port_goes_out_from_a_new_one() {
    use libp2p::futures::StreamExt as _;
    use libp2p::multiaddr::Protocol;
    use libp2p::swarm::SwarmEvent;
    use libp2p::swarm::dial_opts::DialOpts;
    let keypair = libp2p::identity::Keypair::generate_ed25519();
    let config = dta_protocol::network::SwarmConfig::default();
    let mut swarm = dta_protocol::network::build_swarm(keypair, &config).unwrap();
    swarm
        .listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap())
        .unwrap();
    let listening = tokio::time::timeout(TIMEOUT, async {
        loop {
            if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
                return address;
            }
        }
    })
    .await
    .expect("listening");
    let listening_port = listening
        .iter()
        .find_map(|p| match p {
            Protocol::Tcp(port) => Some(port),
            _ => None,
        })
        .unwrap();
    let other_end = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let other_port = other_end.local_addr().unwrap().port();
    // A dial like Kademlia's: by peer id, with the default port policy (reuse).
    let dial = DialOpts::peer_id(libp2p::PeerId::random())
        .addresses(vec![
            format!("/ip4/127.0.0.1/tcp/{other_port}").parse().unwrap(),
        ])
        .build();
    swarm.dial(dial).unwrap();
    let (_, from) = tokio::time::timeout(TIMEOUT, async {
        tokio::select! {
            accepted = other_end.accept() => accepted.unwrap(),
            () = async { loop { swarm.select_next_some().await; } } => unreachable!(),
        }
    })
    .await
    .expect("the dial arrives");
    assert_ne!(
        from.port(),
        listening_port,
        "the dial went out from the listening port"
    );
}

/// What a bare libp2p peer announcing `protocol` sees of node 0: whether its connection was
/// still open 2 s after the two exchanged identify. A node that refuses the peer may close the
/// connection as soon as it reads the peer's identify, before its own has arrived: that is
/// a closed connection too.
async fn stays_connected_announcing(net: &Testnet, protocol: &str) -> bool {
    use libp2p::futures::StreamExt as _;
    use libp2p::swarm::SwarmEvent;
    let mut swarm = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            libp2p::tcp::Config::default(),
            libp2p::noise::Config::new,
            libp2p::yamux::Config::default,
        )
        .unwrap()
        .with_behaviour(|key| {
            libp2p::identify::Behaviour::new(libp2p::identify::Config::new(
                protocol.to_owned(),
                key.public(),
            ))
        })
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();
    swarm.dial(net.test_node_address(0)).unwrap();
    let identified = tokio::time::timeout(TIMEOUT, async {
        loop {
            match swarm.select_next_some().await {
                SwarmEvent::Behaviour(libp2p::identify::Event::Received { .. }) => return true,
                SwarmEvent::ConnectionClosed { .. } => return false,
                _ => {}
            }
        }
    })
    .await
    .expect("identify exchanged, or the connection closed");
    if !identified {
        return false;
    }
    let closed = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            if let SwarmEvent::ConnectionClosed { .. } = swarm.select_next_some().await {
                return;
            }
        }
    })
    .await;
    closed.is_err()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_of_another_major_protocol_version_is_refused_and_counted() {
    let net = Testnet::builder().nodes(1).build().await.expect("testnet");
    let (_, node) = crate::custody::Api::new().get(&net, 0, "/v2/node").await;
    assert_eq!(node["protocol"], "/dta/1.0.0", "{node}");
    assert!(
        node["commit"].as_str().is_some_and(|c| !c.is_empty()),
        "{node}"
    );
    let refused = || crate::custody::counter(&net, 0, "dta_peers_refused_total");
    assert!(stays_connected_announcing(&net, "/dta/1.4.0").await);
    assert!(stays_connected_announcing(&net, "ipfs/0.1.0").await);
    assert_eq!(refused().await, 0);
    assert!(!stays_connected_announcing(&net, "/dta/2.0.0").await);
    assert_eq!(refused().await, 1);
    net.stop().await;
}

/// An operator's view of the network's health: a probe of the DHT reaches the other nodes
/// and says what it did; a head the principal announced is seen by every node, first by the
/// principal (published), then by the others (gossip); bad input gets a clear error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dht_can_be_probed_and_every_node_tells_when_it_first_saw_a_head() {
    use crate::custody::{Api, PRINCIPAL, one_role_each, order};
    let api = Api::new();
    let net = one_role_each(5).await;
    order(&api, &net, "heard", "a secret heard of").await;
    let (_, shown) = api.get(&net, PRINCIPAL, "/v2/orders/heard").await;
    let head = shown[0]["head"].as_str().unwrap().to_owned();
    let path = format!("/v2/network/heads/{head}");
    let seen = |node: usize| {
        let (api, net, path) = (&api, &net, &path);
        async move {
            tokio::time::timeout(TIMEOUT, async {
                loop {
                    let (status, body) = api.get(net, node, path).await;
                    if status == 200 {
                        return body;
                    }
                    assert_eq!(status, 404, "{body}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
            .await
            .unwrap_or_else(|_| panic!("node {node} never saw the head"))
        }
    };
    let published = seen(PRINCIPAL).await;
    assert_eq!(published["source"], "published", "{published}");
    assert_eq!(published["head"], head.as_str());
    let at = published["seen_unix_ms"].as_u64().unwrap();
    for node in 1..5 {
        let heard = seen(node).await;
        assert_eq!(heard["source"], "gossip", "node {node}: {heard}");
        assert!(heard["seen_unix_ms"].as_u64().unwrap() >= at, "{heard}");
    }

    let (status, probe) = api
        .post(&net, 2, "/v2/network/probe", serde_json::json!({}))
        .await;
    assert_eq!(status, 200, "{probe}");
    let requests = probe["requests"].as_u64().unwrap();
    assert!(requests >= 1, "{probe}");
    assert_eq!(
        probe["successes"].as_u64().unwrap() + probe["failures"].as_u64().unwrap(),
        requests,
        "{probe}"
    );
    // The four other nodes, all of them found.
    assert_eq!(probe["closest"], 4, "{probe}");

    let (status, refused) = api.get(&net, 1, "/v2/network/heads/not-a-cid").await;
    assert_eq!(status, 400, "{refused}");
    let identity = crate::custody::identity(&net, 1);
    let (status, unseen) = api
        .get(&net, 1, &format!("/v2/network/heads/{identity}"))
        .await;
    assert_eq!(status, 404, "{unseen}");
    assert!(
        unseen["error"].as_str().unwrap().contains("not seen"),
        "{unseen}"
    );
    net.stop().await;
}
