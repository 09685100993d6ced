//! The quorum-facing interface, and the one-voter quorum of a single node.
//!
//! Callers see only [`MetadataQuorum`] (propose records, get a future of
//! their committed offset) and implement [`MetadataListener`] (receive the
//! committed batches in order, and snapshots). [`LocalQuorum`] implements it
//! for one voter: this node leads every epoch, a proposal is appended to the
//! local `__cluster_metadata` log by a dedicated thread, made durable (one
//! fsync for every proposal queued meanwhile), then handed to the listener,
//! and only then is the proposal's future resolved. Issue 12's KRaft client
//! implements the same trait with voters that fetch from the leader.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::mpsc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::thread::JoinHandle;

use bytes::Bytes;
use fjord_model::limits::{
    METADATA_PROPOSALS_QUEUED_MAX, METADATA_RECORDS_PER_PROPOSAL_MAX,
    METADATA_SNAPSHOT_BYTES_INTERVAL_DEFAULT,
};
use fjord_model::{LeaderEpoch, NodeId, Offset};
use parking_lot::{Condvar, Mutex};

use crate::commit::CommitTracker;
use crate::control::ControlRecord;
use crate::log::{BatchContent, MetadataLog, Snapshot, SnapshotId};
use crate::quorum_state::QuorumState;
use crate::MetadataError;

/// Records the quorum committed, as one batch of the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommittedBatch {
    pub base_offset: Offset,
    pub last_offset: Offset,
    pub epoch: LeaderEpoch,
    pub append_time_ms: i64,
    /// Framed metadata records (`fjord_protocol::metadata_records::encode_framed`).
    pub records: Vec<Bytes>,
}

/// Receives committed metadata in log order (Kafka's `RaftClient.Listener`).
/// Called on a thread of the quorum's own: blocking work (opening logs, fsync) is
/// allowed here and nowhere near the async runtime.
pub trait MetadataListener: Send {
    /// Replace all state by a snapshot's (at start, or when the log was cut
    /// below what this listener has seen).
    fn handle_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), MetadataError>;
    /// One committed batch; each exactly once, in offset order.
    fn handle_commit(&mut self, batch: &CommittedBatch) -> Result<(), MetadataError>;
    /// The state after the last handled batch, as records (for a snapshot).
    fn snapshot_records(&self) -> Vec<Bytes>;
}

/// Resolves to the offset of a proposal's last record once it is committed
/// and every listener has handled it. Can be awaited, or waited for from a
/// plain thread ([`Proposal::wait_blocking`]).
pub struct Proposal(Arc<Completion>);

/// The result once known, and the task to wake for it.
type CompletionState = (Option<Result<Offset, MetadataError>>, Option<Waker>);

#[derive(Default)]
struct Completion {
    state: Mutex<CompletionState>,
    done: Condvar,
}

/// The quorum's end of a [`Proposal`]: resolving it wakes the waiter.
pub struct Reply(Arc<Completion>);

impl Reply {
    pub fn send(self, result: Result<Offset, MetadataError>) {
        let waker = {
            let mut st = self.0.state.lock();
            st.0 = Some(result);
            st.1.take()
        };
        self.0.done.notify_all();
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl Drop for Reply {
    fn drop(&mut self) {
        let mut st = self.0.state.lock();
        if st.0.is_none() {
            st.0 = Some(Err(MetadataError::Closed));
            let waker = st.1.take();
            drop(st);
            self.0.done.notify_all();
            if let Some(w) = waker {
                w.wake();
            }
        }
    }
}

impl Proposal {
    /// A proposal and the reply that resolves it.
    pub fn pair() -> (Proposal, Reply) {
        let c = Arc::new(Completion::default());
        (Proposal(c.clone()), Reply(c))
    }

    pub fn failed(e: MetadataError) -> Proposal {
        let (p, r) = Proposal::pair();
        r.send(Err(e));
        p
    }

    /// Blocks the calling thread until resolved.
    pub fn wait_blocking(self) -> Result<Offset, MetadataError> {
        let mut st = self.0.state.lock();
        loop {
            if let Some(r) = st.0.take() {
                return r;
            }
            self.0.done.wait(&mut st);
        }
    }
}

impl Future for Proposal {
    type Output = Result<Offset, MetadataError>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut st = self.0.state.lock();
        match st.0.take() {
            Some(r) => Poll::Ready(r),
            None => {
                st.1 = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

/// What callers of the metadata quorum see.
pub trait MetadataQuorum: Send + Sync {
    /// Proposes `records` (framed metadata records) to be appended as one
    /// batch, atomically. Fails at once if this node is not the leader.
    fn propose(&self, records: Vec<Bytes>) -> Proposal;
    /// [`MetadataQuorum::propose`] for a controller's decision (Kafka's
    /// `RaftClient.scheduleAtomicAppend(epoch, ...)`): appended only while
    /// this node leads `epoch`, never forwarded to another leader. A
    /// controller decides on the image of the epoch it was activated in;
    /// once that epoch is over, its records are refused (`NoLeader`).
    fn propose_in_epoch(&self, epoch: LeaderEpoch, records: Vec<Bytes>) -> Proposal;
    /// The current leader (if known) and epoch.
    fn leader_and_epoch(&self) -> (Option<NodeId>, LeaderEpoch);
    /// Offsets below this are committed and handled by the listener.
    fn high_watermark(&self) -> Offset;
}

/// Settings of the one-voter quorum.
#[derive(Clone, Debug)]
pub struct LocalQuorumConfig {
    pub node_id: NodeId,
    /// Write a snapshot once this many bytes of records were committed since the last one.
    pub snapshot_bytes_interval: u64,
}

impl LocalQuorumConfig {
    pub fn new(node_id: NodeId) -> LocalQuorumConfig {
        LocalQuorumConfig {
            node_id,
            snapshot_bytes_interval: METADATA_SNAPSHOT_BYTES_INTERVAL_DEFAULT,
        }
    }
}

type Queued = (Vec<Bytes>, Reply);

struct Shared {
    epoch: LeaderEpoch,
    node_id: NodeId,
    high_watermark: Mutex<Offset>,
}

/// A single node's metadata quorum: one voter, itself, always the leader.
pub struct LocalQuorum {
    shared: Arc<Shared>,
    tx: Mutex<Option<mpsc::SyncSender<Queued>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// What `LocalQuorum::open` found.
#[derive(Clone, Debug, Default)]
pub struct LoadReport {
    pub snapshot: Option<SnapshotId>,
    pub batches_replayed: usize,
    pub records_replayed: usize,
    pub epoch: LeaderEpoch,
    /// The log was empty and had no snapshot: a new node.
    pub new_log: bool,
}

impl LocalQuorum {
    /// Opens `<data_dir>/__cluster_metadata-0`, loads the newest snapshot and
    /// replays the log after it into `listener`, becomes leader of the next
    /// epoch (1 on a new node: a LeaderChange control batch, durable before
    /// anything else), then starts the quorum thread.
    pub fn open(
        storage: &fjord_storage::Storage,
        data_dir: &Path,
        config: LocalQuorumConfig,
        mut listener: Box<dyn MetadataListener>,
        now_ms: i64,
    ) -> Result<(LocalQuorum, LoadReport), MetadataError> {
        let (log, recovery) = MetadataLog::open(storage, data_dir, now_ms)?;
        if !recovery.clean && recovery.log_end_offset.0 > 0 {
            tracing::info!(?recovery, "recovered the metadata log");
        }
        let mut report = LoadReport::default();
        let snapshot = log.latest_snapshot()?;
        let mut next = log.start_offset();
        if let Some(s) = &snapshot {
            if s.id.end_offset < log.start_offset() || s.id.end_offset > log.end_offset() {
                return Err(MetadataError::corrupt(
                    log.dir(),
                    format!(
                        "snapshot ends at {} but the log holds {}..{}",
                        s.id.end_offset.0,
                        log.start_offset().0,
                        log.end_offset().0
                    ),
                ));
            }
            listener.handle_snapshot(s)?;
            report.snapshot = Some(s.id);
            next = s.id.end_offset;
        } else if log.start_offset() > Offset(0) {
            return Err(MetadataError::corrupt(
                log.dir(),
                format!(
                    "the log starts at {} and no snapshot covers what is below",
                    log.start_offset().0
                ),
            ));
        }
        report.new_log = snapshot.is_none() && log.end_offset() == Offset(0);
        // Everything that survived in the log is replayed: records appended
        // but not yet durable before a crash were never acknowledged, and the
        // new epoch commits them (Raft's rule) with its first record below.
        for b in log.read_from(next)? {
            if let BatchContent::Data(records) = b.content {
                report.records_replayed += records.len();
                report.batches_replayed += 1;
                listener.handle_commit(&CommittedBatch {
                    base_offset: b.base_offset,
                    last_offset: b.last_offset,
                    epoch: b.epoch,
                    append_time_ms: b.append_time_ms,
                    records,
                })?;
            }
        }
        // Become leader of the next epoch.
        let previous = QuorumState::read(log.dir())?.map_or(0, |s| s.leader_epoch);
        let logged = log.last_epoch().map_or(0, |(e, _)| e.0);
        let epoch = LeaderEpoch(previous.max(logged) + 1);
        QuorumState::leader(config.node_id.0, epoch.0).write(log.dir())?;
        log.start_epoch(epoch)?;
        let epoch_start = log.end_offset();
        let mut tracker = CommitTracker::new(&[config.node_id], epoch_start, epoch_start);
        let (first, last) = log.append_control(
            &ControlRecord::LeaderChange {
                leader_id: config.node_id.0,
                voters: vec![config.node_id.0],
                granting_voters: vec![config.node_id.0],
            },
            now_ms,
        )?;
        tracker.appended_untracked(first, last);
        log.sync_to(log.end_offset())?;
        let none = tracker.durable(config.node_id, log.durable_end());
        assert!(none.is_empty());
        assert_eq!(
            tracker.high_watermark(),
            log.end_offset(),
            "the leader change is committed"
        );
        report.epoch = epoch;
        let shared = Arc::new(Shared {
            epoch,
            node_id: config.node_id,
            high_watermark: Mutex::new(tracker.high_watermark()),
        });
        let (tx, rx) = mpsc::sync_channel(METADATA_PROPOSALS_QUEUED_MAX);
        let mut worker = Worker {
            log,
            tracker,
            listener,
            shared: shared.clone(),
            config,
            bytes_since_snapshot: 0,
            failed: None,
        };
        let thread = std::thread::Builder::new()
            .name("fjord-metadata".into())
            .spawn(move || worker.run(rx))
            .map_err(|e| MetadataError::io("spawn the metadata thread for", data_dir, e))?;
        Ok((
            LocalQuorum {
                shared,
                tx: Mutex::new(Some(tx)),
                thread: Mutex::new(Some(thread)),
            },
            report,
        ))
    }

    /// Stops taking proposals, lets the queued ones finish, closes the log.
    pub fn close(&self) {
        drop(self.tx.lock().take());
        if let Some(t) = self.thread.lock().take() {
            let _ = t.join();
        }
    }
}

impl Drop for LocalQuorum {
    fn drop(&mut self) {
        self.close();
    }
}

impl MetadataQuorum for LocalQuorum {
    fn propose(&self, records: Vec<Bytes>) -> Proposal {
        if records.is_empty() || records.len() > METADATA_RECORDS_PER_PROPOSAL_MAX {
            return Proposal::failed(MetadataError::InvalidProposal(format!(
                "{} records (1..={METADATA_RECORDS_PER_PROPOSAL_MAX} allowed)",
                records.len()
            )));
        }
        let (proposal, reply) = Proposal::pair();
        let guard = self.tx.lock();
        let Some(tx) = guard.as_ref() else {
            return Proposal::failed(MetadataError::Closed);
        };
        match tx.try_send((records, reply)) {
            Ok(()) => proposal,
            Err(mpsc::TrySendError::Full(_)) => Proposal::failed(MetadataError::Busy),
            Err(mpsc::TrySendError::Disconnected(_)) => Proposal::failed(MetadataError::Closed),
        }
    }

    fn propose_in_epoch(&self, epoch: LeaderEpoch, records: Vec<Bytes>) -> Proposal {
        if epoch != self.shared.epoch {
            return Proposal::failed(MetadataError::NoLeader(format!(
                "this node leads epoch {}, not {}",
                self.shared.epoch.0, epoch.0
            )));
        }
        self.propose(records)
    }

    fn leader_and_epoch(&self) -> (Option<NodeId>, LeaderEpoch) {
        (Some(self.shared.node_id), self.shared.epoch)
    }

    fn high_watermark(&self) -> Offset {
        *self.shared.high_watermark.lock()
    }
}

/// Proposals taken from the queue per fsync (group commit).
const PROPOSALS_PER_SYNC_MAX: usize = 256;

struct Worker {
    log: MetadataLog,
    tracker: CommitTracker<(CommittedBatch, Reply)>,
    listener: Box<dyn MetadataListener>,
    shared: Arc<Shared>,
    config: LocalQuorumConfig,
    bytes_since_snapshot: u64,
    /// The log failed: every later proposal fails with this.
    failed: Option<String>,
}

impl Worker {
    fn run(&mut self, rx: mpsc::Receiver<Queued>) {
        while let Ok(first) = rx.recv() {
            let mut round = vec![first];
            while round.len() < PROPOSALS_PER_SYNC_MAX {
                match rx.try_recv() {
                    Ok(p) => round.push(p),
                    Err(_) => break,
                }
            }
            self.round(round);
        }
        if let Err(e) = self.log.close() {
            tracing::error!("closing the metadata log: {e}");
        }
    }

    fn round(&mut self, proposals: Vec<Queued>) {
        let now = now_ms();
        for (records, reply) in proposals {
            if let Some(f) = &self.failed {
                reply.send(Err(MetadataError::Failed(f.clone())));
                continue;
            }
            match self.log.append_data(&records, now) {
                Ok((first, last)) => {
                    let batch = CommittedBatch {
                        base_offset: first,
                        last_offset: last,
                        epoch: self.shared.epoch,
                        append_time_ms: now,
                        records,
                    };
                    self.tracker.appended(first, last, (batch, reply));
                }
                Err(e @ MetadataError::BatchTooLarge { .. }) => {
                    reply.send(Err(e));
                }
                Err(e) => {
                    self.failed = Some(e.to_string());
                    reply.send(Err(e));
                }
            }
        }
        if self.tracker.pending_count() == 0 {
            return;
        }
        if let Err(e) = self.log.sync_to(self.log.end_offset()) {
            // The log is offline now: nothing pending can be committed.
            tracing::error!("metadata log fsync failed: {e}");
            self.failed = Some(e.to_string());
            for (_, reply) in self.tracker.abandon() {
                reply.send(Err(MetadataError::Failed(e.to_string())));
            }
            return;
        }
        let committed = self
            .tracker
            .durable(self.config.node_id, self.log.durable_end());
        let hw = self.tracker.high_watermark();
        for (batch, reply) in committed {
            assert!(
                batch.last_offset < hw,
                "handled a record above the high watermark"
            );
            let result = self
                .listener
                .handle_commit(&batch)
                .map(|()| batch.last_offset);
            self.bytes_since_snapshot += batch.records.iter().map(|r| r.len() as u64).sum::<u64>();
            *self.shared.high_watermark.lock() = batch.last_offset.next();
            reply.send(result);
        }
        *self.shared.high_watermark.lock() = hw;
        if self.bytes_since_snapshot >= self.config.snapshot_bytes_interval {
            self.bytes_since_snapshot = 0;
            let id = SnapshotId {
                end_offset: hw,
                epoch: self.shared.epoch,
            };
            let records = self.listener.snapshot_records();
            match self.log.write_snapshot(id, now, &records, now) {
                Ok(_) => {
                    if let Err(e) = self.log.delete_before_snapshot(id) {
                        tracing::warn!("deleting metadata below snapshot {id:?}: {e}");
                    }
                }
                Err(e) => tracing::warn!("writing metadata snapshot {id:?}: {e}"),
            }
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A listener whose state is the list of records it was given.
    #[derive(Clone, Default)]
    struct Recorder(Arc<Mutex<Vec<Bytes>>>);

    impl MetadataListener for Recorder {
        fn handle_snapshot(&mut self, s: &Snapshot) -> Result<(), MetadataError> {
            *self.0.lock() = s.records.clone();
            Ok(())
        }
        fn handle_commit(&mut self, b: &CommittedBatch) -> Result<(), MetadataError> {
            assert_eq!(
                b.records.len() as i64,
                b.last_offset.0 - b.base_offset.0 + 1
            );
            self.0.lock().extend(b.records.iter().cloned());
            Ok(())
        }
        fn snapshot_records(&self) -> Vec<Bytes> {
            self.0.lock().clone()
        }
    }

    fn rec(i: u32) -> Bytes {
        Bytes::from(i.to_be_bytes().to_vec())
    }

    #[test]
    fn commits_replays_and_snapshots() {
        let data = tempfile::tempdir().unwrap();
        let mut config = LocalQuorumConfig::new(NodeId(1));
        config.snapshot_bytes_interval = 40; // ten 4-byte records
        let seen = Recorder::default();
        let (q, report) = LocalQuorum::open(
            &fjord_storage::Storage::default(),
            data.path(),
            config.clone(),
            Box::new(seen.clone()),
            1,
        )
        .unwrap();
        assert!(report.new_log);
        assert_eq!(report.epoch, LeaderEpoch(1));
        assert_eq!(q.leader_and_epoch(), (Some(NodeId(1)), LeaderEpoch(1)));
        let mut expect = Vec::new();
        for i in 0..25u32 {
            let records = vec![rec(i), rec(i + 1000)];
            let off = q.propose(records.clone()).wait_blocking().unwrap();
            expect.extend(records);
            // Applied before the proposal resolves, and committed.
            assert_eq!(*seen.0.lock(), expect);
            assert!(q.high_watermark() > off);
        }
        assert!(matches!(
            q.propose(Vec::new()).wait_blocking(),
            Err(MetadataError::InvalidProposal(_))
        ));
        q.close();
        assert!(matches!(
            q.propose(vec![rec(1)]).wait_blocking(),
            Err(MetadataError::Closed)
        ));
        drop(q);
        let (log, _) =
            MetadataLog::open(&fjord_storage::Storage::default(), data.path(), 2).unwrap();
        assert!(!log.snapshot_ids().unwrap().is_empty());
        assert!(
            log.start_offset() > Offset(0),
            "the log was cut below a snapshot"
        );
        assert_eq!(
            QuorumState::read(log.dir()).unwrap().unwrap().leader_epoch,
            1
        );
        drop(log);
        // Reopen: snapshot + log tail give the same state; the epoch moves on.
        let again = Recorder::default();
        let (q, report) = LocalQuorum::open(
            &fjord_storage::Storage::default(),
            data.path(),
            config,
            Box::new(again.clone()),
            3,
        )
        .unwrap();
        assert!(report.snapshot.is_some());
        assert!(!report.new_log);
        assert_eq!(report.epoch, LeaderEpoch(2));
        assert_eq!(*again.0.lock(), expect);
        q.propose(vec![rec(7)]).wait_blocking().unwrap();
        expect.push(rec(7));
        assert_eq!(*again.0.lock(), expect);
    }

    #[test]
    fn concurrent_proposals_are_each_committed_once_in_order() {
        let data = tempfile::tempdir().unwrap();
        let seen = Recorder::default();
        let (q, _) = LocalQuorum::open(
            &fjord_storage::Storage::default(),
            data.path(),
            LocalQuorumConfig::new(NodeId(3)),
            Box::new(seen.clone()),
            1,
        )
        .unwrap();
        let q = Arc::new(q);
        let threads: Vec<_> = (0..4u32)
            .map(|t| {
                let q = q.clone();
                std::thread::spawn(move || {
                    let mut offs = Vec::new();
                    for i in 0..50 {
                        offs.push(q.propose(vec![rec(t * 1000 + i)]).wait_blocking().unwrap());
                    }
                    offs
                })
            })
            .collect();
        let mut offsets: Vec<Offset> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        offsets.sort_unstable();
        offsets.dedup();
        assert_eq!(offsets.len(), 200);
        let got = seen.0.lock().clone();
        assert_eq!(got.len(), 200);
        // Each thread's records appear in the order it proposed them.
        for t in 0..4u32 {
            let mine: Vec<&Bytes> = got
                .iter()
                .filter(|r| r[..] >= rec(t * 1000)[..] && r[..] < rec(t * 1000 + 1000)[..])
                .collect();
            let want: Vec<Bytes> = (0..50).map(|i| rec(t * 1000 + i)).collect();
            assert_eq!(mine.into_iter().cloned().collect::<Vec<_>>(), want);
        }
    }
}
