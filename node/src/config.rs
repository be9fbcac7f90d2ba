//! `config.toml`: what a node is and how it runs. Holds paths and addresses, never keys.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use libp2p::{Multiaddr, PeerId};
use serde::{Deserialize, Serialize};

/// The home layout this code reads and writes.
pub const HOME_VERSION: u32 = 1;
/// Default HTTP API address.
pub const DEFAULT_API: &str = "127.0.0.1:7070";
/// Default libp2p listen addresses (TCP and QUIC on the same port).
pub const DEFAULT_LISTEN: [&str; 2] = ["/ip4/0.0.0.0/tcp/7071", "/ip4/0.0.0.0/udp/7071/quic-v1"];

/// Most peers a node may be told to keep connections with.
pub const MAX_TARGET_PEERS: usize = 256;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Readable lines.
    #[default]
    Human,
    /// One JSON object per line.
    Json,
}

/// The contents of `config.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Home layout version, [`HOME_VERSION`].
    pub version: u32,
    /// Node name (shown to peers; not unique).
    pub name: String,
    /// libp2p listen addresses.
    pub listen: Vec<String>,
    /// The HTTP API: where it listens and what it leaves open. `api = "HOST:PORT"` (the
    /// older form) is read as `[api] listen = "HOST:PORT"`.
    #[serde(deserialize_with = "api_config")]
    pub api: ApiConfig,
    /// Peers to dial at start.
    #[serde(default)]
    pub bootstrap: Vec<String>,
    /// LAN discovery.
    #[serde(default = "default_true")]
    pub mdns: bool,
    /// If set, only these peer ids may connect.
    #[serde(default)]
    pub allow_list: Option<Vec<String>>,
    /// How many peers the node keeps connections with; 12 when absent. It dials peers it
    /// learns of only while it has fewer, closes the idlest connections (down to twice as
    /// many) once it has three times as many, and refuses new ones past
    /// `8 × target_peers + 32`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_peers: Option<usize>,
    /// Roles this node plays.
    pub roles: Vec<String>,
    /// A file holding the keystore passphrase (used when `DTA_PASSPHRASE` is not set).
    #[serde(default)]
    pub passphrase_file: Option<PathBuf>,
    /// A file holding the PKCS#11 user PIN (used when `DTA_PKCS11_PIN` is not set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pkcs11_pin_file: Option<PathBuf>,
    /// Identity CIDs of the authentication servers this node, as an M-Pin trust authority,
    /// issues server-secret shares to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mpin_servers: Vec<String>,
    /// How far this node's clock may disagree with others' when it checks a release
    /// policy's times (not-before, delays, vetoes within a delay, approvals' age), in ms;
    /// 30000 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock_tolerance_ms: Option<u64>,
}

fn default_true() -> bool {
    true
}

/// The `[api]` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// HOST:PORT the API listens on.
    pub listen: String,
    /// Serve `/metrics` without a token (for a scraper on a trusted network).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub metrics_open: bool,
    /// Ask a token on the original `/v1` API too. Without it, `/v1` is open while the API
    /// listens on loopback only, as the original's was; on any other address it needs a
    /// token regardless.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub v1_token: bool,
    /// The API's TLS certificate (PEM; relative paths are in the home). With `tls_key`, the
    /// API speaks HTTPS; an API on any address but loopback needs it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
}

impl ApiConfig {
    /// Listening on `listen`, nothing left open.
    pub fn at(listen: &str) -> Self {
        Self {
            listen: listen.to_owned(),
            metrics_open: false,
            v1_token: false,
            tls_cert: None,
            tls_key: None,
        }
    }
}

/// `api` as a table, or as the HOST:PORT string older homes have.
fn api_config<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<ApiConfig, D::Error> {
    struct Either;
    impl<'de> serde::de::Visitor<'de> for Either {
        type Value = ApiConfig;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an [api] table, or an address HOST:PORT")
        }

        fn visit_str<E: serde::de::Error>(self, listen: &str) -> Result<ApiConfig, E> {
            Ok(ApiConfig::at(listen))
        }

        fn visit_map<M: serde::de::MapAccess<'de>>(self, map: M) -> Result<ApiConfig, M::Error> {
            ApiConfig::deserialize(serde::de::value::MapAccessDeserializer::new(map))
        }
    }
    deserializer.deserialize_any(Either)
}

/// Why a configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The home has no config.
    #[error("{0} is not a dta home (no config.toml); run `dta init --home {0}` first")]
    NotInitialised(String),
    /// The file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML of the right shape.
    #[error("invalid {path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// Another layout version.
    #[error("{path} is a version {found} home; this dta reads version {HOME_VERSION}")]
    Version {
        /// The file.
        path: String,
        /// Version found.
        found: u32,
    },
    /// A listen or bootstrap address is not a multiaddr.
    #[error("invalid multiaddr {value:?}: {message}")]
    Multiaddr {
        /// The text.
        value: String,
        /// Why.
        message: String,
    },
    /// The API address is not HOST:PORT.
    #[error("invalid API address {0:?}: expected HOST:PORT, for example 127.0.0.1:7070")]
    Api(String),
    /// `target_peers` out of range.
    #[error("target_peers = {0}: it must be from 1 to {MAX_TARGET_PEERS}")]
    TargetPeers(usize),
    /// A peer id of the allow-list.
    #[error("invalid peer id {0:?} in allow_list")]
    PeerId(String),
    /// An `mpin_servers` entry is not an identity CID.
    #[error("invalid identity CID {0:?} in mpin_servers")]
    Cid(String),
    /// An unknown role.
    #[error("unknown role {0:?}: use principal, fiduciary or beneficiary")]
    Role(String),
}

impl Config {
    /// A new node's configuration.
    pub fn new(name: &str) -> Self {
        Self {
            version: HOME_VERSION,
            name: name.to_owned(),
            listen: DEFAULT_LISTEN.iter().map(|s| (*s).to_owned()).collect(),
            api: ApiConfig::at(DEFAULT_API),
            bootstrap: Vec::new(),
            mdns: true,
            allow_list: None,
            target_peers: None,
            roles: ["principal", "fiduciary", "beneficiary"]
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            passphrase_file: None,
            pkcs11_pin_file: None,
            mpin_servers: Vec::new(),
            clock_tolerance_ms: None,
        }
    }

    /// Reads `HOME/config.toml`.
    pub fn load(home: &Path) -> Result<Self, ConfigError> {
        let path = home.join("config.toml");
        let shown = path.display().to_string();
        if !path.exists() {
            return Err(ConfigError::NotInitialised(home.display().to_string()));
        }
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
            path: shown.clone(),
            source,
        })?;
        // Check the version first, so that another layout gets the right message.
        let version = toml::from_str::<toml::Table>(&text)
            .ok()
            .and_then(|t| t.get("version").and_then(|v| v.as_integer()));
        if let Some(found) = version
            && found != i64::from(HOME_VERSION)
        {
            return Err(ConfigError::Version {
                path: shown,
                found: found.try_into().unwrap_or(u32::MAX),
            });
        }
        let config: Self = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: shown.clone(),
            message: e.message().to_owned(),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Writes `HOME/config.toml`, mode 0600 like every file of a home.
    pub fn save(&self, home: &Path) -> std::io::Result<()> {
        let text = toml::to_string_pretty(self).map_err(std::io::Error::other)?;
        crate::private::write_private_file(&home.join("config.toml"), text.as_bytes())
    }

    /// Checks every address, peer id and role.
    pub fn validate(&self) -> Result<(), ConfigError> {
        parse_multiaddrs(&self.listen)?;
        parse_multiaddrs(&self.bootstrap)?;
        parse_api(&self.api.listen)?;
        self.allow_list()?;
        self.roles()?;
        self.target_peers()?;
        Ok(())
    }

    /// The number of peers to keep connections with.
    pub fn target_peers(&self) -> Result<usize, ConfigError> {
        match self.target_peers {
            None => Ok(dta_protocol::network::DEFAULT_TARGET_PEERS),
            Some(n) if (1..=MAX_TARGET_PEERS).contains(&n) => Ok(n),
            Some(n) => Err(ConfigError::TargetPeers(n)),
        }
    }

    /// The allow-list as peer ids.
    pub fn allow_list(&self) -> Result<Option<Vec<PeerId>>, ConfigError> {
        self.allow_list
            .as_ref()
            .map(|list| {
                list.iter()
                    .map(|p| p.parse().map_err(|_| ConfigError::PeerId(p.clone())))
                    .collect()
            })
            .transpose()
    }

    /// The M-Pin authentication servers, as identity CIDs.
    pub fn mpin_servers(&self) -> Result<Vec<dta_protocol::Cid>, ConfigError> {
        self.mpin_servers
            .iter()
            .map(|c| dta_protocol::block::parse_cid(c).map_err(|_| ConfigError::Cid(c.clone())))
            .collect()
    }

    /// The roles.
    pub fn roles(&self) -> Result<Vec<dta_actors::roles::Role>, ConfigError> {
        self.roles
            .iter()
            .map(|r| dta_actors::roles::Role::parse(r).ok_or_else(|| ConfigError::Role(r.clone())))
            .collect()
    }
}

/// Parses multiaddrs, naming the first bad one.
pub fn parse_multiaddrs(values: &[String]) -> Result<Vec<Multiaddr>, ConfigError> {
    values
        .iter()
        .map(|value| {
            value
                .parse()
                .map_err(|e: libp2p::multiaddr::Error| ConfigError::Multiaddr {
                    value: value.clone(),
                    message: e.to_string(),
                })
        })
        .collect()
}

/// Parses `HOST:PORT`.
pub fn parse_api(value: &str) -> Result<SocketAddr, ConfigError> {
    value
        .parse()
        .map_err(|_| ConfigError::Api(value.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_peers_defaults_to_twelve_and_refuses_zero_and_too_many() {
        let mut config = Config::new("n");
        assert_eq!(config.target_peers().unwrap(), 12);
        config.target_peers = Some(3);
        assert_eq!(config.target_peers().unwrap(), 3);
        for bad in [0, MAX_TARGET_PEERS + 1] {
            config.target_peers = Some(bad);
            let err = config.validate().unwrap_err();
            assert!(matches!(err, ConfigError::TargetPeers(n) if n == bad));
            assert!(err.to_string().contains("from 1 to 256"), "{err}");
        }
        let text = "version = 1\nname = \"n\"\nlisten = []\napi = \"127.0.0.1:1\"\n\
                    roles = [\"fiduciary\"]\ntarget_peers = 8\n";
        let parsed: Config = toml::from_str(text).unwrap();
        assert_eq!(parsed.target_peers().unwrap(), 8);
    }
}
