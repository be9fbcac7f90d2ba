//! Testnets of sites joined by a simulated WAN (`dta testnet up --sites`): the delay, loss
//! and cuts the WAN router applies are measured on real TCP connections between the sites'
//! namespaces, custody works across sites and through a site cut off and rejoined, the
//! example scenarios pass with their nodes spread over three sites, and nothing is left
//! behind.
//!
//! `#[ignore]`d in a plain `cargo test`: it needs root. `scripts/test` runs it (as root in CI)
//! with `--ignored wan::`, and fails if it cannot.

use std::process::Command;

use serde_json::Value;

use crate::lan::{Down, root_links};
use crate::process::{dta_client, dta_output, run_to_end, succeed, succeed_blocking};

/// Whether a process runs (and is not a zombie its parent has not reaped yet).
fn alive(pid: u64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit(')')
            .next()
            .is_some_and(|rest| !rest.trim_start().starts_with('Z'))
    })
}

/// The median time, in milliseconds, of `count` TCP connections (one round trip each) from
/// inside `namespace` to `address:7071`; `None` if none completed within 3 s.
async fn connect_ms(namespace: &str, address: &str, count: usize) -> Option<f64> {
    let script = format!(
        "import socket, statistics, time\n\
         times = []\n\
         for _ in range({count}):\n\
         \x20   s = socket.socket(); s.settimeout(3)\n\
         \x20   t = time.perf_counter()\n\
         \x20   try: s.connect(('{address}', 7071))\n\
         \x20   except OSError: continue\n\
         \x20   times.append((time.perf_counter() - t) * 1000); s.close()\n\
         print(statistics.median(times) if times else 'none')\n"
    );
    let output = tokio::task::spawn_blocking({
        let namespace = namespace.to_owned();
        move || {
            Command::new("ip")
                .args(["netns", "exec", &namespace, "python3", "-c", &script])
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root for network namespaces: scripts/test runs it"]
async fn the_wan_between_sites_delays_drops_and_cuts_off_as_told_and_leaves_nothing_behind() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("wan");
    let dir_arg = dir.to_str().unwrap().to_owned();
    let links_before = root_links();
    let _down = Down(dir_arg.clone());
    let up = succeed_blocking(dta_client(&[
        "testnet",
        "up",
        "--dir",
        &dir_arg,
        "--sites",
        "3",
        "--nodes-per-site",
        "2",
        "--wan",
        "delay=40ms jitter=5ms",
        "--json",
    ]))
    .await;
    let testnet: Value = serde_json::from_slice(&up).unwrap();
    let nodes = testnet["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 6);
    let namespaces = testnet["namespaces"].as_array().unwrap();
    assert_eq!(namespaces.len(), 1 + 3 + 6, "a router, 3 bridges, 6 nodes");
    let router_pid = testnet["router"]["pid"].as_u64().unwrap();
    assert!(alive(router_pid));
    assert_eq!(root_links(), links_before, "nothing in the root namespace");
    let node0 = nodes[0]["namespace"].as_str().unwrap().to_owned();

    // node-0 is in site 0 with node-3 (10.214.0.2); node-1 in site 1, node-2 in site 2.
    let same_site = connect_ms(&node0, "10.214.0.2", 9).await.unwrap();
    let across = connect_ms(&node0, "10.214.1.1", 9).await.unwrap();
    assert!(same_site < 20.0, "within a site: {same_site} ms");
    assert!(
        (70.0..160.0).contains(&across),
        "across sites, two ways of 40 ± 5 ms: {across} ms"
    );

    // One site's link slower: only packets to and from it.
    let netem = |args: &[&str]| {
        let mut all = vec!["testnet", "netem", "--dir", &dir_arg];
        all.extend_from_slice(args);
        run_to_end(&mut dta_client(&all))
    };
    let (ok, stderr) = netem(&["--site", "2", "delay=100ms"]);
    assert!(ok, "{stderr}");
    let slow = connect_ms(&node0, "10.214.2.1", 5).await.unwrap();
    assert!(slow >= 190.0, "site 2 at 100 ms each way: {slow} ms");
    let still = connect_ms(&node0, "10.214.1.1", 5).await.unwrap();
    assert!(still < 160.0, "site 1 unchanged: {still} ms");

    // Bad figures and sites change nothing.
    let settings = std::fs::read_to_string(dir.join("wan.json")).unwrap();
    for (args, says) in [
        (&["delay=10ms", "jitter=50ms"][..], "larger than the delay"),
        (&["--site", "7", "delay=1ms"][..], "no site 7"),
        (&["speed=fast"][..], "not a link figure"),
    ] {
        let (ok, stderr) = netem(args);
        assert!(!ok && stderr.contains(says), "{args:?}: {stderr}");
    }
    assert_eq!(
        std::fs::read_to_string(dir.join("wan.json")).unwrap(),
        settings
    );

    // Total loss on site 1's link: no connection gets through; then none again.
    let (ok, stderr) = netem(&["--site", "1", "loss=100%"]);
    assert!(ok, "{stderr}");
    assert_eq!(connect_ms(&node0, "10.214.1.1", 1).await, None);
    let (ok, stderr) = netem(&["--site", "1", "loss=0%"]);
    assert!(ok, "{stderr}");
    assert!(connect_ms(&node0, "10.214.1.1", 1).await.is_some());

    // A site cut off, then rejoined.
    let isolate = |args: &[&str]| {
        let mut all = vec!["testnet", "isolate-site", "--dir", &dir_arg];
        all.extend_from_slice(args);
        succeed(&mut dta_client(&all))
    };
    isolate(&["--site", "1"]);
    assert_eq!(connect_ms(&node0, "10.214.1.1", 1).await, None);
    assert!(
        connect_ms(&node0, "10.214.2.1", 1).await.is_some(),
        "site 2 is not cut off"
    );
    let rejoined: Value = serde_json::from_slice(&isolate(&["--rejoin", "--json"])).unwrap();
    assert_eq!(rejoined["isolated"], serde_json::json!([]), "{rejoined}");
    assert!(connect_ms(&node0, "10.214.1.1", 1).await.is_some());

    succeed_blocking(dta_client(&["testnet", "down", "--dir", &dir_arg])).await;
    assert!(!alive(router_pid), "the router is stopped");
    let left = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let left = String::from_utf8_lossy(&left.stdout);
    for namespace in namespaces {
        assert!(!left.contains(namespace.as_str().unwrap()), "{left}");
    }
    assert_eq!(root_links(), links_before);
    assert!(
        dir.join("logs/wan-router.log").exists(),
        "the router's log is kept"
    );
}

/// Runs a scenario with `--json` and extra arguments; its report, whether or not a step
/// failed (the callers' assertions show it).
async fn scenario(file: &std::path::Path, extra: &[&str]) -> Value {
    let mut args = vec![
        "scenario".to_owned(),
        "run".to_owned(),
        file.to_str().unwrap().to_owned(),
        "--json".to_owned(),
    ];
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    let output = dta_output(args).await;
    serde_json::from_slice(&output.stdout).unwrap_or_else(|err| {
        panic!(
            "{}: no report ({err}): {}",
            file.display(),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root for network namespaces: scripts/test runs it"]
async fn custody_crosses_sites_waits_out_a_site_cut_off_and_every_example_passes_across_sites() {
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../testnet/scenarios");
    let links_before = root_links();
    let cut_off = scenario(&examples.join("wan/a-site-cut-off.toml"), &[]).await;
    assert_eq!(cut_off["failed"], 0, "{cut_off}");
    assert!(cut_off["passed"].as_u64().unwrap() >= 10, "{cut_off}");
    // Dials that cross on the link (failed three runs in four when nodes dialed from their
    // listening port).
    let crossed = scenario(&examples.join("wan/dials-cross.toml"), &[]).await;
    assert_eq!(crossed["failed"], 0, "{crossed}");
    assert_eq!(crossed["passed"], 5, "{crossed}");
    let mut examples_run = 0;
    for entry in std::fs::read_dir(&examples).unwrap() {
        let file = entry.unwrap().path();
        if file.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let report = scenario(&file, &["--sites", "3"]).await;
        assert_eq!(
            report["failed"],
            0,
            "{} across 3 sites: {report}",
            file.display()
        );
        examples_run += 1;
    }
    assert!(examples_run >= 9, "{examples_run} examples");
    assert_eq!(
        root_links(),
        links_before,
        "the scenarios' namespaces are gone"
    );
}
