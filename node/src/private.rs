//! Files and directories private to their owner: the modes every file of a home gets, the
//! write that sets them whatever the umask and whatever mode an earlier file had, and the
//! umask the commands that create or run a home set. Which files a home holds is `home`'s
//! business.

use std::fs::{OpenOptions, Permissions};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

/// Mode of a home and of every directory in it: the owner only.
pub const DIR_MODE: u32 = 0o700;
/// Mode of every file in a home: the owner only.
pub const FILE_MODE: u32 = 0o600;

/// Writes `bytes` to `path` (created or truncated) with mode 0600, whatever the umask and
/// whatever mode an earlier file of that name had. For every file of a home, and for the
/// files that hold a passphrase or PIN.
pub fn write_private_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(FILE_MODE)
        .open(path)?;
    // The mode given at creation does nothing to a file that already existed.
    file.set_permissions(Permissions::from_mode(FILE_MODE))?;
    file.write_all(bytes)
}

/// Makes everything this process creates from now on private to its owner (umask 077).
///
/// The commands that create, run or migrate a home call it first: RocksDB creates its files
/// (tables, logs, manifests) itself, all the time a node runs, with the modes the umask
/// leaves. The umask belongs to the whole process, so the library never sets it on its own
/// (in-process test networks keep theirs).
pub fn restrict_umask() {
    rustix::process::umask(rustix::fs::Mode::RWXG | rustix::fs::Mode::RWXO);
}
