//! The router of a WAN testnet (`dta testnet wan-router`, started by `dta testnet up --sites`
//! inside the router namespace): the kernel there routes every packet between two sites into
//! a TUN device; this program reads each, decides its fate from `DIR/wan.json` ([`link`]),
//! and writes it back after its delay, or drops it. The kernel then routes it on to the other
//! site. It reads the settings again on SIGHUP and stops on SIGTERM or SIGINT.
//!
//! The kernel here has no `netem` queueing discipline; a user-space delay line gives the same
//! packet-level delay, jitter and loss to every protocol (TCP's own retransmissions and
//! congestion control see real loss), and runs wherever `/dev/net/tun` does. Unlike `netem`
//! with jitter, packets between two sites are never reordered: each leaves no earlier than
//! the one before it on that path, as on most real WAN paths.
//!
//! [`link`]: super::link

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::path::Path;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use serde::Serialize;
use tokio::time::Instant;

use super::link::{Verdict, WanSettings};

/// The TUN device the router namespace routes packets between sites into.
pub const TUN_DEVICE: &str = "wan0";

/// The first two bytes of every site address: site `s` is `10.214.s.0/24`.
pub const SITE_NETWORK: [u8; 2] = [10, 214];

/// What the router prints once it routes (its handlers set, its device attached).
pub const ROUTING: &str = "routing between sites";

/// Most packets held at once; past it, a packet is dropped as a full router queue drops it.
const MAX_HELD: usize = 65_536;

/// The site of an IPv4 address, if it is a site's.
pub fn site_of(address: [u8; 4]) -> Option<usize> {
    (address[..2] == SITE_NETWORK).then_some(usize::from(address[2]))
}

/// What the router did, as it prints it on exit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Packets delivered to the other site.
    pub delivered: u64,
    /// Packets lost to the link's loss.
    pub lost: u64,
    /// Packets dropped: isolated site, not a site's address, not IPv4, or the queue full.
    pub dropped: u64,
}

/// A packet waiting for its time.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Held {
    due: Instant,
    /// Arrival order, so that equal times leave in order.
    sequence: u64,
    packet: Vec<u8>,
}

/// The packets in flight between sites, and what decides their fate.
#[derive(Debug)]
pub struct DelayLine<R> {
    settings: WanSettings,
    random: R,
    held: BinaryHeap<Reverse<Held>>,
    /// When the last packet on each path (from site, to site) leaves: none leaves before it.
    last_due: HashMap<(usize, usize), Instant>,
    sequence: u64,
    counts: Counts,
}

impl<R: Rng> DelayLine<R> {
    /// A delay line applying `settings`, drawing delays and losses from `random`.
    pub fn new(settings: WanSettings, random: R) -> Self {
        Self {
            settings,
            random,
            held: BinaryHeap::new(),
            last_due: HashMap::new(),
            sequence: 0,
            counts: Counts::default(),
        }
    }

    /// New settings, for the packets that arrive from now on.
    pub fn set(&mut self, settings: WanSettings) {
        self.settings = settings;
    }

    /// What it did so far.
    pub fn counts(&self) -> Counts {
        self.counts
    }

    /// Takes a packet read at `now`: holds it until its time, or drops it.
    pub fn accept(&mut self, packet: Vec<u8>, now: Instant) {
        let path = (packet.len() >= 20 && packet[0] >> 4 == 4)
            .then(|| {
                let from = site_of([packet[12], packet[13], packet[14], packet[15]])?;
                let to = site_of([packet[16], packet[17], packet[18], packet[19]])?;
                Some((from, to))
            })
            .flatten();
        let Some((from, to)) = path else {
            self.counts.dropped += 1;
            return;
        };
        let link = match self.settings.verdict(from, to) {
            Verdict::Drop => {
                self.counts.dropped += 1;
                return;
            }
            Verdict::Cross(link) => link,
        };
        if link.loss > 0.0 && self.random.gen_bool(link.loss) {
            self.counts.lost += 1;
            return;
        }
        if self.held.len() >= MAX_HELD {
            self.counts.dropped += 1;
            return;
        }
        let jitter = link.jitter_us as i64;
        let offset = if jitter > 0 {
            self.random.gen_range(-jitter..=jitter)
        } else {
            0
        };
        let delay = Duration::from_micros(link.delay_us.saturating_add_signed(offset));
        let last = self.last_due.entry((from, to)).or_insert(now);
        let due = (now + delay).max(*last);
        *last = due;
        self.sequence += 1;
        self.held.push(Reverse(Held {
            due,
            sequence: self.sequence,
            packet,
        }));
    }

    /// When the next packet is due, if any is held.
    pub fn next_due(&self) -> Option<Instant> {
        self.held.peek().map(|held| held.0.due)
    }

    /// The next packet due by `now`, counted as delivered.
    pub fn pop_due(&mut self, now: Instant) -> Option<Vec<u8>> {
        if self.next_due()? > now {
            return None;
        }
        self.counts.delivered += 1;
        self.held.pop().map(|held| held.0.packet)
    }
}

/// Why the router stopped.
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    /// The settings file.
    #[error("{0}")]
    Settings(String),
    /// The TUN device could not be opened (it must exist: `ip tuntap add wan0 mode tun`).
    #[error("TUN device {TUN_DEVICE}: {0}")]
    Device(String),
    /// Reading from the device failed.
    #[error("reading from {TUN_DEVICE}: {0}")]
    Read(std::io::Error),
    /// A signal handler.
    #[error("signals: {0}")]
    Signals(std::io::Error),
}

/// Runs the router until `shutdown` or a signal: attaches to the TUN device [`TUN_DEVICE`]
/// of the namespace it runs in, applies the settings at `settings`, and answers with what
/// it did.
pub async fn run(
    settings: &Path,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<Counts, RouterError> {
    use tokio::signal::unix::{SignalKind, signal};
    let loaded = WanSettings::load(settings).map_err(RouterError::Settings)?;
    let tun = tokio_tun::Tun::builder()
        .name(TUN_DEVICE)
        .build()
        .map_err(|e| RouterError::Device(e.to_string()))?
        .pop()
        .ok_or_else(|| RouterError::Device("no queue".into()))?;
    let mut hangup = signal(SignalKind::hangup()).map_err(RouterError::Signals)?;
    let mut terminate = signal(SignalKind::terminate()).map_err(RouterError::Signals)?;
    eprintln!(
        "{ROUTING}: {}",
        serde_json::to_string(&loaded).unwrap_or_default()
    );
    let mut line = DelayLine::new(loaded, rand::rngs::StdRng::from_entropy());
    let mut buffer = vec![0u8; 65_536];
    tokio::pin!(shutdown);
    loop {
        let next = line.next_due();
        tokio::select! {
            () = &mut shutdown => break,
            _ = terminate.recv() => break,
            _ = hangup.recv() => match WanSettings::load(settings) {
                Ok(settings) => {
                    eprintln!("settings: {}", serde_json::to_string(&settings).unwrap_or_default());
                    line.set(settings);
                }
                // The settings in force stay: a bad file changes nothing.
                Err(err) => eprintln!("settings not changed: {err}"),
            },
            read = tun.recv(&mut buffer) => {
                let length = read.map_err(RouterError::Read)?;
                line.accept(buffer[..length].to_vec(), Instant::now());
            }
            () = tokio::time::sleep_until(next.unwrap_or_else(Instant::now)), if next.is_some() => {
                let now = Instant::now();
                while let Some(packet) = line.pop_due(now) {
                    // A packet the kernel refuses is lost, as on a wire.
                    if let Err(err) = tun.send(&packet).await {
                        eprintln!("a packet was not written back: {err}");
                    }
                }
            }
        }
    }
    Ok(line.counts())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(from: [u8; 4], to: [u8; 4], mark: u8) -> Vec<u8> {
        let mut packet = vec![0u8; 28];
        packet[0] = 0x45;
        packet[12..16].copy_from_slice(&from);
        packet[16..20].copy_from_slice(&to);
        packet[27] = mark;
        packet
    }

    fn line(spec: &str) -> DelayLine<rand::rngs::StdRng> {
        DelayLine::new(
            WanSettings {
                sites: 3,
                link: spec.parse().unwrap(),
                ..WanSettings::default()
            },
            rand::rngs::StdRng::seed_from_u64(7),
        )
    }

    fn drain(line: &mut DelayLine<rand::rngs::StdRng>) -> Vec<(Instant, Vec<u8>)> {
        let mut out = Vec::new();
        while let Some(due) = line.next_due() {
            let packet = line.pop_due(due).unwrap();
            out.push((due, packet));
        }
        out
    }

    #[test]
    fn packets_between_sites_wait_their_delay_within_the_jitter_and_keep_their_order() {
        let mut line = line("delay=40ms jitter=10ms");
        let start = Instant::now();
        for mark in 0..200u8 {
            line.accept(
                packet([10, 214, 0, 1], [10, 214, 1, 1], mark),
                start + Duration::from_micros(u64::from(mark) * 100),
            );
        }
        assert_eq!(line.pop_due(start), None, "nothing is due at once");
        let out = drain(&mut line);
        assert_eq!(out.len(), 200);
        let mut delays = Vec::new();
        for (index, (due, packet)) in out.iter().enumerate() {
            assert_eq!(usize::from(packet[27]), index, "in the order they came");
            let sent = start + Duration::from_micros(index as u64 * 100);
            delays.push(due.duration_since(sent));
        }
        assert!(delays.iter().all(|d| *d >= Duration::from_millis(30)));
        assert!(delays.iter().all(|d| *d <= Duration::from_millis(50)));
        let spread =
            delays.iter().max().unwrap().as_micros() - delays.iter().min().unwrap().as_micros();
        assert!(spread > 5_000, "the jitter varies the delay: {spread} us");
        assert_eq!(line.counts().delivered, 200);
    }

    #[test]
    fn loss_drops_about_its_share_and_isolation_everything() {
        let mut line = line("delay=1ms loss=10%");
        let now = Instant::now();
        for _ in 0..10_000 {
            line.accept(packet([10, 214, 2, 3], [10, 214, 0, 9], 0), now);
        }
        let lost = line.counts().lost;
        assert!((800..1200).contains(&lost), "lost {lost} of 10000 at 10%");
        let mut settings = line.settings.clone();
        settings.isolated.insert(2);
        line.set(settings);
        line.accept(packet([10, 214, 2, 3], [10, 214, 0, 9], 0), now);
        line.accept(packet([10, 214, 0, 9], [10, 214, 2, 3], 0), now);
        assert_eq!(line.counts().dropped, 2);
    }

    #[test]
    fn what_is_no_sites_ipv4_is_dropped() {
        let mut line = line("delay=1ms");
        let now = Instant::now();
        line.accept(packet([10, 214, 0, 1], [192, 0, 2, 1], 0), now);
        line.accept(packet([10, 214, 0, 1], [10, 214, 9, 1], 0), now);
        let mut ipv6 = packet([10, 214, 0, 1], [10, 214, 1, 1], 0);
        ipv6[0] = 0x60;
        line.accept(ipv6, now);
        line.accept(vec![0x45; 10], now);
        assert_eq!(line.counts().dropped, 4);
        assert_eq!(line.next_due(), None);
    }
}
