//! Gives the memory glibc's malloc holds free back to the kernel, every [`INTERVAL`].
//!
//! The `dta` command allocates with jemalloc, which returns free pages itself; glibc's malloc
//! still serves the C and C++ libraries (RocksDB's memtables and caches) and any program that
//! embeds a node without choosing an allocator. It keeps what a process frees for its own
//! reuse, and returns to the kernel only what lies at the very top of its heaps. A node joining a large network briefly holds dozens
//! of connections (each Kademlia query reaches about twenty peers) and then closes most of
//! them; what those connections used stays in the process, scattered between live blocks.
//! `malloc_trim` hands every whole free page of every arena back. It costs about a
//! millisecond, off the async workers.
//!
//! It does nothing on other C libraries.

use std::time::Duration;

/// How often free memory goes back.
pub const INTERVAL: Duration = Duration::from_secs(30);

/// Gives free memory back every [`INTERVAL`], until dropped (abort the task to stop).
pub async fn give_back_every_interval() {
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let _ = tokio::task::spawn_blocking(give_back).await;
    }
}

/// Gives the allocator's free pages back to the kernel now; whether any went back.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn give_back() -> bool {
    // SAFETY: `malloc_trim` takes no pointer and has no precondition; glibc locks each arena
    // while it trims it, so any thread may call it at any time.
    unsafe { libc::malloc_trim(0) == 1 }
}

/// Gives the allocator's free pages back to the kernel now: nothing to do here.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn give_back() -> bool {
    false
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::*;

    /// Resident anonymous memory of this process, in KiB.
    fn anonymous_kib() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("RssAnon:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    #[test]
    fn memory_freed_between_live_blocks_goes_back() {
        // 64 MiB in 16 KiB blocks, every other one kept: the freed half lies between live
        // blocks, where freeing alone cannot hand it back.
        let mut blocks: Vec<Vec<u8>> = (0..4096).map(|_| vec![1u8; 16 * 1024]).collect();
        let kept: Vec<Vec<u8>> = blocks
            .drain(..)
            .enumerate()
            .filter_map(|(index, block)| (index % 2 == 0).then_some(block))
            .collect();
        let before = anonymous_kib();
        assert!(give_back(), "free pages went back");
        let after = anonymous_kib();
        assert!(
            before.saturating_sub(after) >= 16 * 1024,
            "at least a quarter of the 32 MiB freed went back: {before} KiB, then {after} KiB"
        );
        assert_eq!(kept.len(), 2048);
    }
}
