//! Every limit of Fjord, in one place. Loops over untrusted input are bounded
//! by one of these; allocations sized by input are checked against the bytes
//! actually present first.

/// Largest request frame accepted (`socket.request.max.bytes` default).
pub const FRAME_BYTES_MAX: usize = 100 * 1024 * 1024;
/// Default `message.max.bytes`: largest record batch accepted by Produce.
pub const MESSAGE_BYTES_MAX_DEFAULT: usize = 1024 * 1024 + 12;
/// Upper bound any `message.max.bytes` setting may take.
pub const MESSAGE_BYTES_MAX_CEILING: usize = 64 * 1024 * 1024;
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
/// Default `log.segment.bytes`.
pub const SEGMENT_BYTES_DEFAULT: u64 = 1024 * 1024 * 1024;
/// Smallest `segment.bytes` accepted (Kafka: 14 bytes; we want room for a batch).
pub const SEGMENT_BYTES_MIN: u64 = 1024;
/// Default `index.interval.bytes`.
pub const INDEX_INTERVAL_BYTES_DEFAULT: u32 = 4096;
/// Default `segment.index.bytes` (offset and time index preallocation).
pub const INDEX_BYTES_MAX_DEFAULT: u32 = 10 * 1024 * 1024;

const _: () = assert!(MESSAGE_BYTES_MAX_DEFAULT <= MESSAGE_BYTES_MAX_CEILING);
const _: () = assert!(MESSAGE_BYTES_MAX_CEILING <= FRAME_BYTES_MAX);
