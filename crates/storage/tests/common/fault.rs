//! A `FileSystem` for fault injection: fails syncs on request, tears a write on request,
//! and remembers what each file held when it was last synced so that `crash` can drop
//! everything written since (per file), as a power loss would.
//!
//! The model: a file's durable image is its content at its last fdatasync/fsync (or when
//! first opened through this value, for files that existed before). Renames, creations
//! and removals count as durable at once (directory fsyncs are not modelled), and a rename
//! carries the image of the renamed file. A syncfs syncs the files its caller lists. `crash` writes every tracked file back to its
//! image (a file never synced becomes empty) and forgets all state, as a reboot would.
//! Syncs only update the images (no real fsync: the tests run many crashes quickly).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use fjord_storage::FileSystem;

#[derive(Debug, Default)]
pub struct FaultFs {
    /// Durable image of each file touched since the last crash (None: never synced).
    images: Mutex<HashMap<PathBuf, Option<Vec<u8>>>>,
    /// Every fdatasync/fsync (files and directories) fails with EIO while set.
    pub fail_syncs: AtomicBool,
    /// The next pwrite writes only this many bytes, then fails with EIO (u64::MAX: off).
    tear_next_write: AtomicU64,
    /// Syncs that succeeded (tests check that something was synced).
    pub syncs: AtomicU64,
    /// Every sync that succeeded, files and directories, in order.
    pub synced_paths: Mutex<Vec<PathBuf>>,
}

fn eio(what: &str) -> io::Error {
    io::Error::other(format!("injected I/O error: {what}"))
}

impl FaultFs {
    pub fn new() -> FaultFs {
        FaultFs {
            tear_next_write: AtomicU64::new(u64::MAX),
            ..FaultFs::default()
        }
    }

    /// The next pwrite writes only `bytes` bytes and fails.
    pub fn tear_next_write(&self, bytes: u64) {
        self.tear_next_write.store(bytes, Ordering::SeqCst);
    }

    fn track(&self, path: &Path) {
        let mut images = self.images.lock().unwrap();
        if !images.contains_key(path) {
            // Existing before this value saw it: durable as found.
            let image = std::fs::read(path).ok();
            images.insert(path.to_path_buf(), image);
        }
    }

    fn synced(&self, path: &Path, file: &File) -> io::Result<()> {
        if self.fail_syncs.load(Ordering::SeqCst) {
            return Err(eio("sync"));
        }
        // Read and record under the lock: a sync racing with a truncation's sync of the same
        // file must not record the older content last.
        let mut images = self.images.lock().unwrap();
        let same_file = match std::fs::metadata(path) {
            Ok(m) => m.ino() == file.metadata()?.ino(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(e) => return Err(e),
        };
        if !same_file {
            // Removed meanwhile (an fd outlives its name), perhaps replaced by a new file
            // at that path: the sync does not make the new one durable.
            return Ok(());
        }
        let now = match std::fs::read(path) {
            Ok(now) => now,
            // Removed since (a removal does not wait for this lock): nothing to remember.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        images.insert(path.to_path_buf(), Some(now));
        drop(images);
        self.syncs.fetch_add(1, Ordering::SeqCst);
        self.synced_paths.lock().unwrap().push(path.to_path_buf());
        Ok(())
    }

    /// A power loss: every file touched since the last crash goes back to its durable
    /// image; `keep_unsynced_prefix_of` keeps, of that one file, also the first `n` bytes
    /// written after its image (a torn write that partly reached the disk). Call only when
    /// no log uses this value any more.
    pub fn crash(&self, keep_unsynced_prefix_of: Option<(&Path, u64)>) -> Vec<PathBuf> {
        let images = std::mem::take(&mut *self.images.lock().unwrap());
        let mut changed = Vec::new();
        for (path, image) in images {
            let Ok(now) = std::fs::read(&path) else {
                continue; // removed
            };
            let mut keep = image.unwrap_or_default();
            if let Some((p, n)) = keep_unsynced_prefix_of {
                if p == path && now.starts_with(&keep) {
                    let end = (keep.len() + n as usize).min(now.len());
                    keep = now[..end].to_vec();
                }
            }
            if keep != now {
                let mut f = OpenOptions::new()
                    .write(true)
                    .truncate(true)
                    .open(&path)
                    .unwrap();
                f.write_all(&keep).unwrap();
                changed.push(path);
            }
        }
        changed
    }
}

impl FileSystem for FaultFs {
    fn open(&self, path: &Path, options: &OpenOptions) -> io::Result<File> {
        // Track before a create/truncate changes it.
        self.track(path);
        options.open(path)
    }
    fn write_at(&self, path: &Path, file: &File, buf: &[u8], pos: u64) -> io::Result<()> {
        self.track(path);
        let tear = self.tear_next_write.swap(u64::MAX, Ordering::SeqCst);
        if tear != u64::MAX {
            let n = (tear as usize).min(buf.len());
            file.write_all_at(&buf[..n], pos)?;
            return Err(eio("torn write"));
        }
        file.write_all_at(buf, pos)
    }
    fn write_vectored_at(
        &self,
        path: &Path,
        file: &File,
        bufs: &[&[u8]],
        pos: u64,
    ) -> io::Result<()> {
        // One write of the concatenation: a torn write tears it the same way.
        self.write_at(path, file, &bufs.concat(), pos)
    }
    fn write_all(&self, path: &Path, file: &mut File, buf: &[u8]) -> io::Result<()> {
        self.track(path);
        file.write_all(buf)
    }
    fn set_len(&self, path: &Path, file: &File, len: u64) -> io::Result<()> {
        self.track(path);
        file.set_len(len)
    }
    fn sync_data(&self, path: &Path, file: &File) -> io::Result<()> {
        if self.fail_syncs.load(Ordering::SeqCst) {
            return Err(eio("fdatasync"));
        }
        // The image is the durability: no real fdatasync (keeps the tests fast).
        self.synced(path, file)
    }
    fn sync_all(&self, path: &Path, file: &File) -> io::Result<()> {
        if self.fail_syncs.load(Ordering::SeqCst) {
            return Err(eio("fsync"));
        }
        self.synced(path, file)
    }
    fn sync_filesystem(&self, root: &File, files: &[(&Path, &File)]) -> io::Result<()> {
        let _ = root;
        if self.fail_syncs.load(Ordering::SeqCst) {
            return Err(eio("syncfs"));
        }
        // The model: every file the caller counts on is synced (directories are not
        // modelled); others written through this value are not.
        for (path, file) in files {
            self.synced(path, file)?;
        }
        Ok(())
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        if self.fail_syncs.load(Ordering::SeqCst) {
            return Err(eio("fsync of a directory"));
        }
        File::open(dir).map(drop)?;
        self.synced_paths.lock().unwrap().push(dir.to_path_buf());
        Ok(())
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.track(from);
        std::fs::rename(from, to)?;
        let mut images = self.images.lock().unwrap();
        let image = images.remove(from).unwrap_or(None);
        images.insert(to.to_path_buf(), image);
        Ok(())
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)?;
        self.images.lock().unwrap().remove(path);
        Ok(())
    }
}
