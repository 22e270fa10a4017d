//! Making directory changes durable, and the clean-shutdown marker.
//!
//! A file's fsync makes its bytes durable, not its name: after creating, renaming or removing
//! a file, the directory that holds it must be fsynced too, or a power loss can lose the new
//! name (a whole new segment under `flush=always`). Every such point in the storage engine goes
//! through [`fsync_dir`]; the broker uses it for its own files as well.
//!
//! The clean-shutdown marker (Kafka's `.kafka_cleanshutdown`) sits in the data directory. It is
//! written at the very end of a graceful shutdown, after every log under the directory was
//! fsynced, and removed (durably) at startup once every log is open, before any write is
//! served. While it is present, opening a log skips the CRC pass over its active segment: the
//! files are exactly what the last run wrote and fsynced. Without it (a crash, `kill -9`, a
//! power loss) the active segment is recovered batch by batch.

use std::fs::{self, File};
use std::io;
use std::path::Path;

/// Kafka's name for the marker (`LogLoader.CleanShutdownFile`).
pub const CLEAN_SHUTDOWN_FILE: &str = ".kafka_cleanshutdown";

#[cfg(test)]
thread_local! {
    /// Directories fsynced on this thread, so tests can check each durability point.
    static SYNCED_DIRS: std::cell::RefCell<Vec<std::path::PathBuf>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Takes the directories fsynced on this thread since the last call (tests only).
#[cfg(test)]
pub(crate) fn take_synced_dirs() -> Vec<std::path::PathBuf> {
    SYNCED_DIRS.with(|s| std::mem::take(&mut *s.borrow_mut()))
}

#[cfg(test)]
thread_local! {
    /// Tests only: the number of directory fsyncs still allowed on this thread before one
    /// fails, simulating a crash at that durability point (the operation stops there; the test
    /// reopens the directory as a restarted broker would).
    static CRASH_AFTER_DIR_SYNCS: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
}

/// Tests only: the next `n` directory fsyncs on this thread succeed and the one after fails
/// (`None`: never).
#[cfg(test)]
pub(crate) fn crash_after_dir_syncs(n: Option<usize>) {
    CRASH_AFTER_DIR_SYNCS.with(|c| c.set(n));
}

/// Fsyncs a directory, making the creation, rename or removal of the entries in it durable.
pub fn fsync_dir(path: &Path) -> io::Result<()> {
    #[cfg(test)]
    {
        if let Some(left) = CRASH_AFTER_DIR_SYNCS.with(|c| c.get()) {
            if left == 0 {
                return Err(io::Error::other("injected crash"));
            }
            CRASH_AFTER_DIR_SYNCS.with(|c| c.set(Some(left - 1)));
        }
        SYNCED_DIRS.with(|s| s.borrow_mut().push(path.to_path_buf()));
    }
    File::open(path)?.sync_all()
}

/// Fsyncs the directory that holds `path` (the current directory for a bare name).
pub fn fsync_parent(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => fsync_dir(parent),
        _ => fsync_dir(Path::new(".")),
    }
}

/// True if the log directory `log_dir` sits in a data directory that holds the marker.
pub(crate) fn parent_shut_down_cleanly(log_dir: &Path) -> bool {
    log_dir
        .parent()
        .is_some_and(|data_dir| data_dir.join(CLEAN_SHUTDOWN_FILE).is_file())
}

/// Fsyncs every segment (`*.log`) in every log directory directly under `data_dir`, and the
/// directories: after it returns, everything written there survives a power loss. Called at
/// the end of a graceful shutdown, before the marker is written. A read-only descriptor is
/// enough for fsync on Linux; a segment that has nothing unwritten costs one open and close.
pub fn sync_logs_under(data_dir: &Path) -> io::Result<()> {
    for entry in fs::read_dir(data_dir)? {
        let entry = entry?;
        if !entry.file_type()?.is_dir() {
            continue;
        }
        let dir = entry.path();
        for file in fs::read_dir(&dir)? {
            let file = file?;
            let path = file.path();
            if file.file_type()?.is_file() && path.extension().is_some_and(|e| e == "log") {
                File::open(&path)?.sync_all()?;
            }
        }
        fsync_dir(&dir)?;
    }
    fsync_dir(data_dir)
}

/// Writes the marker durably (graceful shutdown, after [`sync_logs_under`]).
pub fn write_clean_shutdown_marker(data_dir: &Path) -> io::Result<()> {
    let path = data_dir.join(CLEAN_SHUTDOWN_FILE);
    File::create(&path)?.sync_all()?;
    fsync_dir(data_dir)
}

/// Removes the marker durably (startup, once every log is open and before any write is
/// served). Returns whether it was there, i.e. whether the last run shut down cleanly.
pub fn remove_clean_shutdown_marker(data_dir: &Path) -> io::Result<bool> {
    match fs::remove_file(data_dir.join(CLEAN_SHUTDOWN_FILE)) {
        Ok(()) => {
            fsync_dir(data_dir)?;
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let log_dir = dir.path().join("t-0");
        fs::create_dir(&log_dir).unwrap();
        fs::write(log_dir.join("00000000000000000000.log"), b"x").unwrap();
        assert!(!parent_shut_down_cleanly(&log_dir));
        sync_logs_under(dir.path()).unwrap();
        let synced = take_synced_dirs();
        assert!(synced.contains(&log_dir) && synced.contains(&dir.path().to_path_buf()));
        write_clean_shutdown_marker(dir.path()).unwrap();
        assert!(parent_shut_down_cleanly(&log_dir));
        assert!(remove_clean_shutdown_marker(dir.path()).unwrap());
        assert!(!parent_shut_down_cleanly(&log_dir));
        assert!(!remove_clean_shutdown_marker(dir.path()).unwrap());
    }
}
