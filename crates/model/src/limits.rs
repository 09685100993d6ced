//! Every limit of Fjord, in one place. Loops over untrusted input are bounded
//! by one of these; allocations sized by input are checked against the bytes
//! actually present first.

/// Largest request frame accepted (`socket.request.max.bytes` default).
pub const FRAME_BYTES_MAX: usize = 100 * 1024 * 1024;
/// Default `message.max.bytes`: largest record batch accepted by Produce.
pub const MESSAGE_BYTES_MAX_DEFAULT: usize = 1024 * 1024 + 12;
/// Largest record batch Fjord stores, whatever `message.max.bytes` says
/// (Kafka accepts any setting up to 2^31-1, and so does Fjord's config): a
/// batch arrives whole in one request frame, so none can be larger than
/// [`FRAME_BYTES_MAX`], and the recovery scan takes a larger size in a batch
/// header for damage. A setting above this is accepted and acts as this.
pub const MESSAGE_BYTES_MAX_CEILING: usize = FRAME_BYTES_MAX;
/// Longest topic name (Kafka's rule).
pub const TOPIC_NAME_BYTES_MAX: usize = 249;
/// Most partitions a topic may have.
pub const PARTITIONS_PER_TOPIC_MAX: i32 = 100_000;
/// Largest a decompressed batch may grow to while validating or reading it.
pub const DECOMPRESSED_BATCH_BYTES_MAX: usize = 256 * 1024 * 1024;
/// Most records in one batch (a record takes at least 7 bytes on the wire).
pub const RECORDS_PER_BATCH_MAX: usize = MESSAGE_BYTES_MAX_CEILING / 7;
/// Default connection limit.
pub const CONNECTIONS_MAX_DEFAULT: usize = 10_000;
/// Default idle-connection timeout (`connections.max.idle.ms`).
pub const CONNECTION_IDLE_MS_DEFAULT: u64 = 600_000;
/// Requests pipelined on one connection before the reader waits.
pub const IN_FLIGHT_REQUESTS_PER_CONNECTION_MAX: usize = 64;
/// Longest a Fetch may wait (clamps `max_wait_ms`).
pub const FETCH_WAIT_MS_MAX: i64 = 30_000;
/// Default number of incremental fetch sessions a broker keeps
/// (`max.incremental.fetch.session.cache.slots`, Kafka's default).
pub const FETCH_SESSION_CACHE_SLOTS_DEFAULT: usize = 1_000;
/// Most fetch sessions `max.incremental.fetch.session.cache.slots` may ask for.
pub const FETCH_SESSION_CACHE_SLOTS_MAX: usize = 1_000_000;
/// A fetch session unused for longer than this may be evicted by any new
/// one, and one created longer ago than this by a larger one (Kafka's
/// `min.incremental.fetch.session.eviction.ms`, fixed at 120 s).
pub const FETCH_SESSION_EVICTION_MS: i64 = 120_000;
/// Most partitions one fetch session holds (a fetch of more gets none).
pub const FETCH_SESSION_PARTITIONS_MAX: usize = 100_000;
/// Most partitions all fetch sessions of a broker hold together.
pub const FETCH_SESSIONS_PARTITIONS_MAX: usize = 2_000_000;
const _: () = assert!(FETCH_SESSION_PARTITIONS_MAX <= FETCH_SESSIONS_PARTITIONS_MAX);
const _: () = assert!(FETCH_SESSION_CACHE_SLOTS_DEFAULT <= FETCH_SESSION_CACHE_SLOTS_MAX);
/// Default `log.segment.bytes`.
pub const SEGMENT_BYTES_DEFAULT: u64 = 1024 * 1024 * 1024;
/// Smallest `segment.bytes` accepted (Kafka: 14 bytes; we want room for a batch).
pub const SEGMENT_BYTES_MIN: u64 = 1024;
/// `offsets.topic.replication.factor`: Kafka's default.
pub const OFFSETS_TOPIC_REPLICATION_FACTOR_DEFAULT: i16 = 3;
/// `offsets.topic.segment.bytes` default (Kafka's): `__consumer_offsets`'s segment size.
pub const OFFSETS_TOPIC_SEGMENT_BYTES_DEFAULT: u64 = 100 * 1024 * 1024;
/// Default `index.interval.bytes`.
pub const INDEX_INTERVAL_BYTES_DEFAULT: u32 = 4096;
/// Default `segment.index.bytes` (offset and time index preallocation).
pub const INDEX_BYTES_MAX_DEFAULT: u32 = 10 * 1024 * 1024;

const _: () = assert!(MESSAGE_BYTES_MAX_DEFAULT <= MESSAGE_BYTES_MAX_CEILING);
const _: () = assert!(MESSAGE_BYTES_MAX_CEILING <= FRAME_BYTES_MAX);

// ---- storage (fjord-storage) ----
/// Default `log.retention.ms` (7 days).
pub const RETENTION_MS_DEFAULT: i64 = 7 * 24 * 60 * 60 * 1000;
/// Largest `segment.bytes` accepted: index positions are 32-bit (Kafka: Int.MaxValue).
pub const SEGMENT_BYTES_CEILING: u64 = i32::MAX as u64;
/// Threads shared by all partition logs that run fdatasync for group commit.
pub const STORAGE_FLUSH_THREADS: usize = 4;
/// Group commit across partitions: a flush thread that finds at least this many logs of
/// one filesystem waiting makes them durable with one syncfs(2) instead of an fdatasync
/// per log (measured on ext4: 1,000 logs with 1 KiB each, 26-32 ms vs 350-530 ms; 4 logs
/// with 64 KiB each, 0.9-1.0 ms vs 2.0-2.1 ms). 0 turns syncfs off.
pub const GROUP_COMMIT_SYNCFS_MIN_LOGS: usize = 4;
/// Direct writes (`log.direct.io`): the alignment of every O_DIRECT write's file position,
/// length and buffer address (the page size; a multiple of the 512-byte or 4 KiB logical
/// blocks of the devices Fjord runs on). A segment's last, partly filled block is kept in
/// memory and written again, completed, by the next append.
pub const DIRECT_IO_BLOCK_BYTES: usize = 4096;
/// Direct writes: the aligned scratch buffers (one per concurrent append) a `Storage` keeps
/// for reuse; larger ones (an append of more than this) are freed after their write.
pub const DIRECT_IO_SCRATCH_KEEP_BYTES: usize = 1 << 20;
/// Default `log.cache.max.bytes` (Fjord's own): the batch cache of a node, the bytes of
/// recently appended batches kept in memory for consumers and followers of recent data
/// when appends bypass the page cache (`log.direct.io=auto`); oldest appends evicted
/// first. 32 MiB: about 30 ms of appends at 1 GB/s, within the RSS budget of a small node.
pub const BATCH_CACHE_BYTES_DEFAULT: usize = 32 << 20;
/// Largest `log.cache.max.bytes` accepted (16 GiB).
pub const BATCH_CACHE_BYTES_CEILING: usize = 16 << 30;
/// Direct writes: how many aligned scratch buffers a `Storage` keeps for reuse.
pub const DIRECT_IO_SCRATCH_BUFFERS_MAX: usize = 8;
/// Most logs one flush thread takes from the queue for one group-commit round.
pub const GROUP_COMMIT_BATCH_LOGS_MAX: usize = 16_384;
/// Bytes read at once when scanning batch headers in a segment file.
pub const SEGMENT_SCAN_CHUNK_BYTES: usize = 64 * 1024;
/// Most entries accepted in a `leader-epoch-checkpoint` file.
pub const LEADER_EPOCH_ENTRIES_MAX: usize = 100_000;
/// Default `min.cleanable.dirty.ratio` (0.5), in parts per million.
pub const MIN_CLEANABLE_DIRTY_RATIO_PPM_DEFAULT: u32 = 500_000;
/// Default `delete.retention.ms` (1 day): how long a tombstone outlives its first cleaning.
pub const DELETE_RETENTION_MS_DEFAULT: i64 = 24 * 60 * 60 * 1000;
/// Default `log.cleaner.dedupe.buffer.size` (Kafka: 128 MiB for all cleaner threads).
pub const CLEANER_DEDUPE_BUFFER_BYTES_DEFAULT: usize = 128 * 1024 * 1024;
/// Bytes the cleaner's key -> offset map counts per entry (Kafka's SkimpyOffsetMap: a
/// 16-byte key hash and an 8-byte offset); the map holds at most
/// `dedupe buffer / CLEANER_MAP_ENTRY_BYTES * 0.9` keys (Kafka's load factor).
pub const CLEANER_MAP_ENTRY_BYTES: usize = 24;
/// Default `log.cleaner.threads`.
pub const CLEANER_THREADS_DEFAULT: usize = 1;
/// Most `log.cleaner.threads` accepted.
pub const CLEANER_THREADS_MAX: usize = 64;
/// Default `log.cleaner.backoff.ms`: how long an idle cleaner thread sleeps.
pub const CLEANER_BACKOFF_MS_DEFAULT: u64 = 15_000;
const _: () = assert!(SEGMENT_BYTES_DEFAULT <= SEGMENT_BYTES_CEILING);
const _: () = assert!((MESSAGE_BYTES_MAX_CEILING as u64) <= SEGMENT_BYTES_CEILING);

// ---- consumer groups (fjord-group) ----
/// Default `group.initial.rebalance.delay.ms`.
pub const GROUP_INITIAL_REBALANCE_DELAY_MS_DEFAULT: i64 = 3_000;
/// Default `group.min.session.timeout.ms`.
pub const GROUP_SESSION_TIMEOUT_MS_MIN_DEFAULT: i32 = 6_000;
/// Default `group.max.session.timeout.ms`.
pub const GROUP_SESSION_TIMEOUT_MS_MAX_DEFAULT: i32 = 1_800_000;
/// How long a member that joined during a rebalance may take to rejoin before it is dropped (Kafka: 5 min).
pub const GROUP_NEW_MEMBER_JOIN_TIMEOUT_MS: i64 = 300_000;
/// Most members (joined plus pending) in one group; also bounds the member count read back from disk.
pub const GROUP_MEMBERS_MAX: usize = 100_000;
/// Default `offsets.retention.minutes` (7 days), in ms.
pub const OFFSETS_RETENTION_MS_DEFAULT: i64 = 7 * 24 * 60 * 60 * 1000;
/// Default `offsets.retention.check.interval.ms`.
pub const OFFSETS_RETENTION_CHECK_INTERVAL_MS_DEFAULT: i64 = 600_000;
/// Default `offset.metadata.max.bytes`.
pub const OFFSET_METADATA_BYTES_MAX_DEFAULT: usize = 4096;
/// Default `offsets.topic.num.partitions`.
pub const OFFSETS_TOPIC_PARTITIONS_DEFAULT: i32 = 50;

// ---- transactions (fjord-txn) ----
/// Default `transaction.state.log.num.partitions`.
pub const TRANSACTION_STATE_PARTITIONS_DEFAULT: i32 = 50;
/// `transaction.state.log.replication.factor`: Kafka's default.
pub const TRANSACTION_STATE_REPLICATION_FACTOR_DEFAULT: i16 = 3;
/// `transaction.state.log.min.isr`: Kafka's default.
pub const TRANSACTION_STATE_MIN_ISR_DEFAULT: i16 = 2;
/// Kafka's `transaction.state.log.segment.bytes` default (100 MiB).
pub const TRANSACTION_STATE_SEGMENT_BYTES_DEFAULT: u64 = 100 * 1024 * 1024;
/// Default `add.partitions.to.txn.retry.backoff.ms`: a partition leader's
/// wait before it asks the transaction coordinator again to add a Produce
/// v12+ batch's partition that was answered CONCURRENT_TRANSACTIONS.
pub const ADD_PARTITIONS_TO_TXN_RETRY_BACKOFF_MS_DEFAULT: u64 = 20;
/// Default `add.partitions.to.txn.retry.backoff.max.ms`: how long it keeps
/// asking (bounded by Kafka's `request.timeout.ms` default, as Kafka bounds
/// it by the configured one).
pub const ADD_PARTITIONS_TO_TXN_RETRY_BACKOFF_MAX_MS_DEFAULT: u64 = 100;
/// Kafka's `request.timeout.ms` default (30 s).
pub const REQUEST_TIMEOUT_MS_DEFAULT: u64 = 30_000;
/// First wait before a transaction marker that could not be written is tried
/// again (doubling per attempt, up to the maximum).
pub const TRANSACTION_MARKER_RETRY_BACKOFF_MS_MIN: i64 = 100;
/// Longest wait between two attempts to write a transaction marker.
pub const TRANSACTION_MARKER_RETRY_BACKOFF_MS_MAX: i64 = 5_000;
/// How long a transaction coordinator waits to connect to another broker to
/// send it WriteTxnMarkers (the attempt is retried with the backoff above).
pub const TRANSACTION_MARKER_CONNECT_TIMEOUT_MS: u64 = 3_000;
/// How long it waits for that broker's WriteTxnMarkers answer (Kafka's
/// `request.timeout.ms` default, which its marker channel uses).
pub const TRANSACTION_MARKER_REQUEST_TIMEOUT_MS: u64 = 30_000;
/// Default `transaction.max.timeout.ms`: the longest `transaction.timeout.ms` a producer may ask for.
pub const TRANSACTION_TIMEOUT_MS_MAX_DEFAULT: i32 = 900_000;
/// Default `transaction.abort.timed.out.transaction.cleanup.interval.ms`.
pub const TRANSACTION_ABORT_CHECK_INTERVAL_MS_DEFAULT: i64 = 10_000;
/// Default `transactional.id.expiration.ms` (7 days).
pub const TRANSACTIONAL_ID_EXPIRATION_MS_DEFAULT: i64 = 7 * 24 * 60 * 60 * 1000;
/// Most partitions one transaction may touch; also bounds the partition count
/// read back from a `__transaction_state` value.
pub const TRANSACTION_PARTITIONS_MAX: usize = 100_000;
/// Longest transactional id accepted (it is an int16-length string on disk).
pub const TRANSACTIONAL_ID_BYTES_MAX: usize = i16::MAX as usize;

// ---- coordinator runtime (fjord-coordinator) ----
/// Threads that replay an internal topic's partitions at start (shards load in parallel).
pub const COORDINATOR_LOAD_THREADS_MAX: usize = 4;
/// Bytes read at once while a shard replays its partition.
pub const COORDINATOR_LOAD_READ_BYTES: usize = 1024 * 1024;
/// Wait before a shard whose load failed is loaded again; doubles per failure up to the max.
pub const COORDINATOR_LOAD_RETRY_BACKOFF_MS_MIN: i64 = 1_000;
/// Longest wait between two load attempts of a failed shard.
pub const COORDINATOR_LOAD_RETRY_BACKOFF_MS_MAX: i64 = 60_000;
const _: () =
    assert!(COORDINATOR_LOAD_RETRY_BACKOFF_MS_MIN <= COORDINATOR_LOAD_RETRY_BACKOFF_MS_MAX);

// ---- request decoding (fjord-protocol) ----
/// Most heap memory the decoded form of one request may take: its arrays of
/// structs and its unknown tagged fields (byte and string fields are
/// zero-copy slices of the frame). Bounds how much a large hostile frame of
/// tiny elements can be amplified into (a 2-byte Metadata topic decodes to an
/// ~80-byte struct).
pub const REQUEST_DECODED_BYTES_MAX: usize = 64 * 1024 * 1024;

// ---- storage handles and checkpoints (fjord-storage) ----
/// Sealed segment `.log` files kept open at once across all partition logs (closed least
/// recently used first; the active segment of each log is always open).
pub const OPEN_SEGMENT_FILES_MAX: usize = 4096;
/// Sealed segment index files kept memory-mapped at once across all partition logs (each
/// mapping is one entry of `vm.max_map_count`; active segments' indexes live in memory).
pub const MAPPED_INDEX_FILES_MAX: usize = 8192;
/// Least interval between two background writes of one log's recovery-point checkpoint.
pub const RECOVERY_POINT_CHECKPOINT_INTERVAL_MS: u64 = 1_000;
/// Least interval between two writes of a replicated partition's saved high watermark
/// (Kafka's `replica.high.watermark.checkpoint.interval.ms` default); a clean shutdown
/// saves it regardless.
pub const HIGH_WATERMARK_CHECKPOINT_INTERVAL_MS: i64 = 5_000;

// ---- client (fjord-client) ----
/// Largest response frame the client accepts before allocating for it.
pub const CLIENT_RESPONSE_BYTES_MAX: usize = 256 * 1024 * 1024;
/// Requests a client connection keeps in flight by default before `send` waits.
pub const CLIENT_IN_FLIGHT_REQUESTS_DEFAULT: usize = 32;
/// Default time the client waits for a response before giving up on a request.
pub const CLIENT_REQUEST_TIMEOUT_MS_DEFAULT: u64 = 30_000;
/// Default time the client waits for a TCP connection to be established.
pub const CLIENT_CONNECT_TIMEOUT_MS_DEFAULT: u64 = 10_000;

// ---- command-line tools (fjord topic/produce/consume/group) ----
/// Longest input line `fjord produce` reads (one record); a longer one is an error.
pub const CLI_PRODUCE_LINE_BYTES_MAX: usize = 16 * 1024 * 1024;
/// Bytes of record data `fjord produce` puts in one batch before starting the next
/// (under Kafka's default `message.max.bytes` of 1 MiB).
pub const CLI_PRODUCE_BATCH_BYTES_MAX: usize = 512 * 1024;
/// Records `fjord produce` puts in one batch before starting the next.
pub const CLI_PRODUCE_BATCH_RECORDS_MAX: usize = 10_000;
/// Bytes `fjord consume` asks per partition in one Fetch.
pub const CLI_FETCH_PARTITION_BYTES_MAX: i32 = 8 * 1024 * 1024;
/// Bytes `fjord consume` asks in one Fetch in all.
pub const CLI_FETCH_BYTES_MAX: i32 = 64 * 1024 * 1024;

// ---- idempotent producers (fjord-storage) ----
/// Batches remembered per producer id for duplicate detection (Kafka: 5, which is also
/// the most in-flight requests an idempotent client may have).
pub const PRODUCER_BATCHES_RETAINED: usize = 5;
/// Default `producer.id.expiration.ms` (1 day): a producer id whose newest batch is this
/// old is forgotten.
pub const PRODUCER_ID_EXPIRATION_MS_DEFAULT: i64 = 24 * 60 * 60 * 1000;
/// Default `producer.id.expiration.check.interval.ms`: least interval between two
/// expiration sweeps of one partition's producer state.
pub const PRODUCER_ID_EXPIRATION_CHECK_INTERVAL_MS: i64 = 600_000;
/// Most producer ids tracked per partition; past it the least recently active one is
/// forgotten (it then counts as unknown, as after expiration).
pub const PRODUCERS_PER_PARTITION_MAX: usize = 10_000;
/// Most transaction verifications (KIP-890, `fjord_partition::verification`)
/// in progress per partition; past it the expired ones, then the oldest, are
/// dropped (a dropped one's append is refused: INVALID_TXN_STATE, as for an
/// unverified batch).
pub const TXN_VERIFICATIONS_MAX: usize = PRODUCERS_PER_PARTITION_MAX;
/// Producer-state snapshot files (`<offset>.snapshot`) kept per partition (the newest;
/// an older one is the fallback when the newest is damaged).
pub const PRODUCER_SNAPSHOTS_KEPT: usize = 2;
/// Most partitions one DescribeTopicPartitions response describes (Kafka's
/// `max.request.partition.size.limit` default); the client's
/// `response_partition_limit` can only lower it.
pub const DESCRIBE_TOPIC_PARTITIONS_MAX: i32 = 2000;
// ---- fetch path (fjord-storage reads) ----
/// A header scan for the fetch path reads the next batch header alone (instead of a
/// `SEGMENT_SCAN_CHUNK_BYTES` chunk) after a batch at least this large: a chunk would
/// then hold at most a few headers, and copying the record data around them costs more
/// than the extra small reads.
pub const SEGMENT_SCAN_HEADER_ONLY_AFTER_BYTES: usize = 8 * 1024;
// ---- connections (fjord-broker server) ----
/// Bytes of requests one connection may have read but not yet answered (a
/// per-connection `queued.max.request.bytes`; the broker-wide one is the config,
/// `fjord_broker::connection_quotas`): the reader waits for answers before
/// reading more, which bounds what a pipelining client can make the broker hold
/// (an acks=all Produce waits for fdatasync with its frame possibly still alive).
/// A larger single frame (up to the request size limit) is read alone.
pub const IN_FLIGHT_REQUEST_BYTES_PER_CONNECTION_MAX: usize = 16 * 1024 * 1024;

// ---- security: TLS and SASL (fjord-broker security) ----
/// Largest SASL token a client may send (Kafka's `sasl.server.max.receive.size`
/// default): a PLAIN message or a SCRAM message is far smaller.
pub const SASL_TOKEN_BYTES_MAX: usize = 512 * 1024;
/// How long a connection on a TLS or SASL listener may take to finish its
/// TLS handshake and its SASL authentication; past it, it is closed.
pub const AUTHENTICATION_TIMEOUT_MS: u64 = 10_000;
/// KIP-368: a connection re-authenticates at most once in this many ms
/// (Kafka's `MIN_REAUTH_INTERVAL_ONE_SECOND_NANOS`); a SaslHandshake
/// sooner is handled as a request of an authenticated client.
pub const REAUTHENTICATION_INTERVAL_MIN_MS: u64 = 1_000;
/// Largest PEM file (key store, trust store) the broker reads.
pub const PEM_FILE_BYTES_MAX: u64 = 1024 * 1024;
/// Most rules in `ssl.principal.mapping.rules`.
pub const PRINCIPAL_MAPPING_RULES_MAX: usize = 64;
/// Most users one JAAS line may define (`user_NAME="..."` options).
pub const SASL_PLAIN_USERS_MAX: usize = 10_000;
const _: () = assert!(SASL_TOKEN_BYTES_MAX <= FRAME_BYTES_MAX);

// ---- Cluster metadata (`__cluster_metadata`) ----
/// Records of committed metadata appended since the last snapshot before a new
/// snapshot is written (Kafka bounds it in bytes,
/// `metadata.log.max.record.bytes.between.snapshots`, 20 MiB by default).
pub const METADATA_SNAPSHOT_BYTES_INTERVAL_DEFAULT: u64 = 20 * 1024 * 1024;
/// Records in one proposal (Kafka's controller: `MAX_RECORDS_PER_USER_OP`).
pub const METADATA_RECORDS_PER_PROPOSAL_MAX: usize = 10_000;
/// Bytes of one metadata batch as written to the log (Kafka: `KafkaRaftClient.MAX_BATCH_SIZE_BYTES`).
pub const METADATA_BATCH_BYTES_MAX: usize = 8 * 1024 * 1024;
/// Largest snapshot file loaded at start (it is read whole).
pub const METADATA_SNAPSHOT_BYTES_MAX: u64 = 1024 * 1024 * 1024;
/// Proposals waiting for the metadata thread (back-pressure for admin requests).
pub const METADATA_PROPOSALS_QUEUED_MAX: usize = 1024;
/// Committed metadata batches read from the log and waiting for the apply
/// thread (the rest wait in the log: the quorum's thread never blocks on it).
pub const METADATA_APPLY_QUEUED_BATCHES_MAX: usize = 4096;
const _: () = assert!(METADATA_BATCH_BYTES_MAX <= MESSAGE_BYTES_MAX_CEILING);

// ---- KRaft quorum (`fjord-raft`), Kafka's `controller.quorum.*` defaults ----
/// `controller.quorum.election.timeout.ms`.
pub const RAFT_ELECTION_TIMEOUT_MS_DEFAULT: i64 = 1_000;
/// `controller.quorum.election.backoff.max.ms`.
pub const RAFT_ELECTION_BACKOFF_MAX_MS_DEFAULT: i64 = 1_000;
/// `controller.quorum.fetch.timeout.ms`.
pub const RAFT_FETCH_TIMEOUT_MS_DEFAULT: i64 = 2_000;
/// `controller.quorum.request.timeout.ms`.
pub const RAFT_REQUEST_TIMEOUT_MS_DEFAULT: i64 = 2_000;
/// Pause before a follower fetches again after an empty Fetch response.
pub const RAFT_FETCH_IDLE_MS_DEFAULT: i64 = 50;
/// Most log entries in one Fetch response of the quorum.
pub const RAFT_FETCH_ENTRIES_MAX: usize = 1_024;
/// Quorum requests queued for one peer connection (more are dropped; the core resends).
pub const RAFT_PEER_QUEUE_MAX: usize = 64;
/// Longest pause between attempts to connect to a voter.
pub const RAFT_CONNECT_BACKOFF_MAX_MS: u64 = 1_000;
/// How long the quorum leader may hold a Fetch that has nothing new to send
/// (Kafka's KRaft `FetchRequest.MaxWaitMs`, 500 ms).
pub const RAFT_FETCH_MAX_WAIT_MS_DEFAULT: i64 = 500;
/// Most snapshot bytes in one FetchSnapshot response (Kafka's 8 MiB).
/// How long the metadata quorum's leader lists an observer (a broker-only
/// node) in DescribeQuorum after its last Fetch: Kafka's
/// `LeaderState.OBSERVER_SESSION_TIMEOUT_MS` (5 minutes).
pub const RAFT_OBSERVER_SESSION_TIMEOUT_MS: i64 = 300_000;
/// The most observers the quorum leader remembers for DescribeQuorum.
pub const RAFT_OBSERVERS_TRACKED_MAX: usize = 1_024;
/// AddRaftVoter adds an observer only if it fetched from the leader this
/// recently, having caught up once (Kafka's `isReplicaCaughtUp`: an hour).
pub const RAFT_ADD_VOTER_FETCHED_WITHIN_MS: i64 = 3_600_000;
pub const RAFT_FETCH_SNAPSHOT_BYTES_MAX: u32 = 8 * 1024 * 1024;
/// Most Fetch requests the quorum leader holds at once (long polling); more
/// are answered at once.
pub const RAFT_HELD_FETCHES_MAX: usize = 4_096;
/// How long a proposal forwarded to the quorum leader may take to commit.
pub const METADATA_FORWARD_TIMEOUT_MS: u64 = 30_000;
/// Pause before a broker sends a forwarded admin request again after the
/// controller answered NOT_CONTROLLER (a new quorum leader activating).
pub const FORWARD_NOT_CONTROLLER_BACKOFF_MS: u64 = 100;

// ---- the KRaft controller (fjord-controller) ----
/// `broker.session.timeout.ms`: a broker that has not heartbeaten for this long is fenced.
pub const BROKER_SESSION_TIMEOUT_MS_DEFAULT: i64 = 9_000;
/// `broker.heartbeat.interval.ms`: how often a broker heartbeats to the controller.
pub const BROKER_HEARTBEAT_INTERVAL_MS_DEFAULT: i64 = 2_000;
/// `leader.imbalance.check.interval.seconds` (in ms): how often the controller
/// moves leadership back to preferred replicas when `auto.leader.rebalance.enable`.
pub const LEADER_IMBALANCE_CHECK_INTERVAL_MS_DEFAULT: i64 = 300_000;
/// Producer ids handed to a broker per AllocateProducerIds (Kafka's `ProducerIdsBlock.PRODUCER_ID_BLOCK_SIZE`).
pub const PRODUCER_ID_BLOCK_SIZE: i64 = 1_000;
/// Listeners and supported features one BrokerRegistration may carry.
pub const BROKER_REGISTRATION_LISTENERS_MAX: usize = 64;
pub const BROKER_REGISTRATION_FEATURES_MAX: usize = 64;
/// Log directory ids one BrokerRegistration may carry (KIP-858; an Apache
/// Kafka broker sends one per `log.dirs` entry).
pub const BROKER_REGISTRATION_LOG_DIRS_MAX: usize = 256;
const _: () = assert!(BROKER_HEARTBEAT_INTERVAL_MS_DEFAULT < BROKER_SESSION_TIMEOUT_MS_DEFAULT);
/// A broker whose connection to the active controller closed (the one its
/// heartbeats came on) and that has not heartbeated since is fenced after
/// this long, before its session ends: a process killed with `kill -9`
/// closes its sockets at once. A live broker reconnects and heartbeats
/// again within `BROKER_FENCED_HEARTBEAT_MS` of a lost connection.
pub const BROKER_DISCONNECT_FENCE_MS: i64 = 500;
const _: () = assert!(BROKER_DISCONNECT_FENCE_MS > 3 * BROKER_FENCED_HEARTBEAT_MS as i64);
/// How often the active controller's shell ticks it (fencing of brokers
/// whose session expired, leader rebalance) and checks it still leads.
pub const CONTROLLER_TICK_MS: u64 = 100;
/// How often an unregistered or fenced broker retries its registration or
/// heartbeat (so that it is unfenced soon after it caught up).
pub const BROKER_FENCED_HEARTBEAT_MS: u64 = 100;
/// How long a broker waits for the active controller's answer to one
/// request (registration, heartbeat, producer-id block) before it drops
/// the connection and looks for the controller again.
pub const CONTROLLER_REQUEST_TIMEOUT_MS: u64 = 5_000;
/// How long a broker tries to connect to the controller it knows before it
/// looks the controller up again (a cut-off node drops SYNs silently).
pub const CONTROLLER_CONNECT_TIMEOUT_MS: u64 = 1_000;
/// While a broker waits for the controller's answer, how often it checks
/// that the quorum still names that controller: an answer from a deposed,
/// cut-off controller never comes, and a heartbeat stuck on it past the
/// new controller's session timeout gets a live broker fenced.
pub const CONTROLLER_LEADER_CHECK_MS: u64 = 50;
const _: () = assert!(CONTROLLER_CONNECT_TIMEOUT_MS <= CONTROLLER_REQUEST_TIMEOUT_MS);
const _: () = assert!(CONTROLLER_LEADER_CHECK_MS < BROKER_HEARTBEAT_INTERVAL_MS_DEFAULT as u64);
/// Largest response frame a broker accepts from the controller.
pub const CONTROLLER_RESPONSE_BYTES_MAX: usize = 1 << 20;
/// How long a broker's clean shutdown waits for the controller to move its
/// leaderships away (controlled shutdown) before it stops anyway.
pub const CONTROLLED_SHUTDOWN_TIMEOUT_MS: u64 = 5_000;

// ---- replication (fjord-replication) ----
/// `replica.lag.time.max.ms`: a follower that has not caught up with the
/// leader's log end for this long leaves the ISR.
pub const REPLICA_LAG_TIME_MAX_MS_DEFAULT: i64 = 30_000;
/// `min.insync.replicas` default.
pub const MIN_INSYNC_REPLICAS_DEFAULT: usize = 1;
/// `replica.fetch.backoff.ms`: how long a follower waits after a failed fetch.
pub const REPLICA_FETCH_BACKOFF_MS_DEFAULT: i64 = 1_000;
/// `replica.socket.timeout.ms`: how long a follower waits for a fetch answer
/// before it sends the fetch again.
pub const REPLICA_FETCH_RESPONSE_TIMEOUT_MS_DEFAULT: i64 = 30_000;
/// Most replicas a partition may have (bounds ISR lists built from requests).
pub const REPLICAS_PER_PARTITION_MAX: usize = 64;
const _: () = assert!(REPLICA_FETCH_BACKOFF_MS_DEFAULT < REPLICA_LAG_TIME_MAX_MS_DEFAULT);
/// `replica.fetch.wait.max.ms`: how long a leader holds a follower's fetch
/// that found nothing new.
pub const REPLICA_FETCH_WAIT_MAX_MS_DEFAULT: u64 = 500;
/// Kafka's `replica.fetch.min.bytes` default: a follower's fetch is
/// answered as soon as any record is there.
pub const REPLICA_FETCH_MIN_BYTES_DEFAULT: usize = 1;
/// `replica.fetch.max.bytes`: what a follower asks for per partition.
pub const REPLICA_FETCH_MAX_BYTES_DEFAULT: usize = 1024 * 1024;
/// `replica.fetch.response.max.bytes`: what a follower asks for per fetch.
pub const REPLICA_FETCH_RESPONSE_MAX_BYTES_DEFAULT: usize = 10 * 1024 * 1024;
/// How long a replica fetcher with nothing to send (no partition, or every
/// one waiting for its flush or backing off) sleeps before it looks again.
pub const REPLICA_FETCHER_IDLE_MS: u64 = 2;
/// How often a leader's replication state is given the time and its own
/// durable log end (ISR shrink, high watermark after the leader's flush).
pub const REPLICA_TICK_MS: u64 = 5;
/// How often the leader tick runs every led partition's state machine
/// (ISR shrink after `replica.lag.time.max.ms`, AlterPartition resends after
/// `ALTER_PARTITION_BACKOFF_MS`); in between it runs only the partitions
/// whose durable end moved or that have an AlterPartition to send. With
/// 10,000 partitions a sweep every `REPLICA_TICK_MS` kept a core half busy.
pub const REPLICA_FULL_TICK_MS: u64 = 50;
const _: () = assert!(REPLICA_FULL_TICK_MS >= REPLICA_TICK_MS);
const _: () = assert!((REPLICA_FULL_TICK_MS as i64) < ALTER_PARTITION_BACKOFF_MS);
/// How long a leader waits for the controller's answer to an AlterPartition
/// before it sends the request again.
pub const ALTER_PARTITION_TIMEOUT_MS: i64 = 5_000;
/// How long a leader waits after an AlterPartition that failed (no
/// controller, an error answer) before it sends it again.
pub const ALTER_PARTITION_BACKOFF_MS: i64 = 200;
const _: () = assert!(REPLICA_FETCH_RESPONSE_MAX_BYTES_DEFAULT <= FRAME_BYTES_MAX);
const _: () = assert!(REPLICA_FETCH_MAX_BYTES_DEFAULT <= REPLICA_FETCH_RESPONSE_MAX_BYTES_DEFAULT);
const _: () =
    assert!((REPLICA_FETCH_WAIT_MAX_MS_DEFAULT as i64) < REPLICA_FETCH_RESPONSE_TIMEOUT_MS_DEFAULT);

// ---- metrics (fjord-broker `metrics`) ----
/// Partitions with their own series on `/metrics` (log end offset, size,
/// segments, ISR): the first ones by topic name and index; the others are
/// counted in the broker-wide totals and in `fjord_metrics_series_omitted`.
/// Keeps a scrape bounded (a few hundred kB) with 10,000 partitions.
pub const METRICS_PARTITION_SERIES_MAX: usize = 1_000;
/// Topics with their own series (bytes and records in/out), as above.
pub const METRICS_TOPIC_SERIES_MAX: usize = 1_000;
/// Consumer-group partitions with their own lag series, as above.
pub const METRICS_GROUP_LAG_SERIES_MAX: usize = 1_000;
/// Largest HTTP request head the metrics listener reads; a larger one gets
/// 431 and the connection is closed.
pub const METRICS_HTTP_REQUEST_BYTES_MAX: usize = 8 * 1024;
/// How long the metrics listener waits for a request head.
pub const METRICS_HTTP_READ_TIMEOUT_MS: u64 = 5_000;
/// Metrics connections served at once; more are closed at accept.
pub const METRICS_HTTP_CONNECTIONS_MAX: usize = 64;
