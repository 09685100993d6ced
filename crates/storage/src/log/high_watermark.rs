//! The high watermark the partition layer saves in the log's directory (Kafka's
//! `replication-offset-checkpoint`), so that a replica restarted together with the rest of
//! its cluster starts from what was committed before, not from its log start.
//!
//! The value is the partition layer's: storage only keeps it within the log. A saved high
//! watermark is never above what was committed when it was saved, and committed records
//! are never truncated, so after any restart it is still committed; a missing or
//! unreadable file only means starting lower, as before the file existed.

#[allow(clippy::wildcard_imports)]
use super::*;

use crate::checkpoint::HIGH_WATERMARK_FILE;

impl Log {
    /// The saved high watermark, kept within `[log start, log end]` (a crash may have cut
    /// an unsynced tail below it; DeleteRecords or retention may have moved the start past
    /// it). `None` for a closed or absent log, or without a readable file.
    pub fn saved_high_watermark(&self) -> Option<Offset> {
        if self.status.load(Ordering::Acquire) != OPEN {
            return None;
        }
        match checkpoint::read_offset(&self.dir, HIGH_WATERMARK_FILE) {
            Ok(Some(saved)) => {
                let start = self.log_start_offset().0;
                let end = self.log_end_offset().0.max(start);
                Some(Offset(saved.clamp(start, end)))
            }
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(dir = %self.dir.display(), "ignoring the saved high watermark: {e}");
                None
            }
        }
    }

    /// Saves `high_watermark` (fsynced, renamed into place; the directory entry is left to
    /// the next sync of the directory: a crash before it keeps the previous file, which is
    /// lower and as true). Nothing on a closed or absent log. A failed write is reported
    /// to the storage's owner like a failed recovery-point checkpoint.
    pub fn save_high_watermark(&self, high_watermark: Offset) -> Result<(), StorageError> {
        let _admin = self.admin.lock();
        if self.status.load(Ordering::Acquire) != OPEN {
            return Ok(());
        }
        // Relied on by `saved_high_watermark`'s callers: only committed offsets are saved,
        // and committed records are in the log.
        assert!(
            high_watermark.0 <= self.log_end.load(Ordering::Acquire),
            "{}: saving high watermark {high_watermark} past the log end",
            self.dir.display()
        );
        checkpoint::write_offset_synced(
            &*self.ctx.fs,
            &self.dir,
            HIGH_WATERMARK_FILE,
            high_watermark.0,
            false,
        )
        .map_err(|e| StorageError::io_path("write high watermark in", &self.dir, e))
        .inspect_err(|e| self.ctx.failed(&self.dir, &e.to_string()))
    }
}
