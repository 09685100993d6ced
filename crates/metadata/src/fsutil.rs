//! Small durable-file helpers.

use std::io::Write;
use std::path::Path;

use crate::MetadataError;

/// Writes `dir/name` so that a crash leaves either the old or the new file whole.
pub(crate) fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), MetadataError> {
    write_through(dir, name, "tmp", bytes)
}

/// Writes `dir/name` through `dir/name.part` (Kafka's suffix for snapshots
/// being written), so that only whole files ever carry the final name.
pub(crate) fn write_atomic_part(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), MetadataError> {
    write_through(dir, name, "part", bytes)
}

pub(crate) fn sync_dir(dir: &Path) -> Result<(), MetadataError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| MetadataError::io("fsync", dir, e))
}

/// Writes and fsyncs `dir/name.suffix`, renames it to `dir/name`, fsyncs `dir`.
fn write_through(dir: &Path, name: &str, suffix: &str, bytes: &[u8]) -> Result<(), MetadataError> {
    let tmp = dir.join(format!("{name}.{suffix}"));
    let dst = dir.join(name);
    let mut f = std::fs::File::create(&tmp).map_err(|e| MetadataError::io("create", &tmp, e))?;
    f.write_all(bytes)
        .map_err(|e| MetadataError::io("write", &tmp, e))?;
    f.sync_all()
        .map_err(|e| MetadataError::io("fsync", &tmp, e))?;
    std::fs::rename(&tmp, &dst).map_err(|e| MetadataError::io("rename", &dst, e))?;
    sync_dir(dir)
}
