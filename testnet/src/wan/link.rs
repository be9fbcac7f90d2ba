//! What the simulated WAN does to a packet between two sites: the link figures (`delay=40ms
//! jitter=10ms loss=0.5%`, as `dta testnet up --wan` and the `netem` scenario step take them),
//! the settings file the router reads (`DIR/wan.json`: the figures for every site, a site's
//! own figures, isolated sites) and the verdict for one packet. It moves no packet: the
//! router does.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Most delay or jitter a link may have: a minute is already no WAN.
const MAX_DELAY: Duration = Duration::from_secs(60);

/// The figures of a link: one-way delay, jitter (each packet's delay is drawn evenly from
/// `delay ± jitter`) and the share of packets lost.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct Link {
    /// One-way delay, in microseconds.
    pub delay_us: u64,
    /// Jitter, in microseconds.
    pub jitter_us: u64,
    /// Loss, from 0 (none) to 1 (every packet).
    pub loss: f64,
}

impl Link {
    /// One-way delay.
    pub fn delay(&self) -> Duration {
        Duration::from_micros(self.delay_us)
    }

    /// Jitter.
    pub fn jitter(&self) -> Duration {
        Duration::from_micros(self.jitter_us)
    }

    /// Parses `delay=40ms jitter=10ms loss=0.5%` (any of the three, in any order, separated
    /// by spaces or commas; times in `us`, `ms` or `s`; loss in `%` or as a fraction).
    /// Figures not named keep their value in `self`.
    pub fn with(mut self, spec: &str) -> Result<Self, String> {
        let mut named = 0;
        for item in spec
            .split(|c: char| c.is_whitespace() || c == ',')
            .filter(|item| !item.is_empty())
        {
            let (key, value) = item
                .split_once('=')
                .ok_or_else(|| format!("{item:?}: expected NAME=VALUE (delay, jitter or loss)"))?;
            match key {
                "delay" => self.delay_us = micros(value)?,
                "jitter" => self.jitter_us = micros(value)?,
                "loss" => self.loss = fraction(value)?,
                other => {
                    return Err(format!(
                        "{other:?} is not a link figure: delay, jitter or loss"
                    ));
                }
            }
            named += 1;
        }
        if named == 0 {
            return Err("no link figure: give delay=, jitter= or loss=".into());
        }
        if self.jitter_us > self.delay_us {
            return Err(format!(
                "jitter {} is larger than the delay {}: a packet cannot arrive before it left",
                self.jitter_us, self.delay_us
            ));
        }
        Ok(self)
    }

    /// The link a packet between two sites crosses: the worse figure of each site's.
    fn worst(self, other: Self) -> Self {
        Self {
            delay_us: self.delay_us.max(other.delay_us),
            jitter_us: self.jitter_us.max(other.jitter_us),
            loss: self.loss.max(other.loss),
        }
    }
}

impl std::str::FromStr for Link {
    type Err = String;

    fn from_str(spec: &str) -> Result<Self, String> {
        Self::default().with(spec)
    }
}

impl fmt::Display for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "delay={:?} jitter={:?} loss={}%",
            self.delay(),
            self.jitter(),
            self.loss * 100.0
        )
    }
}

fn micros(value: &str) -> Result<u64, String> {
    let (number, unit) = value
        .find(|c: char| c.is_ascii_alphabetic())
        .map(|at| value.split_at(at))
        .ok_or_else(|| format!("{value:?}: give a unit (us, ms or s)"))?;
    let number: f64 = number
        .parse()
        .map_err(|_| format!("{value:?} is not a time"))?;
    let scale = match unit {
        "us" => 1.0,
        "ms" => 1_000.0,
        "s" => 1_000_000.0,
        other => return Err(format!("{other:?} is not a unit of time: us, ms or s")),
    };
    let us = number * scale;
    if !us.is_finite() || us < 0.0 || us > MAX_DELAY.as_micros() as f64 {
        return Err(format!("{value:?} is not between 0 and {MAX_DELAY:?}"));
    }
    Ok(us.round() as u64)
}

fn fraction(value: &str) -> Result<f64, String> {
    let (number, scale) = match value.strip_suffix('%') {
        Some(percent) => (percent, 100.0),
        None => (value, 1.0),
    };
    let share = number
        .parse::<f64>()
        .map_err(|_| format!("{value:?} is not a loss (0.5% or 0.005)"))?
        / scale;
    if !(0.0..=1.0).contains(&share) {
        return Err(format!("{value:?} is not between 0 and 100%"));
    }
    Ok(share)
}

/// What the router applies, as `DIR/wan.json` holds it; the router reads it again on SIGHUP.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct WanSettings {
    /// Sites.
    pub sites: usize,
    /// The figures of every site's link.
    pub link: Link,
    /// Sites whose link differs, by index.
    #[serde(default)]
    pub site_links: BTreeMap<usize, Link>,
    /// Sites cut off: every packet to or from them is dropped.
    #[serde(default)]
    pub isolated: BTreeSet<usize>,
}

/// What becomes of one packet.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Verdict {
    /// Delivered after the link's delay and jitter, unless lost.
    Cross(Link),
    /// Dropped: a site of the two is isolated, or an address is no site's.
    Drop,
}

impl WanSettings {
    /// The figures of one site's link.
    pub fn link_of(&self, site: usize) -> Link {
        self.site_links.get(&site).copied().unwrap_or(self.link)
    }

    /// What happens to a packet from site `from` to site `to`.
    pub fn verdict(&self, from: usize, to: usize) -> Verdict {
        if from >= self.sites
            || to >= self.sites
            || self.isolated.contains(&from)
            || self.isolated.contains(&to)
        {
            return Verdict::Drop;
        }
        Verdict::Cross(self.link_of(from).worst(self.link_of(to)))
    }

    /// Reads the file.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        serde_json::from_slice(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Writes the file (whole, then renamed into place, so the router never reads half).
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let partial = path.with_extension("json.partial");
        std::fs::write(&partial, serde_json::to_vec_pretty(self)?)?;
        std::fs::rename(&partial, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_parse_in_any_order_and_units() {
        let link: Link = "loss=0.5% delay=40ms, jitter=10ms".parse().unwrap();
        assert_eq!(link.delay(), Duration::from_millis(40));
        assert_eq!(link.jitter(), Duration::from_millis(10));
        assert!((link.loss - 0.005).abs() < 1e-12);
        let link: Link = "delay=1.5s loss=0.25".parse().unwrap();
        assert_eq!(link.delay(), Duration::from_millis(1500));
        assert_eq!(link.loss, 0.25);
        // Figures not named keep theirs.
        let changed = link.with("jitter=200us").unwrap();
        assert_eq!(changed.delay(), Duration::from_millis(1500));
        assert_eq!(changed.jitter(), Duration::from_micros(200));
    }

    #[test]
    fn bad_figures_are_refused_with_what_is_wrong() {
        for (spec, says) in [
            ("", "no link figure"),
            ("delay", "NAME=VALUE"),
            ("delay=40", "unit"),
            ("delay=40h", "unit of time"),
            ("delay=-4ms", "between"),
            ("delay=2min", "unit of time"),
            ("delay=61s", "between"),
            ("loss=101%", "between"),
            ("loss=much", "not a loss"),
            ("rate=1mbit", "not a link figure"),
            ("delay=10ms jitter=20ms", "larger than the delay"),
        ] {
            let err = spec.parse::<Link>().unwrap_err();
            assert!(err.contains(says), "{spec:?}: {err}");
        }
    }

    #[test]
    fn a_packet_crosses_the_worse_link_of_its_two_sites_and_none_of_an_isolated_one() {
        let mut settings = WanSettings {
            sites: 3,
            link: "delay=40ms jitter=10ms loss=0.5%".parse().unwrap(),
            ..WanSettings::default()
        };
        settings
            .site_links
            .insert(2, "delay=100ms jitter=0ms loss=0%".parse().unwrap());
        let Verdict::Cross(link) = settings.verdict(0, 2) else {
            panic!("dropped")
        };
        assert_eq!(link.delay(), Duration::from_millis(100));
        assert_eq!(link.jitter(), Duration::from_millis(10));
        assert!((link.loss - 0.005).abs() < 1e-12);
        assert_eq!(settings.verdict(0, 1), Verdict::Cross(settings.link));
        assert_eq!(settings.verdict(0, 3), Verdict::Drop, "no such site");
        settings.isolated.insert(1);
        assert_eq!(settings.verdict(0, 1), Verdict::Drop);
        assert_eq!(settings.verdict(1, 2), Verdict::Drop);
        assert!(matches!(settings.verdict(2, 0), Verdict::Cross(_)));
    }
}
