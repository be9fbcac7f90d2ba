//! The `dta` command (see the `dta_cli` library).

/// jemalloc rather than glibc's malloc. A node makes and drops a set of small allocations for
/// every message; jemalloc's thread caches make those cheaper (about a tenth of the CPU of a
/// custody order went to glibc's malloc and free), and what a node frees it hands back to the
/// kernel within a second, where glibc left it scattered between live blocks. The C and C++
/// libraries (RocksDB) still use glibc's malloc; `dta_node::memory` trims that one.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read at its first allocation (`_RJEM_MALLOC_CONF` in the environment
/// overrides them). One arena: a node has few threads, and with one arena each (jemalloc's
/// default is four per core) every thread kept free memory of its own; a 100-node testnet
/// settled at 12.8 MiB of anonymous memory per node with them, 10.8 with one. Free pages go
/// back after a second instead of ten.
#[allow(unsafe_code, non_upper_case_globals)]
// SAFETY: jemalloc reads this symbol as a `const char *` to a NUL-terminated string. A
// reference to a byte array (not a slice, whose reference carries a length too) is that one
// pointer, and the string is static and ends in NUL.
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static malloc_conf: &[u8; 47] = b"narenas:1,dirty_decay_ms:1000,muzzy_decay_ms:0\0";

fn main() -> std::process::ExitCode {
    dta_cli::main()
}
