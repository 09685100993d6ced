//! Property test: a `Log` under random appends, reads, rolls, retention, DeleteRecords,
//! timestamp lookups, clean reopen and crash reopen answers like a `Vec` of batches, with
//! buffered and with direct writes.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::{all_batches, batch, split};
use fjord_model::Offset;
use fjord_records::BatchHeader;
use fjord_storage::{Log, LogConfig};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    /// One append of several batches: (records, value bytes, first timestamp).
    Append(Vec<(usize, usize, i64)>),
    Read {
        start: u16,
        upper: u16,
        max_bytes: usize,
        min_one: bool,
    },
    TimeLookup(i64),
    DeleteRecords(u16),
    Retention {
        bytes: Option<i64>,
        ms: Option<i64>,
        now: i64,
    },
    CloseReopen,
    CrashReopen,
    Sync,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => prop::collection::vec((1usize..4, 0usize..150, 0i64..100_000), 1..4).prop_map(Op::Append),
        4 => (any::<u16>(), any::<u16>(), 0usize..3_000, any::<bool>())
            .prop_map(|(start, upper, max_bytes, min_one)| Op::Read { start, upper, max_bytes, min_one }),
        1 => (0i64..110_000).prop_map(Op::TimeLookup),
        1 => any::<u16>().prop_map(Op::DeleteRecords),
        1 => (prop::option::of(0i64..6_000), prop::option::of(0i64..60_000), 0i64..200_000)
            .prop_map(|(bytes, ms, now)| Op::Retention { bytes, ms, now }),
        1 => Just(Op::CloseReopen),
        1 => Just(Op::CrashReopen),
        1 => Just(Op::Sync),
    ]
}

#[derive(Debug)]
struct ModelBatch {
    base: i64,
    last: i64,
    max_ts: i64,
    bytes: Vec<u8>,
}

#[derive(Debug, Default)]
struct Model {
    batches: Vec<ModelBatch>,
    log_start: i64,
    log_end: i64,
}

impl Model {
    fn visible(&self) -> impl Iterator<Item = &ModelBatch> {
        self.batches
            .iter()
            .filter(move |b| b.last >= self.log_start)
    }
    fn pick(&self, from: i64, x: u16) -> i64 {
        from + i64::from(x) % (self.log_end - from + 1)
    }
}

fn config() -> LogConfig {
    LogConfig {
        segment_bytes_max: 2048,
        segment_ms: None,
        index_interval_bytes: 128,
        index_bytes_max: 1024,
        retention_ms: None,
        retention_bytes: None,
        ..LogConfig::default()
    }
}

fn check_all(log: &Log, m: &Model) {
    assert_eq!(log.log_end_offset().0, m.log_end);
    assert_eq!(log.log_start_offset().0, m.log_start);
    let got: Vec<(i64, Vec<u8>)> = all_batches(log)
        .into_iter()
        .filter(|(_, b)| BatchHeader::parse(b).unwrap().last_offset() >= m.log_start)
        .collect();
    let want: Vec<(i64, Vec<u8>)> = m.visible().map(|b| (b.base, b.bytes.clone())).collect();
    assert_eq!(got, want);
}

fn run(dir: &Path, ops: Vec<Op>) {
    let mut log: Arc<Log> = Log::open(&common::storage(), dir, config(), 0).unwrap().0;
    let mut m = Model::default();
    let mut seed = 0u64;
    for op in ops {
        match op {
            Op::Append(specs) => {
                let mut buf = Vec::new();
                let mut parts = Vec::new();
                for (records, value, ts) in specs {
                    seed += 1;
                    let b = batch(records, value, ts, seed);
                    parts.push((records as i64, ts + records as i64 - 1, b.len()));
                    buf.extend(b);
                }
                let r = log.append(&mut buf, 0).unwrap();
                assert_eq!(r.base_offset.0, m.log_end);
                let mut at = 0;
                for (records, max_ts, len) in parts {
                    let bytes = buf[at..at + len].to_vec();
                    at += len;
                    m.batches.push(ModelBatch {
                        base: m.log_end,
                        last: m.log_end + records - 1,
                        max_ts,
                        bytes,
                    });
                    m.log_end += records;
                }
                assert_eq!(r.last_offset.0, m.log_end - 1);
            }
            Op::Read {
                start,
                upper,
                max_bytes,
                min_one,
            } => {
                let start = m.pick(m.log_start, start);
                let upper = m.pick(start, upper);
                let r = log
                    .read(Offset(start), max_bytes, Offset(upper), min_one)
                    .unwrap();
                let mut want = Vec::new();
                for b in m.visible().filter(|b| b.last >= start) {
                    if b.last >= upper {
                        break;
                    }
                    if want.len() + b.bytes.len() > max_bytes && !(want.is_empty() && min_one) {
                        break;
                    }
                    want.extend_from_slice(&b.bytes);
                    if want.len() >= max_bytes {
                        break;
                    }
                }
                let got = r.to_vec().unwrap();
                assert_eq!(r.bytes, got.len());
                assert_eq!(
                    split(&got),
                    split(&want),
                    "read({start}, {max_bytes}, {upper}, {min_one})"
                );
                // Reads outside [log_start, log_end] fail.
                assert!(log
                    .read(Offset(m.log_end + 1), 10, Offset(m.log_end + 1), true)
                    .is_err());
                if m.log_start > 0 {
                    assert!(log
                        .read(Offset(m.log_start - 1), 10, Offset(m.log_end), true)
                        .is_err());
                }
            }
            Op::TimeLookup(target) => {
                let want = m
                    .visible()
                    .find(|b| b.max_ts >= target)
                    .map(|b| b.base.max(m.log_start));
                let got = log.offset_for_timestamp(target).unwrap().map(|(o, _)| o.0);
                assert_eq!(got, want, "timestamp {target}");
            }
            Op::DeleteRecords(x) => {
                let offset = m.pick(m.log_start, x);
                let r = log.delete_records_before(Offset(offset)).unwrap();
                m.log_start = m.log_start.max(offset);
                assert_eq!(r.0, m.log_start);
            }
            Op::Retention { bytes, ms, now } => {
                log.set_config(LogConfig {
                    retention_bytes: bytes,
                    retention_ms: ms,
                    ..config()
                });
                let before = log.segment_count();
                let deleted = log.apply_retention(now).unwrap();
                assert_eq!(log.segment_count(), before - deleted);
                assert!(log.segment_count() >= 1);
                let new_start = log.log_start_offset().0;
                assert!(new_start >= m.log_start && new_start <= m.log_end);
                // Whole segments only: the new start is a batch boundary (or unchanged).
                assert!(new_start == m.log_start || m.batches.iter().any(|b| b.base == new_start));
                m.log_start = new_start;
                log.set_config(config());
            }
            Op::CloseReopen => {
                log.close().unwrap();
                common::crash(log);
                let (l, report) = Log::open(&common::storage(), dir, config(), 0).unwrap();
                assert!(report.clean);
                assert_eq!(report.bytes_truncated, 0);
                log = l;
            }
            Op::CrashReopen => {
                common::crash(log);
                let (l, report) = Log::open(&common::storage(), dir, config(), 0).unwrap();
                assert!(!report.clean);
                assert_eq!(report.bytes_truncated, 0, "{report:?}");
                log = l;
            }
            Op::Sync => {
                if m.log_end > 0 {
                    log.sync_to(Offset(m.log_end - 1)).wait_blocking().unwrap();
                    assert_eq!(log.durable_offset().0, m.log_end);
                }
            }
        }
        assert_eq!(log.log_end_offset().0, m.log_end);
        assert_eq!(log.log_start_offset().0, m.log_start);
    }
    check_all(&log, &m);
    common::crash(log);
    let (log, _) = Log::open(&common::storage(), dir, config(), 0).unwrap();
    check_all(&log, &m);
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: if std::env::var("FJORD_SLOW_TESTS").is_ok() { 256 } else { 24 },
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn log_behaves_like_a_vec_of_batches(ops in prop::collection::vec(op(), 1..60)) {
        common::on_both_write_paths(|_| {
            let dir = tempfile::tempdir().unwrap();
            run(dir.path(), ops.clone());
        });
    }
}
