//! API tokens: bearer tokens with scopes, which an operator creates and revokes, and which
//! the HTTP API checks on every call that is not open.
//!
//! A token is `dta_` and 43 characters of base64url (32 random bytes). It is shown once, when
//! it is made; the node keeps only its SHA-256 digest (column family `tokens`, one JSON record
//! per token, kept after revocation so that a list shows what was revoked and when). The
//! token's id is the first 6 bytes of that digest in hex, which is how a list names it and
//! how a check finds its record; the whole digest is then compared in constant time. Records
//! are held in memory too, and every change is written durably before it takes effect, so a
//! revoked token is refused from the moment the revocation is answered.
//!
//! What it does not do: read requests (`http/access.rs` does, and decides which scope a route
//! needs), or keep a token anywhere but in what [`Tokens::create`] returns.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use dta_actors::store::{Column, Store, StoreError};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;
use zeroize::Zeroizing;

/// What a token may do. Scopes are independent: `admin` does not include `release`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Lists, shows, audits, blocks, peers, metrics.
    Read,
    /// Create orders.
    Order,
    /// Release orders.
    Release,
    /// Approve or veto releases.
    Approve,
    /// Read a secret this node received.
    Secret,
    /// M-Pin issuance and authentication.
    Mpin,
    /// Tokens, peers (blocking), identities (hosting), the keystore, storing blocks.
    Admin,
}

impl Scope {
    /// Every scope, in order.
    pub const ALL: [Scope; 7] = [
        Scope::Read,
        Scope::Order,
        Scope::Release,
        Scope::Approve,
        Scope::Secret,
        Scope::Mpin,
        Scope::Admin,
    ];

    /// Its name, as in `--scopes read,order`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Order => "order",
            Scope::Release => "release",
            Scope::Approve => "approve",
            Scope::Secret => "secret",
            Scope::Mpin => "mpin",
            Scope::Admin => "admin",
        }
    }

    /// Scopes from a comma-separated list (`read,order`, or `all`).
    pub fn parse_list(list: &str) -> Result<BTreeSet<Scope>, TokenError> {
        let mut scopes = BTreeSet::new();
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if name == "all" {
                scopes.extend(Scope::ALL);
                continue;
            }
            scopes.insert(name.parse()?);
        }
        if scopes.is_empty() {
            return Err(TokenError::NoScopes);
        }
        Ok(scopes)
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Scope {
    type Err = TokenError;

    fn from_str(name: &str) -> Result<Self, TokenError> {
        Scope::ALL
            .into_iter()
            .find(|scope| scope.as_str() == name)
            .ok_or_else(|| TokenError::UnknownScope(name.to_owned()))
    }
}

/// What the node keeps of a token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// The first 6 bytes of the token's SHA-256 digest, in hex.
    pub id: String,
    /// The token's SHA-256 digest, in hex.
    pub digest: String,
    /// What it may do.
    pub scopes: BTreeSet<Scope>,
    /// The operator's note.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// When it was made (ms since the Unix epoch).
    pub created_ms: u64,
    /// When it stops working, if ever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_ms: Option<u64>,
    /// When it was revoked, if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_ms: Option<u64>,
}

impl TokenRecord {
    /// Whether it works at `now_ms`.
    pub fn is_live(&self, now_ms: u64) -> bool {
        self.revoked_ms.is_none() && self.expires_ms.is_none_or(|at| now_ms < at)
    }
}

/// A token just made: the token itself (shown once) and its record.
#[derive(Debug)]
pub struct NewToken {
    /// The bearer token. Nothing else holds it.
    pub token: Zeroizing<String>,
    /// What the node keeps.
    pub record: TokenRecord,
}

/// Why a token operation failed.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored record does not decode.
    #[error("token record {id} is damaged: {reason}")]
    Damaged {
        /// Its key.
        id: String,
        /// Why.
        reason: String,
    },
    /// A scope name that does not exist.
    #[error(
        "unknown scope {0:?}: the scopes are read, order, release, approve, secret, mpin, admin (or all)"
    )]
    UnknownScope(String),
    /// A token with no scope would be refused everywhere.
    #[error("a token needs at least one scope")]
    NoScopes,
    /// A label too long or with control characters.
    #[error("a label is at most 100 printable characters")]
    BadLabel,
    /// A lifetime that does not parse or is zero.
    #[error("bad lifetime {0:?}: a number and a unit, as 30d, 12h, 90m or 45s")]
    BadLifetime(String),
    /// No token has this id.
    #[error("no token with id {0}")]
    NoSuchToken(String),
    /// The random number generator failed.
    #[error("no randomness: {0}")]
    Random(String),
    /// The home's token file cannot be written or read.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// Why a presented token does not let a call through.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denial {
    /// No `Authorization: Bearer` header.
    #[error(
        "this endpoint needs a token: send `Authorization: Bearer TOKEN` (the dta command reads HOME/api-token with --home, or --token-file, or DTA_TOKEN)"
    )]
    Missing,
    /// Not a token this node made (or not a token at all).
    #[error("the token is not valid here")]
    Unknown,
    /// Revoked.
    #[error("token {0} was revoked")]
    Revoked(String),
    /// Past its lifetime.
    #[error("token {0} has expired")]
    Expired(String),
    /// Valid, without the scope this call needs.
    #[error("token {id} lacks the {scope} scope this endpoint needs")]
    LacksScope {
        /// The token's id.
        id: String,
        /// The scope it lacks.
        scope: Scope,
    },
}

impl Denial {
    /// Whether the caller is unknown (401) rather than known and not allowed (403).
    pub fn is_unauthenticated(&self) -> bool {
        !matches!(self, Denial::LacksScope { .. })
    }
}

/// Where tokens start: what a bearer token begins with.
pub const TOKEN_PREFIX: &str = "dta_";

/// The tokens of one node.
#[derive(Debug, Clone)]
pub struct Tokens {
    store: Store,
    book: Arc<RwLock<BTreeMap<String, TokenRecord>>>,
}

/// Now, in ms since the Unix epoch (what token and policy times are in).
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn digest_of(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn id_of(digest: &[u8; 32]) -> String {
    hex::encode(&digest[..6])
}

impl Tokens {
    /// Reads every token record of `store`.
    pub fn open(store: Store) -> Result<Self, TokenError> {
        let mut book = BTreeMap::new();
        for (key, value) in store.scan(Column::Tokens)? {
            let id = String::from_utf8_lossy(&key).into_owned();
            let record: TokenRecord =
                serde_json::from_slice(&value).map_err(|e| TokenError::Damaged {
                    id: id.clone(),
                    reason: e.to_string(),
                })?;
            book.insert(id, record);
        }
        Ok(Self {
            store,
            book: Arc::new(RwLock::new(book)),
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, TokenRecord>> {
        self.book
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, TokenRecord>> {
        self.book
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn persist(&self, record: &TokenRecord) -> Result<(), TokenError> {
        let value = serde_json::to_vec(record).map_err(|e| TokenError::Damaged {
            id: record.id.clone(),
            reason: e.to_string(),
        })?;
        self.store
            .put_durable(Column::Tokens, record.id.as_bytes(), &value)?;
        Ok(())
    }

    /// Makes a token with `scopes`, a `label` and, if given, a `lifetime`.
    pub fn create(
        &self,
        scopes: BTreeSet<Scope>,
        label: Option<String>,
        lifetime: Option<Duration>,
    ) -> Result<NewToken, TokenError> {
        if scopes.is_empty() {
            return Err(TokenError::NoScopes);
        }
        if let Some(label) = &label
            && (label.chars().count() > 100 || label.chars().any(char::is_control))
        {
            return Err(TokenError::BadLabel);
        }
        let mut book = self.write();
        let (token, digest) = loop {
            let mut random = Zeroizing::new([0u8; 32]);
            getrandom::fill(random.as_mut()).map_err(|e| TokenError::Random(e.to_string()))?;
            let token = Zeroizing::new(format!(
                "{TOKEN_PREFIX}{}",
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random.as_ref())
            ));
            let digest = digest_of(&token);
            // Two tokens with one id would make the second unreachable; 48 bits make this
            // all but impossible, and a loop makes it impossible.
            if !book.contains_key(&id_of(&digest)) {
                break (token, digest);
            }
        };
        let created_ms = now_ms();
        let record = TokenRecord {
            id: id_of(&digest),
            digest: hex::encode(digest),
            scopes,
            label,
            created_ms,
            expires_ms: lifetime.map(|l| {
                created_ms.saturating_add(u64::try_from(l.as_millis()).unwrap_or(u64::MAX))
            }),
            revoked_ms: None,
        };
        self.persist(&record)?;
        book.insert(record.id.clone(), record.clone());
        Ok(NewToken { token, record })
    }

    /// Every token record, live or not, oldest first.
    pub fn list(&self) -> Vec<TokenRecord> {
        let mut records: Vec<TokenRecord> = self.read().values().cloned().collect();
        records.sort_by_key(|r| (r.created_ms, r.id.clone()));
        records
    }

    /// Whether no token was ever made.
    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    /// Revokes the token `id` (again is fine: the first time stays recorded).
    pub fn revoke(&self, id: &str) -> Result<TokenRecord, TokenError> {
        let mut book = self.write();
        let Some(record) = book.get(id) else {
            return Err(TokenError::NoSuchToken(id.to_owned()));
        };
        if record.revoked_ms.is_some() {
            return Ok(record.clone());
        }
        let mut revoked = record.clone();
        revoked.revoked_ms = Some(now_ms());
        self.persist(&revoked)?;
        book.insert(id.to_owned(), revoked.clone());
        Ok(revoked)
    }

    /// Whether `presented` is a live token with every scope of `needs`; the token's record
    /// if it is.
    pub fn check(&self, presented: &str, needs: &[Scope]) -> Result<TokenRecord, Denial> {
        let digest = digest_of(presented);
        let book = self.read();
        let record = book.get(&id_of(&digest)).ok_or(Denial::Unknown)?;
        let stored = hex::decode(&record.digest).map_err(|_| Denial::Unknown)?;
        if !bool::from(stored.ct_eq(&digest)) {
            return Err(Denial::Unknown);
        }
        if record.revoked_ms.is_some() {
            return Err(Denial::Revoked(record.id.clone()));
        }
        if !record.is_live(now_ms()) {
            return Err(Denial::Expired(record.id.clone()));
        }
        if let Some(scope) = needs.iter().find(|s| !record.scopes.contains(s)) {
            return Err(Denial::LacksScope {
                id: record.id.clone(),
                scope: *scope,
            });
        }
        Ok(record.clone())
    }
}

/// The file of a home that holds the token its operator's commands use.
pub const HOME_TOKEN_FILE: &str = "api-token";

/// Gives a node that has no token at all one with every scope, written to
/// `HOME/api-token` (mode 0600) for the `dta` commands run with `--home`. A node that has
/// tokens keeps them as they are, even if the file is gone (its operator may have moved it).
pub fn ensure_home_token(home: &Path, tokens: &Tokens) -> Result<Option<TokenRecord>, TokenError> {
    if !tokens.is_empty() {
        return Ok(None);
    }
    let made = tokens.create(
        Scope::ALL.into_iter().collect(),
        Some("made with the home".into()),
        None,
    )?;
    let path = home.join(HOME_TOKEN_FILE);
    let mut line = Zeroizing::new(made.token.as_bytes().to_vec());
    line.push(b'\n');
    crate::private::write_private_file(&path, &line).map_err(|source| TokenError::File {
        path: path.display().to_string(),
        source,
    })?;
    Ok(Some(made.record))
}

/// The token in `file` (its first line), if the file exists.
pub fn read_token_file(file: &Path) -> Result<Option<Zeroizing<String>>, TokenError> {
    let text = match std::fs::read(file) {
        Ok(bytes) => Zeroizing::new(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(TokenError::File {
                path: file.display().to_string(),
                source,
            });
        }
    };
    let line = text.split(|b| *b == b'\n').next().unwrap_or_default();
    let token = std::str::from_utf8(line).map_err(|_| TokenError::File {
        path: file.display().to_string(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, "not a token"),
    })?;
    Ok(Some(Zeroizing::new(token.trim().to_owned())))
}

/// A lifetime as `30d`, `12h`, `90m` or `45s`.
pub fn parse_lifetime(text: &str) -> Result<Duration, TokenError> {
    let bad = || TokenError::BadLifetime(text.to_owned());
    let text = text.trim();
    let split = text.len().checked_sub(1).ok_or_else(bad)?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit {
        "d" => number.checked_mul(86_400),
        "h" => number.checked_mul(3_600),
        "m" => number.checked_mul(60),
        "s" => Some(number),
        _ => None,
    }
    .filter(|s| *s > 0)
    .ok_or_else(bad)?;
    Ok(Duration::from_secs(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> (tempfile::TempDir, Tokens) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        (dir, Tokens::open(store).unwrap())
    }

    #[test]
    fn a_token_works_for_its_scopes_only_and_only_its_digest_is_kept() {
        let (dir, tokens) = tokens();
        let made = tokens
            .create(
                Scope::parse_list("read,release").unwrap(),
                Some("ops".into()),
                None,
            )
            .unwrap();
        assert!(made.token.starts_with(TOKEN_PREFIX) && made.token.len() == 47);
        let record = tokens.check(&made.token, &[Scope::Read]).unwrap();
        assert_eq!(record.id, made.record.id);
        assert_eq!(
            tokens.check(&made.token, &[Scope::Secret]),
            Err(Denial::LacksScope {
                id: made.record.id.clone(),
                scope: Scope::Secret
            })
        );
        assert_eq!(tokens.check("dta_nothing", &[]), Err(Denial::Unknown));
        // A token of the same id's length but other bytes: refused.
        let mut other = made.token.to_string();
        let last = other.pop();
        other.push(if last == Some('A') { 'B' } else { 'A' });
        assert!(tokens.check(&other, &[]).is_err());
        // Reopened from the database: the same, and the token itself is nowhere in it.
        drop(tokens);
        let store = Store::open(&dir.path().join("db")).unwrap();
        for (_, value) in store.scan(Column::Tokens).unwrap() {
            let text = String::from_utf8(value).unwrap();
            assert!(!text.contains(made.token.as_str()));
        }
        let tokens = Tokens::open(store).unwrap();
        assert!(tokens.check(&made.token, &[Scope::Release]).is_ok());
    }

    #[test]
    fn a_revoked_or_expired_token_is_refused_and_stays_listed() {
        let (_dir, tokens) = tokens();
        let made = tokens
            .create(BTreeSet::from([Scope::Read]), None, None)
            .unwrap();
        let revoked = tokens.revoke(&made.record.id).unwrap();
        assert!(revoked.revoked_ms.is_some());
        assert_eq!(
            tokens.check(&made.token, &[]),
            Err(Denial::Revoked(made.record.id.clone()))
        );
        assert_eq!(tokens.list().len(), 1);
        assert!(matches!(
            tokens.revoke("000000000000"),
            Err(TokenError::NoSuchToken(_))
        ));
        let brief = tokens
            .create(
                BTreeSet::from([Scope::Read]),
                None,
                Some(Duration::from_millis(1)),
            )
            .unwrap();
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(
            tokens.check(&brief.token, &[]),
            Err(Denial::Expired(brief.record.id.clone()))
        );
    }

    #[test]
    fn scopes_labels_and_lifetimes_are_checked() {
        assert_eq!(Scope::parse_list("all").unwrap().len(), 7);
        assert!(matches!(
            Scope::parse_list("read,root"),
            Err(TokenError::UnknownScope(s)) if s == "root"
        ));
        assert!(matches!(
            Scope::parse_list(" , "),
            Err(TokenError::NoScopes)
        ));
        assert_eq!(
            parse_lifetime("30d").unwrap(),
            Duration::from_secs(30 * 86_400)
        );
        assert_eq!(parse_lifetime("90m").unwrap(), Duration::from_secs(5_400));
        for bad in ["", "d", "0h", "3w", "-1d", "99999999999999999999d"] {
            assert!(parse_lifetime(bad).is_err(), "{bad}");
        }
        let (_dir, tokens) = tokens();
        assert!(matches!(
            tokens.create(BTreeSet::new(), None, None),
            Err(TokenError::NoScopes)
        ));
        assert!(matches!(
            tokens.create(BTreeSet::from([Scope::Read]), Some("a\nb".into()), None),
            Err(TokenError::BadLabel)
        ));
    }
}
