//! The layout version of a node's database (metadata key `schema`), and the migrations that
//! bring an older database up to it when a node opens its home.
//!
//! A database without the key was written before versions were recorded (dta 0.0.0): version
//! 0. Each migration moves one version up and records the new version in the same synced
//! write as its last change, so a crash leaves either the old or the new version, never a
//! mix that claims to be either. A database of a newer version than this code knows is
//! refused before anything in it is read: its records may mean what this code cannot tell.
//!
//! What it does not do: migrate the home's files (`config.toml` carries its own version).

use crate::store::{Column, Store, StoreError};

/// Metadata key of the layout version.
pub const KEY: &[u8] = b"schema";
/// The layout this code reads and writes.
pub const CURRENT: u32 = 2;

/// Why a database could not be brought to [`CURRENT`].
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// Written by a newer dta.
    #[error(
        "the database has layout version {found}; this dta reads up to {CURRENT}: \
         run the dta that wrote it (or newer)"
    )]
    Newer {
        /// The version found.
        found: u32,
    },
    /// The version key is not a version.
    #[error("the database's layout version is unreadable")]
    Unreadable,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What opening a database did to its layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migrated {
    /// The version found.
    pub from: u32,
    /// The version now.
    pub to: u32,
}

/// One step up: the writes that make version `n + 1` of a version `n` database, to be made in
/// one synced batch with the new version.
type Step = fn(&Store) -> Result<Vec<crate::store::Write>, StoreError>;

/// `STEPS[n]` moves a database from version `n` to `n + 1`.
const STEPS: [Step; CURRENT as usize] = [from_unversioned, signatures_apart];

/// 0 → 1: dta 0.0.0 wrote the records version 1 reads, field for field; from here on the
/// version is recorded.
fn from_unversioned(_: &Store) -> Result<Vec<crate::store::Write>, StoreError> {
    Ok(Vec::new())
}

/// 1 → 2: the threshold signatures an order's key made leave its record for entries of their
/// own (column `signatures`), and a principal's record counts the signatures asked.
fn signatures_apart(store: &Store) -> Result<Vec<crate::store::Write>, StoreError> {
    crate::custody::signed::take_out_of_records(store)
}

/// The layout version `store` records (0 for none).
pub fn version(store: &Store) -> Result<u32, SchemaError> {
    match store.get(Column::Metadata, KEY)? {
        None => Ok(0),
        Some(bytes) => Ok(u32::from_be_bytes(
            bytes.try_into().map_err(|_| SchemaError::Unreadable)?,
        )),
    }
}

/// Brings `store` to [`CURRENT`], one step at a time; refuses a newer one untouched.
pub fn migrate(store: &Store) -> Result<Migrated, SchemaError> {
    let from = version(store)?;
    if from > CURRENT {
        return Err(SchemaError::Newer { found: from });
    }
    for (step, make) in STEPS.iter().enumerate().skip(from as usize) {
        let mut writes = make(store)?;
        let next = step as u32 + 1;
        writes.push((Column::Metadata, KEY.to_vec(), next.to_be_bytes().to_vec()));
        store.write_durable(writes)?;
    }
    Ok(Migrated { from, to: CURRENT })
}

#[cfg(test)]
mod tests {
    use dta_protocol::Cid;
    use dta_protocol::dagcbor;

    use super::*;
    use crate::custody::{OrderRecord, SigningRun, record_key, signed, stored_record};
    use crate::role::Role;
    use crate::states::OrderState;
    use crate::store::Write;

    #[test]
    fn an_unversioned_database_is_brought_up_and_a_newer_one_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(version(&store).unwrap(), 0);
        assert_eq!(
            migrate(&store).unwrap(),
            Migrated {
                from: 0,
                to: CURRENT
            }
        );
        assert_eq!(version(&store).unwrap(), CURRENT);
        // Again: nothing to do.
        assert_eq!(
            migrate(&store).unwrap(),
            Migrated {
                from: CURRENT,
                to: CURRENT
            }
        );
        let newer = (CURRENT + 1).to_be_bytes();
        store.put_durable(Column::Metadata, KEY, &newer).unwrap();
        let refused = migrate(&store).unwrap_err();
        assert!(matches!(refused, SchemaError::Newer { found } if found == CURRENT + 1));
        assert_eq!(version(&store).unwrap(), CURRENT + 1, "left as it was");
        store.put_durable(Column::Metadata, KEY, b"x").unwrap();
        assert!(matches!(migrate(&store), Err(SchemaError::Unreadable)));
    }

    fn cid(seed: &[u8]) -> Cid {
        dta_protocol::block::cid_of(dta_protocol::block::DAG_CBOR, seed)
    }

    fn run(sequence: u32, made: bool) -> SigningRun {
        let mut run = SigningRun::new(sequence, cid(&[sequence as u8]));
        run.signature = made.then(|| cid(&[b's', sequence as u8]));
        run
    }

    /// A database of layout 1 kept the signatures made in the records: brought to 2, each
    /// leaves its record for an entry of its own, the runs under way stay, a principal counts
    /// what it asked for, and every signature reads back as it was.
    #[test]
    fn signatures_made_leave_the_records_of_an_older_database_and_read_back_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let principal = cid(b"principal");
        let mut records = Vec::new();
        for role in [Role::Principal, Role::Fiduciary] {
            let mut record = OrderRecord::fresh(
                "vault".into(),
                role,
                OrderState::Certified,
                cid(b"order"),
                principal,
                cid(b"head"),
            );
            record.signing = vec![run(1, true), run(2, false), run(3, true)];
            records.push(record);
        }
        let mut writes: Vec<Write> = records
            .iter()
            .map(|r| {
                (
                    Column::Orders,
                    record_key(r.role, &r.principal, &r.reference),
                    dagcbor::encode(r).unwrap(),
                )
            })
            .collect();
        writes.push((Column::Metadata, KEY.to_vec(), 1u32.to_be_bytes().to_vec()));
        store.write_durable(writes).unwrap();

        migrate(&store).unwrap();
        for before in &records {
            let after = stored_record(&store, before.role, &principal, &before.reference)
                .unwrap()
                .unwrap();
            assert_eq!(after.signing, [run(2, false)]);
            let asked = if before.role == Role::Principal { 3 } else { 0 };
            assert_eq!(after.signatures_asked, asked);
            assert_eq!(signed::runs(&store, &after).unwrap(), before.signing);
            assert_eq!(signed::made(&store, &after, 3).unwrap(), Some(run(3, true)));
            assert_eq!(signed::made(&store, &after, 2).unwrap(), None);
        }
        // Brought up already: a second opening changes nothing.
        let again = migrate(&store).unwrap();
        assert_eq!(again.from, CURRENT);
    }
}
