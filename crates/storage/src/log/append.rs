//! The write path: `append` (client data), `append_as_leader` (the epoch passed in) and
//! `append_as_follower` (the leader's offsets), segment rolls.

#[allow(clippy::wildcard_imports)]
use super::*;

impl Log {
    /// Validates, assigns offsets to and writes one Produce request's batches. No fsync.
    /// Stamps the latest recorded leader epoch (if any) into the batches. Kept for callers
    /// that do not know their epoch yet; `append_as_leader` states it.
    pub fn append(&self, records: &mut [u8], now_ms: i64) -> Result<AppendResult, StorageError> {
        self.append_assigning(Input::Owned(records), None, now_ms)
    }

    /// The leader's append (Kafka's `appendAsLeader`): validates the batches, assigns their
    /// offsets, stamps `leader_epoch` into every batch header (`partitionLeaderEpoch` lies
    /// before the CRC'd part, so the CRC stays valid) and writes them. The first append of a
    /// new epoch records `(leader_epoch, log end)` in the leader epoch cache and its
    /// checkpoint. An epoch below the latest recorded one is refused
    /// (FENCED_LEADER_EPOCH): the epoch comes from the caller, never from the data.
    /// Control batches are refused (INVALID_RECORD's family): clients may not write them.
    pub fn append_as_leader(
        &self,
        records: &mut [u8],
        leader_epoch: LeaderEpoch,
        now_ms: i64,
    ) -> Result<AppendResult, StorageError> {
        Self::leader_checks(records, leader_epoch)?;
        self.append_assigning(Input::Owned(records), Some(leader_epoch.0), now_ms)
    }

    /// `append_as_leader` without copying or changing `records` (a Produce request's bytes,
    /// shared with the request buffer): each batch's first `PREFIX_BYTES` (base offset,
    /// length, partition leader epoch: outside the CRC) are patched in a small buffer and
    /// written with the rest of the caller's bytes by one pwritev, so the file holds the
    /// same bytes as after `append_as_leader`. LogAppendTime topics (whose CRC changes)
    /// take one copy.
    pub fn append_as_leader_shared(
        &self,
        records: &[u8],
        leader_epoch: LeaderEpoch,
        now_ms: i64,
    ) -> Result<AppendResult, StorageError> {
        Self::leader_checks(records, leader_epoch)?;
        self.append_assigning(Input::Shared(records), Some(leader_epoch.0), now_ms)
    }

    /// `append_as_leader_shared` for a client's Produce while the producers of
    /// `verifying` have a transaction verification in progress on this leader (KIP-890):
    /// their batches are also held to the verification's sequence rules
    /// (`ProducerStateMap::check_client`; OUT_OF_ORDER_SEQUENCE_NUMBER).
    pub fn append_as_leader_verifying(
        &self,
        records: &[u8],
        leader_epoch: LeaderEpoch,
        now_ms: i64,
        verifying: &[VerifyingProducer],
    ) -> Result<AppendResult, StorageError> {
        Self::leader_checks(records, leader_epoch)?;
        self.append_assigning_from(
            Input::Shared(records),
            Some(leader_epoch.0),
            now_ms,
            Origin::Client(verifying),
        )
    }

    fn leader_checks(records: &[u8], leader_epoch: LeaderEpoch) -> Result<(), StorageError> {
        if leader_epoch.0 < 0 {
            return Err(StorageError::InvalidArgument(format!(
                "leader epoch {} is negative",
                leader_epoch.0
            )));
        }
        // Client data: only the transaction coordinator writes markers
        // (`append_marker`); the metadata log's own control records go through `append`.
        if batches(records).flatten().any(|(h, _)| h.is_control()) {
            return Err(StorageError::InvalidRecord(RecordsError::InvalidRecord(
                "clients may not write control batches".to_string(),
            )));
        }
        Ok(())
    }

    /// `append_as_leader` for a coordinator's own records (Kafka's origin
    /// COORDINATOR): a transactional batch may come without a sequence (the group
    /// coordinator's TxnOffsetCommit records); its producer epoch is still checked
    /// (INVALID_PRODUCER_EPOCH) and it opens the producer's transaction here.
    pub fn append_as_coordinator(
        &self,
        records: &mut [u8],
        leader_epoch: LeaderEpoch,
        now_ms: i64,
    ) -> Result<AppendResult, StorageError> {
        if leader_epoch.0 < 0 {
            return Err(StorageError::InvalidArgument(format!(
                "leader epoch {} is negative",
                leader_epoch.0
            )));
        }
        if batches(records).flatten().any(|(h, _)| h.is_control()) {
            return Err(StorageError::InvalidRecord(RecordsError::InvalidRecord(
                "coordinators write markers with append_marker".to_string(),
            )));
        }
        self.append_assigning_from(
            Input::Owned(records),
            Some(leader_epoch.0),
            now_ms,
            Origin::Coordinator,
        )
    }

    /// Checks framing, CRC and (for client data) sizes of every batch, before any lock.
    /// A leader's batches are checked as stored (`validate_stored_batch`): a compacted
    /// batch, with records missing, is what a leader serves from its cleaned segments.
    pub(super) fn validate_batches(
        records: &[u8],
        cfg: &LogConfig,
        source: BatchSource,
    ) -> Result<Vec<(BatchHeader, Range<usize>)>, StorageError> {
        let check_message_size = source == BatchSource::Client;
        if records.len() as u64 > cfg.segment_bytes_max {
            return Err(StorageError::RecordListTooLarge {
                size: records.len(),
                max: cfg.segment_bytes_max,
            });
        }
        let mut found: Vec<(BatchHeader, Range<usize>)> = Vec::new();
        for item in batches(records) {
            let (h, range) = item.map_err(StorageError::InvalidRecord)?;
            if check_message_size && range.len() > cfg.message_bytes_max {
                return Err(StorageError::MessageTooLarge {
                    size: range.len(),
                    max: cfg.message_bytes_max,
                });
            }
            let bytes = &records[range.clone()];
            match source {
                BatchSource::Client => validate_batch(bytes),
                BatchSource::Leader => validate_stored_batch(bytes),
            }
            .map_err(StorageError::InvalidRecord)?;
            found.push((h, range));
        }
        Ok(found)
    }

    /// `append` and `append_as_leader`: `leader_epoch` None stamps the latest recorded one.
    pub(super) fn append_assigning(
        &self,
        input: Input<'_>,
        leader_epoch: Option<i32>,
        now_ms: i64,
    ) -> Result<AppendResult, StorageError> {
        self.append_assigning_from(input, leader_epoch, now_ms, Origin::Client(&[]))
    }

    /// `append_assigning` for an append of `origin`.
    fn append_assigning_from(
        &self,
        input: Input<'_>,
        leader_epoch: Option<i32>,
        now_ms: i64,
        origin: Origin<'_>,
    ) -> Result<AppendResult, StorageError> {
        self.check_writable()?;
        let cfg = self.config.read().clone();
        let mut copy: Vec<u8>;
        let mut input = input;
        if let (Input::Shared(records), TimestampType::LogAppendTime) = (&input, cfg.timestamp_type)
        {
            // The new timestamp is inside the CRC'd part: patch a copy.
            copy = records.to_vec();
            input = Input::Owned(&mut copy);
        }
        // Validation (CRC) happens before the append lock is taken.
        let mut found = Self::validate_batches(input.bytes(), &cfg, BatchSource::Client)?;
        // Shared input: each batch's patched first bytes (empty for owned input).
        let mut prefixes: Vec<[u8; PREFIX_BYTES]> = match &input {
            Input::Owned(_) => Vec::new(),
            Input::Shared(records) => found
                .iter()
                .map(|(_, r)| {
                    let mut p = [0u8; PREFIX_BYTES];
                    p.copy_from_slice(&records[r.start..r.start + PREFIX_BYTES]);
                    p
                })
                .collect(),
        };
        let log_append_time_ms = match cfg.timestamp_type {
            TimestampType::LogAppendTime => {
                let Input::Owned(records) = &mut input else {
                    unreachable!("LogAppendTime input is copied above");
                };
                for (h, r) in &mut found {
                    set_log_append_time(&mut records[r.clone()], now_ms);
                    h.max_timestamp = now_ms;
                    h.attributes |= fjord_records::attributes::TIMESTAMP_TYPE;
                }
                now_ms
            }
            TimestampType::CreateTime => -1,
        };
        let stamp = match leader_epoch {
            Some(e) => Some(e),
            None => self.epochs.lock().last().map(|&(e, _)| e),
        };
        if let Some(epoch) = stamp {
            for (i, (h, r)) in found.iter_mut().enumerate() {
                match &mut input {
                    Input::Owned(records) => {
                        set_partition_leader_epoch(&mut records[r.clone()], epoch);
                    }
                    Input::Shared(_) => {
                        set_partition_leader_epoch_in_prefix(&mut prefixes[i], epoch);
                    }
                }
                h.partition_leader_epoch = epoch;
            }
        }
        let (records_count, span) = batch_totals(&found);

        let mut st = self.append.lock();
        self.check_writable()?;
        let leo = self.log_end.load(Ordering::Acquire);
        if let Some(epoch) = leader_epoch {
            if let Some(&(latest, _)) = self.epochs.lock().last() {
                if epoch < latest {
                    return Err(StorageError::FencedLeaderEpoch { epoch, latest });
                }
            }
        }
        if found.is_empty() {
            return Ok(AppendResult {
                base_offset: Offset(leo),
                last_offset: Offset(leo - 1),
                log_append_time_ms,
                log_start_offset: Offset(self.view.read().log_start),
                records_count: 0,
                duplicate: false,
            });
        }
        // Idempotent producers: decide with the offsets the batches would get.
        let mut producer_update = None;
        if found.iter().any(|(h, _)| h.producer_id >= 0) {
            let mut next = leo;
            let mut incoming = Vec::with_capacity(found.len());
            for (h, _) in &found {
                let mut at = *h;
                at.base_offset = next;
                next = at.next_offset();
                incoming.extend(IncomingBatch::from_header(&at));
            }
            let verdict = match origin {
                Origin::Client(verifying) => {
                    st.producers
                        .check_client(&incoming, found.len(), verifying)?
                }
                Origin::Coordinator => st.producers.check_from(&incoming, found.len(), true)?,
            };
            match verdict {
                Verdict::Append(update) => producer_update = Some(update),
                Verdict::Duplicate { first, last } => {
                    return Ok(AppendResult {
                        base_offset: first.base_offset,
                        last_offset: last.last_offset,
                        log_append_time_ms: match cfg.timestamp_type {
                            TimestampType::LogAppendTime => last.timestamp_ms,
                            TimestampType::CreateTime => -1,
                        },
                        log_start_offset: Offset(self.view.read().log_start),
                        records_count: 0,
                        duplicate: true,
                    });
                }
            }
        }
        if let Some(epoch) = leader_epoch {
            // The first append of a new epoch: the epoch starts at the log end.
            self.assign_epochs(&[(epoch, leo)])?;
        }
        let mut next = leo;
        for (i, (h, r)) in found.iter_mut().enumerate() {
            match &mut input {
                Input::Owned(records) => set_base_offset(&mut records[r.clone()], next),
                Input::Shared(_) => set_base_offset_in_prefix(&mut prefixes[i], next),
            }
            h.base_offset = next;
            next = h.next_offset();
        }
        let rolled = self.write_locked(
            &mut st,
            &cfg,
            input.bytes(),
            &prefixes,
            &found,
            span,
            now_ms,
        )?;
        if let Some(update) = producer_update {
            st.producers.commit(update, now_ms);
        }
        self.after_write(st, &cfg, records_count, rolled, now_ms);
        Ok(AppendResult {
            base_offset: Offset(leo),
            last_offset: Offset(next - 1),
            log_append_time_ms,
            log_start_offset: Offset(self.view.read().log_start),
            records_count,
            duplicate: false,
        })
    }

    /// Writes a transaction marker (a COMMIT or ABORT control batch, Kafka's
    /// `appendAsLeader` with origin COORDINATOR) for `producer_id` at the log end, as
    /// the leader of `leader_epoch`, and closes the producer's open transaction
    /// (`ProducerStateMap::check_marker`: a marker of an older producer epoch is
    /// INVALID_PRODUCER_EPOCH, of an older coordinator epoch
    /// TRANSACTION_COORDINATOR_FENCED; nothing is written then). Returns where it went
    /// and the transaction it closed (`None`: the producer had none open here, and the
    /// aborted-transaction index gets nothing, as in Kafka). No fsync.
    pub fn append_marker(
        &self,
        marker: &TxnMarker,
        leader_epoch: LeaderEpoch,
        now_ms: i64,
    ) -> Result<(AppendResult, Option<CompletedTxn>), StorageError> {
        self.check_writable()?;
        if leader_epoch.0 < 0 {
            return Err(StorageError::InvalidArgument(format!(
                "leader epoch {} is negative",
                leader_epoch.0
            )));
        }
        let cfg = self.config.read().clone();
        let mut st = self.append.lock();
        self.check_writable()?;
        if let Some(&(latest, _)) = self.epochs.lock().last() {
            if leader_epoch.0 < latest {
                return Err(StorageError::FencedLeaderEpoch {
                    epoch: leader_epoch.0,
                    latest,
                });
            }
        }
        let leo = self.log_end.load(Ordering::Acquire);
        let incoming = IncomingMarker {
            producer_id: marker.producer_id,
            epoch: marker.producer_epoch,
            coordinator_epoch: marker.coordinator_epoch,
            offset: Offset(leo),
            timestamp_ms: now_ms,
            aborted: marker.aborted,
            transaction_version: marker.transaction_version,
        };
        let (update, completed) = st.producers.check_marker(&incoming)?;
        let kind = if marker.aborted {
            MarkerType::Abort
        } else {
            MarkerType::Commit
        };
        let mut records = end_txn_marker_batch(
            leo,
            now_ms,
            leader_epoch.0,
            marker.producer_id.0,
            marker.producer_epoch.0,
            EndTxnMarker {
                marker: kind,
                coordinator_epoch: marker.coordinator_epoch,
            },
        );
        let found = Self::validate_batches(&records, &cfg, BatchSource::Leader)?;
        assert_eq!(found.len(), 1, "a marker is one batch");
        if cfg.timestamp_type == TimestampType::LogAppendTime {
            set_log_append_time(&mut records, now_ms);
        }
        self.assign_epochs(&[(leader_epoch.0, leo)])?;
        let rolled = self.write_locked(&mut st, &cfg, &records, &[], &found, 1, now_ms)?;
        st.producers.commit(update, now_ms);
        if let Some(completed) = completed.filter(|c| c.aborted) {
            let txn = AbortedTxn {
                producer_id: completed.producer_id,
                first_offset: completed.first_offset,
                last_offset: completed.last_offset,
                last_stable_offset: st.producers.stable_offset_after(&completed),
            };
            self.record_abort(st.active.base_offset, txn)?;
        }
        // Relied on by the last stable offset: the marker closed the transaction.
        assert!(
            st.producers
                .get(marker.producer_id)
                .is_none_or(|e| e.current_txn_first_offset.is_none()),
            "producer {} still has an open transaction after its marker",
            marker.producer_id.0
        );
        self.after_write(st, &cfg, 1, rolled, now_ms);
        Ok((
            AppendResult {
                base_offset: Offset(leo),
                last_offset: Offset(leo),
                log_append_time_ms: -1,
                log_start_offset: Offset(self.view.read().log_start),
                records_count: 1,
                duplicate: false,
            },
            completed,
        ))
    }

    /// The first offset of the oldest open transaction (`None`: none is open): the
    /// last stable offset is at most this.
    pub fn first_unstable_offset(&self) -> Option<Offset> {
        self.append.lock().producers.first_unstable_offset()
    }

    /// A follower's append (Kafka's `appendAsFollower`): batches whose offsets and leader
    /// epochs the leader assigned, written as they are. The first batch must start at the
    /// log end and each next one where the previous ends (OFFSETS_OUT_OF_ORDER otherwise,
    /// nothing written); CRCs are checked, `max.message.bytes` is not (the leader
    /// accepted them). Epochs are learnt from the batches (a batch with an epoch above the
    /// latest recorded one starts that epoch; one below it is refused), and the producer
    /// state is updated as recovery's replay does, without sequence checks.
    pub fn append_as_follower(
        &self,
        records: &[u8],
        now_ms: i64,
    ) -> Result<AppendResult, StorageError> {
        self.check_writable()?;
        let cfg = self.config.read().clone();
        let found = Self::validate_batches(records, &cfg, BatchSource::Leader)?;
        let (records_count, span) = batch_totals(&found);

        let mut st = self.append.lock();
        self.check_writable()?;
        let leo = self.log_end.load(Ordering::Acquire);
        let log_start_offset = Offset(self.view.read().log_start);
        let Some((first, _)) = found.first() else {
            return Ok(AppendResult {
                base_offset: Offset(leo),
                last_offset: Offset(leo - 1),
                log_append_time_ms: -1,
                log_start_offset,
                records_count: 0,
                duplicate: false,
            });
        };
        let base = first.base_offset;
        // Offsets continue the log without a gap; epochs never go back.
        let mut latest = self.epochs.lock().last().map(|&(e, _)| e);
        let mut new_epochs: Vec<(i32, i64)> = Vec::new();
        let mut next = leo;
        for (h, _) in &found {
            if h.base_offset != next || h.last_offset_delta < 0 {
                return Err(StorageError::OffsetsOutOfOrder {
                    expected: next,
                    found: h.base_offset,
                    detail: format!(
                        "batch {}..={} does not follow offset {}",
                        h.base_offset,
                        h.last_offset(),
                        next - 1
                    ),
                });
            }
            let epoch = h.partition_leader_epoch;
            if epoch >= 0 {
                if latest.is_some_and(|l| epoch < l) {
                    return Err(StorageError::OffsetsOutOfOrder {
                        expected: next,
                        found: h.base_offset,
                        detail: format!(
                            "batch at {} has leader epoch {epoch}, below {}",
                            h.base_offset,
                            latest.unwrap_or(-1)
                        ),
                    });
                }
                if latest.is_none_or(|l| epoch > l) {
                    new_epochs.push((epoch, h.base_offset));
                    latest = Some(epoch);
                }
            }
            next = h.next_offset();
        }
        self.assign_epochs(&new_epochs)?;
        let rolled = self.write_locked(&mut st, &cfg, records, &[], &found, span, now_ms)?;
        for (h, r) in &found {
            if !producer_state::is_txn_marker(h) {
                st.producers.replay(h);
                continue;
            }
            // A marker the leader wrote: an ABORT joins the aborted-transaction index.
            let aborts = marker_aborts(h, &records[r.clone()]).unwrap_or_else(|e| {
                tracing::warn!(dir = %self.dir.display(), offset = h.base_offset, "unreadable transaction marker: {e}");
                false
            });
            if let Some(txn) = replay_marker(&mut st.producers, h, aborts) {
                let base = st.active.base_offset;
                self.record_abort(base, txn)?;
            }
        }
        self.after_write(st, &cfg, records_count, rolled, now_ms);
        Ok(AppendResult {
            base_offset: Offset(base),
            last_offset: Offset(next - 1),
            log_append_time_ms: -1,
            log_start_offset,
            records_count,
            duplicate: false,
        })
    }

    /// Writes batches (offsets already final) at the end of the log, rolling first if
    /// needed; publishes the new log end. Under the append lock. Returns whether it rolled.
    /// `prefixes` empty: `records` as they are; else batch `i`'s first `PREFIX_BYTES` are
    /// `prefixes[i]` (shared input, see `append_as_leader_shared`).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn write_locked(
        &self,
        st: &mut AppendState,
        cfg: &LogConfig,
        records: &[u8],
        prefixes: &[[u8; PREFIX_BYTES]],
        found: &[(BatchHeader, Range<usize>)],
        span: i64,
        now_ms: i64,
    ) -> Result<bool, StorageError> {
        let leo = self.log_end.load(Ordering::Acquire);
        let mut rolled = false;
        if self.should_roll(st, cfg, records.len(), span, found.len(), now_ms) {
            if let Err(e) = self.roll(st, leo, cfg, now_ms) {
                self.fail(&e);
                return Err(e);
            }
            rolled = true;
        }
        let seg = Arc::clone(&st.active);
        let pos = seg.size();
        if self.marker_unsynced.load(Ordering::Acquire) {
            // The clean-shutdown marker's removal must be durable before new data is.
            if let Err(e) = checkpoint::sync_dir(&*self.ctx.fs, &self.dir) {
                let err = StorageError::io_path("fsync", &self.dir, e);
                self.fail(&err);
                return Err(err);
            }
            self.marker_unsynced.store(false, Ordering::Release);
        }
        let written = if prefixes.is_empty() {
            seg.write_at(records, pos)
        } else {
            // Paired with `append_assigning`: one prefix per batch, the batches covering
            // `records` back to back, so the file gets exactly `records`' layout.
            assert_eq!(prefixes.len(), found.len(), "one patched prefix per batch");
            let mut bufs: Vec<&[u8]> = Vec::with_capacity(2 * found.len());
            let mut at = 0;
            for ((_, r), p) in found.iter().zip(prefixes) {
                assert!(
                    r.start == at && r.len() >= PREFIX_BYTES,
                    "batches back to back"
                );
                bufs.push(p);
                bufs.push(&records[r.start + PREFIX_BYTES..r.end]);
                at = r.end;
            }
            assert_eq!(at, records.len(), "the batches cover the records");
            seg.write_vectored_at(&bufs, pos)
        };
        if let Err(e) = written {
            let err = StorageError::io(format!("write {}", seg.display()), e);
            self.fail(&err);
            return Err(err);
        }
        // Offsets only grow: the batches continue the log without a gap (before the write
        // is published; `read` relies on it).
        let mut next = leo;
        {
            let mut idx = seg.indexes.lock();
            for (h, r) in found {
                assert!(
                    h.base_offset == next && h.last_offset() >= h.base_offset,
                    "batch {}..={} written at log end {next}",
                    h.base_offset,
                    h.last_offset()
                );
                next = h.next_offset();
                idx.on_batch(h, pos + r.start as u64, cfg.index_interval_bytes);
            }
        }
        seg.size
            .store(pos + records.len() as u64, Ordering::Release);
        assert!(
            next > leo,
            "an append of {} batches moves the log end",
            found.len()
        );
        let before = self.log_end.swap(next, Ordering::AcqRel);
        assert_eq!(before, leo, "the log end moved during an append");
        Ok(rolled)
    }

    /// Flush accounting after a write (`flush.messages`, `flush.ms`, rolls); releases the
    /// append lock before queueing a flush.
    pub(super) fn after_write(
        &self,
        mut st: parking_lot::MutexGuard<'_, AppendState>,
        cfg: &LogConfig,
        records_count: u64,
        rolled: bool,
        now_ms: i64,
    ) {
        st.messages_since_flush += records_count;
        let flush_due = cfg
            .flush_interval_messages
            .is_some_and(|n| st.messages_since_flush >= n)
            || cfg
                .flush_interval_ms
                .is_some_and(|ms| now_ms - st.last_flush_ms >= ms);
        if flush_due {
            st.messages_since_flush = 0;
            st.last_flush_ms = now_ms;
        }
        drop(st);
        if flush_due || rolled {
            self.request_flush();
        }
    }

    pub(super) fn should_roll(
        &self,
        st: &AppendState,
        cfg: &LogConfig,
        bytes: usize,
        span: i64,
        batch_count: usize,
        now_ms: i64,
    ) -> bool {
        let seg = &st.active;
        let size = seg.size();
        if size == 0 {
            return false;
        }
        let leo = self.log_end.load(Ordering::Acquire);
        let idx = seg.indexes.lock();
        size + bytes as u64 > cfg.segment_bytes_max
            || cfg
                .segment_ms
                .is_some_and(|ms| now_ms - st.roll_base_ms > ms)
            || idx.offset.is_full_after(batch_count)
            || idx.time.is_full_after(batch_count + 1)
            || leo + span - 1 - seg.base_offset > i64::from(i32::MAX)
    }

    /// Seals the active segment and starts a new one at `base`. Under the append lock.
    pub(super) fn roll(
        &self,
        st: &mut AppendState,
        base: i64,
        cfg: &LogConfig,
        now_ms: i64,
    ) -> Result<(), StorageError> {
        let old = Arc::clone(&st.active);
        old.seal()
            .map_err(|e| StorageError::io(format!("seal index of {}", old.display()), e))?;
        let seg = Arc::new(Segment::create(
            &self.ctx,
            &self.dir,
            base,
            cfg.index_bytes_max,
        )?);
        self.dir_dirty.store(true, Ordering::Release);
        {
            let mut v = self.view.write();
            let mut nv = View::clone(&v);
            nv.segments.push(Arc::clone(&seg));
            *v = Arc::new(nv);
        }
        tracing::debug!(dir = %self.dir.display(), base, "rolled segment");
        // The aborted transactions below the snapshot are durable before it is written.
        self.sync_txn_index(old.base_offset)?;
        // Best effort, not synced: without it, recovery replays more batch headers.
        let snapshot = st.producers.encode_snapshot();
        if let Err(e) =
            producer_state::write_snapshot(&*self.ctx.fs, &self.dir, base, &snapshot, false)
        {
            tracing::warn!(dir = %self.dir.display(), base, "cannot write producer snapshot: {e}");
        }
        st.active = seg;
        st.roll_base_ms = now_ms;
        Ok(())
    }
}

/// The records in `found` and the offsets they span (each batch covers
/// `last_offset_delta + 1` offsets).
fn batch_totals(found: &[(BatchHeader, Range<usize>)]) -> (u64, i64) {
    let records_count = found
        .iter()
        .map(|(h, _)| h.records_count.max(0) as u64)
        .sum();
    let span = found
        .iter()
        .map(|(h, _)| i64::from(h.last_offset_delta) + 1)
        .sum();
    (records_count, span)
}

/// Where appended batches come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum BatchSource {
    /// A producer: whole batches, `message.max.bytes` checked.
    Client,
    /// The partition's leader: batches as it stores them (possibly compacted).
    Leader,
}

/// Bytes at the start of a batch that an append patches outside the CRC'd part: base
/// offset (8), batch length (4, unchanged), partition leader epoch (4).
pub(super) const PREFIX_BYTES: usize = fjord_records::layout::MAGIC_AT;
const _: () = assert!(
    fjord_records::layout::BASE_OFFSET_AT + 8 <= PREFIX_BYTES
        && fjord_records::layout::PARTITION_LEADER_EPOCH_AT + 4 <= PREFIX_BYTES
        && PREFIX_BYTES <= fjord_records::layout::CRC_AT
);

fn set_base_offset_in_prefix(prefix: &mut [u8; PREFIX_BYTES], base_offset: i64) {
    let at = fjord_records::layout::BASE_OFFSET_AT;
    prefix[at..at + 8].copy_from_slice(&base_offset.to_be_bytes());
}

fn set_partition_leader_epoch_in_prefix(prefix: &mut [u8; PREFIX_BYTES], epoch: i32) {
    let at = fjord_records::layout::PARTITION_LEADER_EPOCH_AT;
    prefix[at..at + 4].copy_from_slice(&epoch.to_be_bytes());
}

/// The batches an append gets: its own to patch, or shared (not copied; see
/// `Log::append_as_leader_shared`).
pub(super) enum Input<'a> {
    Owned(&'a mut [u8]),
    Shared(&'a [u8]),
}

impl Input<'_> {
    fn bytes(&self) -> &[u8] {
        match self {
            Input::Owned(b) => b,
            Input::Shared(b) => b,
        }
    }
}

/// Who appends (Kafka's `AppendOrigin`, for the producer checks).
#[derive(Clone, Copy)]
enum Origin<'a> {
    /// A client's Produce; the producers with a transaction verification in progress.
    Client(&'a [VerifyingProducer]),
    /// A coordinator's own records (see `append_as_coordinator`).
    Coordinator,
}
