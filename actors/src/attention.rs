//! Which order records the role actors' periodic work must look at: a principal's orders
//! still being made or signing, its open releases and refreshes on a schedule, a
//! beneficiary's releases being collected, a fiduciary's held requests, shares that may
//! expire and commitments not yet certified. Kept in memory by record key, built by one scan
//! of the store when first asked, then kept current by every saved record.
//!
//! Without it, every tick of every role read and decoded each record the node had ever
//! held, several times over, and a fiduciary read each held order's request as well: work
//! that grew with the node's whole history, until the ticks alone took more CPU than the
//! machine had.
//!
//! What it does not do: decide what a record needs (`custody::attention` does), read
//! records, or outlive the process (it is built again at the next start).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

/// One reason a record is looked at by periodic work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Principal: an order being made, or a signature asked for and not made.
    Resume,
    /// Principal: a release without its receipt.
    Releasing,
    /// Beneficiary: a release whose shares are still being collected.
    Collecting,
    /// Principal: a certified order refreshed on a schedule.
    Refresh,
    /// Fiduciary: a share held for an order whose policy expires.
    Expiry,
    /// Fiduciary: requests held until the order's release policy lets them go.
    Held,
    /// Fiduciary: a commitment not certified yet.
    Uncertified,
}

impl Need {
    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// Set when whether the order expires was looked up: the order of a record never changes,
/// so it is looked up once.
const EXPIRY_KNOWN: u8 = 1 << 7;

/// What a record needs: a set of [`Need`]s.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Needs(u8);

impl Needs {
    /// These needs and `need`.
    #[must_use]
    pub fn with(self, need: Need) -> Self {
        Self(self.0 | need.bit())
    }

    /// These needs without `need`.
    #[must_use]
    pub fn without(self, need: Need) -> Self {
        Self(self.0 & !need.bit())
    }

    /// Whether `need` is among them.
    pub fn has(self, need: Need) -> bool {
        self.0 & need.bit() != 0
    }

    /// Whether the order's expiry was looked up, and if so, whether it has one.
    pub fn expiry(self) -> Option<bool> {
        (self.0 & EXPIRY_KNOWN != 0).then(|| self.has(Need::Expiry))
    }

    /// These needs, with the order's expiry known: `expires` says whether it has one.
    #[must_use]
    pub fn expiry_known(self, expires: bool) -> Self {
        let known = Self(self.0 | EXPIRY_KNOWN);
        if expires {
            known.with(Need::Expiry)
        } else {
            known.without(Need::Expiry)
        }
    }

    /// Whether no periodic work needs the record (what is known of its expiry aside).
    pub fn is_empty(self) -> bool {
        self.0 & !EXPIRY_KNOWN == 0
    }
}

type Index = HashMap<Vec<u8>, Needs>;

/// The records that periodic work must look at, by store key. Cheap to clone: clones share
/// one index.
#[derive(Debug, Clone, Default)]
pub struct Attention(Arc<Mutex<Option<Index>>>);

impl Attention {
    fn index(&self) -> std::sync::MutexGuard<'_, Option<Index>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The keys of the records that need `need`, in key order. The first call builds the
    /// index with `build` (every record's key and needs), holding it meanwhile, so that a
    /// record saved during the build waits and is then recorded over what the build read.
    pub fn keys<E>(
        &self,
        need: Need,
        build: impl FnOnce() -> Result<Vec<(Vec<u8>, Needs)>, E>,
    ) -> Result<Vec<Vec<u8>>, E> {
        let mut index = self.index();
        if index.is_none() {
            *index = Some(build()?.into_iter().collect());
        }
        let mut keys: Vec<Vec<u8>> = index
            .iter()
            .flatten()
            .filter(|(_, needs)| needs.has(need))
            .map(|(key, _)| key.clone())
            .collect();
        keys.sort_unstable();
        Ok(keys)
    }

    /// What the record stored under `key` needs now, from `needs` given what it needed
    /// before (none if it was not recorded). Nothing before the index is built: the build
    /// reads the store, which already holds the record.
    pub fn update(&self, key: Vec<u8>, needs: impl FnOnce(Option<Needs>) -> Needs) {
        let mut index = self.index();
        let Some(index) = index.as_mut() else {
            return;
        };
        let now = needs(index.get(&key).copied());
        // A record whose expiry is known stays, so it is not looked up again.
        if now.is_empty() && now.expiry().is_none() {
            index.remove(&key);
        } else {
            index.insert(key, now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn needs_are_a_set_and_the_expiry_is_known_once_looked_up() {
        let needs = Needs::default().with(Need::Resume).with(Need::Held);
        assert!(needs.has(Need::Resume) && needs.has(Need::Held));
        assert!(!needs.has(Need::Expiry));
        assert_eq!(needs.expiry(), None);
        let known = needs.expiry_known(true);
        assert_eq!(known.expiry(), Some(true));
        assert_eq!(known.expiry_known(false).expiry(), Some(false));
        assert!(Needs::default().expiry_known(false).is_empty());
    }

    #[test]
    fn the_index_is_built_once_and_then_follows_the_saves() {
        let attention = Attention::default();
        let resume = Needs::default().with(Need::Resume);
        // Before the first question, saves are left to the build.
        attention.update(b"early".to_vec(), |_| resume);
        let keys = attention
            .keys(Need::Resume, || {
                Ok::<_, ()>(vec![
                    (b"a".to_vec(), resume),
                    (b"b".to_vec(), Needs::default()),
                ])
            })
            .unwrap();
        assert_eq!(keys, [b"a".to_vec()]);
        attention.update(b"c".to_vec(), |before| {
            assert_eq!(before, None);
            resume
        });
        attention.update(b"a".to_vec(), |before| {
            assert_eq!(before, Some(resume));
            Needs::default()
        });
        let keys = attention
            .keys(Need::Resume, || -> Result<_, ()> { panic!("built twice") })
            .unwrap();
        assert_eq!(keys, [b"c".to_vec()]);
    }
}
