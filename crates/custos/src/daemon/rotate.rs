//! A file output that rotates by size: `FILE` → `FILE.1` → … → `FILE.KEEP`, then deleted.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// An append-only file (0600) that starts a new one when it reaches `max` bytes.
pub struct Rotating {
    path: PathBuf,
    file: File,
    size: u64,
    /// 0: never rotate.
    max: u64,
    keep: u32,
}

fn open(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

fn numbered(path: &Path, n: u32) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(format!(".{n}"));
    PathBuf::from(p)
}

impl Rotating {
    /// Opens (appends to) `path`; its current size counts toward the first rotation.
    pub fn open(path: &Path, max: u64, keep: u32) -> io::Result<Rotating> {
        let file = open(path)?;
        let size = file.metadata()?.len();
        Ok(Rotating {
            path: path.to_owned(),
            file,
            size,
            max,
            keep: keep.max(1),
        })
    }

    /// Rotations happen between writes, so a line is never split across files.
    fn rotate(&mut self) -> io::Result<()> {
        self.file.flush()?;
        let _ = std::fs::remove_file(numbered(&self.path, self.keep));
        for n in (1..self.keep).rev() {
            let from = numbered(&self.path, n);
            if from.exists() {
                std::fs::rename(&from, numbered(&self.path, n + 1))?;
            }
        }
        std::fs::rename(&self.path, numbered(&self.path, 1))?;
        self.file = open(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

impl Write for Rotating {
    /// Callers write whole lines (`write_all` of one buffered batch).
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.max > 0 && self.size > 0 && self.size + buf.len() as u64 > self.max {
            self.rotate()?;
        }
        let n = self.file.write(buf)?;
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn rotates_at_the_bound_and_keeps_n() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("events.json");
        std::fs::write(&p, "old\n").unwrap();
        let mut r = Rotating::open(&p, 20, 2).unwrap();
        for i in 0..10 {
            r.write_all(format!("line-{i:04}\n").as_bytes()).unwrap();
        }
        r.flush().unwrap();
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        // 10 bytes a line, 20 a file; the 4 old bytes share the first file with line 0:
        // [old 0] [1 2] [3 4] [5 6] [7 8] [9], of which the last three are kept.
        assert_eq!(read(&p), "line-0009\n");
        assert_eq!(read(&numbered(&p, 1)), "line-0007\nline-0008\n");
        assert_eq!(read(&numbered(&p, 2)), "line-0005\nline-0006\n");
        assert!(!numbered(&p, 3).exists(), "only `keep` rotated files");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn zero_never_rotates() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("e");
        let mut r = Rotating::open(&p, 0, 5).unwrap();
        for _ in 0..100 {
            r.write_all(b"0123456789\n").unwrap();
        }
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 1100);
        assert!(!numbered(&p, 1).exists());
    }
}
