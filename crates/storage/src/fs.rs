//! The filesystem seam: every operation that changes files or makes them durable (open or
//! create, pwrite, truncate, fdatasync/fsync, rename, remove, directory fsync) goes through
//! a [`FileSystem`] that the owner injects with `Storage::with_file_system`. The default,
//! [`OsFileSystem`], calls the operating system directly. A test implementation can fail
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
    /// pwrite of all of `buf` at `pos`.
    fn write_at(&self, path: &Path, file: &File, buf: &[u8], pos: u64) -> io::Result<()> {
        let _ = path;
        file.write_all_at(buf, pos)
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

/// The operating system's filesystem (the default).
#[derive(Clone, Copy, Debug, Default)]
pub struct OsFileSystem;

impl FileSystem for OsFileSystem {}
