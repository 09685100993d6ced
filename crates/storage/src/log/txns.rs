//! The aborted-transaction index (`txn_index`, Kafka's `TransactionIndex`): one
//! in-memory `TxnIndex` for the whole log, each segment's entries (those whose ABORT
//! marker lies in it) in its `<base>.txnindex` file.
//!
//! Durability: an entry is appended to the active segment's file when its marker is
//! written (not synced); the file is synced before a producer snapshot past it is
//! written (segment roll, close). Recovery keeps the entries below the producer snapshot
//! it starts from and rebuilds the later ones by replaying the markers after it, as the
//! producer state is; a damaged file makes it start from a snapshot at or below that
//! segment. Truncation, retention and compaction keep memory and files in step.

#[allow(clippy::wildcard_imports)]
use super::*;

use std::collections::BTreeMap;
use std::fs::OpenOptions;

use crate::txn_index::{
    decode_prefix, encode_entries, txn_index_file_name, AbortedTxn, TxnIndex, ABORTED_TXN_BYTES,
};

impl Log {
    /// The aborted transactions a read_committed fetch from `fetch_offset` that returns
    /// records below `upper_bound` lists (Kafka's `collectAbortedTransactions`): those
    /// whose marker is at or after the fetch offset and that started before the bound.
    pub fn aborted_transactions(
        &self,
        fetch_offset: Offset,
        upper_bound: Offset,
    ) -> Vec<AbortedTxn> {
        let mut out = Vec::new();
        if fetch_offset < upper_bound {
            self.aborted
                .lock()
                .collect(fetch_offset, upper_bound, &mut out);
        }
        out
    }

    /// Every aborted transaction the log knows (tests, diagnostics).
    pub fn aborted_index(&self) -> Vec<AbortedTxn> {
        self.aborted.lock().entries().to_vec()
    }

    /// Records a transaction aborted by a marker just written in the segment at `base`
    /// (under the append lock): in memory, then at the end of that segment's file.
    pub(super) fn record_abort(&self, base: i64, txn: AbortedTxn) -> Result<(), StorageError> {
        assert!(
            txn.last_offset.0 >= base,
            "abort marker {} below its segment {base}",
            txn.last_offset
        );
        let in_segment = {
            let mut idx = self.aborted.lock();
            idx.append(txn);
            idx.entries_between(Offset(base), Offset(i64::MAX)).len()
        };
        let path = self.dir.join(txn_index_file_name(base));
        let pos = ((in_segment - 1) * ABORTED_TXN_BYTES) as u64;
        let fs = &*self.ctx.fs;
        let written = fs
            .open(&path, OpenOptions::new().write(true).create(true))
            .and_then(|f| fs.write_at(&path, &f, &encode_entries(&[txn]), pos));
        written.map_err(|e| {
            let err = StorageError::io_path("write", &path, e);
            self.fail(&err);
            err
        })
    }

    /// Makes the file of the segment at `base` durable (before a producer snapshot past
    /// its entries is written: recovery trusts the entries below the snapshot).
    pub(super) fn sync_txn_index(&self, base: i64) -> Result<(), StorageError> {
        let any = !self
            .aborted
            .lock()
            .entries_between(Offset(base), Offset(i64::MAX))
            .is_empty();
        if !any {
            return Ok(());
        }
        let path = self.dir.join(txn_index_file_name(base));
        let fs = &*self.ctx.fs;
        fs.open(&path, OpenOptions::new().read(true))
            .and_then(|f| fs.sync_all(&path, &f))
            .and_then(|()| checkpoint::sync_dir(fs, &self.dir))
            .map_err(|e| StorageError::io_path("fsync", &path, e))
    }

    /// Rewrites the file of the segment at `base` with the entries in `base..next`.
    pub(super) fn persist_txn_index(&self, base: i64, next: i64) -> Result<(), StorageError> {
        let entries = self
            .aborted
            .lock()
            .entries_between(Offset(base), Offset(next))
            .to_vec();
        write_txn_file(&*self.ctx.fs, &self.dir, base, &entries)
    }

    /// Forgets the entries of segments removed from the head of the log.
    pub(super) fn drop_aborted_before(&self, base: i64) {
        self.aborted.lock().drop_before(Offset(base));
    }

    /// Replaces the in-memory index (truncation).
    pub(super) fn set_aborted(&self, index: TxnIndex) {
        *self.aborted.lock() = index;
    }

    pub(super) fn aborted_copy(&self) -> TxnIndex {
        self.aborted.lock().clone()
    }
}

/// Writes (atomically) or removes the `.txnindex` file of the segment at `base`.
pub(super) fn write_txn_file(
    fs: &dyn FileSystem,
    dir: &Path,
    base: i64,
    entries: &[AbortedTxn],
) -> Result<(), StorageError> {
    let name = txn_index_file_name(base);
    if entries.is_empty() {
        let path = dir.join(&name);
        return match fs.remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StorageError::io_path("remove", &path, e)),
        };
    }
    checkpoint::write_atomic(fs, dir, &name, &encode_entries(entries))
        .map_err(|e| StorageError::io_path("write", &dir.join(&name), e))
}

/// The `.txnindex` files found at open.
pub(super) struct LoadedTxnFiles {
    /// What each file holds (its whole valid entries), by segment base.
    pub on_disk: BTreeMap<i64, Vec<AbortedTxn>>,
    /// The lowest base whose file is damaged: recovery rebuilds from there on.
    pub damaged: Option<i64>,
    /// Every entry, by marker offset (a compaction interrupted between writing the
    /// merged segment's file and removing the others' may hold one twice).
    pub by_marker: BTreeMap<i64, AbortedTxn>,
}

/// Reads the `.txnindex` files at `bases`.
pub(super) fn load_txn_files(
    dir: &Path,
    bases: &[i64],
    report: &mut RecoveryReport,
) -> LoadedTxnFiles {
    let mut loaded = LoadedTxnFiles {
        on_disk: BTreeMap::new(),
        damaged: None,
        by_marker: BTreeMap::new(),
    };
    for &base in bases {
        let path = dir.join(txn_index_file_name(base));
        let (entries, problem) = match std::fs::read(&path) {
            Ok(bytes) => decode_prefix(&bytes),
            Err(e) => (Vec::new(), Some(e.to_string())),
        };
        if let Some(p) = problem {
            report.problems.push(format!(
                "{}: {p}; rebuilding the aborted transactions from the log",
                path.display()
            ));
            tracing::warn!(dir = %dir.display(), "log recovery: {}: {p}", path.display());
            loaded.damaged = Some(loaded.damaged.map_or(base, |d| d.min(base)));
        }
        for e in &entries {
            loaded.by_marker.insert(e.last_offset.0, *e);
        }
        loaded.on_disk.insert(base, entries);
    }
    loaded
}

/// Builds the log-wide index from what was loaded: the entries of markers in
/// `first_base..log_end` (in marker order by construction). `None` with an empty
/// index when they do not form one (recovery then rebuilds it all).
pub(super) fn index_from_loaded(
    loaded: &LoadedTxnFiles,
    first_base: i64,
    log_end: i64,
) -> Option<TxnIndex> {
    let entries = loaded
        .by_marker
        .range(first_base..log_end.max(first_base))
        .map(|(_, e)| *e)
        .collect();
    TxnIndex::from_entries(entries).ok()
}

/// Whether a transaction marker batch (`producer_state::is_txn_marker`) is an ABORT,
/// from its control record.
pub(super) fn marker_aborts(h: &BatchHeader, batch: &[u8]) -> Result<bool, RecordsError> {
    Ok(fjord_records::parse_end_txn_marker(h, batch)?
        .is_some_and(|m| m.marker == MarkerType::Abort))
}

/// Replays a transaction marker read from the log (recovery, a follower's append) into
/// the producer state; an ABORT that ended an open transaction returns it to index.
pub(super) fn replay_marker(
    producers: &mut ProducerStateMap,
    h: &BatchHeader,
    aborted: bool,
) -> Option<AbortedTxn> {
    let completed = producers.replay_marker_batch(h, aborted)?;
    aborted.then(|| AbortedTxn {
        producer_id: completed.producer_id,
        first_offset: completed.first_offset,
        last_offset: completed.last_offset,
        last_stable_offset: producers.stable_offset_after(&completed),
    })
}
