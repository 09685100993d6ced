//! Direct writes (`log.direct.io`, [`crate::StorageLimits::direct_io`]): the active
//! segment's appends go to the device with O_DIRECT, from 4 KiB-aligned buffers, without
//! the copy into the page cache (and its write-back) that a buffered pwrite costs.
//!
//! O_DIRECT writes whole aligned blocks. A segment's logical size (`Segment::size`, what
//! readers see) is rarely a block multiple, so the writer keeps the bytes of the last,
//! partly filled block in memory and writes that block again, completed with the next
//! append's bytes; the rest of the last block written is zeros. The file is thus up to one
//! block longer than the segment: sealing and closing cut it back to the logical size
//! (`Segment::trim_padding`), and after a crash recovery's scan cuts the zeros (and any
//! torn block) off as it cuts any torn tail. The on-disk format is unchanged.
//!
//! fdatasync stays where it was: the data is on the device when the write returns, but
//! the file's new size (and the device's volatile cache) is made durable by the same
//! fdatasync or syncfs that group commit runs for buffered writes.
//!
//! Reads keep using the segment's ordinary descriptor (pread, sendfile): the kernel drops
//! the page-cache pages a direct write covers, so a read after it sees the new bytes.
//! Index files, checkpoints and compaction's segments are written buffered.
//!
//! A filesystem that refuses O_DIRECT (ramfs, some FUSE and overlay setups) is detected by
//! a probe write at the first segment in it; its logs then write buffered, with one log
//! line per filesystem.

use std::alloc::{self, Layout};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::ptr::NonNull;

use fjord_model::limits::{
    DIRECT_IO_BLOCK_BYTES, DIRECT_IO_SCRATCH_BUFFERS_MAX, DIRECT_IO_SCRATCH_KEEP_BYTES,
};
use parking_lot::Mutex;

use crate::fs::FileSystem;

const BLOCK: usize = DIRECT_IO_BLOCK_BYTES;

/// A zeroed heap buffer whose address and length are multiples of `DIRECT_IO_BLOCK_BYTES`.
pub(crate) struct AlignedBuf {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the buffer is owned memory, like a Vec<u8>.
unsafe impl Send for AlignedBuf {}
// SAFETY: shared access only reads.
unsafe impl Sync for AlignedBuf {}

impl AlignedBuf {
    /// At least `len` zeroed bytes (rounded up to a whole block, at least one).
    pub(crate) fn zeroed(len: usize) -> AlignedBuf {
        let len = round_up(len.max(1));
        let layout = Layout::from_size_align(len, BLOCK).expect("aligned layout");
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { alloc::alloc_zeroed(layout) };
        let Some(ptr) = NonNull::new(ptr) else {
            alloc::handle_alloc_error(layout)
        };
        AlignedBuf { ptr, len }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        // SAFETY: `ptr` is valid for `len` initialised bytes while `self` lives.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    pub(crate) fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`, and `&mut self` makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        let layout = Layout::from_size_align(self.len, BLOCK).expect("aligned layout");
        // SAFETY: allocated in `zeroed` with this layout.
        unsafe { alloc::dealloc(self.ptr.as_ptr(), layout) }
    }
}

impl std::fmt::Debug for AlignedBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AlignedBuf({} bytes)", self.len)
    }
}

/// `n` rounded up to a block multiple.
pub(crate) fn round_up(n: usize) -> usize {
    n.div_ceil(BLOCK) * BLOCK
}

/// The aligned scratch buffers a `Storage`'s appends borrow (bounded, see the limits).
#[derive(Debug, Default)]
pub(crate) struct ScratchPool {
    free: Mutex<Vec<AlignedBuf>>,
}

impl ScratchPool {
    /// A buffer of at least `len` bytes (contents unspecified).
    fn take(&self, len: usize) -> AlignedBuf {
        let mut free = self.free.lock();
        match free.iter().position(|b| b.len() >= len) {
            Some(i) => free.swap_remove(i),
            None => {
                drop(free);
                AlignedBuf::zeroed(len)
            }
        }
    }

    fn give(&self, buf: AlignedBuf) {
        if buf.len() > DIRECT_IO_SCRATCH_KEEP_BYTES {
            return;
        }
        let mut free = self.free.lock();
        if free.len() < DIRECT_IO_SCRATCH_BUFFERS_MAX {
            free.push(buf);
        } else if let Some(smallest) = free.iter_mut().min_by_key(|b| b.len()) {
            if smallest.len() < buf.len() {
                *smallest = buf;
            }
        }
    }
}

/// The direct-write state of an active segment: its O_DIRECT descriptor and the bytes of
/// its last, partly filled block.
#[derive(Debug)]
pub(crate) struct DirectWriter {
    file: File,
    /// The segment's logical size (where the next append goes).
    end: u64,
    /// Bytes `[end - tail.len(), end)` of the file: the last block's, when partly filled.
    tail: Vec<u8>,
}

impl DirectWriter {
    /// Opens `path` (an existing segment of `size` bytes, readable through `buffered`) for
    /// direct writes and loads its last partial block.
    pub(crate) fn open(
        fs: &dyn FileSystem,
        path: &Path,
        buffered: &File,
        size: u64,
    ) -> io::Result<DirectWriter> {
        let file = fs.open_direct(path, false)?;
        let tail_len = (size % BLOCK as u64) as usize;
        let mut tail = vec![0u8; tail_len];
        buffered.read_exact_at(&mut tail, size - tail_len as u64)?;
        Ok(DirectWriter {
            file,
            end: size,
            tail,
        })
    }

    /// Writes `bufs`, one after the other, at `pos` (the segment's end): the last partial
    /// block, then the new bytes, zero-padded to whole blocks, in one O_DIRECT pwrite.
    pub(crate) fn write(
        &mut self,
        fs: &dyn FileSystem,
        scratch: &ScratchPool,
        path: &Path,
        bufs: &[&[u8]],
        pos: u64,
    ) -> io::Result<()> {
        if pos != self.end {
            return Err(io::Error::other(format!(
                "direct write at {pos}, the segment ends at {}",
                self.end
            )));
        }
        let new: usize = bufs.iter().map(|b| b.len()).sum();
        if new == 0 {
            return Ok(());
        }
        let start = self.end - self.tail.len() as u64;
        let total = self.tail.len() + new;
        let padded = round_up(total);
        let mut buf = scratch.take(padded);
        let result = {
            let out = buf.as_mut_slice();
            out[..self.tail.len()].copy_from_slice(&self.tail);
            let mut at = self.tail.len();
            for b in bufs {
                out[at..at + b.len()].copy_from_slice(b);
                at += b.len();
            }
            out[total..padded].fill(0);
            fs.write_at(path, &self.file, &out[..padded], start)
        };
        if result.is_ok() {
            let tail_len = total % BLOCK;
            self.tail.clear();
            self.tail
                .extend_from_slice(&buf.as_slice()[total - tail_len..total]);
            self.end += new as u64;
        }
        scratch.give(buf);
        result
    }
}

/// Whether bytes `[from, to)` of `file` are a direct write's padding: zeros up to a block
/// boundary, less than a block of them.
pub(crate) fn is_padding(file: &File, from: u64, to: u64) -> io::Result<bool> {
    if !to.is_multiple_of(BLOCK as u64) || to - from >= BLOCK as u64 || from >= to {
        return Ok(false);
    }
    let mut bytes = vec![0u8; (to - from) as usize];
    file.read_exact_at(&mut bytes, from)?;
    Ok(bytes.iter().all(|&b| b == 0))
}

/// Whether O_DIRECT writes work in `dir`: creates a probe file there, writes one aligned
/// block to it with O_DIRECT and removes it. The error says why not.
pub(crate) fn probe(fs: &dyn FileSystem, dir: &Path) -> io::Result<()> {
    // `.tmp`: removed by the next `Log::open` if a crash leaves it behind.
    let path = dir.join("direct-io-probe.tmp");
    let result = fs.open_direct(&path, true).and_then(|file| {
        let buf = AlignedBuf::zeroed(BLOCK);
        fs.write_at(&path, &file, buf.as_slice(), 0)
    });
    match fs.remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return result.and(Err(e)),
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_buffers_are_aligned_and_zeroed() {
        for len in [0, 1, 4095, 4096, 4097, 100_000] {
            let b = AlignedBuf::zeroed(len);
            assert_eq!(b.as_slice().as_ptr() as usize % BLOCK, 0);
            assert_eq!(b.len() % BLOCK, 0);
            assert!(b.len() >= len.max(1));
            assert!(b.as_slice().iter().all(|&x| x == 0));
        }
    }

    #[test]
    fn the_pool_keeps_a_bounded_number_of_small_buffers() {
        let pool = ScratchPool::default();
        for _ in 0..DIRECT_IO_SCRATCH_BUFFERS_MAX + 3 {
            pool.give(AlignedBuf::zeroed(BLOCK));
        }
        pool.give(AlignedBuf::zeroed(DIRECT_IO_SCRATCH_KEEP_BYTES + 1));
        let free = pool.free.lock();
        assert_eq!(free.len(), DIRECT_IO_SCRATCH_BUFFERS_MAX);
        assert!(free.iter().all(|b| b.len() <= DIRECT_IO_SCRATCH_KEEP_BYTES));
    }
}
