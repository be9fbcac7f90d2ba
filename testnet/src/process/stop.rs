//! Stopping processes: `down`, which stops a whole testnet and removes what `up` made, and
//! `stop_node`, which stops one node and leaves its home for a restart.
//!
//! A pid is signalled only while `/proc/PID/cmdline` is still a `dta run` of that node's home,
//! so a pid reused by another process is never touched.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::{
    TESTNET_FILE, TestnetError, TestnetNode, find, io, is_our_node, kept_log, lan, load, logs_dir,
};

/// What `down` did.
#[derive(Debug, Clone, Serialize)]
pub struct DownReport {
    /// Nodes stopped by SIGTERM.
    pub stopped: usize,
    /// Nodes that had to be killed.
    pub killed: usize,
    /// Nodes that were not running any more.
    pub gone: usize,
    /// Where the nodes' logs were kept (none with [`Logs::Purge`]).
    pub logs: Option<PathBuf>,
}

/// What `down` does with the nodes' logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logs {
    /// Keep each node's log as `DIR/logs/NODE.log`.
    Keep,
    /// Remove them with the homes (and any kept before).
    Purge,
}

/// How long stopping processes may take before they are killed.
pub(super) const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// Stops the testnet's processes (only those `up` started) and removes what `up` made; the
/// nodes' logs are kept in `DIR/logs/` unless `logs` says purge.
pub async fn down(dir: &Path, logs: Logs) -> Result<DownReport, TestnetError> {
    let testnet = load(dir)?;
    let mut report = DownReport {
        stopped: 0,
        killed: 0,
        gone: 0,
        logs: None,
    };
    let running: Vec<&TestnetNode> = testnet
        .nodes
        .iter()
        .filter(|n| is_our_node(n.pid, &n.home))
        .collect();
    report.gone = testnet.nodes.len() - running.len();
    for node in &running {
        signal("-TERM", node.pid);
    }
    let started = Instant::now();
    while started.elapsed() < STOP_TIMEOUT && running.iter().any(|n| is_our_node(n.pid, &n.home)) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for node in &running {
        if is_our_node(node.pid, &node.home) {
            signal("-KILL", node.pid);
            report.killed += 1;
        } else {
            report.stopped += 1;
        }
    }
    if let Some(router) = &testnet.router {
        router.stop().await;
    }
    lan::remove(&testnet.namespaces);
    for node in &testnet.nodes {
        if node.home.starts_with(dir) {
            if logs == Logs::Keep {
                keep_log(dir, &node.home);
            }
            std::fs::remove_dir_all(&node.home).map_err(io(&node.home))?;
        }
    }
    for file in [
        TESTNET_FILE,
        "passphrase",
        "pkcs11-pin",
        super::router::SETTINGS_FILE,
    ] {
        let path = dir.join(file);
        if path.exists() {
            std::fs::remove_file(&path).map_err(io(&path))?;
        }
    }
    let kept = logs_dir(dir);
    match logs {
        Logs::Keep if kept.exists() => report.logs = Some(kept),
        Logs::Keep => {}
        Logs::Purge if kept.exists() => {
            std::fs::remove_dir_all(&kept).map_err(io(&kept))?;
        }
        Logs::Purge => {}
    }
    Ok(report)
}

/// SIGKILLs every `dta run` whose home is under `dir`: for a testnet cut short while it came
/// up, before `testnet.json` named its nodes. Returns how many it killed.
pub fn reap(dir: &Path) -> usize {
    let Ok(processes) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let dir = dir.as_os_str().as_encoded_bytes();
    let mut killed = 0;
    for pid in processes
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
    {
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let home_under_dir = args
            .windows(2)
            .any(|pair| pair[0] == b"--home" && pair[1].starts_with(dir));
        if args.contains(&&b"run"[..]) && home_under_dir {
            signal("-KILL", pid);
            killed += 1;
        }
    }
    killed
}

/// Stops one node of a testnet (SIGTERM, or SIGKILL for a crash) and waits until it is gone.
pub async fn stop_node(dir: &Path, name: &str, crash: bool) -> Result<(), TestnetError> {
    let testnet = load(dir)?;
    let node = find(&testnet, name)?;
    if !is_our_node(node.pid, &node.home) {
        return Err(TestnetError::Invalid(format!("{name} is not running")));
    }
    let signal = if crash { "-KILL" } else { "-TERM" };
    let _ = Command::new("kill")
        .args([signal, &node.pid.to_string()])
        .status();
    let started = Instant::now();
    // Its command line empties when its memory goes, before its files (the database's lock
    // among them) are closed: it is gone only once it has exited.
    while is_our_node(node.pid, &node.home) || !has_exited(node.pid) {
        if started.elapsed() > Duration::from_secs(15) {
            return Err(TestnetError::Invalid(format!("{name} did not stop")));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Whether process `pid` is gone or a zombie with every thread exited: only then are its
/// files closed (the leader thread turns zombie while other threads may still hold them).
pub(super) fn has_exited(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return true;
    };
    tasks.flatten().all(|task| {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            return true;
        };
        // `tid (comm) state ...`: the state follows the last ')', as comm may hold one.
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .is_none_or(|state| matches!(state, 'Z' | 'X' | 'x'))
    })
}

pub(super) fn signal(name: &str, pid: u32) {
    let _ = Command::new("kill")
        .args([name, &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Moves a home's log to `DIR/logs/NAME.log` (NAME: the home's directory name), if it has one.
pub(super) fn keep_log(dir: &Path, home_dir: &Path) {
    let log = home_dir.join("log");
    let Some(name) = home_dir.file_name() else {
        return;
    };
    if log.exists() && std::fs::create_dir_all(logs_dir(dir)).is_ok() {
        let _ = std::fs::rename(&log, kept_log(dir, &name.to_string_lossy()));
    }
}
