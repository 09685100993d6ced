//! Damaged files: flipped bytes, truncation, missing or garbled indexes and checkpoints.
//! Reopening truncates to the last valid batch or rebuilds, reports it, and never panics.

mod common;

use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};

use common::{all_batches, batch, small_config};
use fjord_model::Offset;
use fjord_storage::{Log, LogConfig};
use rand::{Rng, SeedableRng};

/// Writes `n` batches (crash: no close) and returns them as (base offset, bytes).
fn fill(dir: &Path, n: u64, close: bool) -> Vec<(i64, Vec<u8>)> {
    fill_with(dir, n, close, small_config())
}

fn fill_with(dir: &Path, n: u64, close: bool, cfg: LogConfig) -> Vec<(i64, Vec<u8>)> {
    let (log, _) = Log::open(&common::storage(), dir, cfg, 0).unwrap();
    let mut out = vec![];
    for i in 0..n {
        let mut b = batch(1 + (i % 3) as usize, 100, 1_000 * i as i64, i);
        let r = log.append(&mut b, 0).unwrap();
        out.push((r.base_offset.0, b));
    }
    if close {
        log.close().unwrap();
    }
    common::crash(log);
    out
}

fn files(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == suffix))
        .collect();
    v.sort();
    v
}

fn reopen(dir: &Path) -> (std::sync::Arc<Log>, fjord_storage::RecoveryReport) {
    Log::open(&common::storage(), dir, small_config(), 0).unwrap()
}

/// The log holds exactly a prefix of `expected`, of at least `min` batches.
fn assert_prefix(log: &Log, expected: &[(i64, Vec<u8>)], min: usize) -> usize {
    let got = all_batches(log);
    assert!(
        got.len() >= min,
        "{} batches left, expected at least {min}",
        got.len()
    );
    assert_eq!(got[..], expected[..got.len()]);
    let end = expected
        .get(got.len())
        .map_or_else(|| log.log_end_offset().0, |b| b.0);
    assert_eq!(log.log_end_offset().0, end);
    got.len()
}

#[test]
fn flipped_byte_in_tail_is_truncated() {
    common::on_both_write_paths(|_| {
        let dir = tempfile::tempdir().unwrap();
        // One segment and no flush: the recovery point stays at 0, so every batch is past it
        // and CRC-checked (damage below the recovery point is, by design, not looked for).
        let cfg = LogConfig {
            segment_bytes_max: 1 << 20,
            ..small_config()
        };
        let expected = fill_with(dir.path(), 40, false, cfg.clone());
        let last_log = files(dir.path(), "log").pop().unwrap();
        let len = common::data_len(&last_log);
        // Damage the last batch's payload.
        let mut bytes = fs::read(&last_log).unwrap();
        bytes[len as usize - 5] ^= 0x5a;
        fs::write(&last_log, &bytes).unwrap();
        let (log, report) = Log::open(&common::storage(), dir.path(), cfg, 0).unwrap();
        assert!(!report.clean);
        assert!(report.bytes_truncated > 0, "{report:?}");
        assert!(!report.problems.is_empty());
        assert_eq!(assert_prefix(&log, &expected, 39), 39);
        // Appends continue after the truncation point.
        let r = log.append(&mut batch(1, 1, 0, 0), 0).unwrap();
        assert_eq!(r.base_offset, Offset(expected[39].0));
    });
}

#[test]
fn torn_tail_and_trailing_zeros_are_truncated() {
    common::on_both_write_paths(|_| {
        let dir = tempfile::tempdir().unwrap();
        let expected = fill(dir.path(), 30, false);
        let last_log = files(dir.path(), "log").pop().unwrap();
        let len = common::data_len(&last_log);
        OpenOptions::new()
            .write(true)
            .open(&last_log)
            .unwrap()
            .set_len(len - 17)
            .unwrap();
        let (log, report) = reopen(dir.path());
        assert!(report.bytes_truncated > 0);
        assert_prefix(&log, &expected, 29);
        common::crash(log);
        // Zeros after the end (e.g. a preallocated or torn extent).
        let len = fs::metadata(&last_log).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&last_log)
            .unwrap()
            .set_len(len + 4096)
            .unwrap();
        let (log, report) = reopen(dir.path());
        assert_eq!(report.bytes_truncated, 4096);
        assert_prefix(&log, &expected, 29);
    });
}

#[test]
fn missing_and_garbled_indexes_are_rebuilt_after_clean_shutdown() {
    common::on_both_write_paths(|_| {
        let dir = tempfile::tempdir().unwrap();
        let expected = fill(dir.path(), 60, true);
        let indexes = files(dir.path(), "index");
        let time_indexes = files(dir.path(), "timeindex");
        assert!(indexes.len() >= 3);
        fs::remove_file(&indexes[0]).unwrap();
        fs::remove_file(&time_indexes[1]).unwrap();
        fs::write(&indexes[2], [0xffu8; 13]).unwrap();
        let (log, report) = reopen(dir.path());
        assert!(report.clean);
        assert_eq!(report.indexes_rebuilt, 3, "{report:?}");
        assert_eq!(report.bytes_truncated, 0);
        assert_prefix(&log, &expected, 60);
        // Lookups through the rebuilt indexes work.
        for (base, bytes) in &expected {
            let r = log
                .read(Offset(*base), 1, log.log_end_offset(), true)
                .unwrap();
            assert_eq!(r.to_vec().unwrap(), *bytes);
        }
        assert_eq!(
            log.offset_for_timestamp(20_000).unwrap().map(|x| x.1),
            Some(20_000)
        );
        assert!(files(dir.path(), "index").len() == indexes.len());
    });
}

#[test]
fn corrupt_middle_segment_drops_everything_after_it() {
    common::on_both_write_paths(|_| {
        let dir = tempfile::tempdir().unwrap();
        let expected = fill(dir.path(), 60, false);
        // Lose the recovery point so that every segment is scanned.
        fs::remove_file(dir.path().join("recovery-point-offset-checkpoint")).unwrap();
        let logs = files(dir.path(), "log");
        let victim = &logs[1];
        let mut bytes = fs::read(victim).unwrap();
        bytes[100] ^= 1;
        fs::write(victim, &bytes).unwrap();
        let (log, report) = reopen(dir.path());
        assert_eq!(report.segments_deleted, logs.len() - 2, "{report:?}");
        let kept = assert_prefix(&log, &expected, 1);
        assert!(kept < 60);
        assert_eq!(files(dir.path(), "log").len(), 2);
    });
}

#[test]
fn garbled_checkpoints_do_not_prevent_opening() {
    common::on_both_write_paths(|_| {
        let dir = tempfile::tempdir().unwrap();
        let expected = fill(dir.path(), 20, true);
        for name in [
            "recovery-point-offset-checkpoint",
            "log-start-offset-checkpoint",
            "leader-epoch-checkpoint",
        ] {
            fs::write(dir.path().join(name), b"garbage\n\xff").unwrap();
        }
        let (log, report) = reopen(dir.path());
        assert!(report.problems.len() >= 3, "{report:?}");
        assert_prefix(&log, &expected, 20);
        assert_eq!(log.log_start_offset(), Offset(0));
    });
}

#[test]
fn orphan_and_temporary_files_are_removed() {
    common::on_both_write_paths(|_| {
        let dir = tempfile::tempdir().unwrap();
        fill(dir.path(), 5, true);
        fs::write(dir.path().join("00000000000000099999.index"), [0u8; 8]).unwrap();
        fs::write(
            dir.path().join("recovery-point-offset-checkpoint.1-2.tmp"),
            b"x",
        )
        .unwrap();
        let (_log, report) = reopen(dir.path());
        assert!(!dir.path().join("00000000000000099999.index").exists());
        assert!(!dir
            .path()
            .join("recovery-point-offset-checkpoint.1-2.tmp")
            .exists());
        assert_eq!(report.problems.len(), 1);
    });
}

/// Random damage to random files, many times: opening never panics and leaves a valid
/// prefix of what was written (clean shutdown markers are removed so every file is suspect).
#[test]
fn random_damage_never_panics() {
    common::on_both_write_paths(|_| {
        let iterations = if std::env::var("FJORD_SLOW_TESTS").is_ok() {
            300
        } else {
            12
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for it in 0..iterations {
            let dir = tempfile::tempdir().unwrap();
            let expected = fill(dir.path(), 30, it % 2 == 0);
            let _ = fs::remove_file(dir.path().join(".clean_shutdown"));
            let _ = fs::remove_file(dir.path().join("recovery-point-offset-checkpoint"));
            let all: Vec<PathBuf> = fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            for _ in 0..rng.gen_range(1..4) {
                let victim = &all[rng.gen_range(0..all.len())];
                let mut bytes = fs::read(victim).unwrap();
                match rng.gen_range(0..3) {
                    0 if !bytes.is_empty() => {
                        let i = rng.gen_range(0..bytes.len());
                        bytes[i] = rng.gen();
                    }
                    1 => bytes.truncate(rng.gen_range(0..=bytes.len())),
                    _ => bytes.extend((0..rng.gen_range(1..200)).map(|_| rng.gen::<u8>())),
                }
                fs::write(victim, &bytes).unwrap();
            }
            match Log::open(&common::storage(), dir.path(), small_config(), 0) {
                Ok((log, _report)) => {
                    // What is readable must be valid batches equal to what was written.
                    let start = log.log_start_offset();
                    if let Ok(r) = log.read(start, usize::MAX, log.log_end_offset(), true) {
                        if let Ok(bytes) = r.to_vec() {
                            for b in fjord_records::batches(&bytes) {
                                let Ok((h, range)) = b else { break };
                                if fjord_records::validate_batch(&bytes[range.clone()]).is_ok() {
                                    // The partition leader epoch (bytes 12..16) is, like the
                                    // base offset, outside the CRC: damage there is undetectable.
                                    let want = expected.iter().find(|e| e.0 == h.base_offset);
                                    let want = want.map(|w| (&w.1[..12], &w.1[16..]));
                                    let got = &bytes[range];
                                    assert_eq!(want, Some((&got[..12], &got[16..])));
                                }
                            }
                        }
                    }
                    let _ = log.append(&mut batch(1, 1, 0, 0), 0);
                    let _ = log.close();
                }
                Err(e) => {
                    // Only an unreadable file may stop the open; report it, don't panic.
                    assert!(matches!(e, fjord_storage::StorageError::Io { .. }), "{e}");
                }
            }
        }
    });
}

/// Byte position of the last batch in a segment file (walks the framing: base offset,
/// length; stops at zeros).
fn last_batch_position(bytes: &[u8]) -> usize {
    let mut pos = 0;
    let mut last = 0;
    while pos + 12 <= bytes.len() {
        let len = u32::from_be_bytes(bytes[pos + 8..pos + 12].try_into().unwrap()) as usize;
        if len == 0 {
            break; // a direct write's padding (zeros) after the last batch
        }
        last = pos;
        pos += 12 + len;
    }
    last
}

/// A crash lost the last batch of segment `victim` (cut at a batch boundary, so nothing
/// looks corrupt) while the later segments kept theirs (or, `empty_newest`, the newest one
/// lost everything): recovery finds the hole, ends the log there and removes what follows;
/// the next append continues at the hole.
fn hole_after_segment(victim_from_end: usize, empty_newest: bool) {
    let dir = tempfile::tempdir().unwrap();
    let expected = fill(dir.path(), 60, false);
    fs::remove_file(dir.path().join("recovery-point-offset-checkpoint")).unwrap();
    let logs = files(dir.path(), "log");
    assert!(logs.len() >= 3, "{logs:?}");
    let victim = logs.len() - victim_from_end;
    let bytes = fs::read(&logs[victim]).unwrap();
    let cut = last_batch_position(&bytes);
    let lost = i64::from_be_bytes(bytes[cut..cut + 8].try_into().unwrap());
    OpenOptions::new()
        .write(true)
        .open(&logs[victim])
        .unwrap()
        .set_len(cut as u64)
        .unwrap();
    if empty_newest {
        OpenOptions::new()
            .write(true)
            .open(logs.last().unwrap())
            .unwrap()
            .set_len(0)
            .unwrap();
    }
    let (log, report) = reopen(dir.path());
    assert_eq!(report.hole_at, Some(Offset(lost)), "{report:?}");
    assert_eq!(
        report.segments_deleted,
        logs.len() - victim - 1,
        "{report:?}"
    );
    assert!(
        report.problems.iter().any(|p| p.contains("hole")),
        "{report:?}"
    );
    assert_eq!(log.log_end_offset(), Offset(lost));
    let kept = assert_prefix(&log, &expected, 1);
    assert_eq!(expected[kept].0, lost);
    assert_eq!(files(dir.path(), "log").len(), victim + 1);
    let mut b = batch(2, 100, 0, 999);
    assert_eq!(log.append(&mut b, 0).unwrap().base_offset, Offset(lost));
    log.close().unwrap();
    drop(log);
    let (log, report) = reopen(dir.path());
    assert_eq!(report.hole_at, None, "{report:?}");
    assert_eq!(log.log_end_offset().0, lost + 2);
}

#[test]
fn a_hole_between_segments_ends_the_log_there() {
    common::on_both_write_paths(|_| {
        hole_after_segment(3, false);
    });
}

#[test]
fn a_lost_tail_before_an_empty_newest_segment_is_a_hole() {
    common::on_both_write_paths(|_| {
        hole_after_segment(2, true);
    });
}
