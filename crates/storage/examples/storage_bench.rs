//! Long storage benchmarks that do not fit criterion's sampling (results: BENCHMARKS.md).
//!
//! ```text
//! cargo run --release -p fjord-storage --example storage_bench -- large [GIB] [ROUNDS]
//! cargo run --release -p fjord-storage --example storage_bench -- open [PARTITIONS] [KIB_EACH]
//! ```
//! - `large`: append and read throughput of a log already holding GIB GiB vs an empty
//!   log, measured alternately in the same run (ROUNDS rounds of 256 MiB each, 256 KiB
//!   batches of 1 KiB records), plus the cost of a random-position read (index lookup +
//!   header scan + the batch's file range) in both.
//! - `open`: PARTITIONS partition directories of KIB_EACH KiB each (copies of one closed
//!   partition): time to open all after a clean shutdown, resident memory per open idle
//!   partition, time to open all after a crash (unflushed tail in every partition), and
//!   the same with the recovery-point checkpoints removed (full scan) for comparison.
//!
//! Set `FJORD_BENCH_DIR` to choose the disk (default: the system temp dir).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fjord_model::Offset;
use fjord_storage::{Log, LogConfig, Storage};
use rand::{Rng, SeedableRng};

#[path = "../benches/common/mod.rs"]
mod common;
use common::{batch_of, bench_dir, RECORD_BYTES};

/// The one storage engine of this benchmark process (one node).
fn storage() -> &'static Storage {
    static STORAGE: std::sync::OnceLock<Storage> = std::sync::OnceLock::new();
    STORAGE.get_or_init(Storage::default)
}

const MIB: u64 = 1024 * 1024;

fn config() -> LogConfig {
    LogConfig {
        segment_ms: None,
        retention_ms: None,
        ..LogConfig::default()
    }
}

fn gib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0 * 1024.0)
}

fn mib_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / MIB as f64 / d.as_secs_f64()
}

fn append_bytes(log: &Log, template: &[u8], bytes: u64) -> Duration {
    let mut buf = template.to_vec();
    let n = bytes.div_ceil(template.len() as u64);
    let start = Instant::now();
    for _ in 0..n {
        log.append(&mut buf, 0).expect("append");
    }
    start.elapsed()
}

/// Reads `bytes` from `from` on in 1 MiB fetches (pread into a buffer, as the broker does).
fn read_bytes(log: &Log, from: Offset, bytes: u64) -> (Duration, u64) {
    let end = log.log_end_offset();
    let mut at = from;
    let mut buf = Vec::with_capacity(2 * MIB as usize);
    let mut total = 0u64;
    let start = Instant::now();
    while total < bytes && at < end {
        let r = log.read(at, MIB as usize, end, true).expect("read");
        buf.clear();
        for s in &r.slices {
            s.read_into(&mut buf).expect("pread");
        }
        total += buf.len() as u64;
        let last = fjord_records::batches(&buf)
            .last()
            .expect("batch")
            .expect("framing")
            .0;
        at = Offset(last.next_offset());
    }
    (start.elapsed(), total)
}

/// Mean time of a one-batch read at a random offset.
fn random_reads(log: &Log, from: i64, n: usize, seed: u64) -> Duration {
    let end = log.log_end_offset();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let start = Instant::now();
    for _ in 0..n {
        let at = Offset(rng.gen_range(from..end.0));
        let r = log.read(at, 1, end, true).expect("read");
        assert_eq!(r.slices.len(), 1);
    }
    start.elapsed() / n as u32
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn large(stored_gib: u64, rounds: usize) {
    let dir = bench_dir();
    let template = batch_of(256 * 1024);
    let (large, _) = Log::open(storage(), &dir.path().join("large-0"), config(), 0).expect("open");
    let (empty, _) = Log::open(storage(), &dir.path().join("empty-0"), config(), 0).expect("open");
    println!("load average before: {}", load_average());
    let t = append_bytes(&large, &template, stored_gib << 30);
    println!(
        "filled the large log: {:.2} GiB in {:.1} s ({:.0} MiB/s), {} segments",
        gib(large.size_bytes()),
        t.as_secs_f64(),
        mib_s(large.size_bytes(), t),
        large.segment_count()
    );
    large.flush().expect("flush");
    let chunk = 256 * MIB;
    let mut ratios_append = Vec::new();
    let mut ratios_read = Vec::new();
    let mut ratios_read_old = Vec::new();
    let mut ratios_lookup = Vec::new();
    let mut ratios_lookup_same = Vec::new();
    for r in 0..rounds {
        // Alternate the order so that neither side always runs first.
        let (te, tl) = if r % 2 == 0 {
            let te = append_bytes(&empty, &template, chunk);
            (te, append_bytes(&large, &template, chunk))
        } else {
            let tl = append_bytes(&large, &template, chunk);
            (append_bytes(&empty, &template, chunk), tl)
        };
        // Read back what was just appended (page cache), and an old region of the large log.
        let e_from = Offset(empty.log_end_offset().0 - (chunk / RECORD_BYTES as u64) as i64);
        let l_from = Offset(large.log_end_offset().0 - (chunk / RECORD_BYTES as u64) as i64);
        let (re, be) = read_bytes(&empty, e_from, chunk);
        let (rl, bl) = read_bytes(&large, l_from, chunk);
        let old_from = Offset(large.log_end_offset().0 / 3);
        let (ro, bo) = read_bytes(&large, old_from, chunk);
        let le = random_reads(&empty, 0, 20_000, r as u64);
        let ll = random_reads(&large, 0, 20_000, r as u64);
        // The same over the large log's newest data, as much as the empty log holds: tells
        // the lookup cost apart from the larger working set in the page cache.
        let lt = random_reads(
            &large,
            large.log_end_offset().0 - empty.log_end_offset().0,
            20_000,
            r as u64,
        );
        println!(
            "round {r}: append empty {:.0} MiB/s, large {:.0} MiB/s | read tail empty {:.0} MiB/s, \
             large {:.0} MiB/s, large (old data) {:.0} MiB/s | random one-batch read empty {:.2} us, \
             large {:.2} us, large (newest data, same span as empty) {:.2} us | load {}",
            mib_s(chunk, te),
            mib_s(chunk, tl),
            mib_s(be, re),
            mib_s(bl, rl),
            mib_s(bo, ro),
            le.as_secs_f64() * 1e6,
            ll.as_secs_f64() * 1e6,
            lt.as_secs_f64() * 1e6,
            load_average()
        );
        ratios_append.push(te.as_secs_f64() / tl.as_secs_f64());
        ratios_read.push(mib_s(bl, rl) / mib_s(be, re));
        ratios_read_old.push(mib_s(bo, ro) / mib_s(be, re));
        ratios_lookup.push(le.as_secs_f64() / ll.as_secs_f64());
        ratios_lookup_same.push(le.as_secs_f64() / lt.as_secs_f64());
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    println!(
        "large log {:.2} GiB in {} segments vs empty log: median throughput ratios (large / empty): \
         append {:.3}, read tail {:.3}, read old data {:.3}, random-read rate {:.3} \
         (over the same span of newest data: {:.3})",
        gib(large.size_bytes()),
        large.segment_count(),
        median(&mut ratios_append),
        median(&mut ratios_read),
        median(&mut ratios_read_old),
        median(&mut ratios_lookup),
        median(&mut ratios_lookup_same)
    );
    println!("load average after: {}", load_average());
}

/// Writes all dirty pages back (sync(2)) so that one phase's write-back does not slow the
/// next one down.
fn settle() {
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
}

/// Drops the partitions' (clean) pages from the page cache.
fn evict(root: &Path, partitions: usize) {
    use std::os::fd::AsRawFd;
    for p in 0..partitions {
        for e in std::fs::read_dir(root.join(format!("t-{p}"))).expect("list") {
            let Ok(f) = std::fs::File::open(e.expect("entry").path()) else {
                continue;
            };
            // SAFETY: a valid descriptor; advice only.
            unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        }
    }
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("list") {
        let e = e.expect("entry");
        std::fs::copy(e.path(), to.join(e.file_name())).expect("copy");
    }
}

fn open_all(root: &Path, n: usize) -> (Vec<Arc<Log>>, Duration, u64, usize) {
    let start = Instant::now();
    let mut logs = Vec::with_capacity(n);
    let mut scanned = 0;
    let mut unclean = 0;
    for p in 0..n {
        let (log, report) =
            Log::open(storage(), &root.join(format!("t-{p}")), config(), 0).expect("open");
        scanned += report.bytes_scanned;
        unclean += usize::from(!report.clean);
        logs.push(log);
    }
    (logs, start.elapsed(), scanned, unclean)
}

/// Drops logs without closing them (a crash as far as the files are concerned).
fn crash(logs: Vec<Arc<Log>>) {
    for log in logs {
        while !(log.is_background_idle() && Arc::strong_count(&log) == 1) {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

fn open(partitions: usize, kib_each: u64) {
    let dir = bench_dir();
    let root = dir.path();
    println!("load average before: {}", load_average());
    // One partition written through the log, closed, then copied.
    let template_dir = root.join("template");
    {
        let (log, _) = Log::open(storage(), &template_dir, config(), 0).expect("open");
        let batch = batch_of(16 * 1024);
        append_bytes(&log, &batch, kib_each * 1024);
        log.close().expect("close");
    }
    let start = Instant::now();
    for p in 0..partitions {
        copy_dir(&template_dir, &root.join(format!("t-{p}")));
    }
    println!(
        "created {partitions} partitions of {kib_each} KiB ({:.2} GiB) in {:.1} s",
        gib(partitions as u64 * kib_each * 1024),
        start.elapsed().as_secs_f64()
    );

    // Write the copies back first, so that the measurements below do not compete with it.
    settle();
    // Clean opens: between them the logs are dropped unchanged and the clean-shutdown
    // markers put back (a clean open without writes changes nothing else). The first one
    // measures memory; the last one runs with the partitions' files evicted from the page
    // cache (posix_fadvise DONTNEED on each file: cold, as after a reboot).
    for round in 0..3 {
        if round == 2 {
            evict(root, partitions);
        }
        let rss_before = rss_kib();
        let (logs, t, _, unclean) = open_all(root, partitions);
        let rss_after = rss_kib();
        println!(
            "clean open of {partitions} partitions{}: {:.3} s ({:.1} us each), {unclean} unclean",
            if round == 2 { " (cold page cache)" } else { "" },
            t.as_secs_f64(),
            t.as_secs_f64() * 1e6 / partitions as f64
        );
        if round == 0 {
            println!(
                "memory: RSS {} KiB -> {} KiB: {:.2} KiB per idle open partition",
                rss_before,
                rss_after,
                (rss_after.saturating_sub(rss_before)) as f64 / partitions as f64
            );
        }
        if round < 2 {
            crash(logs);
            for p in 0..partitions {
                std::fs::write(root.join(format!("t-{p}")).join(".clean_shutdown"), b"")
                    .expect("marker");
            }
        } else {
            crash(logs);
        }
    }
    let (logs, _, _, _) = open_all(root, partitions);
    let fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count());
    let maps = std::fs::read_to_string("/proc/self/maps").map_or(0, |s| s.lines().count());
    println!("open descriptors {fds}, mappings {maps}");

    // An unflushed tail in every partition, then a crash (parallel appends: the first
    // append after a clean open makes the marker's removal durable, one fsync each).
    let tail = batch_of(64 * 1024);
    settle();
    let start = Instant::now();
    let logs = Arc::new(logs);
    let threads: Vec<_> = (0..16)
        .map(|t| {
            let logs = Arc::clone(&logs);
            let tail = tail.clone();
            std::thread::spawn(move || {
                for log in logs.iter().skip(t).step_by(16) {
                    log.append(&mut tail.clone(), 0).expect("append");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("join");
    }
    println!(
        "appended a {} KiB tail to every partition in {:.1} s",
        tail.len() / 1024,
        start.elapsed().as_secs_f64()
    );
    let logs = Arc::try_unwrap(logs).unwrap_or_else(|_| panic!("logs still shared"));
    crash(logs);
    let (logs, t, scanned, unclean) = open_all(root, partitions);
    println!(
        "open after a crash: {:.3} s ({:.1} us each), {unclean} unclean, {:.1} MiB scanned \
         ({:.1} KiB per partition)",
        t.as_secs_f64(),
        t.as_secs_f64() * 1e6 / partitions as f64,
        scanned as f64 / MIB as f64,
        scanned as f64 / 1024.0 / partitions as f64
    );
    // The same with 8 threads opening partitions (recovery is per partition).
    settle();
    for log in &logs {
        log.append(&mut tail.clone(), 0).expect("append");
    }
    crash(logs);
    let start = Instant::now();
    let root_buf = root.to_path_buf();
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let root = root_buf.clone();
            std::thread::spawn(move || {
                let mut logs = Vec::new();
                for p in (t..partitions).step_by(8) {
                    let (log, _) = Log::open(storage(), &root.join(format!("t-{p}")), config(), 0)
                        .expect("open");
                    logs.push(log);
                }
                logs
            })
        })
        .collect();
    let logs: Vec<Arc<Log>> = threads
        .into_iter()
        .flat_map(|t| t.join().expect("join"))
        .collect();
    println!(
        "open after a crash with 8 threads: {:.3} s",
        start.elapsed().as_secs_f64()
    );
    // After a machine crash the page cache is gone: the same, cold.
    settle();
    for log in &logs {
        log.append(&mut tail.clone(), 0).expect("append");
    }
    crash(logs);
    settle();
    evict(root, partitions);
    let (logs, t, scanned, _) = open_all(root, partitions);
    println!(
        "open after a crash, cold page cache: {:.3} s, {:.1} MiB scanned",
        t.as_secs_f64(),
        scanned as f64 / MIB as f64
    );
    // The same crash without recovery points: every segment is scanned in full.
    settle();
    for log in &logs {
        log.append(&mut tail.clone(), 0).expect("append");
    }
    crash(logs);
    for p in 0..partitions {
        let _ = std::fs::remove_file(
            root.join(format!("t-{p}"))
                .join("recovery-point-offset-checkpoint"),
        );
    }
    let (logs, t, scanned, unclean) = open_all(root, partitions);
    println!(
        "open after a crash without recovery points: {:.3} s, {unclean} unclean, {:.1} MiB scanned",
        t.as_secs_f64(),
        scanned as f64 / MIB as f64
    );
    for log in &logs {
        log.append(&mut tail.clone(), 0).expect("append");
    }
    crash(logs);
    for p in 0..partitions {
        let _ = std::fs::remove_file(
            root.join(format!("t-{p}"))
                .join("recovery-point-offset-checkpoint"),
        );
    }
    settle();
    evict(root, partitions);
    let (logs, t, scanned, _) = open_all(root, partitions);
    println!(
        "open after a crash without recovery points, cold page cache: {:.3} s, {:.1} MiB scanned",
        t.as_secs_f64(),
        scanned as f64 / MIB as f64
    );
    crash(logs);
    println!("load average after: {}", load_average());
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize, default: u64| -> u64 {
        args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default)
    };
    match args.first().map(String::as_str) {
        Some("large") => large(num(1, 4), num(2, 5) as usize),
        Some("open") => open(num(1, 10_000) as usize, num(2, 1024)),
        _ => eprintln!("usage: storage_bench large [GIB] [ROUNDS] | open [PARTITIONS] [KIB_EACH]"),
    }
}
