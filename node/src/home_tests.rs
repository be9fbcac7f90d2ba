use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use dta_hsm::KdfParams;

use super::{KeystoreChoice, LooseMode, SecretFiles, init, loose_modes};
use crate::config::Config;

/// Argon2id cheap enough for a unit test.
fn quick_kdf() -> KdfParams {
    KdfParams {
        memory_kib: 256,
        iterations: 1,
        ..KdfParams::recommended()
    }
}

/// A new soft-keystore home under `root`.
fn new_home(root: &Path) -> PathBuf {
    let home = root.join("home");
    let passphrase = root.join("passphrase");
    std::fs::write(&passphrase, "unit test passphrase").unwrap();
    init(
        &home,
        "private",
        false,
        SecretFiles {
            passphrase_file: Some(passphrase),
            pin_file: None,
        },
        KeystoreChoice::Soft {
            kdf: quick_kdf(),
            insecure_passphrase: false,
        },
    )
    .expect("the home is made");
    home
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o7777
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn a_new_home_is_private_whatever_the_umask() {
    // The usual umask, under which what a process creates without asking is readable by all.
    let previous = rustix::process::umask(rustix::fs::Mode::WGRP | rustix::fs::Mode::WOTH);
    let root = tempfile::tempdir().unwrap();
    let home = new_home(root.path());
    rustix::process::umask(previous);

    assert_eq!(mode(&home), 0o700);
    assert_eq!(mode(&home.join("db")), 0o700);
    for file in ["config.toml", "node.key", "keystore.toml"] {
        assert_eq!(mode(&home.join(file)), 0o600, "{file}");
    }
    // The files RocksDB created itself too, not only those `init` wrote.
    let db_files: Vec<PathBuf> = std::fs::read_dir(home.join("db"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    assert!(!db_files.is_empty());
    for path in &db_files {
        assert_eq!(mode(path) & 0o077, 0, "{}", path.display());
    }
    assert_eq!(loose_modes(&home).unwrap(), Vec::<LooseMode>::new());
}

#[test]
fn loose_modes_names_every_path_open_to_others() {
    let root = tempfile::tempdir().unwrap();
    let home = new_home(root.path());
    assert_eq!(loose_modes(&home).unwrap(), Vec::<LooseMode>::new());

    let db_file = std::fs::read_dir(home.join("db"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| path.is_file())
        .expect("a database file");
    chmod(&home, 0o755);
    chmod(&home.join("keystore.toml"), 0o644);
    chmod(&db_file, 0o640);
    // A symbolic link's own mode means nothing, and what it points at is not the home's.
    std::os::unix::fs::symlink("/etc/hostname", home.join("elsewhere")).unwrap();
    let mut expected = vec![
        LooseMode {
            path: home.clone(),
            mode: 0o755,
        },
        LooseMode {
            path: home.join("keystore.toml"),
            mode: 0o644,
        },
        LooseMode {
            path: db_file,
            mode: 0o640,
        },
    ];
    expected.sort();
    assert_eq!(loose_modes(&home).unwrap(), expected);

    // Saving the config makes a loosened config file private again.
    chmod(&home.join("config.toml"), 0o666);
    Config::load(&home).unwrap().save(&home).unwrap();
    assert_eq!(mode(&home.join("config.toml")), 0o600);
}
