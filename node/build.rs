//! Records the git commit the node is built from (`DTA_GIT_COMMIT`: HEAD, not whatever is
//! changed in the work tree), for `dta --version` and `/v2/node`. A build outside a git
//! checkout says `unknown`. Only the files that change when HEAD moves are watched, so an
//! ordinary build does not run this again.

use std::path::{Path, PathBuf};
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).output().ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8(output.stdout).ok()?;
    Some(text.trim().to_owned()).filter(|t| !t.is_empty())
}

/// The files whose change means another commit: HEAD, the branch it names (loose, or the
/// packed refs), and only those that exist (a missing one would make cargo run this always).
fn watched(git_dir: &Path) -> Vec<PathBuf> {
    let head = git_dir.join("HEAD");
    let mut files = vec![head.clone()];
    if let Some(branch) = std::fs::read_to_string(&head)
        .ok()
        .and_then(|h| h.strip_prefix("ref: ").map(|r| r.trim().to_owned()))
    {
        files.push(git_dir.join(branch));
        files.push(git_dir.join("packed-refs"));
    }
    files.into_iter().filter(|f| f.exists()).collect()
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let commit = git(&["rev-parse", "--short=12", "HEAD"]);
    if let Some(git_dir) = git(&["rev-parse", "--absolute-git-dir"]) {
        for file in watched(Path::new(&git_dir)) {
            println!("cargo:rerun-if-changed={}", file.display());
        }
    }
    let commit = commit.unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=DTA_GIT_COMMIT={commit}");
}
