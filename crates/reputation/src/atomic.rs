//! Replace-by-rename file writes: temp file in the same directory, fsync, rename, fsync the
//! directory. Readers see the old file or the new one, never a partial one.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// An I/O failure with what was being done and on which path.
#[derive(Debug)]
pub(crate) struct IoFail {
    pub op: &'static str,
    pub path: PathBuf,
    pub source: io::Error,
}

/// Deletes the temp file unless the rename happened.
struct TempGuard(Option<PathBuf>);

impl Drop for TempGuard {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Writes `path` atomically with the bytes `write` produces. On any error the old file (if
/// any) is untouched and the temp file is removed.
pub(crate) fn write_file(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<File>) -> io::Result<()>,
) -> Result<(), IoFail> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let fail = |op, path: &Path| {
        let path = path.to_owned();
        move |source| IoFail { op, path, source }
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    // Hidden and unique per process and call, so concurrent writers never share a temp file
    // and directory scans for real names skip it.
    let tmp = dir.join(format!(
        ".{name}.tmp.{}.{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(fail("cannot create", &tmp))?;
    let mut guard = TempGuard(Some(tmp.clone()));
    let mut w = BufWriter::new(file);
    write(&mut w)
        .and_then(|()| w.flush())
        .map_err(fail("cannot write", &tmp))?;
    let file = w
        .into_inner()
        .map_err(|e| fail("cannot write", &tmp)(e.into_error()))?;
    file.sync_all().map_err(fail("cannot sync", &tmp))?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(fail("cannot replace", path))?;
    guard.0 = None;
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_and_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        write_file(&p, |w| w.write_all(b"one")).unwrap();
        write_file(&p, |w| w.write_all(b"two")).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn failed_write_keeps_old_file_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        write_file(&p, |w| w.write_all(b"old")).unwrap();
        let err = write_file(&p, |w| {
            w.write_all(b"partial")?;
            Err(io::Error::other("disk full"))
        })
        .unwrap_err();
        assert_eq!(err.op, "cannot write");
        assert_eq!(std::fs::read(&p).unwrap(), b"old");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn missing_directory_is_an_error_naming_the_temp_path() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("nope/f");
        let err = write_file(&p, |w| w.write_all(b"x")).unwrap_err();
        assert_eq!(err.op, "cannot create");
        assert!(err.path.starts_with(dir.path().join("nope")));
    }
}
