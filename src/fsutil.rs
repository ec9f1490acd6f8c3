//! Files are written whole or not at all: to a temporary sibling first, flushed, then renamed
//! over the destination, and the directory synced, so an interrupted run (or a power cut)
//! never leaves a file that looks complete, nor loses a rename it reported done.
use std::io::Write;
use std::path::{Path, PathBuf};

/// The temporary sibling of `path`: hidden, ending in `.tmp`, unique to this process.
pub fn temp_path(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

/// The directory holding `path` (`.` for a bare file name).
pub fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Flushes a directory's entries (a rename or a new file in it) to disk. On Unix the
/// directory is opened and `fsync`ed; filesystems that cannot sync a directory (`EINVAL`)
/// are let be. Elsewhere (Windows cannot open a directory as a file) it does nothing.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let d = std::fs::File::open(dir)?;
        match d.sync_all() {
            Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => Ok(()),
            other => other,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// Writes `bytes` to `path` atomically: a temporary sibling, synced, renamed over `path`,
/// then the directory synced so that the rename itself is durable.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = temp_path(path);
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result?;
    sync_dir(parent_dir(path))
}
