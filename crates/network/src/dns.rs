//! DNS answers: the names a response gives addresses.
//!
//! Hand-written rather than a crate because the kernel hands over at most the first 512
//! bytes of a UDP payload: a response may end inside a record, and the complete records
//! before the cut are still wanted. Never panics on any input.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Longest name on the wire, length bytes and root included (RFC 1035).
const MAX_NAME: usize = 255;
/// Compression pointers followed per name; real names need a few.
const MAX_HOPS: usize = 32;
/// CNAMEs followed from the question; resolvers stop well before.
const MAX_CHAIN: usize = 16;

const TYPE_A: u16 = 1;
const TYPE_CNAME: u16 = 5;
const TYPE_AAAA: u16 = 28;
const CLASS_IN: u16 = 1;

/// What a DNS response says about its question.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Answer {
    /// Query id.
    pub id: u16,
    /// Response code (0 no error, 3 NXDOMAIN, …).
    pub rcode: u8,
    /// The name asked for: lowercase, no trailing dot.
    pub question: String,
    /// A and AAAA records for the question or a name its CNAME chain reaches, with TTLs.
    pub addresses: Vec<(IpAddr, u32)>,
    /// The CNAME chain from the question, in order.
    pub cnames: Vec<String>,
    /// The answer section is incomplete: the buffer ends inside it, or the server set TC.
    pub truncated: bool,
}

/// Why a buffer is not a usable DNS response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    /// The buffer ends inside the header or the question.
    #[error("DNS message of {len} bytes ends before its question does")]
    Short {
        /// Bytes given.
        len: usize,
    },
    /// The QR bit is clear: a query, not a response.
    #[error("DNS message is a query, not a response")]
    NotAResponse,
    /// The question count is 0.
    #[error("DNS response has no question")]
    NoQuestion,
    /// The question count is above 1 (no server sends that).
    #[error("DNS response has {count} questions")]
    ManyQuestions {
        /// The count in the header.
        count: u16,
    },
    /// A name is malformed: a pointer loop, a reserved label type, or over 255 bytes.
    #[error("DNS message has a bad name at offset {offset}")]
    BadName {
        /// Where the name starts.
        offset: usize,
    },
}

/// Why a name could not be read.
enum NameError {
    /// The buffer ends first (or a pointer leads past its end).
    Cut,
    /// Malformed.
    Bad,
}

fn be16(buf: &[u8], at: usize) -> Option<u16> {
    let b = buf.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([b[0], b[1]]))
}

fn be32(buf: &[u8], at: usize) -> Option<u32> {
    let b = buf.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// One label, lowercased, in presentation form (`.` and `\` escaped, other bytes outside
/// printable ASCII as `\DDD`), so no label can forge a dot.
fn push_label(out: &mut String, label: &[u8]) {
    if !out.is_empty() {
        out.push('.');
    }
    for &b in label {
        match b.to_ascii_lowercase() {
            b'.' => out.push_str("\\."),
            b'\\' => out.push_str("\\\\"),
            c @ 0x21..=0x7e => out.push(char::from(c)),
            c => out.push_str(&format!("\\{c:03}")),
        }
    }
}

/// Reads the name at `start`: the name and the offset just after it where it starts (after
/// its first pointer, if any).
fn read_name(buf: &[u8], start: usize) -> Result<(String, usize), NameError> {
    let mut out = String::new();
    let mut pos = start;
    let mut after = None;
    let mut hops = 0;
    let mut wire = 1;
    loop {
        let len = *buf.get(pos).ok_or(NameError::Cut)?;
        match len & 0xc0 {
            0x00 if len == 0 => return Ok((out, after.unwrap_or(pos + 1))),
            0x00 => {
                let len = usize::from(len);
                wire += len + 1;
                if wire > MAX_NAME {
                    return Err(NameError::Bad);
                }
                let label = buf.get(pos + 1..pos + 1 + len).ok_or(NameError::Cut)?;
                push_label(&mut out, label);
                pos += 1 + len;
            }
            0xc0 => {
                let lo = *buf.get(pos + 1).ok_or(NameError::Cut)?;
                after.get_or_insert(pos + 2);
                hops += 1;
                if hops > MAX_HOPS {
                    return Err(NameError::Bad);
                }
                pos = usize::from(len & 0x3f) << 8 | usize::from(lo);
            }
            _ => return Err(NameError::Bad),
        }
    }
}

/// One answer record that may matter.
enum Record {
    Addr(String, IpAddr, u32),
    Cname(String, String),
}

/// A record read: what it holds (`None` for a type that does not matter) and where the next
/// one starts.
type Read = (Option<Record>, usize);

/// Reads the record at `pos`; `Ok(None)` when the buffer ends inside it.
fn read_record(buf: &[u8], pos: usize) -> Result<Option<Read>, DnsError> {
    let (owner, at) = match read_name(buf, pos) {
        Ok(n) => n,
        Err(NameError::Cut) => return Ok(None),
        Err(NameError::Bad) => return Err(DnsError::BadName { offset: pos }),
    };
    let fixed = (be16(buf, at), be16(buf, at + 2), be32(buf, at + 4));
    let (Some(rtype), Some(class), Some(ttl)) = fixed else {
        return Ok(None);
    };
    let Some(rdlen) = be16(buf, at + 8).map(usize::from) else {
        return Ok(None);
    };
    let start = at + 10;
    let Some(rdata) = buf.get(start..start + rdlen) else {
        return Ok(None);
    };
    let next = start + rdlen;
    if class != CLASS_IN {
        return Ok(Some((None, next)));
    }
    let record = match (rtype, rdata.len()) {
        (TYPE_A, 4) => {
            let a = Ipv4Addr::new(rdata[0], rdata[1], rdata[2], rdata[3]);
            Some(Record::Addr(owner, IpAddr::V4(a), ttl))
        }
        (TYPE_AAAA, 16) => {
            let mut o = [0; 16];
            o.copy_from_slice(rdata);
            Some(Record::Addr(owner, IpAddr::V6(Ipv6Addr::from(o)), ttl))
        }
        (TYPE_CNAME, _) => match read_name(buf, start) {
            Ok((target, _)) => Some(Record::Cname(owner, target)),
            Err(NameError::Cut) => return Ok(None),
            Err(NameError::Bad) => return Err(DnsError::BadName { offset: start }),
        },
        _ => None,
    };
    Ok(Some((record, next)))
}

/// Parses a DNS response with one question: the addresses its answer section gives the
/// question, directly or through CNAMEs. A buffer cut inside the answer section gives the
/// complete records before the cut, with `truncated` set.
pub fn parse_response(buf: &[u8]) -> Result<Answer, DnsError> {
    let short = DnsError::Short { len: buf.len() };
    let Some(header) = buf.get(..12) else {
        return Err(short);
    };
    let id = u16::from_be_bytes([header[0], header[1]]);
    let (flags, low) = (header[2], header[3]);
    let qd = u16::from_be_bytes([header[4], header[5]]);
    let an = u16::from_be_bytes([header[6], header[7]]);
    if flags & 0x80 == 0 {
        return Err(DnsError::NotAResponse);
    }
    match qd {
        0 => return Err(DnsError::NoQuestion),
        1 => {}
        count => return Err(DnsError::ManyQuestions { count }),
    }
    let (question, at) = match read_name(buf, 12) {
        Ok(n) => n,
        Err(NameError::Cut) => return Err(short),
        Err(NameError::Bad) => return Err(DnsError::BadName { offset: 12 }),
    };
    // QTYPE and QCLASS.
    if buf.len() < at + 4 {
        return Err(short);
    }
    let mut answer = Answer {
        id,
        rcode: low & 0x0f,
        question,
        truncated: flags & 0x02 != 0,
        ..Answer::default()
    };
    let mut records = Vec::new();
    let mut pos = at + 4;
    for _ in 0..an {
        match read_record(buf, pos)? {
            Some((r, next)) => {
                records.extend(r);
                pos = next;
            }
            None => {
                answer.truncated = true;
                break;
            }
        }
    }
    let mut names = HashSet::from([answer.question.clone()]);
    while answer.cnames.len() < MAX_CHAIN {
        let step = records.iter().find_map(|r| match r {
            Record::Cname(owner, target) if names.contains(owner) && !names.contains(target) => {
                Some(target)
            }
            _ => None,
        });
        let Some(target) = step else { break };
        names.insert(target.clone());
        answer.cnames.push(target.clone());
    }
    answer.addresses = records
        .into_iter()
        .filter_map(|r| match r {
            Record::Addr(owner, ip, ttl) if names.contains(&owner) => Some((ip, ttl)),
            _ => None,
        })
        .collect();
    Ok(answer)
}

#[cfg(test)]
mod tests;
