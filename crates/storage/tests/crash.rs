//! Crash test (own `main`, no libtest harness). The parent re-executes this binary as a
//! child that appends with durability (`sync_to`) from several threads and prints each
//! acknowledged batch; the parent kills it with SIGKILL at a random moment, reopens the
//! log and checks that every acknowledged batch is present and byte-identical and that the
//! log is a valid prefix of what was written. Repeated on the same directory, so every
//! child also recovers its predecessor's crash. Runs with buffered writes, then with
//! direct writes (`log.direct.io`: kills during O_DIRECT rewrites of the last block).
//! `FJORD_SLOW_TESTS=1` runs many more kills.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fjord_storage::{Log, LogConfig, Storage, StorageLimits};
use rand::Rng;

const CHILD_DIR_ENV: &str = "FJORD_CRASH_CHILD_DIR";
const CHILD_GEN_ENV: &str = "FJORD_CRASH_GEN";
/// "1": the child writes with O_DIRECT.
const CHILD_DIRECT_ENV: &str = "FJORD_CRASH_DIRECT";
const THREADS: u64 = 4;

fn config() -> LogConfig {
    LogConfig {
        segment_bytes_max: 256 * 1024,
        index_interval_bytes: 1024,
        index_bytes_max: 64 * 1024,
        segment_ms: None,
        retention_ms: None,
        ..LogConfig::default()
    }
}

fn seed(generation: u64, thread: u64, n: u64) -> u64 {
    (generation << 40) | (thread << 32) | n
}

/// The batch a child appends as its `n`-th on `thread` (base offset 0).
fn payload(seed: u64) -> Vec<u8> {
    let n = seed & 0xffff_ffff;
    common::batch(
        1 + (n % 5) as usize,
        20 + ((n * 37) % 1500) as usize,
        seed as i64 & 0xffff_ffff,
        seed,
    )
}

fn storage(direct_io: bool) -> Storage {
    Storage::new(StorageLimits {
        direct_io,
        ..StorageLimits::default()
    })
}

fn child(dir: &Path, generation: u64, direct: bool) {
    let storage = storage(direct);
    let (log, _) = Log::open(&storage, dir, config(), 0).expect("child: open");
    let out = Arc::new(parking_lot::Mutex::new(std::io::stdout()));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let log = Arc::clone(&log);
            let out = Arc::clone(&out);
            let storage = storage.clone();
            std::thread::spawn(move || {
                for n in 0.. {
                    let s = seed(generation, t, n);
                    let mut b = payload(s);
                    let r = log.append(&mut b, 0).expect("child: append");
                    log.sync_to(r.last_offset)
                        .wait_blocking()
                        .expect("child: sync");
                    // The write path under test is the one taken.
                    assert_eq!(
                        storage.stats().direct_writes > 0,
                        direct,
                        "child: write path"
                    );
                    let mut o = out.lock();
                    writeln!(o, "{s} {}", r.base_offset.0).expect("child: stdout");
                    o.flush().expect("child: flush");
                }
            })
        })
        .collect();
    for h in handles {
        let _ = h.join();
    }
}

fn verify(dir: &Path, acked: &[(u64, i64)], direct: bool) -> usize {
    let (log, report) = Log::open(&storage(direct), dir, config(), 0).expect("reopen");
    let batches = common::all_batches(&log); // checks framing and CRC of every batch
    let mut by_offset = HashMap::new();
    let mut next = log.log_start_offset().0;
    for (base, bytes) in &batches {
        assert_eq!(*base, next, "offsets are contiguous");
        let h = fjord_records::BatchHeader::parse(bytes).expect("header");
        next = h.next_offset();
        // Every batch is one that a child wrote.
        let records = fjord_records::decode_records(bytes).expect("records");
        let key = records[0].key.clone().expect("key");
        let key = std::str::from_utf8(&key).expect("utf8");
        let s: u64 = key
            .trim_start_matches('k')
            .split('-')
            .next()
            .and_then(|x| x.parse().ok())
            .expect("seed");
        let mut want = payload(s);
        fjord_records::set_base_offset(&mut want, *base);
        assert_eq!(&want, bytes, "batch at {base} is not what was written");
        by_offset.insert(*base, bytes);
    }
    assert_eq!(next, log.log_end_offset().0);
    common::crash(log);
    for &(s, base) in acked {
        let got = by_offset
            .get(&base)
            .unwrap_or_else(|| panic!("acknowledged batch {s} at {base} lost; {report:?}"));
        let mut want = payload(s);
        fjord_records::set_base_offset(&mut want, base);
        assert_eq!(&want, *got, "acknowledged batch at {base} differs");
    }
    batches.len()
}

fn parent(direct: bool) {
    let slow = std::env::var("FJORD_SLOW_TESTS").is_ok();
    let iterations = if slow { 60 } else { 8 };
    let exe = std::env::current_exe().expect("current exe");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rng = rand::thread_rng();
    let mut acked: Vec<(u64, i64)> = Vec::new();
    let started = Instant::now();
    let mut batches = 0;
    for generation in 0..iterations {
        let mut child = Command::new(&exe)
            .env(CHILD_DIR_ENV, dir.path())
            .env(CHILD_GEN_ENV, generation.to_string())
            .env(CHILD_DIRECT_ENV, if direct { "1" } else { "0" })
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn child");
        let mut stdout = child.stdout.take().expect("child stdout");
        let reader = std::thread::spawn(move || {
            let mut all = Vec::new();
            let _ = stdout.read_to_end(&mut all);
            all
        });
        std::thread::sleep(Duration::from_millis(rng.gen_range(50..600)));
        // SAFETY: plain kill(2) on our own child's pid.
        let rc = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGKILL) };
        assert_eq!(rc, 0, "kill failed");
        let status = child.wait().expect("wait");
        assert!(!status.success(), "child must have been killed: {status}");
        let out = reader.join().expect("reader");
        // Only complete lines are acknowledgements.
        let text = String::from_utf8_lossy(&out);
        let complete = text.rfind('\n').map_or("", |i| &text[..i]);
        let before = acked.len();
        for line in complete.lines() {
            let mut parts = line.split_whitespace();
            let s = parts.next().and_then(|x| x.parse().ok()).expect("seed");
            let base = parts.next().and_then(|x| x.parse().ok()).expect("offset");
            acked.push((s, base));
        }
        batches = verify(dir.path(), &acked, direct);
        println!(
            "crash test (direct writes: {direct}): kill {generation}: {} new acknowledgements, \
             {batches} batches in the log",
            acked.len() - before
        );
    }
    assert!(
        acked.len() >= iterations,
        "the children acknowledged only {} batches",
        acked.len()
    );
    println!(
        "crash test (direct writes: {direct}): {iterations} kills, {} acknowledged batches all \
         present, {batches} batches, {:?}",
        acked.len(),
        started.elapsed()
    );
}

fn main() {
    if let Ok(dir) = std::env::var(CHILD_DIR_ENV) {
        let generation = std::env::var(CHILD_GEN_ENV)
            .ok()
            .and_then(|g| g.parse().ok())
            .unwrap_or(0);
        let direct = std::env::var(CHILD_DIRECT_ENV).is_ok_and(|d| d == "1");
        child(Path::new(&dir), generation, direct);
        return;
    }
    parent(false);
    parent(true);
}
