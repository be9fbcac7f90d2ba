//! Dishonest roles, for tests: a node started with a [`Misbehaviour`] plays one of its roles
//! against the protocol, so that tests and scenarios can show that honest nodes refuse it,
//! name the culprit and keep the evidence.
//!
//! The names and parsing are always compiled (so that a build without them can say why it
//! refuses one); the tampering itself exists only with the `byzantine` feature, which no
//! release build has. A node without the feature refuses to start with a misbehaviour.

#[cfg(feature = "byzantine")]
use dta_protocol::order::SecretBytes;

/// Whether this build can misbehave (the `byzantine` feature).
pub const COMPILED: bool = cfg!(feature = "byzantine");

/// One way of playing a role dishonestly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Misbehaviour {
    /// Fiduciary: releases a share that is not its share (one bit off).
    WrongShare,
    /// Principal: deals its first fiduciary a share off the polynomial it commits to.
    BadDeal,
    /// Principal: gives its last fiduciary another commitment to the same key (another
    /// polynomial), with a deal on it, than the others get for the same order.
    SplitCommitment,
    /// Old holder, in a refresh or a move of custody: deals the first new holder a sub-share
    /// that does not fit the commitments it publishes.
    BadSubShare,
    /// Fiduciary: answers a commitment with a custody signature over another one.
    SignOtherCommitment,
    /// Fiduciary: answers a release with two different share releases (the same share, sealed
    /// twice).
    Equivocate,
    /// Fiduciary: answers a release with the share release it sent for the order's previous
    /// release, sent again (a replay), and no share of its own for this one.
    Replay,
    /// Fiduciary, in a key generation without a dealer: deals the first other fiduciary a
    /// share that does not fit its commitment.
    BadDkgShare,
    /// Any node: sends every connected peer, every second, a delivery whose block is no
    /// envelope.
    Malformed,
    /// Any node: sends every connected peer, every second, a request over the size limit.
    Oversized,
    /// Any node: sends every connected peer, every second, a thousand identity requests.
    Flood,
}

impl Misbehaviour {
    /// Every misbehaviour.
    pub const ALL: [Misbehaviour; 11] = [
        Misbehaviour::WrongShare,
        Misbehaviour::BadDeal,
        Misbehaviour::SplitCommitment,
        Misbehaviour::BadSubShare,
        Misbehaviour::SignOtherCommitment,
        Misbehaviour::Equivocate,
        Misbehaviour::Replay,
        Misbehaviour::BadDkgShare,
        Misbehaviour::Malformed,
        Misbehaviour::Oversized,
        Misbehaviour::Flood,
    ];

    /// Its name, as `dta run --misbehave` and scenarios take it.
    pub fn name(self) -> &'static str {
        match self {
            Misbehaviour::WrongShare => "wrong-share",
            Misbehaviour::BadDeal => "bad-deal",
            Misbehaviour::SplitCommitment => "split-commitment",
            Misbehaviour::BadSubShare => "bad-sub-share",
            Misbehaviour::SignOtherCommitment => "sign-other-commitment",
            Misbehaviour::Equivocate => "equivocate",
            Misbehaviour::Replay => "replay",
            Misbehaviour::BadDkgShare => "bad-dkg-share",
            Misbehaviour::Malformed => "malformed",
            Misbehaviour::Oversized => "oversized",
            Misbehaviour::Flood => "flood",
        }
    }

    /// The misbehaviour named `name`, or an error listing the names.
    pub fn parse(name: &str) -> Result<Misbehaviour, String> {
        Misbehaviour::ALL
            .into_iter()
            .find(|m| m.name() == name)
            .ok_or_else(|| {
                let names: Vec<&str> = Misbehaviour::ALL.iter().map(|m| m.name()).collect();
                format!("no misbehaviour {name:?}; there are: {}", names.join(", "))
            })
    }
}

/// `secret` as a node that plays `played` sends it: one bit off when that is `misbehaviour`.
#[cfg(feature = "byzantine")]
pub(crate) fn tampered(
    played: Option<Misbehaviour>,
    misbehaviour: Misbehaviour,
    secret: SecretBytes,
) -> SecretBytes {
    if played != Some(misbehaviour) {
        return secret;
    }
    let mut bytes = secret.expose().to_vec();
    if let Some(last) = bytes.last_mut() {
        *last ^= 1;
    }
    tracing::warn!(
        misbehaviour = misbehaviour.name(),
        "misbehaving on purpose (a test build)"
    );
    SecretBytes::new(bytes)
}

/// How often a noisy node sends its peers what it should not.
#[cfg(feature = "byzantine")]
const NOISE_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Identity requests a flooding node sends each peer every [`NOISE_EVERY`].
#[cfg(feature = "byzantine")]
const FLOOD: usize = 1000;

/// For [`Misbehaviour::Malformed`], [`Misbehaviour::Oversized`] and [`Misbehaviour::Flood`]:
/// a task that sends every connected peer such requests every [`NOISE_EVERY`], until the
/// network stops. Nothing for the other misbehaviours.
#[cfg(feature = "byzantine")]
pub(crate) fn make_noise(played: Option<Misbehaviour>, network: crate::network::NetworkHandle) {
    use dta_protocol::network::{MAX_REQUEST_SIZE, Request};
    let delivery = |block: Vec<u8>| Request::Deliver {
        blocks: vec![serde_bytes::ByteBuf::from(block)],
    };
    let (request, copies) = match played {
        Some(Misbehaviour::Malformed) => (delivery(b"not an envelope".to_vec()), 1),
        Some(Misbehaviour::Oversized) => (delivery(vec![0; MAX_REQUEST_SIZE as usize]), 1),
        Some(Misbehaviour::Flood) => (Request::Identity, FLOOD),
        _ => return,
    };
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(NOISE_EVERY).await;
            for peer in network.snapshot().connected {
                tracing::warn!(%peer, copies, "misbehaving on purpose (a test build)");
                let sent = (0..copies).map(|_| network.request(peer, request.clone()));
                let answers = futures::future::join_all(sent).await;
                if answers
                    .iter()
                    .any(|a| matches!(a, Err(crate::network::RequestError::Closed)))
                {
                    return;
                }
            }
        }
    });
}
