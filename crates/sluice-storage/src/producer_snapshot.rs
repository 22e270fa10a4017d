//! Producer-state snapshot files (Kafka's `<offset>.snapshot`): the broker's idempotent and
//! transactional producer state as it stood at an offset, so a restart replays only the log
//! after it. Written at segment roll and at clean shutdown; the newest one not past the log end
//! is loaded on open.
//!
//! The file is `version i16 = 1, crc32c u32 (of the payload), payload`; the payload is the
//! broker's (this crate does not know producer state). A file whose CRC does not match is
//! ignored (the caller falls back to an older one). Written to a temporary name, fsynced,
//! renamed, and the directory fsynced.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::durability::fsync_dir;
use crate::segment::file_stem;

const VERSION: i16 = 1;
const SUFFIX: &str = ".snapshot";
/// Snapshots kept per partition: the newest, and older ones to fall back on when a newer one
/// is unreadable or past a truncated log end.
pub const SNAPSHOTS_RETAINED: usize = 3;

pub fn path_for(dir: &Path, offset: i64) -> PathBuf {
    dir.join(format!("{}{SUFFIX}", file_stem(offset)))
}

/// The offsets of the snapshots in `dir`, ascending.
pub fn list(dir: &Path) -> io::Result<Vec<i64>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(stem) = name.strip_suffix(SUFFIX) {
            if let Ok(offset) = stem.parse::<i64>() {
                if offset >= 0 {
                    out.push(offset);
                }
            }
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Writes the snapshot at `offset` durably and keeps only the newest
/// [`SNAPSHOTS_RETAINED`] snapshots.
pub fn write(dir: &Path, offset: i64, payload: &[u8]) -> io::Result<()> {
    let path = path_for(dir, offset);
    let tmp = path.with_extension("snapshot.tmp");
    let mut bytes = Vec::with_capacity(payload.len() + 6);
    bytes.extend(VERSION.to_be_bytes());
    bytes.extend(crc32c::crc32c(payload).to_be_bytes());
    bytes.extend_from_slice(payload);
    fs::write(&tmp, &bytes)?;
    fs::File::open(&tmp)?.sync_all()?;
    fs::rename(&tmp, &path)?;
    let all = list(dir)?;
    let drop = all.len().saturating_sub(SNAPSHOTS_RETAINED);
    for old in &all[..drop] {
        remove(dir, *old)?;
    }
    fsync_dir(dir)
}

/// The payload of the snapshot at `offset`, or `None` if it is missing, torn or corrupt.
pub fn read(dir: &Path, offset: i64) -> io::Result<Option<Vec<u8>>> {
    let bytes = match fs::read(path_for(dir, offset)) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    if bytes.len() < 6 || i16::from_be_bytes([bytes[0], bytes[1]]) != VERSION {
        return Ok(None);
    }
    let crc = u32::from_be_bytes([bytes[2], bytes[3], bytes[4], bytes[5]]);
    let payload = &bytes[6..];
    if crc32c::crc32c(payload) != crc {
        return Ok(None);
    }
    Ok(Some(payload.to_vec()))
}

/// Removes one snapshot (the caller fsyncs the directory).
pub fn remove(dir: &Path, offset: i64) -> io::Result<()> {
    match fs::remove_file(path_for(dir, offset)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Removes the snapshots past `offset` (a log cut below them), durably.
pub fn remove_after(dir: &Path, offset: i64) -> io::Result<()> {
    let mut any = false;
    for s in list(dir)? {
        if s > offset {
            remove(dir, s)?;
            any = true;
        }
    }
    if any {
        fsync_dir(dir)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_read_retain_and_corruption() {
        let dir = tempfile::tempdir().unwrap();
        for off in [10, 20, 30, 40] {
            write(dir.path(), off, format!("state@{off}").as_bytes()).unwrap();
        }
        assert_eq!(list(dir.path()).unwrap(), vec![20, 30, 40]);
        assert_eq!(read(dir.path(), 40).unwrap().unwrap(), b"state@40");
        assert_eq!(read(dir.path(), 10).unwrap(), None);
        // A torn or flipped file is ignored.
        let p = path_for(dir.path(), 40);
        let mut b = fs::read(&p).unwrap();
        let last = b.len() - 1;
        b[last] ^= 1;
        fs::write(&p, &b).unwrap();
        assert_eq!(read(dir.path(), 40).unwrap(), None);
        fs::write(&p, &b[..3]).unwrap();
        assert_eq!(read(dir.path(), 40).unwrap(), None);
        remove_after(dir.path(), 25).unwrap();
        assert_eq!(list(dir.path()).unwrap(), vec![20]);
    }
}
