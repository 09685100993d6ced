//! The aborted-transaction index of a segment (`<base offset>.txnindex`,
//! Kafka's `TransactionIndex`): for every transaction aborted by a marker in
//! the segment, its producer id, first offset, last offset (the marker's) and
//! the partition's last stable offset when the marker was written. A
//! read_committed Fetch lists the aborted transactions that overlap the
//! offsets it returns, so the client drops their records.
//!
//! File format: a sequence of 34-byte entries, each `int16 version (0),
//! int64 producer id, int64 first offset, int64 last offset, int64 last
//! stable offset`, big-endian, in the order the markers were written (last
//! offsets strictly increasing). A file whose length is not a multiple of 34,
//! or with another version, is damaged.
//!
//! This module is the format and the in-memory index (deterministic, no I/O).
//! The log keeps one `TxnIndex` for all its segments in memory (entries in
//! marker order across segments) and writes each segment's entries to that
//! segment's file (`Log::append_marker`; rebuilt by recovery, cut by
//! truncation, dropped with the segment by retention).

use fjord_model::{Offset, ProducerId};

/// Suffix of aborted-transaction index files.
pub const TXN_INDEX_SUFFIX: &str = "txnindex";
/// Bytes of one entry.
pub const ABORTED_TXN_BYTES: usize = 2 + 8 + 8 + 8 + 8;
const ABORTED_TXN_VERSION: i16 = 0;

/// One aborted transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AbortedTxn {
    pub producer_id: ProducerId,
    pub first_offset: Offset,
    /// The offset of the ABORT marker.
    pub last_offset: Offset,
    pub last_stable_offset: Offset,
}

impl AbortedTxn {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&ABORTED_TXN_VERSION.to_be_bytes());
        out.extend_from_slice(&self.producer_id.0.to_be_bytes());
        out.extend_from_slice(&self.first_offset.0.to_be_bytes());
        out.extend_from_slice(&self.last_offset.0.to_be_bytes());
        out.extend_from_slice(&self.last_stable_offset.0.to_be_bytes());
    }

    fn decode(b: &[u8; ABORTED_TXN_BYTES]) -> Result<AbortedTxn, String> {
        let i64_at = |at: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[at..at + 8]);
            i64::from_be_bytes(a)
        };
        let version = i16::from_be_bytes([b[0], b[1]]);
        if version != ABORTED_TXN_VERSION {
            return Err(format!("unknown aborted transaction version {version}"));
        }
        Ok(AbortedTxn {
            producer_id: ProducerId(i64_at(2)),
            first_offset: Offset(i64_at(10)),
            last_offset: Offset(i64_at(18)),
            last_stable_offset: Offset(i64_at(26)),
        })
    }
}

/// The aborted transactions of one segment, in marker order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TxnIndex {
    entries: Vec<AbortedTxn>,
}

impl TxnIndex {
    pub fn new() -> TxnIndex {
        TxnIndex::default()
    }

    /// Reads a `.txnindex` file's bytes (allocation bounded by the bytes present).
    pub fn from_bytes(bytes: &[u8]) -> Result<TxnIndex, String> {
        if !bytes.len().is_multiple_of(ABORTED_TXN_BYTES) {
            return Err(format!(
                "length {} is not a multiple of {ABORTED_TXN_BYTES}",
                bytes.len()
            ));
        }
        let mut index = TxnIndex {
            entries: Vec::with_capacity(bytes.len() / ABORTED_TXN_BYTES),
        };
        for chunk in bytes.chunks_exact(ABORTED_TXN_BYTES) {
            let mut entry = [0u8; ABORTED_TXN_BYTES];
            entry.copy_from_slice(chunk);
            let txn = AbortedTxn::decode(&entry)?;
            index.check_next(&txn)?;
            index.entries.push(txn);
        }
        Ok(index)
    }

    /// An index of `entries` (in marker order, each a range).
    pub fn from_entries(entries: Vec<AbortedTxn>) -> Result<TxnIndex, String> {
        let mut index = TxnIndex {
            entries: Vec::with_capacity(entries.len()),
        };
        for txn in entries {
            index.check_next(&txn)?;
            index.entries.push(txn);
        }
        Ok(index)
    }

    fn check_next(&self, txn: &AbortedTxn) -> Result<(), String> {
        if txn.first_offset > txn.last_offset || txn.first_offset.0 < 0 {
            return Err(format!(
                "aborted transaction {}..={} is not a range",
                txn.first_offset, txn.last_offset
            ));
        }
        if let Some(prev) = self.entries.last() {
            if txn.last_offset <= prev.last_offset {
                return Err(format!(
                    "last offset {} does not follow {}",
                    txn.last_offset, prev.last_offset
                ));
            }
        }
        Ok(())
    }

    /// Records a transaction aborted by a marker just written (its last offset above
    /// every recorded one: markers are appended in offset order).
    pub fn append(&mut self, txn: AbortedTxn) {
        let ordered = self.check_next(&txn);
        assert!(ordered.is_ok(), "txn index append: {ordered:?}");
        self.entries.push(txn);
    }

    /// The file's bytes.
    pub fn encode(&self) -> Vec<u8> {
        encode_entries(&self.entries)
    }

    /// The entries whose marker lies in `from..to` (one segment's file).
    pub fn entries_between(&self, from: Offset, to: Offset) -> &[AbortedTxn] {
        let a = self.entries.partition_point(|e| e.last_offset < from);
        let b = self.entries.partition_point(|e| e.last_offset < to);
        &self.entries[a..b.max(a)]
    }

    /// Forgets the transactions whose marker is below `offset` (segments deleted from the
    /// head of the log).
    pub fn drop_before(&mut self, offset: Offset) {
        let n = self.entries.partition_point(|e| e.last_offset < offset);
        self.entries.drain(..n);
        assert!(self.entries.first().is_none_or(|e| e.last_offset >= offset));
    }

    pub fn entries(&self) -> &[AbortedTxn] {
        &self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Adds to `out` the aborted transactions that overlap `fetch_offset..upper_bound`
    /// (last offset at or after the fetch offset, first offset before the bound).
    /// Returns true when no later segment can hold more (an entry's last stable offset
    /// reached the bound), as Kafka's `collectAbortedTxns`.
    pub fn collect(
        &self,
        fetch_offset: Offset,
        upper_bound: Offset,
        out: &mut Vec<AbortedTxn>,
    ) -> bool {
        // Entries before the first one ending at or after the fetch offset cannot overlap.
        let first = self
            .entries
            .partition_point(|e| e.last_offset < fetch_offset);
        for e in &self.entries[first..] {
            if e.last_offset >= fetch_offset && e.first_offset < upper_bound {
                out.push(*e);
            }
            if e.last_stable_offset >= upper_bound {
                return true;
            }
        }
        false
    }

    /// Forgets the transactions whose marker is at or after `offset` (log truncation).
    pub fn truncate_to(&mut self, offset: Offset) {
        self.entries.retain(|e| e.last_offset < offset);
        assert!(self.entries.last().is_none_or(|e| e.last_offset < offset));
    }
}

/// Reads a `.txnindex` file's bytes as far as they are whole, valid entries (each a
/// range); returns them and the problem after them, if any (a torn or damaged file).
pub fn decode_prefix(bytes: &[u8]) -> (Vec<AbortedTxn>, Option<String>) {
    let mut out = Vec::with_capacity(bytes.len() / ABORTED_TXN_BYTES);
    for chunk in bytes.chunks(ABORTED_TXN_BYTES) {
        let Ok(entry) = <&[u8; ABORTED_TXN_BYTES]>::try_from(chunk) else {
            let problem = format!(
                "length {} is not a multiple of {ABORTED_TXN_BYTES}",
                bytes.len()
            );
            return (out, Some(problem));
        };
        match AbortedTxn::decode(entry) {
            Ok(t) if t.first_offset <= t.last_offset && t.first_offset.0 >= 0 => out.push(t),
            Ok(t) => {
                let problem = format!(
                    "aborted transaction {}..={} is not a range",
                    t.first_offset, t.last_offset
                );
                return (out, Some(problem));
            }
            Err(e) => return (out, Some(e)),
        }
    }
    (out, None)
}

/// The file bytes of `entries`.
pub fn encode_entries(entries: &[AbortedTxn]) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.len() * ABORTED_TXN_BYTES);
    for e in entries {
        e.encode(&mut out);
    }
    out
}

/// `<base offset>.txnindex`, the offset zero-padded to 20 digits.
pub fn txn_index_file_name(base_offset: i64) -> String {
    format!("{base_offset:020}.{TXN_INDEX_SUFFIX}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn txn(pid: i64, first: i64, last: i64, lso: i64) -> AbortedTxn {
        AbortedTxn {
            producer_id: ProducerId(pid),
            first_offset: Offset(first),
            last_offset: Offset(last),
            last_stable_offset: Offset(lso),
        }
    }

    /// Written by Kafka 4.3.1's `TransactionIndex.append` for
    /// (1000, 5..=9, lso 5) then (7, 12..=20, lso 11).
    const KAFKA_FILE: &str = "000000000000000003e800000000000000050000000000000009000000000000000500000000000000000007000000000000000c0000000000000014000000000000000b";

    #[test]
    fn file_matches_kafka() {
        let mut idx = TxnIndex::new();
        idx.append(txn(1000, 5, 9, 5));
        idx.append(txn(7, 12, 20, 11));
        assert_eq!(idx.encode(), hex(KAFKA_FILE));
        assert_eq!(TxnIndex::from_bytes(&hex(KAFKA_FILE)).unwrap(), idx);
        assert_eq!(txn_index_file_name(42), "00000000000000000042.txnindex");
    }

    #[test]
    fn damaged_files_are_refused() {
        let good = hex(KAFKA_FILE);
        assert!(TxnIndex::from_bytes(&good[..good.len() - 1]).is_err());
        let mut bad_version = good.clone();
        bad_version[1] = 1;
        assert!(TxnIndex::from_bytes(&bad_version).is_err());
        // Entries out of order.
        let mut swapped = good[ABORTED_TXN_BYTES..].to_vec();
        swapped.extend_from_slice(&good[..ABORTED_TXN_BYTES]);
        assert!(TxnIndex::from_bytes(&swapped).is_err());
        assert_eq!(TxnIndex::from_bytes(&[]).unwrap(), TxnIndex::new());
    }

    #[test]
    fn collect_returns_overlapping_transactions() {
        let mut idx = TxnIndex::new();
        idx.append(txn(1, 0, 4, 0));
        idx.append(txn(2, 3, 10, 3));
        idx.append(txn(3, 12, 15, 11));
        let mut out = Vec::new();
        let complete = idx.collect(Offset(5), Offset(12), &mut out);
        assert_eq!(
            out.iter().map(|t| t.producer_id.0).collect::<Vec<_>>(),
            vec![2]
        );
        assert!(
            !complete,
            "no entry's stable offset reached 12: a later segment may add more"
        );
        out.clear();
        assert!(idx.collect(Offset(0), Offset(11), &mut out));
        assert_eq!(
            out.iter().map(|t| t.producer_id.0).collect::<Vec<_>>(),
            vec![1, 2]
        );
    }

    #[test]
    fn torn_files_keep_their_whole_entries() {
        let good = hex(KAFKA_FILE);
        let (entries, problem) = decode_prefix(&good[..ABORTED_TXN_BYTES + 5]);
        assert!(problem.is_some());
        assert_eq!(entries.len(), 1);
        let (entries, problem) = decode_prefix(&good);
        assert!(problem.is_none());
        let mut all = TxnIndex::from_entries(entries.clone()).unwrap();
        assert_eq!(all, TxnIndex::from_bytes(&good).unwrap());
        let reversed: Vec<_> = entries.into_iter().rev().collect();
        assert!(TxnIndex::from_entries(reversed).is_err());
        assert_eq!(all.entries_between(Offset(10), Offset(21)).len(), 1);
        assert_eq!(all.entries_between(Offset(0), Offset(9)).len(), 0);
        all.drop_before(Offset(10));
        assert_eq!(all.entries()[0].producer_id, ProducerId(7));
    }

    #[test]
    fn truncation_drops_later_markers() {
        let mut idx = TxnIndex::new();
        idx.append(txn(1, 0, 4, 0));
        idx.append(txn(2, 3, 10, 3));
        idx.truncate_to(Offset(10));
        assert_eq!(idx.entries().len(), 1);
        idx.append(txn(2, 3, 10, 3));
        assert_eq!(idx.entries().len(), 2);
    }
}
