//! Pure parsing of what `read(2)` returns from a fanotify group in FID mode
//! (`FAN_REPORT_DFID_NAME`): event metadata followed by info records. No syscalls, so every
//! odd buffer can be tested without root.
//!
//! Offsets and sizes come from libc's definitions of the kernel structs (`offset_of!`), read
//! field by field from the unaligned byte buffer: the layout is defined once, in libc.

use libc::{fanotify_event_info_fid, fanotify_event_info_header, fanotify_event_metadata};
use std::mem::{offset_of, size_of};

const META_LEN: usize = size_of::<fanotify_event_metadata>();
const META_EVENT_LEN: usize = offset_of!(fanotify_event_metadata, event_len);
const META_VERS: usize = offset_of!(fanotify_event_metadata, vers);
const META_METADATA_LEN: usize = offset_of!(fanotify_event_metadata, metadata_len);
const META_MASK: usize = offset_of!(fanotify_event_metadata, mask);
const META_PID: usize = offset_of!(fanotify_event_metadata, pid);

const HDR_LEN: usize = size_of::<fanotify_event_info_header>();
const HDR_TYPE: usize = offset_of!(fanotify_event_info_header, info_type);
const HDR_RECORD_LEN: usize = offset_of!(fanotify_event_info_header, len);

const FID_FSID: usize = offset_of!(fanotify_event_info_fid, fsid);
/// Where the `struct file_handle` starts inside a fid record.
const FID_HANDLE: usize = offset_of!(fanotify_event_info_fid, handle);
const FH_BYTES: usize = offset_of!(libc::file_handle, handle_bytes);
const FH_TYPE: usize = offset_of!(libc::file_handle, handle_type);
const FH_DATA: usize = offset_of!(libc::file_handle, f_handle);

/// A directory file handle and an entry name in it, borrowed from the read buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DirName<'a> {
    /// `f_fsid` of the filesystem (as `statfs` reports it).
    pub fsid: [i32; 2],
    /// `file_handle.handle_type`.
    pub handle_type: i32,
    /// `file_handle.f_handle`.
    pub handle: &'a [u8],
    /// The entry name without its NUL; `.` when the object is the directory itself.
    pub name: &'a [u8],
}

/// One event: its metadata and the records this sensor understands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawEvent<'a> {
    /// `FAN_*` bits.
    pub mask: u64,
    /// The (thread group) id of the process that caused it; 0 for overflow.
    pub pid: i32,
    /// `FAN_EVENT_INFO_TYPE_DFID_NAME` (or `DFID`, with an empty name).
    pub dir: Option<DirName<'a>>,
    /// `FAN_EVENT_INFO_TYPE_OLD_DFID_NAME` (rename source).
    pub old: Option<DirName<'a>>,
    /// `FAN_EVENT_INFO_TYPE_NEW_DFID_NAME` (rename target).
    pub new: Option<DirName<'a>>,
    /// Records that were cut short or inconsistent, skipped.
    pub bad_records: u32,
}

/// Why parsing stopped before the end of the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Malformed {
    /// `vers` is not `FANOTIFY_METADATA_VERSION`: the layout is unknown, the rest is skipped.
    Version(u8),
    /// An event's lengths do not fit the buffer.
    Truncated,
}

/// Iterates over the events in `buf`. After an `Err` the iterator ends.
pub(crate) fn events(buf: &[u8]) -> Events<'_> {
    Events { buf, done: false }
}

/// See [`events`].
#[derive(Debug)]
pub(crate) struct Events<'a> {
    buf: &'a [u8],
    done: bool,
}

impl<'a> Iterator for Events<'a> {
    type Item = Result<RawEvent<'a>, Malformed>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.buf.is_empty() {
            return None;
        }
        let r = next_event(self.buf);
        match r {
            Ok((ev, len)) => {
                self.buf = &self.buf[len..];
                Some(Ok(ev))
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// Parses the event at the start of `buf`; returns it and its length.
fn next_event(buf: &[u8]) -> Result<(RawEvent<'_>, usize), Malformed> {
    let vers = u8_at(buf, META_VERS).ok_or(Malformed::Truncated)?;
    if vers != libc::FANOTIFY_METADATA_VERSION {
        return Err(Malformed::Version(vers));
    }
    let event_len = u32_at(buf, META_EVENT_LEN).ok_or(Malformed::Truncated)? as usize;
    let meta_len = u16_at(buf, META_METADATA_LEN).ok_or(Malformed::Truncated)? as usize;
    if event_len > buf.len() || meta_len < META_LEN || meta_len > event_len {
        return Err(Malformed::Truncated);
    }
    let mut ev = RawEvent {
        mask: u64_at(buf, META_MASK).ok_or(Malformed::Truncated)?,
        pid: i32_at(buf, META_PID).ok_or(Malformed::Truncated)?,
        dir: None,
        old: None,
        new: None,
        bad_records: 0,
    };
    let mut rest = &buf[meta_len..event_len];
    while !rest.is_empty() {
        let (Some(kind), Some(len)) = (u8_at(rest, HDR_TYPE), u16_at(rest, HDR_RECORD_LEN)) else {
            ev.bad_records += 1;
            break;
        };
        let len = len as usize;
        if len < HDR_LEN || len > rest.len() {
            ev.bad_records += 1;
            break;
        }
        let record = &rest[..len];
        rest = &rest[len..];
        let slot = match kind {
            libc::FAN_EVENT_INFO_TYPE_DFID_NAME | libc::FAN_EVENT_INFO_TYPE_DFID => &mut ev.dir,
            libc::FAN_EVENT_INFO_TYPE_OLD_DFID_NAME => &mut ev.old,
            libc::FAN_EVENT_INFO_TYPE_NEW_DFID_NAME => &mut ev.new,
            // FID (object handle), PIDFD, ERROR, future types: not used here.
            _ => continue,
        };
        let with_name = kind != libc::FAN_EVENT_INFO_TYPE_DFID;
        match dir_name(record, with_name) {
            Some(d) => *slot = Some(d),
            None => ev.bad_records += 1,
        }
    }
    Ok((ev, event_len))
}

/// Parses one fid record: header, fsid, `struct file_handle`, then (if `with_name`) a
/// NUL-terminated name padded to the record's length.
fn dir_name(record: &[u8], with_name: bool) -> Option<DirName<'_>> {
    let fsid = [i32_at(record, FID_FSID)?, i32_at(record, FID_FSID + 4)?];
    let fh = record.get(FID_HANDLE..)?;
    let bytes = u32_at(fh, FH_BYTES)? as usize;
    let handle_type = i32_at(fh, FH_TYPE)?;
    if bytes > libc::MAX_HANDLE_SZ as usize {
        return None;
    }
    let handle = fh.get(FH_DATA..FH_DATA + bytes)?;
    let name = if with_name {
        let tail = fh.get(FH_DATA + bytes..)?;
        let nul = tail.iter().position(|&b| b == 0)?;
        &tail[..nul]
    } else {
        &[][..]
    };
    Some(DirName {
        fsid,
        handle_type,
        handle,
        name,
    })
}

fn u8_at(b: &[u8], off: usize) -> Option<u8> {
    b.get(off).copied()
}

fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(off..off + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(off..off + 4)?.try_into().ok()?))
}

fn i32_at(b: &[u8], off: usize) -> Option<i32> {
    Some(i32::from_ne_bytes(b.get(off..off + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(b.get(off..off + 8)?.try_into().ok()?))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Builds a fid record the way the kernel does (name NUL-terminated, padded to 4).
    fn record(kind: u8, fsid: [i32; 2], handle: &[u8], name: Option<&[u8]>) -> Vec<u8> {
        let mut r = vec![kind, 0, 0, 0];
        r.extend_from_slice(&fsid[0].to_ne_bytes());
        r.extend_from_slice(&fsid[1].to_ne_bytes());
        r.extend_from_slice(&(handle.len() as u32).to_ne_bytes());
        r.extend_from_slice(&1i32.to_ne_bytes());
        r.extend_from_slice(handle);
        if let Some(n) = name {
            r.extend_from_slice(n);
            r.push(0);
        }
        while r.len() % 4 != 0 {
            r.push(0);
        }
        let len = r.len() as u16;
        r[2..4].copy_from_slice(&len.to_ne_bytes());
        r
    }

    fn event(mask: u64, pid: i32, records: &[Vec<u8>]) -> Vec<u8> {
        let body: usize = records.iter().map(Vec::len).sum();
        let mut e = Vec::new();
        e.extend_from_slice(&((META_LEN + body) as u32).to_ne_bytes());
        e.push(libc::FANOTIFY_METADATA_VERSION);
        e.push(0);
        e.extend_from_slice(&(META_LEN as u16).to_ne_bytes());
        e.extend_from_slice(&mask.to_ne_bytes());
        e.extend_from_slice(&libc::FAN_NOFD.to_ne_bytes());
        e.extend_from_slice(&pid.to_ne_bytes());
        assert_eq!(e.len(), META_LEN);
        for r in records {
            e.extend_from_slice(r);
        }
        e
    }

    #[test]
    fn layout_is_the_kernel_abi() {
        assert_eq!(META_LEN, 24);
        assert_eq!((META_MASK, META_PID), (8, 20));
        assert_eq!((HDR_LEN, FID_FSID, FID_HANDLE), (4, 4, 12));
        assert_eq!((FH_BYTES, FH_TYPE, FH_DATA), (0, 4, 8));
    }

    #[test]
    fn create_with_name() {
        let buf = event(
            libc::FAN_CREATE,
            42,
            &[record(
                libc::FAN_EVENT_INFO_TYPE_DFID_NAME,
                [7, 8],
                &[1, 2, 3, 4, 5, 6, 7, 8],
                Some(b"file.txt"),
            )],
        );
        let all: Vec<_> = events(&buf).collect();
        assert_eq!(all.len(), 1);
        let ev = all[0].as_ref().unwrap();
        assert_eq!((ev.mask, ev.pid, ev.bad_records), (libc::FAN_CREATE, 42, 0));
        let d = ev.dir.unwrap();
        assert_eq!(d.fsid, [7, 8]);
        assert_eq!(d.handle_type, 1);
        assert_eq!(d.handle, &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(d.name, b"file.txt");
        assert!(ev.old.is_none() && ev.new.is_none());
    }

    #[test]
    fn rename_has_old_and_new() {
        let buf = event(
            libc::FAN_RENAME,
            1,
            &[
                record(
                    libc::FAN_EVENT_INFO_TYPE_OLD_DFID_NAME,
                    [1, 1],
                    &[9; 12],
                    Some(b"a"),
                ),
                record(
                    libc::FAN_EVENT_INFO_TYPE_NEW_DFID_NAME,
                    [1, 1],
                    &[8; 12],
                    Some(b"bb"),
                ),
            ],
        );
        let ev = events(&buf).next().unwrap().unwrap();
        assert_eq!(ev.old.unwrap().name, b"a");
        assert_eq!(ev.old.unwrap().handle, &[9; 12]);
        assert_eq!(ev.new.unwrap().name, b"bb");
        assert_eq!(ev.new.unwrap().handle, &[8; 12]);
        assert!(ev.dir.is_none());
    }

    #[test]
    fn unknown_record_is_skipped_by_len() {
        let mut unknown = vec![
            99u8, 0, 12, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        ];
        unknown[2..4].copy_from_slice(&12u16.to_ne_bytes());
        let buf = event(
            libc::FAN_DELETE | libc::FAN_ONDIR,
            5,
            &[
                unknown,
                record(
                    libc::FAN_EVENT_INFO_TYPE_DFID_NAME,
                    [3, 4],
                    &[1; 8],
                    Some(b"d"),
                ),
            ],
        );
        let ev = events(&buf).next().unwrap().unwrap();
        assert_eq!(ev.bad_records, 0);
        assert_eq!(ev.dir.unwrap().name, b"d");
    }

    #[test]
    fn truncated_record_is_counted_and_the_next_event_still_parsed() {
        let good = record(
            libc::FAN_EVENT_INFO_TYPE_DFID_NAME,
            [3, 4],
            &[1; 8],
            Some(b"x"),
        );
        // A record claiming more bytes than the event has.
        let mut long = good.clone();
        long[2..4].copy_from_slice(&200u16.to_ne_bytes());
        // A record whose handle runs past its end.
        let mut short_handle = good.clone();
        short_handle[12..16].copy_from_slice(&64u32.to_ne_bytes());
        // A name without NUL.
        let no_nul = {
            let mut r = vec![libc::FAN_EVENT_INFO_TYPE_DFID_NAME, 0, 0, 0];
            r.extend_from_slice(&[0; 8]);
            r.extend_from_slice(&4u32.to_ne_bytes());
            r.extend_from_slice(&1i32.to_ne_bytes());
            r.extend_from_slice(b"abcdxyz!");
            let len = r.len() as u16;
            r[2..4].copy_from_slice(&len.to_ne_bytes());
            r
        };
        let mut buf = event(libc::FAN_CREATE, 1, &[short_handle]);
        buf.extend(event(libc::FAN_CREATE, 2, &[no_nul]));
        buf.extend(event(libc::FAN_CREATE, 3, &[long]));
        buf.extend(event(libc::FAN_ATTRIB, 4, &[good]));
        let all: Vec<_> = events(&buf).map(Result::unwrap).collect();
        assert_eq!(all.len(), 4);
        for ev in &all[..3] {
            assert_eq!(ev.bad_records, 1, "{ev:?}");
            assert!(ev.dir.is_none());
        }
        assert_eq!(all[3].bad_records, 0);
        assert_eq!(all[3].dir.unwrap().name, b"x");
    }

    #[test]
    fn truncated_event_ends_parsing() {
        let good = event(
            libc::FAN_CREATE,
            1,
            &[record(
                libc::FAN_EVENT_INFO_TYPE_DFID_NAME,
                [0, 1],
                &[2; 8],
                Some(b"n"),
            )],
        );
        let mut buf = good.clone();
        buf.extend_from_slice(&good[..good.len() - 3]);
        let all: Vec<_> = events(&buf).collect();
        assert_eq!(all.len(), 2);
        assert!(all[0].is_ok());
        assert_eq!(all[1], Err(Malformed::Truncated));
        // Shorter than the metadata, and a zero event_len, too.
        assert_eq!(events(&good[..10]).next(), Some(Err(Malformed::Truncated)));
        let mut zero = good.clone();
        zero[..4].copy_from_slice(&0u32.to_ne_bytes());
        assert_eq!(events(&zero).next(), Some(Err(Malformed::Truncated)));
    }

    #[test]
    fn overflow_has_no_records() {
        let buf = event(libc::FAN_Q_OVERFLOW, 0, &[]);
        let ev = events(&buf).next().unwrap().unwrap();
        assert_eq!(ev.mask, libc::FAN_Q_OVERFLOW);
        assert_eq!(ev.pid, 0);
        assert!(ev.dir.is_none() && ev.old.is_none() && ev.new.is_none());
        assert_eq!(ev.bad_records, 0);
    }

    #[test]
    fn wrong_version_stops() {
        let mut buf = event(libc::FAN_Q_OVERFLOW, 0, &[]);
        buf[META_VERS] = 2;
        assert_eq!(events(&buf).next(), Some(Err(Malformed::Version(2))));
    }

    #[test]
    fn dfid_without_name_and_dot() {
        let buf = event(
            libc::FAN_ATTRIB | libc::FAN_ONDIR,
            1,
            &[record(
                libc::FAN_EVENT_INFO_TYPE_DFID_NAME,
                [0, 1],
                &[2; 8],
                Some(b"."),
            )],
        );
        assert_eq!(
            events(&buf).next().unwrap().unwrap().dir.unwrap().name,
            b"."
        );
        let buf = event(
            libc::FAN_ATTRIB,
            1,
            &[record(
                libc::FAN_EVENT_INFO_TYPE_DFID,
                [0, 1],
                &[2; 8],
                None,
            )],
        );
        let d = events(&buf).next().unwrap().unwrap().dir.unwrap();
        assert_eq!((d.name, d.handle), (&b""[..], &[2u8; 8][..]));
    }
}
