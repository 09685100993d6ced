//! Recovery of arbitrary partition directories: a `.log` segment made of some valid batches
//! followed by arbitrary bytes (optionally with one byte flipped), plus arbitrary `.index`,
//! `.timeindex`, recovery-point checkpoint, clean-shutdown and producer-state snapshot
//! files, all derived from the input. `Log::open` may refuse, but nothing may panic; once open, the log must read back
//! as a valid prefix (contiguous offsets, every batch's CRC checks), accept an append at
//! its end, close, and reopen cleanly with the same contents. (With a clean-shutdown marker
//! or a recovery point in the input, data below them is trusted by design and not
//! CRC-checked: then reads may report corruption, but still nothing may panic.)

#![no_main]

use std::path::Path;

use fjord_model::Offset;
use fjord_records::{batches, validate_batch, BatchBuilder, Compression};
use fjord_storage::{Log, LogConfig, Storage};
use libfuzzer_sys::fuzz_target;

/// The fuzzing process's one storage engine (flush threads, handle cache).
fn storage() -> &'static Storage {
    static STORAGE: std::sync::OnceLock<Storage> = std::sync::OnceLock::new();
    STORAGE.get_or_init(Storage::default)
}

fn config() -> LogConfig {
    LogConfig {
        segment_bytes_max: 64 * 1024,
        segment_ms: None,
        index_interval_bytes: 64,
        index_bytes_max: 4096,
        retention_ms: None,
        ..LogConfig::default()
    }
}

fn valid_batch(base: i64, records: usize, seed: u8) -> Vec<u8> {
    let mut b = BatchBuilder::new(Compression::None);
    for i in 0..records {
        let value = vec![seed.wrapping_add(i as u8); 20 + usize::from(seed % 50)];
        b.push(
            1_000 + i64::from(seed) * 10 + i as i64,
            Some(b"k"),
            Some(&value),
            &[],
        );
    }
    b.build(base)
}

/// Every batch of the log, checked: contiguous from the log start's batch, CRC valid.
/// `None` if the log reports an error or holds an invalid batch and `strict` is off.
fn read_all(log: &Log, strict: bool) -> Option<Vec<Vec<u8>>> {
    let start = log.log_start_offset();
    let end = log.log_end_offset();
    let r = log.read(start, usize::MAX, end, true);
    if !strict && r.is_err() {
        return None;
    }
    let bytes = r.expect("read after open").to_vec().expect("pread");
    if !strict {
        let mut next: Option<i64> = None;
        for item in batches(&bytes) {
            let Ok((h, range)) = item else { return None };
            if validate_batch(&bytes[range]).is_err() || next.is_some_and(|n| n != h.base_offset) {
                return None;
            }
            next = Some(h.next_offset());
        }
    }
    let mut out = Vec::new();
    let mut next: Option<i64> = None;
    for item in batches(&bytes) {
        let (h, range) = item.expect("framing of a recovered batch");
        validate_batch(&bytes[range.clone()]).expect("CRC of a recovered batch");
        if let Some(n) = next {
            assert_eq!(h.base_offset, n, "offsets are contiguous");
        }
        next = Some(h.next_offset());
        out.push(bytes[range].to_vec());
    }
    if start < end && next != Some(end.0) {
        assert!(
            !strict,
            "the log ends after its last batch: {next:?} vs {end:?}"
        );
        return None;
    }
    Some(out)
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::write(dir.join(name), bytes).expect("write input file");
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 16 {
        return;
    }
    let flags = data[0];
    let n_valid = usize::from(data[1] % 12);
    let flip_at = usize::from(u16::from_le_bytes([data[2], data[3]]));
    let flip_xor = data[4];
    let idx_len = usize::from(data[5]) * 2;
    let tidx_len = usize::from(data[6]) * 3;
    let mut rp_bytes = [0u8; 8];
    rp_bytes.copy_from_slice(&data[7..15]);
    let rp = if flags & 0x80 != 0 {
        i64::from_le_bytes(rp_bytes)
    } else {
        i64::from(rp_bytes[0] % 64)
    };
    let mut rest = &data[15..];
    let take = |rest: &mut &[u8], n: usize| -> Vec<u8> {
        let n = n.min(rest.len());
        let (a, b) = rest.split_at(n);
        *rest = b;
        a.to_vec()
    };
    let idx = take(&mut rest, idx_len);
    let tidx = take(&mut rest, tidx_len);

    let mut log_bytes = Vec::new();
    let mut next = 0i64;
    for i in 0..n_valid {
        let b = valid_batch(next, 1 + (i % 3), data[15 + i % (data.len() - 15)]);
        next += 1 + (i % 3) as i64;
        log_bytes.extend_from_slice(&b);
    }
    log_bytes.extend_from_slice(rest);
    if flags & 0x01 != 0 && !log_bytes.is_empty() {
        let at = flip_at % log_bytes.len();
        log_bytes[at] ^= flip_xor.max(1);
    }

    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("t-0");
    std::fs::create_dir(&dir).expect("mkdir");
    write(&dir, "00000000000000000000.log", &log_bytes);
    if flags & 0x02 != 0 {
        write(&dir, "00000000000000000000.index", &idx);
    }
    if flags & 0x04 != 0 {
        write(&dir, "00000000000000000000.timeindex", &tidx);
    }
    if flags & 0x08 != 0 {
        write(
            &dir,
            "recovery-point-offset-checkpoint",
            format!("0\n1\n{rp}\n").as_bytes(),
        );
    }
    if flags & 0x10 != 0 {
        write(&dir, ".clean_shutdown", b"");
    }
    if flags & 0x20 != 0 {
        // A second segment right after the valid batches, holding arbitrary bytes.
        write(&dir, &format!("{next:020}.log"), &idx);
    }
    if flags & 0x40 != 0 {
        write(
            &dir,
            "log-start-offset-checkpoint",
            format!("0\n1\n{}\n", rp % 16).as_bytes(),
        );
    }

    if data[6] & 1 != 0 {
        // A producer-state snapshot whose CRC is right but whose body is arbitrary
        // (the time-index bytes), at an offset inside or past the log.
        let mut snap = b"FJPS\x01".to_vec();
        snap.extend_from_slice(&crc32c::crc32c(&tidx).to_be_bytes());
        snap.extend_from_slice(&tidx);
        write(&dir, &format!("{:020}.snapshot", rp_bytes[1] % 64), &snap);
    }

    let Ok((log, _report)) = Log::open(storage(), &dir, config(), 0) else {
        return;
    };
    // Without a marker or a recovery point nothing is trusted: the result must be valid.
    let strict = flags & 0x18 == 0;
    let Some(before) = read_all(&log, strict) else {
        return;
    };
    let end = log.log_end_offset();
    let mut b = valid_batch(0, 2, 7);
    let Ok(r) = log.append(&mut b, 0) else {
        return;
    };
    assert_eq!(r.base_offset, end);
    let _ = log.offset_for_timestamp(1_005);
    let _ = log.max_timestamp();
    if log.close().is_err() {
        return;
    }
    drop(log);
    let (log, report) = Log::open(storage(), &dir, config(), 0).expect("reopen after close");
    assert!(report.clean, "{report:?}");
    assert_eq!(log.log_end_offset(), Offset(end.0 + 2));
    let after = read_all(&log, true).expect("strict read");
    assert_eq!(after.len(), before.len() + 1);
    assert_eq!(after[..before.len()], before[..]);
});
