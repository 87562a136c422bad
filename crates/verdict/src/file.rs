//! What custos knows about a file's content: its cache key, SHA-256 and type.

use serde::Serialize;
use sha2::{Digest, Sha256};
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;

/// Identity of a file's content for caching: any write changes size, mtime or ctime,
/// and a replaced file has a new inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct FileKey {
    /// Device.
    pub dev: u64,
    /// Inode.
    pub ino: u64,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, ns since the epoch.
    pub mtime_ns: i128,
    /// Status change time, ns since the epoch.
    pub ctime_ns: i128,
}

impl FileKey {
    /// From `stat`/`fstat` metadata.
    pub fn from_metadata(m: &std::fs::Metadata) -> FileKey {
        Self::from_parts(
            m.dev(),
            m.ino(),
            m.size(),
            (m.mtime(), m.mtime_nsec()),
            (m.ctime(), m.ctime_nsec()),
        )
    }

    /// From a raw `struct stat` (what `fstat` on an fd the caller does not own returns).
    pub fn from_stat(st: &libc::stat) -> FileKey {
        Self::from_parts(
            st.st_dev,
            st.st_ino,
            st.st_size as u64,
            (st.st_mtime, st.st_mtime_nsec),
            (st.st_ctime, st.st_ctime_nsec),
        )
    }

    fn from_parts(dev: u64, ino: u64, size: u64, mtime: (i64, i64), ctime: (i64, i64)) -> FileKey {
        let ns = |(s, n): (i64, i64)| i128::from(s) * 1_000_000_000 + i128::from(n);
        FileKey {
            dev,
            ino,
            size,
            mtime_ns: ns(mtime),
            ctime_ns: ns(ctime),
        }
    }
}

/// Streams `r` through SHA-256 (SHA-NI when the CPU has it) and returns lower-case hex.
pub fn sha256_hex(r: &mut dyn Read) -> io::Result<String> {
    sha256_hex_while(r, &mut || true)?.ok_or_else(|| io::Error::other("hash abandoned"))
}

/// Bytes hashed between two calls of the `keep_going` check of [`sha256_hex_while`].
pub const CHECK_EVERY: u64 = 8 << 20;

/// Which digests besides SHA-256 a read must produce (known-bad feeds list MD5 and SHA-1 too).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Want {
    /// MD5.
    pub md5: bool,
    /// SHA-1.
    pub sha1: bool,
}

/// The digests of one read of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDigests {
    /// SHA-256, lowercase hex.
    pub sha256: String,
    /// MD5, when wanted.
    pub md5: Option<[u8; 16]>,
    /// SHA-1, when wanted.
    pub sha1: Option<[u8; 20]>,
}

impl FileDigests {
    /// The SHA-256 as bytes.
    pub fn sha256_bytes(&self) -> Option<[u8; 32]> {
        let mut b = [0u8; 32];
        hex::decode_to_slice(&self.sha256, &mut b).ok()?;
        Some(b)
    }
}

/// Like [`sha256_hex_while`], computing MD5 and SHA-1 in the same read when `want` says so.
pub fn digests_while(
    r: &mut dyn Read,
    want: Want,
    keep_going: &mut dyn FnMut() -> bool,
) -> io::Result<Option<FileDigests>> {
    Ok(read_while(r, want, None, keep_going)?.map(|(d, _)| d))
}

/// [`digests_while`] that also keeps the bytes read, up to `keep` of them (for a source that
/// scans content). The content is `None` when the file turned out longer than `keep`.
pub fn read_while(
    r: &mut dyn Read,
    want: Want,
    keep: Option<usize>,
    keep_going: &mut dyn FnMut() -> bool,
) -> io::Result<Option<(FileDigests, Option<Vec<u8>>)>> {
    let mut md5 = want.md5.then(md5::Md5::new);
    let mut sha1 = want.sha1.then(sha1::Sha1::new);
    let mut content = keep.map(|_| Vec::new());
    let cap = keep.unwrap_or(0);
    let sha256 = hash_while(
        r,
        &mut |chunk| {
            if let Some(h) = md5.as_mut() {
                h.update(chunk);
            }
            if let Some(h) = sha1.as_mut() {
                h.update(chunk);
            }
            if let Some(c) = content.as_mut() {
                if c.len() + chunk.len() <= cap {
                    c.extend_from_slice(chunk);
                } else {
                    content = None;
                }
            }
        },
        keep_going,
    )?;
    Ok(sha256.map(|sha256| {
        let d = FileDigests {
            sha256,
            md5: md5.map(|h| h.finalize().into()),
            sha1: sha1.map(|h| h.finalize().into()),
        };
        (d, content)
    }))
}

/// Like [`sha256_hex`], but asks `keep_going` every [`CHECK_EVERY`] bytes and returns `None`
/// as soon as it says no (nobody needs the result any more).
pub fn sha256_hex_while(
    r: &mut dyn Read,
    keep_going: &mut dyn FnMut() -> bool,
) -> io::Result<Option<String>> {
    hash_while(r, &mut |_| {}, keep_going)
}

/// SHA-256 of `r`, also feeding every chunk to `also`.
fn hash_while(
    r: &mut dyn Read,
    also: &mut dyn FnMut(&[u8]),
    keep_going: &mut dyn FnMut() -> bool,
) -> io::Result<Option<String>> {
    thread_local! {
        // One read buffer per hashing thread, not one allocation per file.
        static BUF: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0u8; 256 * 1024]);
    }
    BUF.with_borrow_mut(|buf| {
        let mut h = Sha256::new();
        let mut since_check = 0u64;
        loop {
            match r.read(buf) {
                Ok(0) => break,
                Ok(n) => {
                    h.update(&buf[..n]);
                    also(&buf[..n]);
                    since_check += n as u64;
                    if since_check >= CHECK_EVERY {
                        since_check = 0;
                        if !keep_going() {
                            return Ok(None);
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(Some(hex::encode(h.finalize())))
    })
}

/// Kind of executable content, from its first bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum FileType {
    /// An ELF object.
    Elf,
    /// A `#!` script, with its interpreter line.
    Script {
        /// The text after `#!`, trimmed.
        interpreter: String,
    },
    /// Anything else (the kernel will refuse to exec it unless a binfmt handler exists).
    Other,
}

impl FileType {
    /// Classifies a file from its first bytes (at least 4; up to 256 for the `#!` line).
    pub fn sniff(head: &[u8]) -> FileType {
        if head.starts_with(b"\x7fELF") {
            FileType::Elf
        } else if let Some(rest) = head.strip_prefix(b"#!") {
            let line = rest.split(|&b| b == b'\n').next().unwrap_or(rest);
            FileType::Script {
                interpreter: String::from_utf8_lossy(line).trim().to_owned(),
            }
        } else {
            FileType::Other
        }
    }
}

/// Bytes of a file's start that [`is_image`] looks at (an ELF64 header).
pub const HEAD_LEN: usize = 64;

/// Whether a file that starts with `head` is an ELF image a loader maps as code: an executable
/// (`ET_EXEC`) or a shared object or position-independent executable (`ET_DYN`). Relocatable
/// objects (`.o`, kernel modules), core dumps, scripts and data are not.
pub fn is_image(head: &[u8]) -> bool {
    const ET_EXEC: u16 = 2;
    const ET_DYN: u16 = 3;
    let (Some(magic), Some(&data), Some(ty)) = (head.get(..4), head.get(5), head.get(16..18))
    else {
        return false;
    };
    let ty = [ty[0], ty[1]];
    let e_type = match data {
        1 => u16::from_le_bytes(ty),
        2 => u16::from_be_bytes(ty),
        _ => return false,
    };
    magic == b"\x7fELF" && matches!(e_type, ET_EXEC | ET_DYN)
}

/// Reads up to [`HEAD_LEN`] bytes from the start of `r` into `buf`; returns how many (fewer at
/// the end of a short file).
pub fn read_head(r: &mut dyn Read, buf: &mut [u8; HEAD_LEN]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_known_vectors() {
        assert_eq!(
            sha256_hex(&mut &b""[..]).expect("hash"),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            sha256_hex(&mut &b"abc"[..]).expect("hash"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        // Larger than one buffer.
        let big = vec![b'a'; 1_000_000];
        assert_eq!(
            sha256_hex(&mut &big[..]).expect("hash"),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"
        );
    }

    #[test]
    fn key_changes_on_write() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("f");
        std::fs::write(&p, b"one").expect("write");
        let k1 = FileKey::from_metadata(&std::fs::metadata(&p).expect("stat"));
        std::thread::sleep(std::time::Duration::from_millis(5));
        std::fs::write(&p, b"two").expect("write");
        let k2 = FileKey::from_metadata(&std::fs::metadata(&p).expect("stat"));
        assert_eq!((k1.dev, k1.ino, k1.size), (k2.dev, k2.ino, k2.size));
        assert_ne!(
            k1, k2,
            "same size rewrite must change the key via mtime/ctime"
        );
    }

    #[test]
    fn sniff_types() {
        assert_eq!(FileType::sniff(b"\x7fELF\x02\x01"), FileType::Elf);
        assert_eq!(
            FileType::sniff(b"#!/bin/sh -e\necho"),
            FileType::Script {
                interpreter: "/bin/sh -e".into()
            }
        );
        assert_eq!(FileType::sniff(b"MZ"), FileType::Other);
    }

    /// An ELF header's first 18 bytes: class, data (1 LSB, 2 MSB), and `e_type`.
    fn elf(data: u8, e_type: u16) -> Vec<u8> {
        let mut h = b"\x7fELF\x02".to_vec();
        h.push(data);
        h.extend([1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        h.extend(match data {
            2 => e_type.to_be_bytes(),
            _ => e_type.to_le_bytes(),
        });
        h.extend([0x3e, 0]);
        h
    }

    #[test]
    fn images_are_elf_executables_and_shared_objects() {
        for data in [1, 2] {
            assert!(is_image(&elf(data, 2)), "ET_EXEC");
            assert!(is_image(&elf(data, 3)), "ET_DYN: .so and PIE");
            assert!(!is_image(&elf(data, 1)), "ET_REL: .o, .ko");
            assert!(!is_image(&elf(data, 4)), "ET_CORE");
            assert!(!is_image(&elf(data, 0)));
        }
        assert!(!is_image(&elf(0, 3)), "no byte order");
        assert!(!is_image(&elf(3, 3)), "unknown byte order");
        // Cut short, scripts, data, empty.
        assert!(!is_image(&elf(1, 3)[..17]));
        assert!(!is_image(b"#!/bin/sh\nexec /lib/x.so\n"));
        assert!(!is_image(b"\x7fELG\x02\x01\x01\0\0\0\0\0\0\0\0\0\x03\0"));
        assert!(!is_image(b""));
        // The real thing: this test binary is a PIE or an executable.
        let me = std::fs::read(std::env::current_exe().expect("exe")).expect("read");
        assert!(is_image(&me[..HEAD_LEN]));
    }

    #[test]
    fn head_is_read_across_short_reads() {
        struct Dribble(Vec<u8>);
        impl Read for Dribble {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let n = buf.len().min(self.0.len()).min(5);
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0.drain(..n);
                Ok(n)
            }
        }
        let mut buf = [0u8; HEAD_LEN];
        let n = read_head(&mut Dribble(elf(1, 3)), &mut buf).expect("read");
        assert_eq!(n, 20);
        assert!(is_image(&buf[..n]));
        let n = read_head(&mut Dribble(vec![7; 200]), &mut buf).expect("read");
        assert_eq!(n, HEAD_LEN);
    }

    #[test]
    fn digests_in_one_read() {
        let d = digests_while(
            &mut &b"abc"[..],
            Want {
                md5: true,
                sha1: true,
            },
            &mut || true,
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            d.sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            hex::encode(d.md5.unwrap()),
            "900150983cd24fb0d6963f7d28e17f72"
        );
        assert_eq!(
            hex::encode(d.sha1.unwrap()),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        let plain = digests_while(&mut &b"abc"[..], Want::default(), &mut || true)
            .unwrap()
            .unwrap();
        assert_eq!((plain.md5, plain.sha1), (None, None));
        assert_eq!(plain.sha256_bytes().unwrap()[0], 0xba);
    }
}
