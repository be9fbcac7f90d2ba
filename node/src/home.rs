//! A node's home directory: creating it (`dta init`) and opening it (`dta run`).
//!
//! ```text
//! HOME/config.toml     configuration (no secrets)
//! HOME/node.key        the libp2p Ed25519 key (protobuf encoding, mode 0600)
//! HOME/keystore.toml   Argon2id parameters and the passphrase check blob
//! HOME/db/             rocksdb: blocks, identities, orders, keystore (wrapped), metadata
//! HOME/node.json       written once the node is ready, removed on clean shutdown
//! ```

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use dta_actors::store::{Column, Store, StoreError};
use dta_crypto::Secret;
use dta_hsm::{KdfParams, Keystore, KeystoreError, SoftKeystore};
use dta_protocol::identity::{IdentityError, LocalIdentity};
use libp2p::PeerId;
use libp2p::identity::Keypair;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::config::{Config, ConfigError, HOME_VERSION};

/// Environment variable holding the keystore passphrase.
pub const PASSPHRASE_ENV: &str = "DTA_PASSPHRASE";
/// Keystore name of the identity seed.
pub const IDENTITY_SEED: &str = "identity-seed";
/// Metadata key of this node's own identity document.
pub const OWN_IDENTITY: &[u8] = b"own-identity";

/// Why a home could not be created or opened.
#[derive(Debug, thiserror::Error)]
pub enum HomeError {
    /// `init` on an existing home without `--force`.
    #[error("{0} already holds a dta node; pass --force to replace it (its identity is lost)")]
    Exists(String),
    /// A file problem.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// No passphrase available.
    #[error("no keystore passphrase: set {PASSPHRASE_ENV} or passphrase_file in config.toml")]
    NoPassphrase,
    /// The keystore refused.
    #[error(transparent)]
    Keystore(#[from] KeystoreError),
    /// The database.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The identity.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// A file of the home is damaged.
    #[error("{path} is damaged: {message}")]
    Damaged {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> HomeError + '_ {
    move |source| HomeError::Io {
        path: path.display().to_string(),
        source,
    }
}

#[derive(Serialize, Deserialize)]
struct KeystoreFile {
    version: u32,
    backend: String,
    memory_kib: u32,
    iterations: u32,
    parallelism: u32,
    salt: String,
    check: String,
}

/// What `init` made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitReport {
    /// Identity CID.
    pub identity: String,
    /// libp2p peer id.
    pub peer_id: String,
}

/// Reads the passphrase from `DTA_PASSPHRASE` or the configured file.
pub fn passphrase(file: Option<&Path>) -> Result<Zeroizing<Vec<u8>>, HomeError> {
    if let Some(value) = std::env::var_os(PASSPHRASE_ENV) {
        return Ok(Zeroizing::new(value.into_encoded_bytes()));
    }
    let Some(file) = file else {
        return Err(HomeError::NoPassphrase);
    };
    let text = Zeroizing::new(std::fs::read(file).map_err(io(file))?);
    // A trailing newline from `echo pass > file` is not part of the passphrase.
    let end = text
        .iter()
        .rposition(|b| *b != b'\n' && *b != b'\r')
        .map_or(0, |i| i + 1);
    Ok(Zeroizing::new(text[..end].to_vec()))
}

/// Creates a home: config, node key, keystore, identity.
pub fn init(
    home: &Path,
    name: &str,
    force: bool,
    passphrase_file: Option<PathBuf>,
    kdf: KdfParams,
) -> Result<InitReport, HomeError> {
    let config_path = home.join("config.toml");
    if config_path.exists() || home.join("db").exists() {
        if !force {
            return Err(HomeError::Exists(home.display().to_string()));
        }
        for file in ["config.toml", "node.key", "keystore.toml", "node.json"] {
            let path = home.join(file);
            if path.exists() {
                std::fs::remove_file(&path).map_err(io(&path))?;
            }
        }
        let db = home.join("db");
        if db.exists() {
            std::fs::remove_dir_all(&db).map_err(io(&db))?;
        }
    }
    std::fs::create_dir_all(home).map_err(io(home))?;
    let mut config = Config::new(name);
    config.passphrase_file = passphrase_file;
    let passphrase = passphrase(config.passphrase_file.as_deref())?;
    let keystore = SoftKeystore::derive(&passphrase, &kdf)?;

    let keypair = Keypair::generate_ed25519();
    let key_path = home.join("node.key");
    let encoded =
        Zeroizing::new(
            keypair
                .to_protobuf_encoding()
                .map_err(|e| HomeError::Damaged {
                    path: key_path.display().to_string(),
                    message: e.to_string(),
                })?,
        );
    write_private(&key_path, &encoded)?;

    let keystore_file = KeystoreFile {
        version: HOME_VERSION,
        backend: keystore.backend().to_owned(),
        memory_kib: kdf.memory_kib,
        iterations: kdf.iterations,
        parallelism: kdf.parallelism,
        salt: hex::encode(kdf.salt),
        check: hex::encode(keystore.check_blob()?),
    };
    let keystore_path = home.join("keystore.toml");
    let text = toml::to_string_pretty(&keystore_file).map_err(|e| HomeError::Damaged {
        path: keystore_path.display().to_string(),
        message: e.to_string(),
    })?;
    std::fs::write(&keystore_path, text).map_err(io(&keystore_path))?;

    let store = Store::open(&home.join("db"))?;
    let seed = Secret::<32>::random();
    store.put_durable(
        Column::Keystore,
        IDENTITY_SEED.as_bytes(),
        &keystore.wrap(IDENTITY_SEED, seed.expose())?,
    )?;
    let peer_id = keypair.public().to_peer_id();
    let created_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let local = LocalIdentity::create(&seed, name, &peer_id.to_bytes(), created_at)?;
    let document = dta_protocol::dagcbor::encode(local.identity().document())
        .map_err(|e| HomeError::Identity(e.into()))?;
    store.put_durable(Column::Metadata, OWN_IDENTITY, &document)?;
    store.put_durable(Column::Identities, &local.cid().to_bytes(), &document)?;
    store.flush()?;
    // The config goes last: a home is only a home once everything else is in place.
    config.save(home).map_err(io(&config_path))?;
    Ok(InitReport {
        identity: local.cid().to_string(),
        peer_id: peer_id.to_string(),
    })
}

/// An opened home: everything a node needs to start.
#[derive(Debug)]
pub struct OpenHome {
    /// The configuration.
    pub config: Config,
    /// The libp2p key.
    pub keypair: Keypair,
    /// The database.
    pub store: Store,
    /// The keystore.
    pub keystore: SoftKeystore,
    /// This node's identity and keys.
    pub identity: LocalIdentity,
    /// The identities this node hosts (`POST /v1/identity`).
    pub hosted: Vec<LocalIdentity>,
}

/// Key prefix of hosted identities: their wrapped seeds in the keystore column, their
/// documents in the metadata column.
pub const HOSTED_PREFIX: &str = "hosted/";

/// Opens a home: reads the config and node key, unlocks the keystore, loads the identity.
pub fn open(home: &Path) -> Result<OpenHome, HomeError> {
    let config = Config::load(home)?;
    let passphrase = passphrase(config.passphrase_file.as_deref())?;
    let key_path = home.join("node.key");
    let encoded = Zeroizing::new(std::fs::read(&key_path).map_err(io(&key_path))?);
    let keypair = Keypair::from_protobuf_encoding(&encoded).map_err(|e| HomeError::Damaged {
        path: key_path.display().to_string(),
        message: e.to_string(),
    })?;
    let keystore_path = home.join("keystore.toml");
    let damaged = |message: String| HomeError::Damaged {
        path: keystore_path.display().to_string(),
        message,
    };
    let text = std::fs::read_to_string(&keystore_path).map_err(io(&keystore_path))?;
    let file: KeystoreFile = toml::from_str(&text).map_err(|e| damaged(e.to_string()))?;
    let salt: [u8; 16] = hex::decode(&file.salt)
        .ok()
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| damaged("bad salt".into()))?;
    let check = hex::decode(&file.check).map_err(|e| damaged(e.to_string()))?;
    let keystore = SoftKeystore::derive(
        &passphrase,
        &KdfParams {
            memory_kib: file.memory_kib,
            iterations: file.iterations,
            parallelism: file.parallelism,
            salt,
        },
    )?;
    keystore.verify_passphrase(&check)?;
    let store = Store::open(&home.join("db"))?;
    let missing = |what: &str| HomeError::Damaged {
        path: home.join("db").display().to_string(),
        message: format!("{what} is missing"),
    };
    let blob = store
        .get(Column::Keystore, IDENTITY_SEED.as_bytes())?
        .ok_or_else(|| missing("the identity seed"))?;
    let seed_bytes = keystore.unwrap(IDENTITY_SEED, &blob)?;
    let seed = Secret::<32>::new(
        seed_bytes
            .as_slice()
            .try_into()
            .map_err(|_| missing("a 32-byte identity seed"))?,
    );
    let document = store
        .get(Column::Metadata, OWN_IDENTITY)?
        .ok_or_else(|| missing("the identity document"))?;
    let identity = LocalIdentity::from_document(&seed, &document)?;
    if PeerId::from_bytes(identity.identity().peer_id()).ok() != Some(keypair.public().to_peer_id())
    {
        return Err(HomeError::Damaged {
            path: key_path.display().to_string(),
            message: "node key does not match the identity document".into(),
        });
    }
    let mut hosted = Vec::new();
    for (key, document) in store.scan(Column::Metadata)? {
        let Some(name) = std::str::from_utf8(&key)
            .ok()
            .filter(|k| k.starts_with(HOSTED_PREFIX))
        else {
            continue;
        };
        let blob = store
            .get(Column::Keystore, name.as_bytes())?
            .ok_or_else(|| missing(&format!("the seed of {name}")))?;
        let seed_bytes = keystore.unwrap(name, &blob)?;
        let seed = Secret::<32>::new(
            seed_bytes
                .as_slice()
                .try_into()
                .map_err(|_| missing(&format!("a 32-byte seed for {name}")))?,
        );
        hosted.push(LocalIdentity::from_document(&seed, &document)?);
    }
    Ok(OpenHome {
        config,
        keypair,
        store,
        keystore,
        identity,
        hosted,
    })
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), HomeError> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(io(path))?;
    file.write_all(bytes).map_err(io(path))?;
    file.sync_all().map_err(io(path))
}
