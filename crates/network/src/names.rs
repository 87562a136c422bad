//! The names DNS answers gave addresses, per process and host-wide, bounded.

use crate::dns::Answer;
use crate::rules::unmap;
use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Entries per map for [`Names::default`].
pub const DEFAULT_CAPACITY: usize = 16_384;
/// Shortest life of an entry, whatever the TTL: connections often start after a short TTL
/// has run out.
pub const MIN_TTL: Duration = Duration::from_secs(60);
/// Longest life of an entry: addresses move between names.
pub const MAX_TTL: Duration = Duration::from_secs(3600);

/// Address → name, learnt from DNS answers.
#[derive(Debug)]
pub struct Names {
    by_pid: Expiring<(u32, IpAddr)>,
    host: Expiring<IpAddr>,
}

impl Default for Names {
    fn default() -> Self {
        Names::new(DEFAULT_CAPACITY)
    }
}

impl Names {
    /// An empty cache of at most `capacity` entries per process-and-address, and as many
    /// host-wide.
    pub fn new(capacity: usize) -> Names {
        Names {
            by_pid: Expiring::new(capacity),
            host: Expiring::new(capacity),
        }
    }

    /// Remembers the answer's addresses under its question name, for process `pid` (0 =
    /// unknown) and host-wide.
    pub fn learn(&mut self, pid: u32, answer: &Answer, now: Instant) {
        if answer.addresses.is_empty() {
            return;
        }
        let name: Arc<str> = Arc::from(answer.question.as_str());
        for &(ip, ttl) in &answer.addresses {
            let life = Duration::from_secs(ttl.into()).clamp(MIN_TTL, MAX_TTL);
            let expires = now.checked_add(life).unwrap_or(now);
            let ip = unmap(ip);
            if pid != 0 {
                self.by_pid.insert((pid, ip), name.clone(), expires, now);
            }
            self.host.insert(ip, name.clone(), expires, now);
        }
    }

    /// The name `pid` resolved to `ip`, else the name any process last resolved to it.
    /// Entries live for their TTL, but at least 60 s and at most 1 h.
    pub fn name_of(&self, pid: u32, ip: IpAddr, now: Instant) -> Option<&str> {
        let ip = unmap(ip);
        let own = (pid != 0)
            .then(|| self.by_pid.get(&(pid, ip), now))
            .flatten();
        own.or_else(|| self.host.get(&ip, now))
    }

    /// Entries held, per process and host-wide together (expired ones until they are
    /// dropped).
    pub fn len(&self) -> usize {
        self.by_pid.map.len() + self.host.map.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A bounded map whose entries expire; when full, the one expiring first goes.
#[derive(Debug)]
struct Expiring<K> {
    map: HashMap<K, (Arc<str>, Instant, u64)>,
    /// (expiry, insertion number) → key, to find the next to go in O(log n).
    order: BTreeMap<(Instant, u64), K>,
    seq: u64,
    capacity: usize,
}

impl<K: Hash + Eq + Clone> Expiring<K> {
    fn new(capacity: usize) -> Self {
        Expiring {
            map: HashMap::new(),
            order: BTreeMap::new(),
            seq: 0,
            capacity,
        }
    }

    fn get(&self, key: &K, now: Instant) -> Option<&str> {
        self.map
            .get(key)
            .filter(|(_, expires, _)| *expires > now)
            .map(|(name, _, _)| &**name)
    }

    fn insert(&mut self, key: K, name: Arc<str>, expires: Instant, now: Instant) {
        if self.capacity == 0 {
            return;
        }
        if let Some((_, old_expires, old_seq)) = self.map.remove(&key) {
            self.order.remove(&(old_expires, old_seq));
        }
        // Drop what has expired, then, if still full, what expires first.
        while let Some(entry) = self.order.first_entry() {
            if entry.key().0 > now && self.map.len() < self.capacity {
                break;
            }
            let k = entry.remove();
            self.map.remove(&k);
        }
        self.seq += 1;
        self.order.insert((expires, self.seq), key.clone());
        self.map.insert(key, (name, expires, self.seq));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(q: &str, addrs: &[(&str, u32)]) -> Answer {
        Answer {
            question: q.into(),
            addresses: addrs
                .iter()
                .map(|(ip, ttl)| (ip.parse().expect("ip"), *ttl))
                .collect(),
            ..Answer::default()
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn per_process_then_host_wide() {
        let t0 = Instant::now();
        let mut n = Names::new(16);
        assert!(n.is_empty());
        n.learn(10, &answer("a.example", &[("1.1.1.1", 300)]), t0);
        n.learn(20, &answer("b.example", &[("1.1.1.1", 300)]), t0);
        assert_eq!(n.name_of(10, ip("1.1.1.1"), t0), Some("a.example"));
        assert_eq!(n.name_of(20, ip("1.1.1.1"), t0), Some("b.example"));
        // Others get the last name any process resolved.
        assert_eq!(n.name_of(30, ip("1.1.1.1"), t0), Some("b.example"));
        assert_eq!(n.name_of(0, ip("1.1.1.1"), t0), Some("b.example"));
        assert_eq!(n.name_of(10, ip("1.1.1.2"), t0), None);
        n.learn(0, &answer("c.example", &[("2.2.2.2", 300)]), t0);
        assert_eq!(n.name_of(10, ip("2.2.2.2"), t0), Some("c.example"));
        assert_eq!(n.len(), 4);
    }

    #[test]
    fn ttl_is_clamped() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut n = Names::new(16);
        n.learn(1, &answer("short", &[("10.0.0.1", 5)]), t0);
        n.learn(1, &answer("long", &[("10.0.0.2", 86_400)]), t0);
        n.learn(1, &answer("mid", &[("10.0.0.3", 600)]), t0);
        let at = |t, a| n.name_of(1, ip(a), t0 + s(t));
        assert_eq!(at(59, "10.0.0.1"), Some("short"));
        assert_eq!(at(60, "10.0.0.1"), None);
        assert_eq!(at(599, "10.0.0.3"), Some("mid"));
        assert_eq!(at(600, "10.0.0.3"), None);
        assert_eq!(at(3599, "10.0.0.2"), Some("long"));
        assert_eq!(at(3600, "10.0.0.2"), None);
    }

    #[test]
    fn mapped_addresses_look_up_as_ipv4() {
        let t0 = Instant::now();
        let mut n = Names::new(4);
        n.learn(1, &answer("v4.example", &[("192.0.2.1", 300)]), t0);
        assert_eq!(n.name_of(1, ip("::ffff:192.0.2.1"), t0), Some("v4.example"));
        n.learn(1, &answer("v6.example", &[("2001:db8::1", 300)]), t0);
        assert_eq!(n.name_of(2, ip("2001:db8::1"), t0), Some("v6.example"));
    }

    #[test]
    fn bounded_dropping_what_expires_first() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut n = Names::new(3);
        n.learn(0, &answer("long", &[("10.0.0.1", 3000)]), t0);
        n.learn(0, &answer("short", &[("10.0.0.2", 100)]), t0);
        n.learn(0, &answer("mid", &[("10.0.0.3", 1000)]), t0);
        n.learn(0, &answer("new", &[("10.0.0.4", 2000)]), t0);
        assert_eq!(n.len(), 3);
        assert_eq!(n.name_of(0, ip("10.0.0.2"), t0), None);
        assert_eq!(n.name_of(0, ip("10.0.0.1"), t0), Some("long"));
        // Re-learning an address replaces its entry rather than adding one.
        n.learn(0, &answer("again", &[("10.0.0.1", 3000)]), t0);
        assert_eq!(n.len(), 3);
        assert_eq!(n.name_of(0, ip("10.0.0.1"), t0), Some("again"));
        // Expired entries go first when something new comes.
        n.learn(0, &answer("late", &[("10.0.0.5", 60)]), t0 + s(1500));
        assert_eq!(n.len(), 3);
        assert_eq!(n.name_of(0, ip("10.0.0.4"), t0 + s(1500)), Some("new"));
        assert_eq!(n.name_of(0, ip("10.0.0.5"), t0 + s(1500)), Some("late"));
        // Per-process entries are bounded too.
        for pid in 1..10 {
            n.learn(pid, &answer("p", &[("10.0.0.9", 300)]), t0);
        }
        assert!(n.len() <= 6);
        let mut none = Names::new(0);
        none.learn(1, &answer("x", &[("10.0.0.1", 300)]), t0);
        assert!(none.is_empty());
    }
}
