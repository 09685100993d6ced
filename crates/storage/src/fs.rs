//! The filesystem seam: every operation that changes files or makes them durable (open or
//! create, O_DIRECT open, pwrite, truncate, fdatasync/fsync, rename, remove, directory
//! fsync) goes through a [`FileSystem`] that the owner injects with
//! `Storage::with_file_system`. The default, [`OsFileSystem`], calls the operating system
//! directly. A test implementation can fail
//! calls (an fsync error takes the log offline), tear writes, or remember what was synced
//! and drop everything else to simulate a crash.
//!
//! Reads (pread of segments and checkpoints, memory-mapped sealed indexes, `sendfile`
//! from `FileSlice`s) use the files directly: they change nothing.
//!
//! Every method has the operating system's behaviour as its default, so an implementation
//! overrides only what it observes or fails. Methods get the path with the open file, so
//! that an implementation can keep per-file state.

use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

/// What storage does to files (see the module docs). Must be cheap: `write_at` is on the
/// append path.
pub trait FileSystem: Send + Sync + Debug {
    /// Opens `path` with `options` (create, truncate, read, write as set there).
    fn open(&self, path: &Path, options: &OpenOptions) -> io::Result<File> {
        options.open(path)
    }
    /// Opens `path` for O_DIRECT writes (created if `create`; see `direct.rs`): writes
    /// through it must be 4 KiB-aligned in position, length and buffer address. A
    /// filesystem that refuses O_DIRECT fails here (EINVAL) or at the first write.
    fn open_direct(&self, path: &Path, create: bool) -> io::Result<File> {
        use std::os::unix::fs::OpenOptionsExt;
        OpenOptions::new()
            .write(true)
            .create(create)
            .custom_flags(libc::O_DIRECT)
            .open(path)
    }
    /// pwrite of all of `buf` at `pos`.
    fn write_at(&self, path: &Path, file: &File, buf: &[u8], pos: u64) -> io::Result<()> {
        let _ = path;
        file.write_all_at(buf, pos)
    }
    /// pwritev of all of `bufs`, one after the other, at `pos` (an append of batches whose
    /// headers were patched apart from their bodies: no copy into one buffer).
    fn write_vectored_at(
        &self,
        path: &Path,
        file: &File,
        bufs: &[&[u8]],
        pos: u64,
    ) -> io::Result<()> {
        let _ = path;
        write_all_vectored_at(file, bufs, pos)
    }
    /// Sequential write of all of `buf` (small files written whole: checkpoints, snapshots).
    fn write_all(&self, path: &Path, file: &mut File, buf: &[u8]) -> io::Result<()> {
        let _ = path;
        file.write_all(buf)
    }
    /// ftruncate (or extend) to `len`.
    fn set_len(&self, path: &Path, file: &File, len: u64) -> io::Result<()> {
        let _ = path;
        file.set_len(len)
    }
    /// fdatasync.
    fn sync_data(&self, path: &Path, file: &File) -> io::Result<()> {
        let _ = path;
        file.sync_data()
    }
    /// fsync.
    fn sync_all(&self, path: &Path, file: &File) -> io::Result<()> {
        let _ = path;
        file.sync_all()
    }
    /// fsync of a directory (makes creations, renames and removals in it durable).
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
    /// syncfs(2) through `root` (a directory on the filesystem, held open since before the
    /// writes it must cover): makes the data and metadata of every file and directory of
    /// that filesystem durable in one call, and reports any write-back error on it since
    /// the previous call through `root` (Linux 5.8 and later; see [`syncfs_reports_errors`]).
    /// `files` are the files the caller counts on: an implementation that models
    /// durability per file treats each as fdatasynced (and their directories as synced).
    fn sync_filesystem(&self, root: &File, files: &[(&Path, &File)]) -> io::Result<()> {
        let _ = files;
        syncfs(root)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path)
    }
}

/// Most buffers one pwritev(2) takes (Linux's IOV_MAX).
const IOV_MAX: usize = 1024;

/// pwritev(2) of every byte of `bufs` at `pos`, resuming after short writes and EINTR.
pub fn write_all_vectored_at(file: &File, bufs: &[&[u8]], mut pos: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // (index of the first buffer not fully written, bytes of it already written)
    let (mut i, mut done) = (0usize, 0usize);
    let mut iov: Vec<libc::iovec> = Vec::with_capacity(bufs.len().min(IOV_MAX));
    loop {
        while i < bufs.len() && done == bufs[i].len() {
            i += 1;
            done = 0;
        }
        if i == bufs.len() {
            return Ok(());
        }
        iov.clear();
        for (k, b) in bufs[i..].iter().enumerate() {
            if iov.len() == IOV_MAX {
                break;
            }
            let b = if k == 0 { &b[done..] } else { b };
            if !b.is_empty() {
                iov.push(libc::iovec {
                    iov_base: b.as_ptr() as *mut libc::c_void,
                    iov_len: b.len(),
                });
            }
        }
        let offset = libc::off_t::try_from(pos)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "file position too large"))?;
        // SAFETY: every iovec points into a live slice of `bufs` for the call's duration;
        // the count is at most IOV_MAX; `file` keeps the descriptor open.
        let n = unsafe {
            libc::pwritev(
                file.as_raw_fd(),
                iov.as_ptr(),
                iov.len() as libc::c_int,
                offset,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Err(io::Error::from(io::ErrorKind::WriteZero));
        }
        let mut n = n as usize;
        pos += n as u64;
        while n > 0 {
            let left = bufs[i].len() - done;
            if n >= left {
                n -= left;
                i += 1;
                done = 0;
            } else {
                done += n;
                n = 0;
            }
        }
    }
}

#[cfg(target_os = "linux")]
fn syncfs(root: &File) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: syncfs only reads the descriptor, which `root` keeps open for the call.
    if unsafe { libc::syncfs(root.as_raw_fd()) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn syncfs(_root: &File) -> io::Result<()> {
    Err(io::Error::new(io::ErrorKind::Unsupported, "syncfs"))
}

/// True when this kernel's syncfs(2) reports write-back errors (Linux 5.8 and later,
/// through the per-superblock error sequence): before that it returned success after a
/// failed write-back, so group commit must not rely on it there.
pub fn syncfs_reports_errors() -> bool {
    kernel_release().is_some_and(|(major, minor)| (major, minor) >= (5, 8))
}

#[cfg(target_os = "linux")]
fn kernel_release() -> Option<(u32, u32)> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok()?;
    parse_release(&release)
}

#[cfg(not(target_os = "linux"))]
fn kernel_release() -> Option<(u32, u32)> {
    None
}

/// "6.18.44-fc-v1147" -> (6, 18).
fn parse_release(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.trim().split(['.', '-']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// The operating system's filesystem (the default).
#[derive(Clone, Copy, Debug, Default)]
pub struct OsFileSystem;

impl FileSystem for OsFileSystem {}

#[cfg(test)]
mod tests {
    use super::parse_release;

    #[test]
    fn vectored_writes_put_every_buffer_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        // More buffers than one pwritev takes, some empty, at an offset.
        let owned: Vec<Vec<u8>> = (0..2_500u32)
            .map(|i| (0..(i % 7)).map(|j| (i * 7 + j) as u8).collect())
            .collect();
        let bufs: Vec<&[u8]> = owned.iter().map(Vec::as_slice).collect();
        super::write_all_vectored_at(&file, &bufs, 3).unwrap();
        let want: Vec<u8> = [vec![0u8; 3], owned.concat()].concat();
        assert_eq!(std::fs::read(&path).unwrap(), want);
        super::write_all_vectored_at(&file, &[], 0).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), want);
    }

    #[test]
    fn kernel_releases_parse() {
        assert_eq!(parse_release("6.18.44-fc-v1147\n"), Some((6, 18)));
        assert_eq!(parse_release("5.8.0"), Some((5, 8)));
        assert_eq!(parse_release("4.19-rc1"), Some((4, 19)));
        assert_eq!(parse_release("garbage"), None);
        assert_eq!(parse_release(""), None);
    }
}
