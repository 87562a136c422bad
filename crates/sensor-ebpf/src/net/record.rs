//! Network records from the ring buffer, decoded.

use super::{RawDnsEvent, RawNetEvent};
use crate::record::raw;
use crate::RecordError;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

// SAFETY: plain C structs of integers and byte arrays; any bit pattern is valid.
unsafe impl plain::Plain for RawNetEvent {}
// SAFETY: as above.
unsafe impl plain::Plain for RawDnsEvent {}

// bpf/net.h
const KIND_CONNECT: u32 = 1;
const KIND_ACCEPT: u32 = 2;
const KIND_LISTEN: u32 = 3;
const KIND_BIND: u32 = 4;
const KIND_SEND: u32 = 5;
const KIND_CLOSE: u32 = 6;
const KIND_DNS: u32 = 7;
const VERDICT_DENIED: u8 = 1;
const VERDICT_AUDIT: u8 = 2;
const FLAG_FAILED: u8 = 1;
const FLAG_QUARANTINE: u8 = 2;
const FLAG_RULE_HIT: u8 = 4;

/// What a connection record reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetKind {
    /// TCP: the handshake ended (see `failed`); UDP: `connect`; or a refused attempt.
    Connect,
    /// A TCP connection accepted.
    Accept,
    /// A TCP socket listening.
    Listen,
    /// A UDP socket bound to a port, or a refused bind.
    Bind,
    /// The first UDP datagram from a socket to an address.
    Send,
    /// A reported TCP connection ended.
    Close,
}

/// What the policy said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetVerdict {
    /// Allowed: no rule, or an allow rule.
    Allowed,
    /// Refused with EPERM.
    Denied,
    /// Would have been refused: an audit rule, or audit mode.
    Audit,
}

/// One connection or socket operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetRecord {
    /// What happened.
    pub kind: NetKind,
    /// Process (tgid); 0 when not known (a connection whose start was not seen).
    pub pid: u32,
    /// Thread.
    pub tid: u32,
    /// Real uid.
    pub uid: u32,
    /// The process's start, ns since boot (for its entity id).
    pub start_boottime_ns: u64,
    /// The process's program file: (kernel dev_t, inode).
    pub program: (u64, u64),
    /// TCP (true) or UDP.
    pub tcp: bool,
    /// The local end (port 0 and unspecified address when not bound yet).
    pub local: SocketAddr,
    /// The remote end.
    pub remote: SocketAddr,
    /// Policy.
    pub verdict: NetVerdict,
    /// The deciding rule.
    pub rule_id: Option<u64>,
    /// The quarantine decided.
    pub quarantine: bool,
    /// The connection failed (no handshake) or was refused.
    pub failed: bool,
    /// Close: data bytes received and sent (retransmissions included).
    pub bytes_in: u64,
    /// See `bytes_in`.
    pub bytes_out: u64,
}

/// A DNS answer that reached a socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsRecord {
    /// The socket's owner as last seen sending to port 53; 0 when not known.
    pub pid: u32,
    /// Its start, ns since boot.
    pub start_boottime_ns: u64,
    /// The resolver.
    pub server: SocketAddr,
    /// The DNS message (at most 512 bytes of it).
    pub data: Vec<u8>,
}

/// A record of the network sensor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetRecordKind {
    /// A connection or socket operation.
    Conn(NetRecord),
    /// A DNS answer.
    Dns(DnsRecord),
}

fn ip(family: u8, b: &[u8; 16]) -> IpAddr {
    if family == 4 {
        IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
    } else {
        // A dual-stack socket talking IPv4 shows as IPv4.
        custos_network::rules::unmap(IpAddr::V6(Ipv6Addr::from(*b)))
    }
}

impl NetRecordKind {
    /// Decodes one ring-buffer record by its leading kind.
    pub fn decode(data: &[u8]) -> Result<NetRecordKind, RecordError> {
        let kind: u32 = raw(data.get(..4).unwrap_or(data))?;
        let kind = match kind {
            KIND_DNS => {
                let r: RawDnsEvent = raw(data)?;
                let len = usize::from(r.len).min(r.data.len());
                return Ok(NetRecordKind::Dns(DnsRecord {
                    pid: r.pid,
                    start_boottime_ns: r.start_boottime_ns,
                    server: SocketAddr::new(ip(r.family, &r.server), r.server_port),
                    data: r.data[..len].to_vec(),
                }));
            }
            KIND_CONNECT => NetKind::Connect,
            KIND_ACCEPT => NetKind::Accept,
            KIND_LISTEN => NetKind::Listen,
            KIND_BIND => NetKind::Bind,
            KIND_SEND => NetKind::Send,
            KIND_CLOSE => NetKind::Close,
            kind => return Err(RecordError::UnknownKind { kind }),
        };
        let r: RawNetEvent = raw(data)?;
        Ok(NetRecordKind::Conn(NetRecord {
            kind,
            pid: r.pid,
            tid: r.tid,
            uid: r.uid,
            start_boottime_ns: r.start_boottime_ns,
            program: (r.prog_dev, r.prog_ino),
            tcp: r.protocol == 6,
            local: SocketAddr::new(ip(r.family, &r.local), r.local_port),
            remote: SocketAddr::new(ip(r.family, &r.remote), r.remote_port),
            verdict: match r.verdict {
                VERDICT_DENIED => NetVerdict::Denied,
                VERDICT_AUDIT => NetVerdict::Audit,
                _ => NetVerdict::Allowed,
            },
            rule_id: (r.flags & FLAG_RULE_HIT != 0).then_some(r.rule_id),
            quarantine: r.flags & FLAG_QUARANTINE != 0,
            failed: r.flags & FLAG_FAILED != 0,
            bytes_in: r.bytes_in,
            bytes_out: r.bytes_out,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes<T: plain::Plain>(t: &T) -> Vec<u8> {
        // SAFETY: plain integer structs.
        unsafe { plain::as_bytes(t) }.to_vec()
    }

    #[test]
    fn a_denied_v4_mapped_connect_decodes_as_ipv4() {
        let mut r = RawNetEvent {
            kind: KIND_CONNECT,
            pid: 7,
            family: 6,
            protocol: 6,
            remote_port: 443,
            verdict: VERDICT_DENIED,
            flags: FLAG_FAILED | FLAG_RULE_HIT,
            rule_id: 3,
            ..RawNetEvent::default()
        };
        r.remote[10] = 0xff;
        r.remote[11] = 0xff;
        r.remote[12..].copy_from_slice(&[10, 0, 0, 1]);
        let NetRecordKind::Conn(c) = NetRecordKind::decode(&bytes(&r)).unwrap() else {
            panic!("not a connection");
        };
        assert_eq!(c.kind, NetKind::Connect);
        assert_eq!(c.remote, "10.0.0.1:443".parse().unwrap());
        assert_eq!(c.verdict, NetVerdict::Denied);
        assert_eq!(c.rule_id, Some(3));
        assert!(c.failed && c.tcp && !c.quarantine);
    }

    #[test]
    fn dns_payload_is_cut_to_its_length_and_short_records_are_errors() {
        let mut r = RawDnsEvent {
            kind: KIND_DNS,
            family: 4,
            len: 3,
            server_port: 53,
            ..RawDnsEvent::default()
        };
        r.server[..4].copy_from_slice(&[127, 0, 0, 53]);
        r.data[..3].copy_from_slice(b"abc");
        let NetRecordKind::Dns(d) = NetRecordKind::decode(&bytes(&r)).unwrap() else {
            panic!("not dns");
        };
        assert_eq!(d.data, b"abc");
        assert_eq!(d.server, "127.0.0.53:53".parse().unwrap());
        assert!(NetRecordKind::decode(&bytes(&r)[..20]).is_err());
        assert!(NetRecordKind::decode(&99u32.to_ne_bytes()).is_err());
    }
}
