//! Small checkpoint files in a partition directory, in Kafka's text format
//! (`<version>\n<count>\n<entry>\n...`), written atomically (temp file, fsync, rename,
//! fsync of the directory).
//!
//! - `recovery-point-offset-checkpoint`: one entry, the offset below which every segment
//!   is on stable storage with its indexes (recovery scans from the segment holding it).
//! - `log-start-offset-checkpoint`: one entry, the log start offset.
//! - `leader-epoch-checkpoint`: entries `<epoch> <start offset>`.
//! - `replication-offset-checkpoint`: one entry, the high watermark the partition layer
//!   last saved (`Log::save_high_watermark`; Kafka keeps it for every partition of a log
//!   directory in one file of this name, Fjord per partition as the files above).
//! - `truncation-intent` (Fjord's own, present only while `Log::truncate_to` runs or after
//!   a crash in it): one entry `<segment base> <position> <new log end>`; `Log::open`
//!   completes the truncation it describes.

use std::fs::{self, OpenOptions};
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use fjord_model::limits::LEADER_EPOCH_ENTRIES_MAX;

use crate::fs::FileSystem;

pub(crate) const RECOVERY_POINT_FILE: &str = "recovery-point-offset-checkpoint";
pub(crate) const LOG_START_FILE: &str = "log-start-offset-checkpoint";
pub(crate) const LEADER_EPOCH_FILE: &str = "leader-epoch-checkpoint";
pub(crate) const HIGH_WATERMARK_FILE: &str = "replication-offset-checkpoint";
pub(crate) const TRUNCATION_FILE: &str = "truncation-intent";
pub(crate) const CLEAN_SHUTDOWN_FILE: &str = ".clean_shutdown";
const VERSION: &str = "0";

/// fsync a directory so that creations, renames and deletions in it are durable.
pub(crate) fn sync_dir(fs: &dyn FileSystem, dir: &Path) -> io::Result<()> {
    fs.sync_dir(dir)
}

/// Writes `contents` to `dir/name` atomically and durably.
pub(crate) fn write_atomic(
    fs: &dyn FileSystem,
    dir: &Path,
    name: &str,
    contents: &[u8],
) -> io::Result<()> {
    write_atomic_synced(fs, dir, name, contents, true)
}

/// Writes `contents` to `dir/name` atomically; `sync_directory`: also make the rename
/// durable (otherwise a crash may leave the previous version, complete).
pub(crate) fn write_atomic_synced(
    fs: &dyn FileSystem,
    dir: &Path,
    name: &str,
    contents: &[u8],
    sync_directory: bool,
) -> io::Result<()> {
    static UNIQUE: AtomicU64 = AtomicU64::new(0);
    let n = UNIQUE.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!("{name}.{}-{n}.tmp", std::process::id()));
    {
        let mut f = fs.open(
            &tmp,
            OpenOptions::new().write(true).create(true).truncate(true),
        )?;
        fs.write_all(&tmp, &mut f, contents)?;
        fs.sync_all(&tmp, &f)?;
    }
    fs.rename(&tmp, &dir.join(name))?;
    if sync_directory {
        sync_dir(fs, dir)?;
    }
    Ok(())
}

fn encode(lines: &[String]) -> Vec<u8> {
    let mut s = format!("{VERSION}\n{}\n", lines.len());
    for l in lines {
        s.push_str(l);
        s.push('\n');
    }
    s.into_bytes()
}

/// Parses the common frame; returns the entry lines. `Ok(None)` if the file is missing.
fn decode(path: &Path, max_entries: usize) -> Result<Option<Vec<String>>, String> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let mut lines = text.lines();
    if lines.next() != Some(VERSION) {
        return Err("unknown version".into());
    }
    let count: usize = lines
        .next()
        .and_then(|l| l.trim().parse().ok())
        .ok_or_else(|| "bad entry count".to_string())?;
    if count > max_entries {
        return Err(format!("{count} entries, at most {max_entries} allowed"));
    }
    let entries: Vec<String> = lines.take(count).map(str::to_owned).collect();
    if entries.len() != count {
        return Err(format!(
            "{} entries present, {count} announced",
            entries.len()
        ));
    }
    Ok(Some(entries))
}

pub(crate) fn write_offset(
    fs: &dyn FileSystem,
    dir: &Path,
    name: &str,
    offset: i64,
) -> io::Result<()> {
    write_atomic(fs, dir, name, &encode(&[offset.to_string()]))
}

pub(crate) fn write_offset_synced(
    fs: &dyn FileSystem,
    dir: &Path,
    name: &str,
    offset: i64,
    sync_directory: bool,
) -> io::Result<()> {
    write_atomic_synced(
        fs,
        dir,
        name,
        &encode(&[offset.to_string()]),
        sync_directory,
    )
}

/// `Ok(None)` if absent; `Err` (with a description) if unreadable or malformed.
pub(crate) fn read_offset(dir: &Path, name: &str) -> Result<Option<i64>, String> {
    match decode(&dir.join(name), 1)? {
        None => Ok(None),
        Some(lines) => match lines.first() {
            Some(l) => l
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| format!("bad offset {l:?}")),
            None => Ok(None),
        },
    }
}

/// A truncation in progress: cut the segment at `base` to `position` bytes (removing every
/// later segment); the log then ends at `log_end`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Truncation {
    pub(crate) base: i64,
    pub(crate) position: u64,
    pub(crate) log_end: i64,
}

pub(crate) fn write_truncation(fs: &dyn FileSystem, dir: &Path, t: Truncation) -> io::Result<()> {
    let line = format!("{} {} {}", t.base, t.position, t.log_end);
    write_atomic(fs, dir, TRUNCATION_FILE, &encode(&[line]))
}

/// `Ok(None)` if absent; `Err` (with a description) if unreadable or malformed.
pub(crate) fn read_truncation(dir: &Path) -> Result<Option<Truncation>, String> {
    let Some(lines) = decode(&dir.join(TRUNCATION_FILE), 1)? else {
        return Ok(None);
    };
    let Some(line) = lines.first() else {
        return Ok(None);
    };
    let mut parts = line.split_whitespace();
    let base = parts.next().and_then(|p| p.parse::<i64>().ok());
    let position = parts.next().and_then(|p| p.parse::<u64>().ok());
    let log_end = parts.next().and_then(|p| p.parse::<i64>().ok());
    match (base, position, log_end) {
        (Some(base), Some(position), Some(log_end)) if base >= 0 && log_end >= base => {
            Ok(Some(Truncation {
                base,
                position,
                log_end,
            }))
        }
        _ => Err(format!("bad entry {line:?}")),
    }
}

pub(crate) fn write_epochs(
    fs: &dyn FileSystem,
    dir: &Path,
    entries: &[(i32, i64)],
) -> io::Result<()> {
    let lines: Vec<String> = entries.iter().map(|(e, o)| format!("{e} {o}")).collect();
    write_atomic(fs, dir, LEADER_EPOCH_FILE, &encode(&lines))
}

pub(crate) fn read_epochs(dir: &Path) -> Result<Vec<(i32, i64)>, String> {
    let Some(lines) = decode(&dir.join(LEADER_EPOCH_FILE), LEADER_EPOCH_ENTRIES_MAX)? else {
        return Ok(Vec::new());
    };
    let mut out: Vec<(i32, i64)> = Vec::with_capacity(lines.len());
    for l in lines {
        let mut parts = l.split_whitespace();
        let epoch = parts.next().and_then(|p| p.parse().ok());
        let offset = parts.next().and_then(|p| p.parse().ok());
        match (epoch, offset) {
            (Some(e), Some(o)) => {
                if let Some(&(pe, po)) = out.last() {
                    if e <= pe || o < po {
                        return Err(format!("entry {l:?} does not follow ({pe}, {po})"));
                    }
                }
                out.push((e, o));
            }
            _ => return Err(format!("bad entry {l:?}")),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::OsFileSystem;

    #[test]
    fn offset_roundtrip_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_offset(dir.path(), RECOVERY_POINT_FILE), Ok(None));
        write_offset(&OsFileSystem, dir.path(), RECOVERY_POINT_FILE, 42).unwrap();
        assert_eq!(read_offset(dir.path(), RECOVERY_POINT_FILE), Ok(Some(42)));
        assert_eq!(
            fs::read_to_string(dir.path().join(RECOVERY_POINT_FILE)).unwrap(),
            "0\n1\n42\n"
        );
        fs::write(dir.path().join(RECOVERY_POINT_FILE), "0\n1\nxx\n").unwrap();
        assert!(read_offset(dir.path(), RECOVERY_POINT_FILE).is_err());
        fs::write(dir.path().join(RECOVERY_POINT_FILE), "7\n").unwrap();
        assert!(read_offset(dir.path(), RECOVERY_POINT_FILE).is_err());
    }

    #[test]
    fn epochs_roundtrip_and_order() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_epochs(dir.path()), Ok(vec![]));
        write_epochs(&OsFileSystem, dir.path(), &[(1, 0), (3, 100)]).unwrap();
        assert_eq!(read_epochs(dir.path()), Ok(vec![(1, 0), (3, 100)]));
        fs::write(dir.path().join(LEADER_EPOCH_FILE), "0\n2\n3 100\n1 0\n").unwrap();
        assert!(read_epochs(dir.path()).is_err());
        fs::write(dir.path().join(LEADER_EPOCH_FILE), "0\n3\n1 0\n").unwrap();
        assert!(read_epochs(dir.path()).is_err());
        fs::write(dir.path().join(LEADER_EPOCH_FILE), "0\n99999999999\n").unwrap();
        assert!(read_epochs(dir.path()).is_err());
    }
}
