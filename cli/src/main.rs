//! The `dta` command (see the `dta_cli` library) and its allocator: jemalloc, its options, and
//! when a worker thread hands its cache of freed memory back.

use std::cell::Cell;
use std::time::{Duration, Instant};

/// jemalloc rather than glibc's malloc. A node makes and drops a set of small allocations for
/// every message; jemalloc's thread caches make those cheaper (about a tenth of the CPU of a
/// custody order went to glibc's malloc and free), and what a node frees it hands back to the
/// kernel at once, where glibc left it scattered between live blocks. The C and C++ libraries
/// (RocksDB) still use glibc's malloc; `dta_node::memory` trims that one.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read at its first allocation (`_RJEM_MALLOC_CONF` in the environment
/// overrides them). One arena: a node has few threads, and with one arena each (jemalloc's
/// default is four per core) every thread kept free memory of its own; a 100-node testnet
/// settled at 12.8 MiB of anonymous memory per node with them, 10.8 with one. Free pages go
/// back at once rather than after a while: jemalloc has no thread of its own here to return
/// them later, so they stayed until the node next allocated (0.5 to 1 MiB per node of a
/// 100-node testnet). A custody benchmark showed no difference in three alternating pairs.
#[allow(unsafe_code, non_upper_case_globals)]
// SAFETY: jemalloc reads this symbol as a `const char *` to a NUL-terminated string. A
// reference to a byte array (not a slice, whose reference carries a length too) is that one
// pointer, and the string is static and ends in NUL.
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static malloc_conf: &[u8; 44] = b"narenas:1,dirty_decay_ms:0,muzzy_decay_ms:0\0";

/// How often, at most, a worker thread hands its cache back.
const CACHE_RETURN_INTERVAL: Duration = Duration::from_secs(1);

thread_local! {
    /// When this thread last handed its cache back.
    static CACHE_RETURNED: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Whether a thread that last handed its cache back at `last` should do so again at `now`.
fn cache_return_due(last: Option<Instant>, now: Instant) -> bool {
    last.is_none_or(|last| now.duration_since(last) >= CACHE_RETURN_INTERVAL)
}

/// Runs each time a runtime worker runs out of work: hands the thread's cache of freed blocks
/// back to the arena, at most once per [`CACHE_RETURN_INTERVAL`]. Each thread keeps up to a
/// few hundred freed blocks of every size for its next allocations, which is what makes them
/// cheap under load; a node that then idled kept them for good (1.0 to 1.3 MiB per node of a
/// 100-node testnet). Turning the caches off cost a custody benchmark 10 to 25 % of its
/// throughput. Handing them back when idle took the settled anonymous memory of a 100-node
/// testnet from 11.1 and 10.8 MiB per node to 10.4 and 10.3 (two alternating pairs), for
/// about 3 % of the benchmark's cycles, within this machine's noise; a busy thread refills its
/// cache within a few hundred allocations.
fn on_worker_idle() {
    let now = Instant::now();
    CACHE_RETURNED.with(|returned| {
        if cache_return_due(returned.get(), now) {
            returned.set(Some(now));
            let _ = return_thread_cache();
        }
    });
}

/// Hands the calling thread's cache of freed blocks back to jemalloc's arena; whether
/// jemalloc took the request.
#[allow(unsafe_code)]
fn return_thread_cache() -> bool {
    // SAFETY: "thread.tcache.flush" takes and returns no value, so every pointer is null and
    // the length 0, as jemalloc's manual documents for it; the name is a NUL-terminated
    // static string.
    let status = unsafe {
        tikv_jemalloc_sys::mallctl(
            c"thread.tcache.flush".as_ptr(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            0,
        )
    };
    status == 0
}

fn main() -> std::process::ExitCode {
    dta_cli::main(on_worker_idle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_hands_its_cache_back_when_it_first_idles_then_once_a_second() {
        let start = Instant::now();
        assert!(cache_return_due(None, start));
        assert!(!cache_return_due(Some(start), start));
        assert!(!cache_return_due(
            Some(start),
            start + CACHE_RETURN_INTERVAL - Duration::from_millis(1)
        ));
        assert!(cache_return_due(Some(start), start + CACHE_RETURN_INTERVAL));
    }

    #[test]
    fn jemalloc_takes_the_request_to_hand_a_thread_cache_back() {
        let blocks: Vec<Vec<u8>> = (0..1000).map(|i| vec![0u8; 16 + i % 512]).collect();
        drop(blocks);
        assert!(return_thread_cache());
    }
}
