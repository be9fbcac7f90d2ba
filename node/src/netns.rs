//! Which named network namespace (`ip netns`, bind mounts under `/run/netns`) a process runs
//! in. A node in a namespace records its name in `node.json`, so that a client outside it
//! says where the API is instead of reaching whatever listens on the same address in its own
//! namespace. It does not enter namespaces: `ip netns exec` does that.

use std::os::unix::fs::MetadataExt as _;
use std::path::Path;

/// Where `ip netns` keeps its named namespaces.
const NAMED: &str = "/run/netns";

/// (device, inode) of a namespace file: two equal ones are the same namespace.
fn identity(path: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

fn current() -> Option<(u64, u64)> {
    identity(Path::new("/proc/self/ns/net"))
}

/// The name of the namespace this process runs in, if it is a named one other than the
/// machine's initial namespace.
pub fn current_name() -> Option<String> {
    let here = current()?;
    if identity(Path::new("/proc/1/ns/net")) == Some(here) {
        return None;
    }
    std::fs::read_dir(NAMED)
        .ok()?
        .flatten()
        .find(|entry| identity(&entry.path()) == Some(here))
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
}

/// Whether this process runs in the named namespace `name` (false if there is no such
/// namespace).
pub fn is_current(name: &str) -> bool {
    // A name is one path component: anything else cannot be a namespace `ip netns` made.
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return false;
    }
    let named = identity(&Path::new(NAMED).join(name));
    named.is_some() && named == current()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_that_is_not_a_namespace_is_not_the_current_one() {
        assert!(!is_current(""));
        assert!(!is_current("../../proc/self/ns/net"));
        assert!(!is_current("dta-no-such-namespace"));
    }
}
