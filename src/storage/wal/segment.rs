//! Segment files and the directory: listing, creating, deleting, the
//! directory fsync that makes those durable, and the `LOCK` file.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::time::Instant;

use super::format::{encode_header, parse_segment_name, segment_path, HEADER_LEN};
use super::{WalError, FSYNCS_TOTAL, FSYNC_DURATION_SECONDS};

/// Wraps an I/O error with what was being done.
pub(crate) fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> WalError {
    let context = context.into();
    move |source| WalError::Io { context, source }
}

/// Indexes of the segment files in `dir`, ascending. Other files are ignored.
pub(crate) fn list(dir: &Path) -> Result<Vec<u64>, WalError> {
    let mut out = Vec::new();
    let entries = fs::read_dir(dir).map_err(io_err(format!("list {}", dir.display())))?;
    for entry in entries {
        let entry = entry.map_err(io_err(format!("list {}", dir.display())))?;
        if let Some(index) = entry.file_name().to_str().and_then(parse_segment_name) {
            out.push(index);
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// fsyncs `dir` so file creations and deletions in it survive a crash.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), WalError> {
    let d = File::open(dir).map_err(io_err(format!("open dir {}", dir.display())))?;
    d.sync_all()
        .map_err(io_err(format!("fsync dir {}", dir.display())))
}

/// fdatasyncs `file`, recording the latency; skipped when `fsync` is off.
pub(crate) fn sync_data(file: &File, fsync: bool, what: &str) -> Result<(), WalError> {
    if !fsync {
        return Ok(());
    }
    let start = Instant::now();
    let res = file.sync_data();
    metrics::histogram!(FSYNC_DURATION_SECONDS).record(start.elapsed().as_secs_f64());
    metrics::counter!(FSYNCS_TOTAL).increment(1);
    res.map_err(io_err(format!("fsync {what}")))
}

/// A segment open for appending.
pub(crate) struct Segment {
    /// Its index.
    pub index: u64,
    /// The file, positioned at its end.
    pub file: File,
    /// Bytes in the file (header included).
    pub size: u64,
}

impl Segment {
    /// Creates segment `index` (it must not exist), writes and syncs its
    /// header, and syncs the directory so the file itself survives a crash.
    pub fn create(dir: &Path, index: u64, fsync: bool) -> Result<Segment, WalError> {
        let path = segment_path(dir, index);
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io_err(format!("create {}", path.display())))?;
        file.write_all(&encode_header(index))
            .map_err(io_err(format!("write header of {}", path.display())))?;
        sync_data(&file, fsync, &path.display().to_string())?;
        if fsync {
            sync_dir(dir)?;
        }
        Ok(Segment {
            index,
            file,
            size: HEADER_LEN as u64,
        })
    }
}

/// The `LOCK` file, flocked for as long as the WAL is open, so a second
/// process (or a second `Wal::open` in this one) cannot write the same dir.
pub(crate) struct DirLock {
    _file: File,
}

impl DirLock {
    /// Takes the lock or fails at once naming the directory.
    pub fn acquire(dir: &Path) -> Result<DirLock, WalError> {
        let path = dir.join("LOCK");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_err(format!("open {}", path.display())))?;
        // SAFETY: flock on a valid, owned file descriptor; no memory is shared.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let err = std::io::Error::last_os_error();
            let context = if err.kind() == std::io::ErrorKind::WouldBlock {
                format!(
                    "lock {}: the WAL is already open (another process?)",
                    path.display()
                )
            } else {
                format!("lock {}", path.display())
            };
            return Err(WalError::Io {
                context,
                source: err,
            });
        }
        // The lock is released when the descriptor is closed (drop).
        Ok(DirLock { _file: file })
    }
}
