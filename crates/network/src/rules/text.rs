//! [`Cidr`] and [`PortRange`] as text (`10.0.0.0/8`, `8000-8100`): parsing, display, serde.

use super::{Cidr, NetError, PortRange};
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

fn invalid(what: &'static str, value: &str, why: impl Into<String>) -> NetError {
    NetError::Invalid {
        what,
        value: value.to_owned(),
        why: why.into(),
    }
}

/// `addr` as IPv4 if it is an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`), else unchanged:
/// dual-stack sockets reach IPv4 peers that way, and the kernel rules see them as IPv4.
pub fn unmap(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        v4 => v4,
    }
}

/// The address as a 128-bit number and its width in bits.
fn bits(addr: IpAddr) -> (u128, u8) {
    match addr {
        IpAddr::V4(a) => (u128::from(u32::from(a)), 32),
        IpAddr::V6(a) => (u128::from(a), 128),
    }
}

/// The mask of the top `prefix` bits of a `width`-bit number.
fn mask(prefix: u8, width: u8) -> u128 {
    match prefix {
        0 => 0,
        p => (u128::MAX << (128 - u32::from(p))) >> (128 - u32::from(width)),
    }
}

impl Cidr {
    /// The longest prefix for this address family (32 or 128).
    pub fn max_prefix(&self) -> u8 {
        bits(self.addr).1
    }

    /// Checks what the public fields allow but a network may not be: a prefix too long for
    /// the family, or host bits set.
    pub fn check(&self) -> Result<(), NetError> {
        let (value, width) = bits(self.addr);
        let text = || format!("{}/{}", self.addr, self.prefix);
        if self.prefix > width {
            return Err(invalid(
                "cidr",
                &text(),
                format!("prefix longer than {width}"),
            ));
        }
        let net = value & mask(self.prefix, width);
        if net != value {
            let net = match self.addr {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(net as u32)),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(net)),
            };
            return Err(invalid(
                "cidr",
                &text(),
                format!("host bits set; the network is {net}/{}", self.prefix),
            ));
        }
        Ok(())
    }

    /// The same network with an IPv4-mapped IPv6 network (`::ffff:10.0.0.0/104`) written as
    /// IPv4 (`10.0.0.0/8`), the form the kernel matches.
    pub fn canonical(&self) -> Cidr {
        match (self.addr, unmap(self.addr)) {
            (IpAddr::V6(_), IpAddr::V4(v4)) if self.prefix >= 96 => Cidr {
                addr: IpAddr::V4(v4),
                prefix: self.prefix - 96,
            },
            _ => *self,
        }
    }

    /// Whether `ip` is in this network. IPv4 networks never hold IPv6 addresses nor the
    /// reverse, except that an IPv4-mapped IPv6 address counts as its IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let net = self.canonical();
        let ip = unmap(ip);
        if net.addr.is_ipv4() != ip.is_ipv4() {
            return false;
        }
        let (n, width) = bits(net.addr);
        let Some(m) = (net.prefix <= width).then(|| mask(net.prefix, width)) else {
            return false;
        };
        bits(ip).0 & m == n & m
    }
}

/// Digits only (`u8`/`u16` parsing also takes a leading `+`).
fn number<T: FromStr>(s: &str) -> Option<T> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

impl FromStr for Cidr {
    type Err = NetError;

    fn from_str(s: &str) -> Result<Cidr, NetError> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| invalid("cidr", s, "not an IPv4 or IPv6 address"))?;
        let prefix = match prefix {
            None => bits(addr).1,
            Some(p) => number(p).ok_or_else(|| invalid("cidr", s, "bad prefix length"))?,
        };
        let cidr = Cidr { addr, prefix };
        cidr.check().map_err(|e| match e {
            NetError::Invalid { what, why, .. } => invalid(what, s, why),
            e => e,
        })?;
        Ok(cidr)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl Serialize for Cidr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Cidr, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(de::Error::custom)
    }
}

impl PortRange {
    /// Checks what the public fields allow but a range may not be: port 0, `lo > hi`.
    pub fn check(&self) -> Result<(), NetError> {
        if self.lo == 0 {
            return Err(invalid("ports", &self.to_string(), "port 0 is not a port"));
        }
        if self.lo > self.hi {
            return Err(invalid(
                "ports",
                &self.to_string(),
                "the first port is above the last",
            ));
        }
        Ok(())
    }

    /// Whether `port` is in the range.
    pub fn contains(&self, port: u16) -> bool {
        (self.lo..=self.hi).contains(&port)
    }
}

impl FromStr for PortRange {
    type Err = NetError;

    fn from_str(s: &str) -> Result<PortRange, NetError> {
        let (lo, hi) = s.split_once('-').unwrap_or((s, s));
        let port = |p: &str| {
            number::<u16>(p).ok_or_else(|| invalid("ports", s, "ports are numbers 1 to 65535"))
        };
        let r = PortRange {
            lo: port(lo)?,
            hi: port(hi)?,
        };
        r.check().map_err(|e| match e {
            NetError::Invalid { what, why, .. } => invalid(what, s, why),
            e => e,
        })?;
        Ok(r)
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.lo == self.hi {
            write!(f, "{}", self.lo)
        } else {
            write!(f, "{}-{}", self.lo, self.hi)
        }
    }
}

impl Serialize for PortRange {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Takes `"80"`, `"8000-8100"` or a bare integer `80`.
struct PortRangeVisitor;

impl Visitor<'_> for PortRangeVisitor {
    type Value = PortRange;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a port (80) or a port range (\"8000-8100\")")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<PortRange, E> {
        v.parse().map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<PortRange, E> {
        self.visit_str(&v.to_string())
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<PortRange, E> {
        self.visit_str(&v.to_string())
    }
}

impl<'de> Deserialize<'de> for PortRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<PortRange, D::Error> {
        d.deserialize_any(PortRangeVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(s: &str) -> Cidr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn cidr_parses_and_displays() {
        for (text, shown) in [
            ("10.0.0.0/8", "10.0.0.0/8"),
            ("192.168.1.7", "192.168.1.7/32"),
            ("::1", "::1/128"),
            ("fd00::/8", "fd00::/8"),
            ("0.0.0.0/0", "0.0.0.0/0"),
            ("::/0", "::/0"),
        ] {
            assert_eq!(cidr(text).to_string(), shown);
        }
        assert_eq!(cidr("10.0.0.0/8").prefix, 8);
    }

    #[test]
    fn bad_cidrs_say_why() {
        let err = |s: &str| s.parse::<Cidr>().expect_err(s).to_string();
        let e = err("10.1.2.3/8");
        assert!(
            e.contains("\"10.1.2.3/8\"") && e.contains("the network is 10.0.0.0/8"),
            "{e}"
        );
        assert!(err("fd00::1/8").contains("fd00::/8"));
        assert!(err("10.0.0.0/33").contains("prefix longer than 32"));
        assert!(err("::/129").contains("prefix longer than 128"));
        for s in [
            "",
            "10.0.0/8",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "host",
            "10.0.0.0/8/9",
        ] {
            err(s);
        }
        let c = Cidr {
            addr: ip("10.1.0.0"),
            prefix: 8,
        };
        assert!(c.check().is_err());
    }

    #[test]
    fn cidr_contains() {
        let net = cidr("10.0.0.0/8");
        assert!(net.contains(ip("10.255.0.1")));
        assert!(!net.contains(ip("11.0.0.1")));
        assert!(net.contains(ip("::ffff:10.1.2.3")));
        assert!(!net.contains(ip("::a01:203")));
        assert!(cidr("0.0.0.0/0").contains(ip("1.2.3.4")));
        assert!(!cidr("0.0.0.0/0").contains(ip("::1")));
        assert!(!cidr("::/0").contains(ip("1.2.3.4")));
        assert!(cidr("fd00::/8").contains(ip("fd12::1")));
        assert!(!cidr("fd00::/8").contains(ip("fe80::1")));
        assert!(cidr("::1").contains(ip("::1")));
        // A mapped network is the IPv4 one.
        let mapped = cidr("::ffff:10.0.0.0/104");
        assert_eq!(mapped.canonical(), net);
        assert!(mapped.contains(ip("10.9.9.9")));
        assert!(cidr("192.168.1.7").contains(ip("192.168.1.7")));
        assert!(!cidr("192.168.1.7").contains(ip("192.168.1.8")));
    }

    #[test]
    fn ports() {
        let p = |s: &str| s.parse::<PortRange>();
        assert_eq!(p("80").expect("80"), PortRange { lo: 80, hi: 80 });
        assert_eq!(p("8000-8100").expect("range").to_string(), "8000-8100");
        assert_eq!(p("80").expect("80").to_string(), "80");
        assert_eq!(p("1-65535").expect("all").hi, 65535);
        for bad in ["0", "90-80", "65536", "", "-", "80-", "+80", "a"] {
            assert!(p(bad).is_err(), "{bad}");
        }
        assert!(p("0-10").expect_err("zero").to_string().contains("port 0"));
        assert!(PortRange { lo: 80, hi: 90 }.contains(85));
    }

    #[test]
    fn serde_as_text() {
        let c: Cidr = serde_json::from_str("\"fd00::/8\"").expect("cidr");
        assert_eq!(serde_json::to_string(&c).expect("json"), "\"fd00::/8\"");
        let e = serde_json::from_str::<Cidr>("\"10.1.2.3/8\"").expect_err("host bits");
        assert!(e.to_string().contains("10.0.0.0/8"), "{e}");
        let p: PortRange = serde_json::from_str("\"80-90\"").expect("range");
        assert_eq!(serde_json::to_string(&p).expect("json"), "\"80-90\"");
        let p: PortRange = serde_json::from_str("443").expect("integer");
        assert_eq!(p, PortRange { lo: 443, hi: 443 });
        assert!(serde_json::from_str::<PortRange>("0").is_err());
        assert!(serde_json::from_str::<PortRange>("-1").is_err());
        assert!(serde_json::from_str::<PortRange>("70000").is_err());
    }
}
