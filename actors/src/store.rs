//! The node's rocksdb database and the actor that writes to it.
//!
//! Column families: `blocks` (CID → block bytes), `identities` (identity CID → document, also
//! served as a block under that CID), `orders` (order state, from the custody flow on),
//! `signatures` (the threshold signatures an order's key made, one entry each, apart from the
//! order's record), `keystore` (name → wrapped secret), `metadata`, `mpin` and `tokens`.
//! Reads go straight through a [`Store`] handle (rocksdb is thread-safe); writes that
//! acknowledge a state change are synced to disk before they return.

use std::path::Path;
use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use rocksdb::{ColumnFamilyDescriptor, DB, Options, WriteOptions};

/// The column families, in creation order.
pub const COLUMN_FAMILIES: [Column; 8] = [
    Column::Blocks,
    Column::Identities,
    Column::Orders,
    Column::Keystore,
    Column::Metadata,
    Column::Mpin,
    Column::Tokens,
    Column::Signatures,
];

/// Each column family's memtable, which also sets the write-ahead log rocksdb preallocates
/// (1.1 times the largest memtable). rocksdb's default of 64 MiB made every node's home take
/// 75 MiB of disk from its first write, and a thousand-node testnet ran out of disk; a custody
/// node writes small envelopes, so a smaller memtable only flushes a little more often.
pub const MEMTABLE_BYTES: usize = 4 << 20;
/// What rocksdb preallocates for its manifest (by default 4 MiB; a node's manifest stays a
/// few kilobytes).
pub const MANIFEST_PREALLOCATION_BYTES: usize = 256 << 10;

/// The options of every column family.
fn column_options() -> Options {
    let mut options = Options::default();
    options.set_write_buffer_size(MEMTABLE_BYTES);
    options
}

/// One column family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    /// Content-addressed blocks.
    Blocks,
    /// Verified identity documents by CID.
    Identities,
    /// Order state.
    Orders,
    /// Wrapped secrets.
    Keystore,
    /// Everything else (format version, passphrase check, ...).
    Metadata,
    /// M-Pin issuance records, as requester and as authority.
    Mpin,
    /// API token records (digests and scopes, never tokens).
    Tokens,
    /// Threshold signatures made, one entry each, under their order record's key.
    Signatures,
}

impl Column {
    /// The column family's name in rocksdb.
    pub fn name(self) -> &'static str {
        match self {
            Self::Blocks => "blocks",
            Self::Identities => "identities",
            Self::Orders => "orders",
            Self::Keystore => "keystore",
            Self::Metadata => "metadata",
            Self::Mpin => "mpin",
            Self::Tokens => "tokens",
            Self::Signatures => "signatures",
        }
    }
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// rocksdb reported an error (the database may be locked by another process).
    #[error("database error: {0}")]
    Db(#[from] rocksdb::Error),
    /// A column family is missing: not a dta database.
    #[error("column family {0} is missing")]
    MissingColumn(&'static str),
}

/// A key and its value.
pub type Entry = (Vec<u8>, Vec<u8>);
/// One write of a batch: column family, key, value.
pub type Write = (Column, Vec<u8>, Vec<u8>);

/// A handle on the database. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    db: Arc<DB>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Store({})", self.db.path().display())
    }
}

impl Store {
    /// Opens (or creates) the database at `path` with every column family.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let mut options = column_options();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        // Small nodes: keep memory and disk modest.
        options.set_max_open_files(256);
        options.set_keep_log_file_num(4);
        options.set_manifest_preallocation_size(MANIFEST_PREALLOCATION_BYTES);
        // rocksdb's own `default` family too: left out, it would be opened with rocksdb's
        // default options, and its memtable size the log's preallocation.
        let families = std::iter::once(rocksdb::DEFAULT_COLUMN_FAMILY_NAME)
            .chain(COLUMN_FAMILIES.iter().map(|c| c.name()))
            .map(|name| ColumnFamilyDescriptor::new(name, column_options()));
        let db = DB::open_cf_descriptors(&options, path, families)?;
        Ok(Self { db: Arc::new(db) })
    }

    fn cf(&self, column: Column) -> Result<&rocksdb::ColumnFamily, StoreError> {
        self.db
            .cf_handle(column.name())
            .ok_or(StoreError::MissingColumn(column.name()))
    }

    /// Reads one value.
    pub fn get(&self, column: Column, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.get_cf(self.cf(column)?, key)?)
    }

    /// Writes one value and syncs it to disk before returning.
    pub fn put_durable(&self, column: Column, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        let mut options = WriteOptions::default();
        options.set_sync(true);
        Ok(self.db.put_cf_opt(self.cf(column)?, key, value, &options)?)
    }

    /// Writes several values atomically and syncs them to disk before returning.
    pub fn write_durable(&self, entries: Vec<Write>) -> Result<(), StoreError> {
        let mut batch = rocksdb::WriteBatch::default();
        for (column, key, value) in &entries {
            batch.put_cf(self.cf(*column)?, key, value);
        }
        let mut options = WriteOptions::default();
        options.set_sync(true);
        Ok(self.db.write_opt(batch, &options)?)
    }

    /// Writes several values atomically to the log without waiting for the disk: they
    /// survive the process crashing, not the machine losing power, until the next synced
    /// write (which syncs everything before it).
    pub fn write_buffered(&self, entries: Vec<Write>) -> Result<(), StoreError> {
        let mut batch = rocksdb::WriteBatch::default();
        for (column, key, value) in &entries {
            batch.put_cf(self.cf(*column)?, key, value);
        }
        Ok(self.db.write(batch)?)
    }

    /// Compacts a column family from end to end, so that overwritten and deleted values are
    /// dropped from the files on disk rather than left until a later compaction.
    pub fn compact(&self, column: Column) -> Result<(), StoreError> {
        let cf = self.cf(column)?;
        self.db.flush_cf(cf)?;
        self.db.compact_range_cf(cf, None::<&[u8]>, None::<&[u8]>);
        Ok(())
    }

    /// Deletes one key, synced.
    pub fn delete_durable(&self, column: Column, key: &[u8]) -> Result<(), StoreError> {
        let mut options = WriteOptions::default();
        options.set_sync(true);
        Ok(self.db.delete_cf_opt(self.cf(column)?, key, &options)?)
    }

    /// Hands `visit` every key and value of a column family, in key order, one at a time
    /// (for a column too large to hold at once).
    pub fn visit(
        &self,
        column: Column,
        mut visit: impl FnMut(&[u8], &[u8]),
    ) -> Result<(), StoreError> {
        for item in self
            .db
            .iterator_cf(self.cf(column)?, rocksdb::IteratorMode::Start)
        {
            let (key, value) = item?;
            visit(&key, &value);
        }
        Ok(())
    }

    /// Makes a consistent copy of the whole database in the new directory `into` (hard
    /// links where it can: on the same file system it takes no room until the database
    /// moves on), while the database stays open and in use.
    pub fn checkpoint(&self, into: &std::path::Path) -> Result<(), StoreError> {
        Ok(rocksdb::checkpoint::Checkpoint::new(&*self.db)?.create_checkpoint(into)?)
    }

    /// Hands `visit` the keys and values of a column family that come after `after` (from
    /// the first without it), in key order, one at a time, until `visit` answers false.
    pub fn visit_after(
        &self,
        column: Column,
        after: Option<&[u8]>,
        mut visit: impl FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        let mode = match after {
            Some(key) => rocksdb::IteratorMode::From(key, rocksdb::Direction::Forward),
            None => rocksdb::IteratorMode::Start,
        };
        for item in self.db.iterator_cf(self.cf(column)?, mode) {
            let (key, value) = item?;
            if after.is_some_and(|after| *key <= *after) {
                continue;
            }
            if !visit(&key, &value) {
                break;
            }
        }
        Ok(())
    }

    /// A block by its CID: a stored block, else an identity document this node knows, which
    /// is a DAG-CBOR block under its CID like any other (envelopes link to them).
    pub fn block(&self, cid: &dta_protocol::Cid) -> Result<Option<Vec<u8>>, StoreError> {
        let key = cid.to_bytes();
        match self.get(Column::Blocks, &key)? {
            Some(bytes) => Ok(Some(bytes)),
            None => self.get(Column::Identities, &key),
        }
    }

    /// Every key and value of a column family, in key order.
    pub fn scan(&self, column: Column) -> Result<Vec<Entry>, StoreError> {
        let mut out = Vec::new();
        for item in self
            .db
            .iterator_cf(self.cf(column)?, rocksdb::IteratorMode::Start)
        {
            let (key, value) = item?;
            out.push((key.to_vec(), value.to_vec()));
        }
        Ok(out)
    }

    /// rocksdb's estimate of the number of keys in a column family.
    pub fn estimated_keys(&self, column: Column) -> u64 {
        self.cf(column)
            .ok()
            .and_then(|cf| {
                self.db
                    .property_int_value_cf(cf, "rocksdb.estimate-num-keys")
                    .ok()
                    .flatten()
            })
            .unwrap_or(0)
    }

    /// Flushes memtables and the write-ahead log to disk.
    pub fn flush(&self) -> Result<(), StoreError> {
        for column in COLUMN_FAMILIES {
            self.db.flush_cf(self.cf(column)?)?;
        }
        self.db.flush_wal(true)?;
        Ok(())
    }
}

impl dta_protocol::network::BlockSource for Store {
    fn block(&self, cid: &dta_protocol::Cid) -> Option<Vec<u8>> {
        Store::block(self, cid).ok().flatten()
    }
}

/// Messages to the [`StoreActor`].
#[derive(Debug)]
pub enum StoreMsg {
    /// Write durably, then answer.
    Put {
        /// Column family.
        column: Column,
        /// Key.
        key: Vec<u8>,
        /// Value.
        value: Vec<u8>,
        /// Answered once the write is on disk.
        reply: RpcReplyPort<Result<(), StoreError>>,
    },
    /// Flush everything to disk (on shutdown).
    Flush(RpcReplyPort<Result<(), StoreError>>),
}

/// The single writer of acknowledged state. Other actors read through a [`Store`] handle.
#[derive(Debug)]
pub struct StoreActor;

impl Actor for StoreActor {
    type Msg = StoreMsg;
    type State = Store;
    type Arguments = Store;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        store: Store,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(store)
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        store: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            StoreMsg::Put {
                column,
                key,
                value,
                reply,
            } => {
                let store = store.clone();
                // A synced write blocks on the disk: keep it off the async workers.
                let result =
                    tokio::task::spawn_blocking(move || store.put_durable(column, &key, &value))
                        .await?;
                let _ = reply.send(result);
            }
            StoreMsg::Flush(reply) => {
                let store = store.clone();
                let result = tokio::task::spawn_blocking(move || store.flush()).await?;
                let _ = reply.send(result);
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        store: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        store.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Disk blocks the files under `dir` take (not their apparent size: rocksdb preallocates).
    fn allocated_bytes(dir: &Path) -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| {
                let entry = entry.unwrap();
                let metadata = entry.metadata().unwrap();
                if metadata.is_dir() {
                    allocated_bytes(&entry.path())
                } else {
                    metadata.blocks() * 512
                }
            })
            .sum()
    }

    #[test]
    fn a_new_store_takes_a_few_megabytes_of_disk_not_rocksdbs_default_seventy() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store
            .put_durable(Column::Metadata, b"written", b"synced")
            .unwrap();
        let taken = allocated_bytes(dir.path());
        assert!(taken < 8 << 20, "{} MiB on disk", taken >> 20);
        assert_eq!(
            store.get(Column::Metadata, b"written").unwrap().as_deref(),
            Some(&b"synced"[..])
        );
    }
}
