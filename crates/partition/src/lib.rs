//! The partition layer: one [`Partition`] owns a partition's log, its replica
//! facts (leader, leader epoch, replicas, in-sync replicas), its high
//! watermark and last stable offset, and the fetches waiting for its data.
//!
//! Request handlers say what they want — [`Partition::append`] with an
//! [`Acks`] level, [`Partition::read`] with an [`Isolation`] level,
//! [`Partition::list_offset`], [`Partition::delete_records_before`] — and the
//! partition decides how. No handler computes a high watermark, a leader or
//! a leader epoch itself.
//!
//! On one node (the only shape today) the partition is its own leader, its
//! replicas and ISR are `[this node]`, its leader epoch is 0, and so:
//! - the high watermark is the log end offset: what is appended is readable,
//!   as before this layer existed;
//! - an `acks=all` append is committed when it is on stable storage (the
//!   log's group commit, [`fjord_storage::Log::sync_to`]); `acks=1` at once;
//! - the last stable offset is the high watermark, or the first offset of
//!   the oldest open transaction when that is lower ([`Partition::append_marker`]
//!   writes the markers that close transactions).
//!
//! A cluster layer changes the replica facts through one method,
//! [`Partition::set_replica_state`]; the high watermark then follows the ISR
//! instead of the local log end.
//!
//! With more than one replica (`replica`, the shell around
//! `fjord-replication`'s core): [`Partition::become_leader`] makes the
//! high watermark the minimum durable end over the ISR in use (followers'
//! fetches, [`Partition::follower_fetch`], state theirs), refuses acks=all
//! appends while the ISR is below `min.insync.replicas`
//! (NOT_ENOUGH_REPLICAS) and resolves their [`CommitWaiter`] when the high
//! watermark passes them (NOT_ENOUGH_REPLICAS_AFTER_APPEND, or
//! NOT_LEADER_OR_FOLLOWER when the leadership ends first);
//! [`Partition::become_follower`] fetches through
//! [`Partition::poll_replica_fetch`] and [`Partition::on_replica_fetch_answer`]
//! (append as follower, truncate on a diverging epoch).
//!
//! Invariants, asserted in release builds too, each where the state changes
//! and where it is relied on:
//! - the high watermark never moves back, and never passes the log end;
//! - a read never serves data at or past the high watermark (the last stable
//!   offset for read_committed);
//! - the leader epoch never moves back.
//!
//! Appends run synchronously in the caller's order (the connection's reader
//! calls [`Partition::append`] in request order, so pipelined produces keep
//! their order); only the wait for the commit is asynchronous
//! ([`CommitWaiter`]), so appends can be made from outside a request too
//! (the group coordinator).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use fjord_model::{
    limits, ErrorCode, LeaderEpoch, NodeId, Offset, PartitionIndex, ProducerEpoch, ProducerId,
};
use fjord_storage::producer_state::ProducerEntry;
pub use fjord_storage::txn_index::AbortedTxn;
use fjord_storage::{AppendResult, Log, ReadResult, StorageError, SyncWaiter};
use parking_lot::{Mutex, RwLock};
use tokio::sync::{watch, Notify};

mod replica;
pub mod verification;
pub use replica::ReplicaFetched;
use replica::{CommitState, Role};
pub use verification::VerificationGuard;
use verification::Verifications;

/// How much of the commit a producer waits for (Produce's `acks`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Acks {
    /// `acks=0`: no response at all.
    None,
    /// `acks=1`: answered once the leader appended.
    Leader,
    /// `acks=-1` (`all`): answered once the high watermark covers the batch
    /// and (on one node) the batch is durable.
    All,
}

impl Acks {
    /// Produce's `acks` field; `None` for a value Kafka refuses
    /// (INVALID_REQUIRED_ACKS).
    pub fn from_wire(acks: i16) -> Option<Acks> {
        match acks {
            0 => Some(Acks::None),
            1 => Some(Acks::Leader),
            -1 => Some(Acks::All),
            _ => None,
        }
    }
}

/// Fetch's and ListOffsets' `isolation_level`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isolation {
    /// Up to the high watermark.
    ReadUncommitted,
    /// Up to the last stable offset.
    ReadCommitted,
}

impl Isolation {
    /// 1 is read_committed; anything else reads uncommitted, as Fjord always did.
    pub fn from_wire(level: i8) -> Isolation {
        if level == 1 {
            Isolation::ReadCommitted
        } else {
            Isolation::ReadUncommitted
        }
    }
}

/// Who holds a partition: set when the partition is created, changed by the
/// cluster/metadata layer through [`Partition::set_replica_state`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaState {
    pub leader: NodeId,
    pub leader_epoch: LeaderEpoch,
    pub replicas: Vec<NodeId>,
    pub isr: Vec<NodeId>,
}

impl ReplicaState {
    /// A single node: it leads, at epoch 0, and is the only replica and ISR member.
    pub fn single_node(node: NodeId) -> ReplicaState {
        ReplicaState {
            leader: node,
            leader_epoch: LeaderEpoch(0),
            replicas: vec![node],
            isr: vec![node],
        }
    }

    /// The first replica is the preferred leader.
    pub fn preferred_leader(&self) -> Option<NodeId> {
        self.replicas.first().copied()
    }
}

/// Who may serve a consumer's read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadFrom {
    /// Only the leader (Fetch before v11, as Kafka's `fetchOnlyLeader`).
    Leader,
    /// The leader or a follower, each up to its own high watermark (a
    /// consumer's Fetch v11+, which may follow a `preferred_read_replica`).
    AnyReplica,
}

/// What ListOffsets asks for (its special timestamps, or a timestamp).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OffsetQuery {
    /// -2: the log start offset.
    Earliest,
    /// -4: the first offset held locally (all of a Fjord log is local).
    EarliestLocal,
    /// -1: the high watermark (read_uncommitted) or last stable offset.
    Latest,
    /// -3: the record with the largest timestamp.
    MaxTimestamp,
    /// -5: nothing is tiered, so nothing.
    LatestTiered,
    /// -6: nothing is tiered, so nothing.
    EarliestPendingUpload,
    /// The first record whose timestamp is at least this.
    Timestamp(i64),
}

/// ListOffsets' answer for one partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListedOffset {
    pub offset: Offset,
    /// -1 when the query is not about a record's timestamp.
    pub timestamp_ms: i64,
    pub leader_epoch: LeaderEpoch,
}

/// Why a partition refused a request.
#[derive(Debug, thiserror::Error)]
pub enum PartitionError {
    #[error("leader epoch {requested} is older than the current leader epoch {current}")]
    FencedLeaderEpoch {
        requested: LeaderEpoch,
        current: LeaderEpoch,
    },
    #[error("leader epoch {requested} is newer than the current leader epoch {current}")]
    UnknownLeaderEpoch {
        requested: LeaderEpoch,
        current: LeaderEpoch,
    },
    #[error("node {node} is not the leader of this partition (the leader is {leader})")]
    NotLeader { node: NodeId, leader: NodeId },
    #[error("the in-sync replicas are fewer than min.insync.replicas")]
    NotEnoughReplicas,
    #[error(
        "appended, but the in-sync replicas fell below min.insync.replicas before it was committed"
    )]
    NotEnoughReplicasAfterAppend,
    #[error("offset {requested} is out of range [{log_start}, {end}]")]
    OffsetOutOfRange {
        requested: i64,
        log_start: i64,
        end: i64,
    },
    #[error("the transactional batch of producer {0} is not part of a transaction the coordinator verified on this partition")]
    NotInTransaction(ProducerId),
    #[error("{0}")]
    Storage(#[from] StorageError),
}

impl PartitionError {
    /// The Kafka error code the broker answers with.
    pub fn kafka_code(&self) -> ErrorCode {
        match self {
            PartitionError::FencedLeaderEpoch { .. } => ErrorCode::FENCED_LEADER_EPOCH,
            PartitionError::UnknownLeaderEpoch { .. } => ErrorCode::UNKNOWN_LEADER_EPOCH,
            PartitionError::NotLeader { .. } => ErrorCode::NOT_LEADER_OR_FOLLOWER,
            PartitionError::NotEnoughReplicas => ErrorCode::NOT_ENOUGH_REPLICAS,
            PartitionError::NotEnoughReplicasAfterAppend => {
                ErrorCode::NOT_ENOUGH_REPLICAS_AFTER_APPEND
            }
            PartitionError::OffsetOutOfRange { .. } => ErrorCode::OFFSET_OUT_OF_RANGE,
            PartitionError::NotInTransaction(_) => ErrorCode::INVALID_TXN_STATE,
            PartitionError::Storage(e) => e.kafka_code(),
        }
    }
}

/// The outcome of [`Partition::append`]: offsets at once, the commit later.
#[derive(Debug)]
pub struct Appended {
    pub result: AppendResult,
    /// Resolves when the batches are committed for the requested [`Acks`].
    pub committed: CommitWaiter,
}

/// Resolves when an append is committed for its [`Acks`] level.
pub struct CommitWaiter(Waiting);

type ReplicatedWait = Pin<Box<dyn Future<Output = Result<(), PartitionError>> + Send>>;

enum Waiting {
    Ready,
    /// One node: the log's group commit.
    Sync(SyncWaiter),
    /// A replicated leader: the high watermark passing the batch.
    Replicated(ReplicatedWait),
}

impl std::fmt::Debug for CommitWaiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match &self.0 {
            Waiting::Ready => "ready",
            Waiting::Sync(_) => "group commit",
            Waiting::Replicated(_) => "high watermark",
        };
        f.debug_tuple("CommitWaiter").field(&what).finish()
    }
}

impl CommitWaiter {
    /// Already committed.
    fn ready() -> CommitWaiter {
        CommitWaiter(Waiting::Ready)
    }

    /// Resolves when the replicated leadership of `epoch` has a high
    /// watermark at or past `required_end`: Ok, or
    /// NOT_ENOUGH_REPLICAS_AFTER_APPEND when the ISR in use is then below
    /// `min.insync.replicas` (Kafka's `checkEnoughReplicasReachOffset`);
    /// NOT_LEADER_OR_FOLLOWER once this node stops leading that epoch.
    fn replicated(
        mut rx: watch::Receiver<CommitState>,
        required_end: Offset,
        epoch: LeaderEpoch,
        local: NodeId,
    ) -> CommitWaiter {
        let lost = move || PartitionError::NotLeader {
            node: local,
            leader: NodeId(-1),
        };
        CommitWaiter(Waiting::Replicated(Box::pin(async move {
            loop {
                let s = *rx.borrow_and_update();
                if s.leader_epoch != Some(epoch) {
                    return Err(lost());
                }
                if s.high_watermark >= required_end {
                    return if s.enough_isr {
                        Ok(())
                    } else {
                        Err(PartitionError::NotEnoughReplicasAfterAppend)
                    };
                }
                if rx.changed().await.is_err() {
                    return Err(lost());
                }
            }
        })))
    }

    /// Blocks the current thread until committed (not inside an async runtime).
    pub fn wait_blocking(self) -> Result<(), PartitionError> {
        match self.0 {
            Waiting::Ready => Ok(()),
            Waiting::Sync(w) => Ok(w.wait_blocking()?),
            Waiting::Replicated(f) => block_on(f),
        }
    }
}

/// Polls `f` on this thread, parking it between wake-ups.
fn block_on(mut f: ReplicatedWait) -> Result<(), PartitionError> {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::task::Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

impl Future for CommitWaiter {
    type Output = Result<(), PartitionError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.0 {
            Waiting::Ready => Poll::Ready(Ok(())),
            Waiting::Sync(w) => Pin::new(w).poll(cx).map_err(PartitionError::from),
            Waiting::Replicated(f) => f.as_mut().poll(cx),
        }
    }
}

/// What a fetch of one partition gets: the offsets the response states, and
/// the records (file ranges for sendfile) or why there are none.
#[derive(Debug)]
pub struct Fetched {
    pub high_watermark: Offset,
    pub last_stable_offset: Offset,
    pub log_start_offset: Offset,
    pub records: Result<ReadResult, PartitionError>,
    /// read_committed: the aborted transactions overlapping the records returned
    /// (empty otherwise).
    pub aborted: Vec<AbortedTxn>,
}

/// One partition on this node. See the module docs.
pub struct Partition {
    pub index: PartitionIndex,
    /// The log. Client data is appended and read only through the methods
    /// below; the broker uses the log directly for its lifecycle (close,
    /// config, retention, checkpoints) and the group coordinator for replay.
    pub log: Arc<Log>,
    /// This node.
    local: NodeId,
    replica: RwLock<ReplicaState>,
    /// The ISR is this node alone, which leads: committed = appended.
    sole_replica: AtomicBool,
    /// Offsets below it are committed. Never moves back.
    high_watermark: AtomicI64,
    /// Fetches waiting for data register here; an append wakes them all.
    waiters: Mutex<Vec<Arc<Notify>>>,
    /// With more than one replica: this node's part (leader or follower)
    /// in replicating it (`replica`); `None` on a single replica.
    role: Mutex<Option<Role>>,
    /// What acks=all waiters of a replicated leadership watch.
    commit_tx: watch::Sender<CommitState>,
    /// The log's durable end when the leader tick last ran for this
    /// partition (-1: run it at the next pass). See
    /// [`Partition::replication_tick_wanted`].
    ticked_durable_end: AtomicI64,
    /// A follower's fetch made an AlterPartition pending (the ISR grows):
    /// the next leader tick sends it.
    alter_wanted: AtomicBool,
    /// The high watermark last saved in the log's directory and when (ms;
    /// `i64::MIN`: never by this process). See [`Partition::save_high_watermark`].
    saved_high_watermark: Mutex<(Offset, i64)>,
    /// KIP-890 verifications in progress. Held across a client's
    /// transactional append and a marker's append, so that the guard check,
    /// the append and the entry's removal are one step for both.
    verifications: Mutex<Verifications>,
}

impl std::fmt::Debug for Partition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Partition")
            .field("index", &self.index)
            .field("dir", &self.log.dir())
            .field("replica", &*self.replica.read())
            .field(
                "high_watermark",
                &self.high_watermark.load(Ordering::Acquire),
            )
            .finish()
    }
}

impl Partition {
    /// A partition of this node (`local`) over an open log, with its replica
    /// facts (on one node, [`ReplicaState::single_node`]).
    pub fn new(
        index: PartitionIndex,
        log: Arc<Log>,
        local: NodeId,
        replica: ReplicaState,
    ) -> Partition {
        let sole = is_sole_replica(local, &replica);
        // A single replica committed everything it holds; otherwise what was
        // committed when the high watermark was last saved (before a restart),
        // or nothing is known until the replicas report (cluster layer).
        // Read only where it counts: a single node opens every partition
        // without touching the file.
        let saved = if sole {
            None
        } else {
            log.saved_high_watermark()
        };
        let hw = if sole {
            log.log_end_offset().0
        } else {
            saved.unwrap_or(log.log_start_offset()).0
        };
        Partition {
            index,
            log,
            local,
            replica: RwLock::new(replica),
            sole_replica: AtomicBool::new(sole),
            high_watermark: AtomicI64::new(hw),
            waiters: Mutex::new(Vec::new()),
            role: Mutex::new(None),
            commit_tx: watch::channel(CommitState {
                leader_epoch: None,
                high_watermark: Offset(hw),
                enough_isr: false,
            })
            .0,
            ticked_durable_end: AtomicI64::new(-1),
            alter_wanted: AtomicBool::new(false),
            saved_high_watermark: Mutex::new((saved.unwrap_or(Offset(-1)), i64::MIN)),
            verifications: Mutex::new(Verifications::default()),
        }
    }

    /// Saves the high watermark of a partition replicated on several nodes
    /// in its log's directory when it moved since the last save, at most once
    /// per `HIGH_WATERMARK_CHECKPOINT_INTERVAL_MS` unless `force` (a clean
    /// shutdown), as Kafka's `replication-offset-checkpoint`: after a restart
    /// of the whole cluster a leader then starts from it instead of its log
    /// start, so consumers and ListOffsets see the committed records at once,
    /// not only once every in-sync replica has fetched again (or, for one that
    /// stays down, `replica.lag.time.max.ms` later). A single replica needs no
    /// file: its high watermark is its log end.
    pub fn save_high_watermark(&self, now_ms: i64, force: bool) -> Result<(), StorageError> {
        if self.sole_replica.load(Ordering::Acquire) || self.log.is_closed() {
            return Ok(());
        }
        let mut saved = self.saved_high_watermark.lock();
        let hw = Offset(self.high_watermark.load(Ordering::Acquire));
        let due = force
            || saved.1 == i64::MIN
            || now_ms.saturating_sub(saved.1) >= limits::HIGH_WATERMARK_CHECKPOINT_INTERVAL_MS;
        if hw <= saved.0 || !due {
            return Ok(());
        }
        self.log.save_high_watermark(hw)?;
        *saved = (hw, now_ms);
        Ok(())
    }

    /// This node.
    pub fn local(&self) -> NodeId {
        self.local
    }

    /// Leader, epoch, replicas and ISR as they are now.
    pub fn replica_state(&self) -> ReplicaState {
        self.replica.read().clone()
    }

    /// The leader is the preferred replica (the first): no election is needed.
    pub fn leader_is_preferred(&self) -> bool {
        let r = self.replica.read();
        r.preferred_leader() == Some(r.leader)
    }

    /// The current leader epoch.
    pub fn leader_epoch(&self) -> LeaderEpoch {
        self.replica.read().leader_epoch
    }

    /// Replace the replica facts (the one door for a cluster/metadata layer).
    /// The leader epoch never moves back.
    pub fn set_replica_state(&self, new: ReplicaState) {
        let mut cur = self.replica.write();
        assert!(
            new.leader_epoch >= cur.leader_epoch,
            "leader epoch of partition {} moves back from {} to {}",
            self.index,
            cur.leader_epoch,
            new.leader_epoch
        );
        self.sole_replica
            .store(is_sole_replica(self.local, &new), Ordering::Release);
        *cur = new;
        drop(cur);
        self.refresh_high_watermark();
        self.wake_waiters();
    }

    /// Checks a request's `current_leader_epoch` (-1: the client does not
    /// know it, accepted): older is FENCED_LEADER_EPOCH, newer
    /// UNKNOWN_LEADER_EPOCH.
    pub fn check_leader_epoch(&self, requested: LeaderEpoch) -> Result<(), PartitionError> {
        let current = self.leader_epoch();
        if requested == LeaderEpoch::UNKNOWN || requested == current {
            Ok(())
        } else if requested > current {
            Err(PartitionError::UnknownLeaderEpoch { requested, current })
        } else {
            Err(PartitionError::FencedLeaderEpoch { requested, current })
        }
    }

    fn check_leader(&self) -> Result<LeaderEpoch, PartitionError> {
        let r = self.replica.read();
        if r.leader != self.local {
            return Err(PartitionError::NotLeader {
                node: self.local,
                leader: r.leader,
            });
        }
        Ok(r.leader_epoch)
    }

    /// A consumer may read here (KIP-392): this node leads the partition
    /// or is one of its replicas.
    fn check_replica(&self) -> Result<(), PartitionError> {
        let r = self.replica.read();
        if r.leader != self.local && !r.replicas.contains(&self.local) {
            return Err(PartitionError::NotLeader {
                node: self.local,
                leader: r.leader,
            });
        }
        Ok(())
    }

    /// Offsets below it are committed (readable by read_uncommitted consumers).
    pub fn high_watermark(&self) -> Offset {
        self.refresh_high_watermark()
    }

    /// Offsets below it are readable by read_committed consumers: the high
    /// watermark, or the first offset of the oldest open transaction if that
    /// is lower.
    pub fn last_stable_offset(&self) -> Offset {
        let hw = self.high_watermark();
        match self.log.first_unstable_offset() {
            Some(first) => first.min(hw),
            None => hw,
        }
    }

    /// The first offset held.
    pub fn log_start_offset(&self) -> Offset {
        self.log.log_start_offset()
    }

    /// The offset the next append gets.
    pub fn log_end_offset(&self) -> Offset {
        self.log.log_end_offset()
    }

    /// How far this replica's log end is behind the high watermark (Kafka's
    /// DescribeLogDirs `offset_lag`): 0 on the leader.
    pub fn log_end_offset_lag(&self) -> i64 {
        (self.high_watermark().0 - self.log.log_end_offset().0).max(0)
    }

    /// Bytes held on disk.
    pub fn size_bytes(&self) -> u64 {
        self.log.size_bytes()
    }

    /// Moves the high watermark to what is committed now and returns it. With
    /// this node as the only replica that is the log end; it is taken on every
    /// query, so appends that do not go through the partition yet (the group
    /// coordinator's) are covered too.
    fn refresh_high_watermark(&self) -> Offset {
        let prev = self.high_watermark.load(Ordering::Acquire);
        let log_end = self.log.log_end_offset().0;
        // Relied on: what was committed is still in the log.
        assert!(
            log_end >= prev,
            "partition {}: log end {log_end} is below the high watermark {prev}",
            self.index
        );
        if !self.sole_replica.load(Ordering::Acquire) {
            return Offset(prev);
        }
        if log_end == prev {
            return Offset(prev);
        }
        // Moves: never back (fetch_max), never past the log end (just checked).
        let before = self.high_watermark.fetch_max(log_end, Ordering::AcqRel);
        Offset(before.max(log_end))
    }

    /// Appends one request's batches as the leader (validated, offsets
    /// assigned, this partition's leader epoch stamped into every batch,
    /// written; no fsync: `Log::append_as_leader`) and wakes the fetches waiting on this partition. The append
    /// itself happens now, in the caller's order; the returned waiter resolves
    /// when it is committed for `acks`: at once for `acks=0/1`, once durable
    /// for `acks=all` (group commit shared with every other waiter).
    pub fn append(
        &self,
        records: &mut [u8],
        acks: Acks,
        now_ms: i64,
    ) -> Result<Appended, PartitionError> {
        self.append_via(acks, |log, epoch| {
            log.append_as_leader(records, epoch, now_ms)
        })
    }

    /// `append` without copying the caller's bytes (a Produce request's
    /// records, shared with the request buffer): `Log::append_as_leader_shared`
    /// writes the patched batch headers and the received bytes with one pwritev.
    pub fn append_shared(
        &self,
        records: &[u8],
        acks: Acks,
        now_ms: i64,
    ) -> Result<Appended, PartitionError> {
        self.append_via(acks, |log, epoch| {
            log.append_as_leader_shared(records, epoch, now_ms)
        })
    }

    /// KIP-890 part 1: a client's transactional batch of `producer_id` at
    /// `epoch`, starting at `sequence`, is about to be verified with the
    /// transaction coordinator (`supports_epoch_bump`: by a Produce v12+, the
    /// leader adding the partition itself). `None` when the producer's
    /// transaction is already open here (its batches need no verification);
    /// otherwise the guard that [`Partition::append_client`] must present
    /// (Kafka's `maybeStartTransactionVerification`).
    pub fn start_verification(
        &self,
        producer_id: ProducerId,
        epoch: ProducerEpoch,
        sequence: i32,
        supports_epoch_bump: bool,
        now_ms: i64,
    ) -> Option<VerificationGuard> {
        let mut v = self.verifications.lock();
        if self.log.in_transaction(producer_id, epoch) {
            return None;
        }
        Some(v.start(producer_id, epoch, sequence, supports_epoch_bump, now_ms))
    }

    /// `append_shared` for a client's Produce. With `verify`
    /// (`transaction.partition.verification.enable`), every transactional
    /// batch of a producer whose transaction is not open here needs `guard`
    /// to be that producer's verification in progress, or nothing is
    /// appended (INVALID_TXN_STATE, as Kafka's log refuses it). While a
    /// producer's verification is in progress its batches are held to its
    /// sequence rules too (`Verifications::sequence_check`,
    /// OUT_OF_ORDER_SEQUENCE_NUMBER). A transactional append ends the
    /// verification (the transaction is open now).
    pub fn append_client(
        &self,
        records: &[u8],
        acks: Acks,
        now_ms: i64,
        verify: bool,
        guard: Option<VerificationGuard>,
    ) -> Result<Appended, PartitionError> {
        let mut producers: Vec<(ProducerId, ProducerEpoch)> = Vec::new();
        for (h, _) in fjord_records::batches(records).map_while(Result::ok) {
            if h.is_transactional() && !h.is_control() && h.producer_id >= 0 {
                let p = (ProducerId(h.producer_id), ProducerEpoch(h.producer_epoch));
                if !producers.contains(&p) {
                    producers.push(p);
                }
            }
        }
        if producers.is_empty() {
            return self.append_shared(records, acks, now_ms);
        }
        // Not the leader: that is the answer, as for any append.
        self.check_leader()?;
        let mut v = self.verifications.lock();
        if verify {
            for &(pid, epoch) in &producers {
                if !self.log.in_transaction(pid, epoch) && !v.verified(pid, guard) {
                    return Err(PartitionError::NotInTransaction(pid));
                }
            }
        }
        let verifying: Vec<_> = producers
            .iter()
            .filter_map(|&(pid, _)| v.sequence_check(pid))
            .collect();
        let appended = self.append_via(acks, |log, epoch| {
            log.append_as_leader_verifying(records, epoch, now_ms, &verifying)
        })?;
        for &(pid, _) in &producers {
            v.clear(pid);
        }
        Ok(appended)
    }

    /// `append` for a coordinator's own records (`Log::append_as_coordinator`:
    /// a transactional batch without a sequence, the group coordinator's
    /// TxnOffsetCommit records, is taken with its producer epoch checked).
    pub fn append_as_coordinator(
        &self,
        records: &mut [u8],
        acks: Acks,
        now_ms: i64,
    ) -> Result<Appended, PartitionError> {
        self.append_via(acks, |log, epoch| {
            log.append_as_coordinator(records, epoch, now_ms)
        })
    }

    fn append_via(
        &self,
        acks: Acks,
        append: impl FnOnce(&Log, LeaderEpoch) -> Result<AppendResult, StorageError>,
    ) -> Result<Appended, PartitionError> {
        let leader_epoch = self.check_leader()?;
        let replicated = self.replicated_leader_check();
        if acks == Acks::All {
            if let Some(Err(e)) = replicated {
                return Err(e);
            }
        }
        let result = append(&self.log, leader_epoch)?;
        if !result.duplicate {
            self.refresh_high_watermark();
            self.wake_waiters();
        }
        let committed = match (acks, replicated) {
            (Acks::None | Acks::Leader, _) => CommitWaiter::ready(),
            (Acks::All, Some(_)) => {
                // The leader's own copy counts once durable: ask for it now.
                drop(self.log.sync_to(result.last_offset));
                CommitWaiter::replicated(
                    self.commit_tx.subscribe(),
                    result.last_offset.next(),
                    leader_epoch,
                    self.local,
                )
            }
            (Acks::All, None) => CommitWaiter(Waiting::Sync(self.log.sync_to(result.last_offset))),
        };
        Ok(Appended { result, committed })
    }

    /// Writes a transaction marker as the leader (`Log::append_marker`: it
    /// closes the producer's open transaction, which moves the last stable
    /// offset) and wakes waiting fetches. The waiter resolves when the marker
    /// is committed, as for an `acks=all` append.
    pub fn append_marker(
        &self,
        marker: &fjord_storage::TxnMarker,
        now_ms: i64,
    ) -> Result<
        (
            Option<fjord_storage::producer_state::CompletedTxn>,
            CommitWaiter,
        ),
        PartitionError,
    > {
        let leader_epoch = self.check_leader()?;
        let replicated = match self.replicated_leader_check() {
            Some(Err(e)) => return Err(e),
            Some(Ok(_)) => true,
            None => false,
        };
        let mut verifications = self.verifications.lock();
        let (result, completed) = self.log.append_marker(marker, leader_epoch, now_ms)?;
        // The transaction ended: what was verified of it no longer holds.
        verifications.clear(marker.producer_id);
        drop(verifications);
        self.refresh_high_watermark();
        self.wake_waiters();
        let committed = if replicated {
            drop(self.log.sync_to(result.last_offset));
            CommitWaiter::replicated(
                self.commit_tx.subscribe(),
                result.last_offset.next(),
                leader_epoch,
                self.local,
            )
        } else {
            CommitWaiter(Waiting::Sync(self.log.sync_to(result.last_offset)))
        };
        Ok((completed, committed))
    }

    /// Reads whole batches from `offset`, at most `max_bytes` (the first batch
    /// whole if `min_one_batch`, KIP-74), never at or past the high watermark
    /// (the last stable offset for read_committed). `current_leader_epoch` is
    /// the request's (-1: unknown). The offsets of the answer are filled in
    /// even when the read fails, as the Fetch response states them.
    pub fn read(
        &self,
        offset: Offset,
        max_bytes: usize,
        isolation: Isolation,
        current_leader_epoch: LeaderEpoch,
        min_one_batch: bool,
    ) -> Fetched {
        self.read_from(
            ReadFrom::Leader,
            offset,
            max_bytes,
            isolation,
            current_leader_epoch,
            min_one_batch,
        )
    }

    /// [`Partition::read`] on the leader or, with [`ReadFrom::AnyReplica`]
    /// (a consumer's Fetch v11+, KIP-392), on a follower too: a follower
    /// serves what is below the high watermark it learnt from the leader's
    /// fetch responses, never more; a node that is no replica of the
    /// partition answers NOT_LEADER_OR_FOLLOWER.
    pub fn read_from(
        &self,
        from: ReadFrom,
        offset: Offset,
        max_bytes: usize,
        isolation: Isolation,
        current_leader_epoch: LeaderEpoch,
        min_one_batch: bool,
    ) -> Fetched {
        let high_watermark = self.high_watermark();
        let last_stable_offset = self.last_stable_offset().min(high_watermark);
        let log_start_offset = self.log.log_start_offset();
        let records = self
            .check_leader_epoch(current_leader_epoch)
            .and_then(|()| match from {
                ReadFrom::Leader => self.check_leader().map(drop),
                ReadFrom::AnyReplica => self.check_replica(),
            })
            .and_then(|()| {
                let upper = match isolation {
                    Isolation::ReadUncommitted => high_watermark,
                    Isolation::ReadCommitted => last_stable_offset,
                };
                // Kafka: past the log end is out of range; between the
                // readable end and the log end is an empty answer.
                let log_end = self.log.log_end_offset().max(high_watermark);
                if offset < log_start_offset || offset > log_end {
                    return Err(PartitionError::OffsetOutOfRange {
                        requested: offset.0,
                        log_start: log_start_offset.0,
                        end: log_end.0,
                    });
                }
                if offset >= upper {
                    return Ok(ReadResult::default());
                }
                // Relied on: only committed data is served.
                assert!(
                    offset < upper && upper <= high_watermark,
                    "partition {}: read at {} would pass the high watermark {}",
                    self.index,
                    offset,
                    high_watermark
                );
                Ok(self.log.read(offset, max_bytes, upper, min_one_batch)?)
            });
        let aborted = match (&records, isolation) {
            (Ok(r), Isolation::ReadCommitted) if r.bytes > 0 => {
                // Relied on: the records end at or below the last stable offset.
                assert!(
                    r.next_offset <= last_stable_offset.0,
                    "partition {}: read_committed records end at {} past the LSO {}",
                    self.index,
                    r.next_offset,
                    last_stable_offset
                );
                self.log.aborted_transactions(offset, Offset(r.next_offset))
            }
            _ => Vec::new(),
        };
        Fetched {
            high_watermark,
            last_stable_offset,
            log_start_offset,
            records,
            aborted,
        }
    }

    /// OffsetForLeaderEpoch for one partition (a consumer validating its
    /// position, KIP-320): the largest epoch at most `epoch` and the offset
    /// where it ends, or `None` (-1, -1 on the wire) for an epoch the log
    /// cannot place. The leader's own epoch ends at the log end even before
    /// anything was appended in it (Kafka's leader records its epoch's start
    /// offset when it takes over, so an empty partition answers (epoch, 0)).
    /// Checks `current_leader_epoch` and leadership as a read does.
    pub fn end_offset_for_epoch(
        &self,
        epoch: LeaderEpoch,
        current_leader_epoch: LeaderEpoch,
    ) -> Result<Option<(LeaderEpoch, Offset)>, PartitionError> {
        self.check_leader_epoch(current_leader_epoch)?;
        let leader_epoch = self.check_leader()?;
        if epoch == leader_epoch {
            return Ok(Some((leader_epoch, self.log.log_end_offset())));
        }
        if epoch > leader_epoch {
            return Ok(None);
        }
        Ok(self.log.end_offset_for_epoch(epoch))
    }

    /// Whether `producer_id` has a transaction open here at `epoch`.
    pub fn in_transaction(&self, producer_id: ProducerId, epoch: ProducerEpoch) -> bool {
        self.log.in_transaction(producer_id, epoch)
    }

    /// The idempotent producers this partition tracks (DescribeProducers),
    /// by producer id. Only the leader answers, as in Kafka.
    pub fn active_producers(&self) -> Result<Vec<(ProducerId, ProducerEntry)>, PartitionError> {
        self.check_leader()?;
        Ok(self.log.producers())
    }

    /// ListOffsets for one partition: `None` when nothing matches.
    pub fn list_offset(
        &self,
        query: OffsetQuery,
        isolation: Isolation,
        current_leader_epoch: LeaderEpoch,
    ) -> Result<Option<ListedOffset>, PartitionError> {
        self.check_leader_epoch(current_leader_epoch)?;
        let leader_epoch = self.check_leader()?;
        let upper = match isolation {
            Isolation::ReadUncommitted => self.high_watermark(),
            Isolation::ReadCommitted => self.last_stable_offset(),
        };
        let at = |offset: i64, timestamp_ms: i64| ListedOffset {
            offset: Offset(offset),
            timestamp_ms,
            leader_epoch,
        };
        let found = match query {
            OffsetQuery::Latest => Some(at(upper.0, -1)),
            OffsetQuery::Earliest | OffsetQuery::EarliestLocal => {
                Some(at(self.log.log_start_offset().0, -1))
            }
            OffsetQuery::LatestTiered | OffsetQuery::EarliestPendingUpload => None,
            OffsetQuery::MaxTimestamp => match self.log.max_timestamp() {
                None => None,
                // Only what a consumer of this isolation level may read is found.
                Some((_, off)) if off >= upper => None,
                Some((max_ts, off)) => {
                    let (o, ts) = self
                        .in_batch(off, upper, |ts| ts == max_ts)?
                        .unwrap_or((off.0, max_ts));
                    Some(at(o, ts))
                }
            },
            OffsetQuery::Timestamp(target) => match self.log.offset_for_timestamp(target)? {
                None => None,
                Some((off, _)) if off >= upper => None,
                Some((off, batch_ts)) => {
                    let (o, ts) = self
                        .in_batch(off, upper, |ts| ts >= target)?
                        .unwrap_or((off.0, batch_ts));
                    Some(at(o, ts))
                }
            },
        };
        Ok(found)
    }

    /// The storage engine answers timestamp queries per batch; Kafka answers
    /// per record. Finds the first record (at or above the log start) of the
    /// batch holding `offset` whose timestamp satisfies `pick`, decompressing
    /// the batch if it must.
    fn in_batch(
        &self,
        offset: Offset,
        upper: Offset,
        pick: impl Fn(i64) -> bool,
    ) -> Result<Option<(i64, i64)>, StorageError> {
        let read = self.log.read(offset, 1, upper, true)?;
        let mut bytes = Vec::with_capacity(read.bytes);
        for s in &read.slices {
            s.read_into(&mut bytes).map_err(|e| StorageError::Io {
                context: "reading a batch for a timestamp lookup".into(),
                source: e,
            })?;
        }
        let Some(Ok((_, range))) = fjord_records::batches(&bytes).next() else {
            return Ok(None);
        };
        let log_start = self.log.log_start_offset().0;
        let mut found = None;
        // A batch that cannot be decoded keeps the batch-level answer.
        let _ = fjord_records::visit_records_bounded(
            &bytes[range],
            limits::DECOMPRESSED_BATCH_BYTES_MAX,
            |r| {
                if found.is_none() && r.offset >= log_start && pick(r.timestamp) {
                    found = Some((r.offset, r.timestamp));
                }
            },
        );
        Ok(found)
    }

    /// DeleteRecords: moves the log start to `offset` (`None`: the high
    /// watermark), which may not pass the high watermark. Returns the new
    /// log start (low watermark).
    pub fn delete_records_before(&self, offset: Option<Offset>) -> Result<Offset, PartitionError> {
        self.check_leader()?;
        let hw = self.high_watermark();
        let target = offset.unwrap_or(hw);
        if target.0 < 0 || target > hw {
            return Err(PartitionError::OffsetOutOfRange {
                requested: target.0,
                log_start: self.log.log_start_offset().0,
                end: hw.0,
            });
        }
        Ok(self.log.delete_records_before(target)?)
    }

    /// Registers `n` to be woken by the next append (a long-polling fetch).
    /// A fetch that gave up waiting drops its `Arc` and is forgotten at the
    /// next registration.
    pub fn register_waiter(&self, n: &Arc<Notify>) {
        let mut waiters = self.waiters.lock();
        // Drop fetches that gave up waiting (only this list still holds them)
        // and duplicates of `n`, so an idle partition's list stays small.
        waiters.retain(|w| Arc::strong_count(w) > 1 && !Arc::ptr_eq(w, n));
        waiters.push(n.clone());
    }

    /// Wakes every registered fetch (after an append; when the partition
    /// goes away).
    pub fn wake_waiters(&self) {
        let waiters = std::mem::take(&mut *self.waiters.lock());
        for w in waiters {
            w.notify_one();
        }
    }
}

/// This node is the partition's only replica and leads it: what it
/// appends is committed. A replicated partition whose ISR shrank to the
/// leader alone is not: its high watermark stays the replication core's
/// (gated by `min.insync.replicas`).
fn is_sole_replica(local: NodeId, r: &ReplicaState) -> bool {
    r.leader == local && r.isr == [local] && r.replicas == [local]
}

#[cfg(test)]
mod tests;
