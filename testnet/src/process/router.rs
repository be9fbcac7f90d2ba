//! The WAN router process of a testnet with sites: started in the router namespace by `up`
//! (before any node), given new link figures or isolated sites by rewriting `DIR/wan.json`
//! and a SIGHUP (`dta testnet netem|isolate-site`, the scenario steps of the same names and
//! `heal`), and stopped by `down` before the namespaces go. Like a node, it is signalled only
//! while `/proc/PID/cmdline` is still the router of that testnet.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::launch::spawn_detached;
use super::stop::{has_exited, signal};
use super::{TestnetError, io, load, logs_dir};
use crate::wan::link::WanSettings;
use crate::wan::router::ROUTING;

/// The settings file, in the testnet's directory.
pub const SETTINGS_FILE: &str = "wan.json";

/// The router's log, among the kept logs.
pub const LOG_FILE: &str = "wan-router.log";

/// How long `up` waits for the router to attach to its device.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// The router of a testnet with sites, as `testnet.json` records it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RouterProcess {
    /// Process id.
    pub pid: u32,
    /// The namespace it runs in.
    pub namespace: String,
    /// Its settings file.
    pub settings: PathBuf,
}

impl RouterProcess {
    /// Whether `pid` is still this router (not a reused pid of something else).
    pub fn is_running(&self) -> bool {
        let Ok(cmdline) = std::fs::read(format!("/proc/{}/cmdline", self.pid)) else {
            return false;
        };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        args.contains(&&b"wan-router"[..])
            && args.contains(&self.settings.as_os_str().as_encoded_bytes())
    }

    /// Stops it (SIGTERM, then SIGKILL after a few seconds).
    pub async fn stop(&self) {
        if !self.is_running() {
            return;
        }
        signal("-TERM", self.pid);
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(5) && self.is_running() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if self.is_running() {
            signal("-KILL", self.pid);
        }
    }
}

/// Writes the settings and starts `binary testnet wan-router` in `namespace`; answers once
/// it routes.
pub async fn start(
    dir: &Path,
    binary: &Path,
    namespace: &str,
    settings: &WanSettings,
) -> Result<RouterProcess, TestnetError> {
    let settings_path = dir.join(SETTINGS_FILE);
    settings.save(&settings_path).map_err(io(&settings_path))?;
    let logs = logs_dir(dir);
    std::fs::create_dir_all(&logs).map_err(io(&logs))?;
    let log_path = logs.join(LOG_FILE);
    let command: Vec<String> = ["ip", "netns", "exec", namespace]
        .into_iter()
        .map(str::to_owned)
        .chain([binary.display().to_string()])
        .chain(["testnet", "wan-router", "--settings"].map(str::to_owned))
        .chain([settings_path.display().to_string()])
        .collect();
    let router = RouterProcess {
        pid: spawn_detached(&command, &log_path, &[])?,
        namespace: namespace.to_owned(),
        settings: settings_path,
    };
    let started = Instant::now();
    loop {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        if text.contains(ROUTING) {
            return Ok(router);
        }
        if started.elapsed() > START_TIMEOUT || has_exited(router.pid) {
            router.stop().await;
            return Err(TestnetError::Invalid(format!(
                "the WAN router did not start; see {}",
                log_path.display()
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Changes the WAN of the testnet in `dir` with `change`, and has its router apply it; answers
/// with the settings now in force. A change `change` refuses changes nothing.
fn change(
    dir: &Path,
    change: impl FnOnce(&mut WanSettings) -> Result<(), String>,
) -> Result<WanSettings, TestnetError> {
    let testnet = load(dir)?;
    let router = testnet.router.ok_or_else(|| {
        TestnetError::Invalid(format!(
            "the testnet in {} has no sites (start it with --sites)",
            dir.display()
        ))
    })?;
    if !router.is_running() {
        return Err(TestnetError::Invalid(format!(
            "its WAN router (pid {}) is not running",
            router.pid
        )));
    }
    let mut settings = WanSettings::load(&router.settings).map_err(TestnetError::Invalid)?;
    change(&mut settings).map_err(TestnetError::Invalid)?;
    settings
        .save(&router.settings)
        .map_err(io(&router.settings))?;
    signal("-HUP", router.pid);
    Ok(settings)
}

/// Changes link figures (`delay=100ms loss=2%`; figures not named keep theirs) of one site's
/// link, or of every site's.
pub fn netem(dir: &Path, site: Option<usize>, figures: &str) -> Result<WanSettings, TestnetError> {
    change(dir, |wan| {
        let sites: Vec<usize> = match site {
            Some(site) => vec![checked(wan, site)?],
            None => {
                wan.link = wan.link.with(figures)?;
                wan.site_links.keys().copied().collect()
            }
        };
        for site in sites {
            let link = wan.link_of(site).with(figures)?;
            wan.site_links.insert(site, link);
        }
        Ok(())
    })
}

/// Cuts a site off: every packet to or from it is dropped until [`rejoin`].
pub fn isolate(dir: &Path, site: usize) -> Result<WanSettings, TestnetError> {
    change(dir, |wan| {
        wan.isolated.insert(checked(wan, site)?);
        Ok(())
    })
}

/// Ends every site's isolation; answers how many sites rejoined, and the settings now.
pub fn rejoin(dir: &Path) -> Result<(usize, WanSettings), TestnetError> {
    let mut rejoined = 0;
    let settings = change(dir, |wan| {
        rejoined = wan.isolated.len();
        wan.isolated.clear();
        Ok(())
    })?;
    Ok((rejoined, settings))
}

/// A site index checked against the settings.
fn checked(settings: &WanSettings, site: usize) -> Result<usize, String> {
    if site < settings.sites {
        Ok(site)
    } else {
        Err(format!(
            "no site {site}: the sites are 0 to {}",
            settings.sites - 1
        ))
    }
}
