//! Network records to events: who (from the record's pid and start, `/proc` or the process
//! sensor's memory), both ends, the name DNS gave the remote address, the policy's part.

use super::net::Counters;
use super::output::Output;
use super::recent::Recent;
use custos_event::{
    Actor, Decision, DnsEvent, Endpoint, NetAction, NetPolicy, NetTransport, NetworkEvent,
    ProcessRef,
};
use custos_network::{Names, NetRule};
use custos_sensor_ebpf::net::{DnsRecord, NetKind, NetRecord, NetVerdict};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

/// Names remembered from DNS answers.
const NAMES: usize = 16_384;
/// Processes whose executable is remembered.
const EXES: usize = 4_096;

/// How long an event whose process is gone waits for the process sensor to name it.
const NAMING: Duration = Duration::from_millis(300);
/// Events waiting at most.
const WAITING: usize = 4_096;

/// A process (pid and start, ns since boot) and, when the kernel said, its program file
/// (kernel dev_t, inode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Who {
    pid: u32,
    start_ns: u64,
    program: Option<(u64, u64)>,
}

/// An event waiting for its process's executable.
enum Waiting {
    Conn(NetworkEvent),
    Dns(DnsEvent),
}

impl Waiting {
    fn actor(&mut self) -> &mut Actor {
        match self {
            Waiting::Conn(e) => &mut e.actor,
            Waiting::Dns(e) => &mut e.actor,
        }
    }
}

/// Turns records into events, on the reader thread.
pub struct Translate {
    output: Arc<Output>,
    recent: Option<Arc<Recent>>,
    counters: Arc<Counters>,
    /// The rules in force (events name their rule).
    rules: Arc<RwLock<Vec<NetRule>>>,
    names: Names,
    boot: String,
    tck: u64,
    /// A process and program → its executable path, once known.
    exes: HashMap<Who, String>,
    /// Events of processes gone from `/proc` and not yet named by the process sensor (which
    /// reads its own records on its own thread), with when they arrived and (pid, start).
    waiting: VecDeque<(Instant, Who, Waiting)>,
}

impl Translate {
    pub fn new(
        output: Arc<Output>,
        recent: Option<Arc<Recent>>,
        counters: Arc<Counters>,
        rules: Arc<RwLock<Vec<NetRule>>>,
    ) -> Translate {
        Translate {
            output,
            recent,
            counters,
            rules,
            names: Names::new(NAMES),
            boot: custos_process::boot_id(),
            tck: custos_process::clk_tck(),
            exes: HashMap::new(),
            waiting: VecDeque::new(),
        }
    }

    /// Emits `ev` now, or once its process is named (at most [`NAMING`] later).
    fn emit(&mut self, who: Who, mut ev: Waiting) {
        let unnamed = ev.actor().process.executable.is_none() && who.pid != 0;
        if unnamed && self.recent.is_some() && self.waiting.len() < WAITING {
            self.waiting.push_back((Instant::now(), who, ev));
            return;
        }
        self.out(ev);
    }

    fn out(&self, ev: Waiting) {
        self.counters.events.fetch_add(1, Relaxed);
        self.output.emit(match ev {
            Waiting::Conn(e) => e.to_ecs(),
            Waiting::Dns(e) => e.to_ecs(),
        });
    }

    /// Emits the waiting events whose process is named now, or that waited long enough.
    /// Call after each poll.
    pub fn flush(&mut self) {
        let now = Instant::now();
        for _ in 0..self.waiting.len() {
            let Some((at, who, mut ev)) = self.waiting.pop_front() else {
                break;
            };
            let exe = self.exe(who);
            if exe.is_some() || now.duration_since(at) >= NAMING {
                ev.actor().process.executable = exe;
                self.out(ev);
            } else {
                self.waiting.push_back((at, who, ev));
            }
        }
    }

    /// The executable of `who`: from `/proc` while the pid is that process, else from the
    /// process sensor's memory; either only if it is the program file the kernel named (a
    /// process that exec'd since, or a fork the sensor noted before its exec, is not).
    fn exe(&mut self, who: Who) -> Option<String> {
        if let Some(e) = self.exes.get(&who) {
            return Some(e.clone());
        }
        let Who {
            pid,
            start_ns,
            program,
        } = who;
        let is_program = |path: &str| {
            use std::os::unix::fs::MetadataExt;
            program.is_none_or(|(dev, ino)| {
                std::fs::metadata(path).is_ok_and(|m| {
                    (u64::from(custos_sensor_ebpf::kernel_dev(m.dev())), m.ino()) == (dev, ino)
                })
            })
        };
        let ticks = custos_process::ticks_from_ns(start_ns, self.tck);
        let live = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| custos_process::parse_stat(&s))
            .is_some_and(|(_, _, t)| t == ticks);
        let exe = live
            .then(|| custos_sensor_fanotify::procfs::exe(pid as i32))
            .flatten()
            .filter(|_| is_program(&format!("/proc/{pid}/exe")))
            .or_else(|| {
                let p = self.recent.as_ref()?.get(pid)?;
                let id = custos_process::entity_id(&self.boot, ticks, pid);
                (p.entity_id.as_deref() == Some(id.as_str()))
                    .then_some(p.executable)
                    .flatten()
                    .filter(|e| is_program(e))
            })?;
        if self.exes.len() >= EXES {
            self.exes.clear();
        }
        self.exes.insert(who, exe.clone());
        Some(exe)
    }

    /// The process with `pid` that started at `start_ns` (ns since boot).
    fn actor(&mut self, who: Who, uid: Option<u32>) -> Actor {
        let Who { pid, start_ns, .. } = who;
        if pid == 0 {
            return Actor::default();
        }
        let ticks = custos_process::ticks_from_ns(start_ns, self.tck);
        Actor {
            process: ProcessRef {
                pid,
                entity_id: Some(custos_process::entity_id(&self.boot, ticks, pid)),
                executable: self.exe(who),
            },
            uid,
        }
    }

    fn endpoint(&self, pid: u32, a: SocketAddr, name: bool) -> Endpoint {
        let ip = (!a.ip().is_unspecified()).then_some(a.ip());
        let domain = ip
            .filter(|_| name)
            .and_then(|ip| self.names.name_of(pid, ip, Instant::now()))
            .map(str::to_owned);
        Endpoint {
            ip,
            port: a.port(),
            domain,
        }
    }

    /// One connection record.
    pub fn connection(&mut self, r: &NetRecord) {
        let who = Who {
            pid: r.pid,
            start_ns: r.start_boottime_ns,
            program: (r.program.1 != 0).then_some(r.program),
        };
        let action = match r.kind {
            NetKind::Connect => NetAction::Connect,
            NetKind::Accept => NetAction::Accept,
            NetKind::Listen => NetAction::Listen,
            NetKind::Bind => NetAction::Bind,
            NetKind::Send => NetAction::Send,
            NetKind::Close => NetAction::Close,
        };
        let local = self.endpoint(r.pid, r.local, false);
        let remote = self.endpoint(r.pid, r.remote, true);
        let (source, destination) = match r.kind {
            NetKind::Connect | NetKind::Send | NetKind::Close => (local, remote),
            NetKind::Accept => (remote, local),
            NetKind::Listen | NetKind::Bind => (Endpoint::default(), local),
        };
        let policy = self.policy(r);
        let denied = r.verdict == NetVerdict::Denied;
        let success = match r.kind {
            _ if denied || r.failed => Some(false),
            NetKind::Connect | NetKind::Accept | NetKind::Listen | NetKind::Bind => Some(true),
            NetKind::Send | NetKind::Close => None,
        };
        let error = if denied && r.quarantine {
            Some("denied: program quarantined".to_owned())
        } else if denied {
            Some("denied by network rule".to_owned())
        } else if r.failed {
            Some("refused or unreachable".to_owned())
        } else {
            None
        };
        let closing = r.kind == NetKind::Close;
        let ev = NetworkEvent {
            timestamp: custos_event::timestamp(SystemTime::now()),
            action,
            transport: if r.tcp {
                NetTransport::Tcp
            } else {
                NetTransport::Udp
            },
            source,
            destination,
            success,
            error,
            bytes_out: closing.then_some(r.bytes_out),
            bytes_in: closing.then_some(r.bytes_in),
            policy,
            actor: self.actor(who, Some(r.uid)),
        };
        self.emit(who, Waiting::Conn(ev));
    }

    fn policy(&self, r: &NetRecord) -> Option<NetPolicy> {
        if r.rule_id.is_none() && !r.quarantine {
            return None;
        }
        let counter = match r.verdict {
            NetVerdict::Denied if r.quarantine => Some(&self.counters.quarantined),
            NetVerdict::Denied => Some(&self.counters.denied),
            NetVerdict::Audit => Some(&self.counters.audited),
            NetVerdict::Allowed => None,
        };
        if let Some(c) = counter {
            c.fetch_add(1, Relaxed);
        }
        let rule_name = r.rule_id.and_then(|id| {
            let rules = self.rules.read().unwrap_or_else(|p| p.into_inner());
            Some(rules.iter().find(|x| x.id == id)?.rule.name())
        });
        Some(NetPolicy {
            decision: if r.verdict == NetVerdict::Denied {
                Decision::Deny
            } else {
                Decision::Allow
            },
            would_deny: r.verdict == NetVerdict::Audit,
            rule_id: r.rule_id,
            rule_name,
            quarantine: r.quarantine,
        })
    }

    /// One DNS answer: remembered for naming connections, and reported.
    pub fn dns(&mut self, d: &DnsRecord) {
        let who = Who {
            pid: d.pid,
            start_ns: d.start_boottime_ns,
            program: None,
        };
        self.counters.dns_answers.fetch_add(1, Relaxed);
        let answer = match custos_network::dns::parse_response(&d.data) {
            Ok(a) => a,
            Err(e) => {
                self.counters.dns_unparsed.fetch_add(1, Relaxed);
                tracing::debug!(server = %d.server, "DNS answer not parsed: {e}");
                return;
            }
        };
        self.names.learn(d.pid, &answer, Instant::now());
        let ev = DnsEvent {
            timestamp: custos_event::timestamp(SystemTime::now()),
            server: Endpoint {
                ip: Some(d.server.ip()),
                port: d.server.port(),
                domain: None,
            },
            question: answer.question.clone(),
            rcode: answer.rcode,
            addresses: answer.addresses.clone(),
            cnames: answer.cnames.clone(),
            truncated: answer.truncated,
            actor: self.actor(who, None),
        };
        self.emit(who, Waiting::Dns(ev));
    }
}

impl Translate {
    /// Emits everything still waiting (the agent is stopping).
    pub fn flush_all(&mut self) {
        while let Some((_, _, ev)) = self.waiting.pop_front() {
            self.out(ev);
        }
    }
}
