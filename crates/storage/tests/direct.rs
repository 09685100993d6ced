//! Direct writes (`StorageLimits::direct_io`, the broker's `log.direct.io`): the files hold
//! exactly what buffered writes put there, the last partial block is written again by the
//! next append, a torn last block is cut at the next open, and a filesystem that refuses
//! O_DIRECT gets buffered writes (through the seam, and on a real ramfs mounted in a
//! private mount namespace when the test runs as root).

mod common;

use std::fs;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use common::{all_batches, batch};
use fjord_model::Offset;
use fjord_storage::{FileSystem, Log, LogConfig, Storage, StorageLimits};

fn storage(direct_io: bool) -> Storage {
    Storage::new(StorageLimits {
        direct_io,
        ..StorageLimits::default()
    })
}

/// Segments of 64 KiB: several rolls, and appends that cross blocks.
fn config() -> LogConfig {
    LogConfig {
        segment_bytes_max: 64 * 1024,
        index_interval_bytes: 1024,
        ..common::small_config()
    }
}

/// Batches of sizes from under a hundred bytes to several blocks, one or three per append.
fn appends() -> Vec<Vec<Vec<u8>>> {
    (0..120u64)
        .map(|i| {
            let sizes = [10, 300, 4_000, 5, 9_000, 1_500, 4_096 - 61, 70];
            let n = if i % 4 == 0 { 3 } else { 1 };
            (0..n)
                .map(|k| {
                    let value = sizes[((i + k) % sizes.len() as u64) as usize];
                    batch(1 + (i % 3) as usize, value, i as i64, i * 10 + k)
                })
                .collect()
        })
        .collect()
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    v.sort();
    v
}

/// Appends `appends` (each one Produce request's batches) to `log`.
fn write_all(log: &Log, appends: &[Vec<Vec<u8>>]) {
    for batches in appends {
        let mut records = batches.concat();
        log.append(&mut records, 0).unwrap();
    }
}

/// The bytes of the log's segment files, oldest first.
fn contents(dir: &Path) -> Vec<Vec<u8>> {
    segment_files(dir)
        .iter()
        .map(|p| fs::read(p).unwrap())
        .collect()
}

#[test]
fn direct_writes_leave_the_files_buffered_writes_leave() {
    let appends = appends();
    let buffered = tempfile::tempdir().unwrap();
    let direct = tempfile::tempdir().unwrap();
    let mut stats = Vec::new();
    for (dir, direct_io) in [(buffered.path(), false), (direct.path(), true)] {
        let storage = storage(direct_io);
        let (log, _) = Log::open(&storage, dir, config(), 0).unwrap();
        write_all(&log, &appends[..70]);
        // Reads see every append at once (the file may end in padding meanwhile).
        let before = all_batches(&log);
        log.close().unwrap();
        drop(log);
        // A clean reopen: the next append reloads the last partial block from the file.
        let (log, report) = Log::open(&storage, dir, config(), 0).unwrap();
        assert!(report.clean && report.problems.is_empty(), "{report:?}");
        assert_eq!(all_batches(&log)[..], before[..]);
        write_all(&log, &appends[70..]);
        log.sync_to(Offset(log.log_end_offset().0 - 1))
            .wait_blocking()
            .unwrap();
        log.close().unwrap();
        stats.push(storage.stats());
    }
    assert_eq!(stats[0].direct_writes, 0);
    assert_eq!(stats[1].direct_writes, appends.len() as u64);
    let (b, d) = (contents(buffered.path()), contents(direct.path()));
    assert!(b.len() >= 4, "{} segments", b.len());
    assert_eq!(b.len(), d.len());
    for (i, (b, d)) in b.iter().zip(&d).enumerate() {
        assert!(
            b == d,
            "segment {i} differs ({} vs {} bytes)",
            b.len(),
            d.len()
        );
    }
}

#[test]
fn a_crash_leaves_padding_that_the_next_open_cuts_silently() {
    let dir = tempfile::tempdir().unwrap();
    let storage = storage(true);
    let (log, _) = Log::open(&storage, dir.path(), config(), 0).unwrap();
    write_all(&log, &appends()[..5]);
    let want = all_batches(&log);
    let newest = segment_files(dir.path()).pop().unwrap();
    let data = common::data_len(&newest);
    common::crash(log);
    let len = fs::metadata(&newest).unwrap().len();
    assert!(
        len > data && len.is_multiple_of(4096),
        "{len} bytes, {data} of data"
    );
    let (log, report) = Log::open(&storage, dir.path(), config(), 0).unwrap();
    assert!(!report.clean);
    assert_eq!(report.bytes_truncated, 0, "{report:?}");
    assert!(report.problems.is_empty(), "{report:?}");
    assert_eq!(all_batches(&log), want);
    assert_eq!(fs::metadata(&newest).unwrap().len(), data);
}

/// A power loss during the rewrite of the last block: the block on disk holds the start of
/// the new write and then old bytes or zeros. The next open cuts the log after the last
/// whole batch before the damage, and appends continue from there.
#[test]
fn a_torn_last_block_is_cut_at_the_next_open() {
    for damage in ["zeros", "garbage", "short"] {
        let dir = tempfile::tempdir().unwrap();
        let storage = storage(true);
        let cfg = LogConfig {
            segment_bytes_max: 1 << 20,
            ..config()
        };
        let (log, _) = Log::open(&storage, dir.path(), cfg.clone(), 0).unwrap();
        // Small batches: the last block holds several of them.
        for i in 0..60u64 {
            log.append(&mut batch(1, 150, i as i64, i), 0).unwrap();
        }
        let want = all_batches(&log);
        let newest = segment_files(dir.path()).pop().unwrap();
        let data = common::data_len(&newest);
        common::crash(log);
        // Damage the second half of the last block's data.
        let block_start = data / 4096 * 4096;
        let from = block_start + (data - block_start) / 2;
        let f = fs::OpenOptions::new().write(true).open(&newest).unwrap();
        match damage {
            "zeros" => f.write_all_at(&vec![0u8; (data - from) as usize], from),
            "garbage" => f.write_all_at(&vec![0xa5u8; (data - from) as usize], from),
            _ => f.set_len(from),
        }
        .unwrap();
        drop(f);
        let (log, report) = Log::open(&storage, dir.path(), cfg.clone(), 0).unwrap();
        let got = all_batches(&log);
        assert!(got.len() < want.len(), "{damage}: nothing cut: {report:?}");
        assert!(got.len() > 20, "{damage}: cut too much: {report:?}");
        assert_eq!(got[..], want[..got.len()], "{damage}");
        if damage == "garbage" {
            assert!(report.bytes_truncated > 0, "{damage}: {report:?}");
        }
        // The log goes on: the cut block is the new last partial block.
        let end = log.log_end_offset();
        let r = log.append(&mut batch(2, 3_000, 0, 999), 0).unwrap();
        assert_eq!(r.base_offset, end);
        log.close().unwrap();
        drop(log);
        let (log, report) = Log::open(&storage, dir.path(), cfg, 0).unwrap();
        assert!(report.problems.is_empty(), "{damage}: {report:?}");
        let again = all_batches(&log);
        assert_eq!(again[..got.len()], got[..], "{damage}");
        assert_eq!(again.len(), got.len() + 1, "{damage}");
        assert_eq!(
            fs::metadata(&newest).unwrap().len(),
            common::data_len(&newest),
            "{damage}: closed with padding"
        );
    }
}

/// A power loss while a write completed the last block can damage bytes of that block
/// that were durable before, below the recovery point, which recovery otherwise trusts
/// without reading their CRCs. The batches in the last block are checked anyway: the damaged
/// one is found and the log cut before it, instead of being served.
#[test]
fn a_torn_rewrite_below_the_recovery_point_is_found() {
    // Buffered writes too: the page cache writes back a page holding durable bytes and
    // new ones as a whole.
    common::on_both_write_paths(torn_rewrite_below_the_recovery_point);
}

fn torn_rewrite_below_the_recovery_point(direct_io: bool) {
    let dir = tempfile::tempdir().unwrap();
    let storage = storage(direct_io);
    let cfg = LogConfig {
        segment_bytes_max: 1 << 20,
        ..config()
    };
    let (log, _) = Log::open(&storage, dir.path(), cfg.clone(), 0).unwrap();
    for i in 0..60u64 {
        log.append(&mut batch(1, 150, i as i64, i), 0).unwrap();
    }
    let sync_all = |log: &Log| {
        log.sync_to(Offset(log.log_end_offset().0 - 1))
            .wait_blocking()
            .unwrap()
    };
    sync_all(&log);
    // The recovery point is persisted at most once per interval: wait it out, then one more
    // durable append carries the checkpoint up to the end.
    std::thread::sleep(std::time::Duration::from_millis(1_100));
    log.append(&mut batch(1, 150, 60, 60), 0).unwrap();
    sync_all(&log);
    let end = log.log_end_offset().0;
    let checkpoint = dir.path().join("recovery-point-offset-checkpoint");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while fs::read_to_string(&checkpoint)
        .ok()
        .and_then(|t| t.lines().nth(2).and_then(|l| l.parse::<i64>().ok()))
        != Some(end)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoint at {end}"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let want = all_batches(&log);
    let newest = segment_files(dir.path()).pop().unwrap();
    let data = common::data_len(&newest);
    common::crash(log);
    // Flip bytes inside the value of a batch that lies wholly in the last block: framing
    // intact, CRC wrong.
    let bytes = fs::read(&newest).unwrap();
    let block_start = (data - 1) / 4096 * 4096;
    let (mut pos, mut victim) = (0u64, None);
    while pos < data {
        let len = u32::from_be_bytes(
            bytes[pos as usize + 8..pos as usize + 12]
                .try_into()
                .unwrap(),
        );
        let total = 12 + u64::from(len);
        if pos >= block_start && pos + total < data {
            victim = Some((pos, total));
            break;
        }
        pos += total;
    }
    let (pos, total) = victim.expect("a whole batch in the last block");
    let f = fs::OpenOptions::new().write(true).open(&newest).unwrap();
    f.write_all_at(&[0x5a; 8], pos + total - 20).unwrap();
    drop(f);
    let (log, report) = Log::open(&storage, dir.path(), cfg, 0).unwrap();
    assert_eq!(report.recovery_point, Some(Offset(end)), "{report:?}");
    assert!(report.bytes_truncated > 0, "{report:?}");
    let got = all_batches(&log);
    assert!(
        got.len() < want.len(),
        "the damaged batch was served: {report:?}"
    );
    assert_eq!(got[..], want[..got.len()]);
}

/// A filesystem that refuses O_DIRECT, as ramfs does (EINVAL at open).
#[derive(Debug)]
struct NoDirectFs;

impl FileSystem for NoDirectFs {
    fn open_direct(&self, _path: &Path, _create: bool) -> io::Result<fs::File> {
        Err(io::Error::from_raw_os_error(libc::EINVAL))
    }
}

/// Direct writes asked for where they are refused: buffered writes, the same data.
fn check_fallback(dir: &Path, storage: &Storage) {
    let (log, report) = Log::open(storage, dir, config(), 0).unwrap();
    assert!(report.problems.is_empty(), "{report:?}");
    let appends = appends();
    write_all(&log, &appends[..30]);
    let want: Vec<Vec<u8>> = appends[..30].concat();
    let got: Vec<Vec<u8>> = all_batches(&log).into_iter().map(|(_, b)| b).collect();
    assert_eq!(got.len(), want.len());
    for (mut w, g) in want.into_iter().zip(got) {
        fjord_records::set_base_offset(
            &mut w,
            fjord_records::BatchHeader::parse(&g).unwrap().base_offset,
        );
        assert_eq!(w, g);
    }
    log.sync_to(Offset(log.log_end_offset().0 - 1))
        .wait_blocking()
        .unwrap();
    log.close().unwrap();
    assert_eq!(
        storage.stats().direct_writes,
        0,
        "direct writes on {}",
        dir.display()
    );
    // No probe file left behind.
    assert!(!fs::read_dir(dir).unwrap().any(|e| e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .contains("probe")));
}

const RAMFS_DIR_ENV: &str = "FJORD_DIRECT_RAMFS_DIR";

/// With `RAMFS_DIR_ENV` set (run by `a_filesystem_without_o_direct_gets_buffered_writes`
/// inside a private mount namespace with a ramfs there): the fallback on that real
/// filesystem. Otherwise: the fallback through the seam.
#[test]
fn fallback_child() {
    match std::env::var(RAMFS_DIR_ENV) {
        Ok(dir) => {
            let dir = Path::new(&dir);
            // The filesystem really refuses O_DIRECT.
            let refused = fjord_storage::OsFileSystem.open_direct(&dir.join("x"), true);
            assert!(refused.is_err(), "ramfs took O_DIRECT");
            check_fallback(&dir.join("p-0"), &storage(true));
            println!("fallback checked on ramfs at {}", dir.display());
        }
        Err(_) => {
            let dir = tempfile::tempdir().unwrap();
            let storage = Storage::with_file_system(
                StorageLimits {
                    direct_io: true,
                    ..StorageLimits::default()
                },
                Arc::new(NoDirectFs),
            );
            check_fallback(&dir.path().join("p-0"), &storage);
        }
    }
}

/// A filesystem without O_DIRECT support (ramfs; tmpfs takes O_DIRECT since Linux 6.6):
/// buffered writes there. Needs root for the mount namespace; without it, the seam test
/// (`fallback_child` run directly) is the check.
#[test]
fn a_filesystem_without_o_direct_gets_buffered_writes() {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let unshare = Command::new("unshare").arg("--version").output().is_ok();
    if !root || !unshare {
        println!(
            "not root or no unshare(1): the ramfs check is skipped, fallback_child covers the seam"
        );
        fallback_child();
        return;
    }
    let mount = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(r#"mount -t ramfs none "$1" && exec "$2" --exact fallback_child --nocapture"#)
        .arg("sh")
        .arg(mount.path())
        .arg(&exe)
        .env(RAMFS_DIR_ENV, mount.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() && stderr.contains("mount") && !stdout.contains("running") {
        // No mount permission (a container without CAP_SYS_ADMIN): the seam covers it.
        println!("cannot mount ramfs ({stderr}): fallback_child covers the seam");
        fallback_child();
        return;
    }
    assert!(out.status.success(), "child failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains("fallback checked on ramfs"),
        "child did not run on ramfs:\n{stdout}\n{stderr}"
    );
}
