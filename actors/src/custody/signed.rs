//! The threshold signatures an order's key made, each kept in an entry of its own (column
//! `signatures`, under the order record's key, `/` and the signature's number in ten
//! digits), not in the order's record. A record is read and written again at every step of
//! its order: one that kept every signature made grew with each, so that each signature cost
//! more than the one before. The record keeps the runs under way and the number of signatures
//! asked (`OrderRecord::signatures_asked`).
//!
//! What it does not do: decide anything about a signature (`super::signing`,
//! `super::threshold_bls`), or delete one (a signature made stays, as it does in the log).

use dta_protocol::dagcbor::{self, Limits};

use crate::role::Role;
use crate::store::{Column, Store, StoreError, Write};

use super::record::{OrderRecord, SigningRun, record_key};
use crate::context::{CustodyError, RoleContext, internal};

/// The keys of a record's signatures begin with its own key and a `/`.
fn prefix_of(record_key: &[u8]) -> Vec<u8> {
    let mut prefix = record_key.to_vec();
    prefix.push(b'/');
    prefix
}

/// Where signature `sequence` of the record stored under `record_key` is kept: in number
/// order under the record's prefix.
fn key_of(record_key: &[u8], sequence: u32) -> Vec<u8> {
    let mut key = prefix_of(record_key);
    key.extend_from_slice(format!("{sequence:010}").as_bytes());
    key
}

fn key_of_record(record: &OrderRecord) -> Vec<u8> {
    record_key(record.role, &record.principal, &record.reference)
}

impl RoleContext {
    /// Takes run `at` of `record`, whose signature is made, out of the record and stages its
    /// entry, to be written in one batch with the record it left.
    pub(crate) fn keep_made(
        &self,
        record: &mut OrderRecord,
        at: usize,
    ) -> Result<(), CustodyError> {
        let run = record.signing.remove(at);
        let bytes = dagcbor::encode(&run).map_err(internal)?;
        self.stage(
            Column::Signatures,
            key_of(&key_of_record(record), run.sequence),
            bytes,
        );
        Ok(())
    }
}

/// Signature `sequence` of `record`'s order, if it was made (and kept by `record`'s role).
pub fn made(
    store: &Store,
    record: &OrderRecord,
    sequence: u32,
) -> Result<Option<SigningRun>, CustodyError> {
    store
        .get(
            Column::Signatures,
            &key_of(&key_of_record(record), sequence),
        )
        .map_err(internal)?
        .map(|bytes| dagcbor::decode_lenient(&bytes, Limits::default()).map_err(internal))
        .transpose()
}

/// Every signature asked of `record`'s order that its role knows of, made or under way, by
/// number.
pub fn runs(store: &Store, record: &OrderRecord) -> Result<Vec<SigningRun>, CustodyError> {
    let prefix = prefix_of(&key_of_record(record));
    let mut runs = Vec::new();
    let mut failure = None;
    store
        .visit_after(Column::Signatures, Some(&prefix), |key, bytes| {
            if !key.starts_with(&prefix) {
                return false;
            }
            match dagcbor::decode_lenient::<SigningRun>(bytes, Limits::default()) {
                Ok(run) => runs.push(run),
                Err(err) => failure = Some(internal(err)),
            }
            failure.is_none()
        })
        .map_err(internal)?;
    if let Some(err) = failure {
        return Err(err);
    }
    runs.extend(record.signing.iter().cloned());
    runs.sort_by_key(|run| run.sequence);
    Ok(runs)
}

/// How many signatures of a principal's `record` were made: those asked, less those under
/// way.
pub fn made_count(record: &OrderRecord) -> usize {
    (record.signatures_asked as usize).saturating_sub(record.signing.len())
}

/// The writes that take the signatures made out of every record that kept them (layout
/// version 1 → 2), and give each principal's record the number of signatures it asked for. A
/// record that does not decode is left as it is: nothing else could read it either.
pub(crate) fn take_out_of_records(store: &Store) -> Result<Vec<Write>, StoreError> {
    let mut writes = Vec::new();
    for (key, bytes) in store.scan(Column::Orders)? {
        let Ok(mut record) = dagcbor::decode_lenient::<OrderRecord>(&bytes, Limits::default())
        else {
            continue;
        };
        if record.signing.is_empty() {
            continue;
        }
        if record.role == Role::Principal {
            record.signatures_asked = record
                .signing
                .iter()
                .map(|run| run.sequence)
                .max()
                .unwrap_or(0);
        }
        let (made, open): (Vec<_>, Vec<_>) = std::mem::take(&mut record.signing)
            .into_iter()
            .partition(|run| run.signature.is_some());
        record.signing = open;
        // All of a record's writes or none (none encodes wrongly): nothing is lost half-way.
        let made: Result<Vec<_>, _> = made
            .iter()
            .map(|run| dagcbor::encode(run).map(|bytes| (key_of(&key, run.sequence), bytes)))
            .collect();
        let (Ok(made), Ok(encoded)) = (made, dagcbor::encode(&record)) else {
            continue;
        };
        writes.extend(made.into_iter().map(|(k, v)| (Column::Signatures, k, v)));
        writes.push((Column::Orders, key, encoded));
    }
    Ok(writes)
}
