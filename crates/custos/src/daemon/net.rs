//! Network monitoring and policy: the eBPF network sensor's records become connection and DNS
//! events; network rules (config first, then `net-rules.json`) and the quarantine go into the
//! kernel's rule table, which the cgroup programs consult on every connect, send and bind.

use super::net_events::Translate;
use super::output::Output;
use super::recent::Recent;
use anyhow::Context;
use custos_config::Config;
use custos_control::NetStatus;
use custos_event::Mode;
use custos_network::{NetError, NetRule, NetRuleStore, NewNetRule};
use custos_sensor_ebpf::net::{NetControls, NetRecordKind, NetSensor, MAX_RULES};
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

/// Counters shared with the reader thread.
#[derive(Debug, Default)]
pub struct Counters {
    pub events: AtomicU64,
    pub dns_answers: AtomicU64,
    pub dns_unparsed: AtomicU64,
    pub denied: AtomicU64,
    pub audited: AtomicU64,
    pub quarantined: AtomicU64,
    pub lost: AtomicU64,
}

/// The running network sensor and policy.
pub struct Network {
    controls: NetControls,
    store: NetRuleStore,
    config_rules: Vec<NetRule>,
    /// The rules in the kernel, in order (events name their rule from it).
    rules: Arc<RwLock<Vec<NetRule>>>,
    /// Held while the rules change: one change at a time.
    changing: Mutex<()>,
    counters: Arc<Counters>,
    missing: Vec<String>,
    cgroup: PathBuf,
    /// `[net] quarantine`: in force in lockdown.
    quarantine_wanted: bool,
    quarantine_on: AtomicBool,
    trusted: Mutex<HashSet<(u64, u64)>>,
    stop: Arc<AtomicBool>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Network {
    /// Loads the sensor and applies the rules, or `None` when `[net] enabled` is off or the
    /// sensor cannot load here (logged). A bad rule (config or store) stops the start with its
    /// error.
    pub fn start(
        cfg: &Config,
        mode: Mode,
        output: Arc<Output>,
        recent: Option<Arc<Recent>>,
    ) -> anyhow::Result<Option<Arc<Network>>> {
        if !cfg.net.enabled {
            return Ok(None);
        }
        let cgroup = match &cfg.net.cgroup {
            Some(c) => c.clone(),
            None => custos_sensor_fanotify::mounts::read_mountinfo()
                .context("cannot read /proc/self/mountinfo")?
                .into_iter()
                .find(|m| m.fstype == "cgroup2")
                .map(|m| m.mount)
                .context("no cgroup v2 mount found (set net.cgroup)")?,
        };
        let store = NetRuleStore::new(&cfg.state_dir);
        let config_rules = cfg.net.rules();
        let mut rules = config_rules.clone();
        rules.extend(store.load().context("cannot load the network rules")?);
        let kernel =
            custos_network::compile(&rules, MAX_RULES).context("cannot apply the network rules")?;
        let counters = Arc::new(Counters::default());
        let stop = Arc::new(AtomicBool::new(false));
        // The sensor is not Send: it lives in its reader thread, which hands back the controls.
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let rules = Arc::new(RwLock::new(rules));
        let translate = Translate::new(output, recent, counters.clone(), rules.clone());
        let (thread_counters, thread_stop, dns) = (counters.clone(), stop.clone(), cfg.net.dns);
        let dir = cgroup.clone();
        let thread = std::thread::Builder::new()
            .name("custos-net".into())
            .spawn(move || {
                let sensor = match NetSensor::load(&dir, dns) {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = tx.send(Err(anyhow::Error::new(e)));
                        return;
                    }
                };
                let ready = sensor.controls().map(|c| (c, sensor.missing_parts()));
                let failed = ready.is_err();
                let _ = tx.send(ready.map_err(anyhow::Error::new));
                if failed {
                    return;
                }
                let translate = std::cell::RefCell::new(translate);
                let reader = match sensor.reader(|r| match r {
                    Ok(NetRecordKind::Conn(c)) => translate.borrow_mut().connection(&c),
                    Ok(NetRecordKind::Dns(d)) => translate.borrow_mut().dns(&d),
                    Err(e) => tracing::warn!("bad network record: {e}"),
                }) {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::error!("network sensor: {e:#}");
                        return;
                    }
                };
                while !thread_stop.load(Relaxed) {
                    if let Err(e) = reader.poll(Duration::from_millis(20)) {
                        tracing::error!("network sensor: {e:#}");
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    translate.borrow_mut().flush();
                    thread_counters.lost.store(sensor.lost(), Relaxed);
                }
                translate.borrow_mut().flush_all();
            })
            .context("cannot start the network thread")?;
        // A kernel without what the sensor needs costs network monitoring, not the agent.
        let (controls, missing) = match rx.recv().context("the network thread ended") {
            Ok(Ok(x)) => x,
            Ok(Err(e)) | Err(e) => {
                tracing::error!("network sensor not running: {e:#}");
                let _ = thread.join();
                return Ok(None);
            }
        };
        for m in &missing {
            tracing::warn!("network sensor part missing: {m}");
        }
        controls
            .set_rules(&kernel)
            .context("cannot load the network rules into the kernel")?;
        let net = Arc::new(Network {
            controls,
            store,
            config_rules,
            rules,
            changing: Mutex::new(()),
            counters,
            missing,
            cgroup,
            quarantine_wanted: cfg.net.quarantine,
            quarantine_on: AtomicBool::new(false),
            trusted: Mutex::new(HashSet::new()),
            stop,
            thread: Mutex::new(Some(thread)),
        });
        net.set_mode(mode)?;
        Ok(Some(net))
    }

    /// Follows the agent's mode: audit denies nothing; the quarantine is on in lockdown.
    pub fn set_mode(&self, mode: Mode) -> anyhow::Result<()> {
        let quarantine = self.quarantine_wanted && mode == Mode::Lockdown;
        self.controls
            .set_mode(mode != Mode::Audit, quarantine)
            .context("cannot set the network policy's mode")?;
        self.quarantine_on.store(quarantine, Relaxed);
        Ok(())
    }

    /// Every exec verdict: the program file is trusted or not (the quarantine follows).
    pub fn judged(&self, dev: u64, ino: u64, trusted: bool) {
        let mut t = self.trusted.lock().unwrap_or_else(|p| p.into_inner());
        let changed = if trusted {
            t.insert((dev, ino))
        } else {
            t.remove(&(dev, ino))
        };
        if changed {
            if let Err(e) = self.controls.set_trusted(dev, ino, trusted) {
                tracing::warn!(dev, ino, "cannot update the trusted programs: {e:#}");
            }
        }
    }

    /// The rules in force, config rules first.
    pub fn rules(&self) -> Vec<NetRule> {
        self.rules.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Puts `all` into the kernel table and makes it the list in force.
    fn apply(&self, all: Vec<NetRule>) -> Result<(), NetError> {
        let kernel = custos_network::compile(&all, MAX_RULES)?;
        self.controls
            .set_rules(&kernel)
            .map_err(|e| NetError::Refused {
                reason: format!("the kernel rule table: {:#}", anyhow::Error::new(e)),
            })?;
        *self.rules.write().unwrap_or_else(|p| p.into_inner()) = all;
        Ok(())
    }

    /// Changes the stored rules with `edit`, which hands the new stored list to the check it
    /// is given before writing: the kernel gets the config rules plus that list, and the store
    /// is written only if the kernel took them. If the write then fails, the kernel gets the
    /// old list back: both change or neither.
    fn change<T>(
        &self,
        edit: impl FnOnce(&mut dyn FnMut(&[NetRule]) -> Result<(), NetError>) -> Result<T, NetError>,
    ) -> Result<T, String> {
        let _one_at_a_time = self.changing.lock().unwrap_or_else(|p| p.into_inner());
        let old = self.rules();
        let mut applied = false;
        let result = edit(&mut |stored| {
            let mut all = self.config_rules.clone();
            all.extend_from_slice(stored);
            self.apply(all)?;
            applied = true;
            Ok(())
        });
        if result.is_err() && applied {
            if let Err(e) = self.apply(old) {
                tracing::error!("cannot put the previous network rules back: {e}");
            }
        }
        result.map_err(|e| format!("{:#}", anyhow::Error::new(e)))
    }

    /// Adds a rule to the store and the kernel, both or neither.
    pub fn add(&self, rule: NewNetRule) -> Result<NetRule, String> {
        self.change(|check| self.store.add_with(rule, check))
    }

    /// Removes a stored rule from the store and the kernel.
    pub fn remove(&self, id: u64) -> Result<NetRule, String> {
        if self.config_rules.iter().any(|r| r.id == id) {
            return Err(format!(
                "network rule {id} comes from the config file; change it there"
            ));
        }
        self.change(|check| self.store.remove_with(id, check))
    }

    /// Counters for `custos status`.
    pub fn status(&self) -> NetStatus {
        let c = &self.counters;
        NetStatus {
            enabled: true,
            cgroup: Some(self.cgroup.display().to_string()),
            missing: self.missing.clone(),
            events: c.events.load(Relaxed),
            dns_answers: c.dns_answers.load(Relaxed),
            dns_unparsed: c.dns_unparsed.load(Relaxed),
            lost: c.lost.load(Relaxed),
            denied: c.denied.load(Relaxed),
            audited: c.audited.load(Relaxed),
            quarantined: c.quarantined.load(Relaxed),
            quarantine: self.quarantine_on.load(Relaxed),
            trusted_programs: self.trusted.lock().map_or(0, |t| t.len() as u64),
            rules: self.rules.read().map_or(0, |r| r.len() as u64),
        }
    }

    /// Stops reading and detaches every program (the kernel then allows everything).
    pub fn stop(&self) {
        self.stop.store(true, Relaxed);
        let t = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = t {
            let _ = t.join();
        }
    }
}

/// Where exec verdicts go: the event output, and the quarantine's trusted programs.
pub struct Verdicts {
    pub output: Arc<Output>,
    pub net: Option<Arc<Network>>,
}

impl custos_verdict::Sink for Verdicts {
    fn emit(&self, event: custos_event::ExecEvent) {
        custos_verdict::Sink::emit(&*self.output, event);
    }

    fn judged(&self, key: &custos_verdict::FileKey, trusted: bool) {
        if let Some(n) = &self.net {
            n.judged(key.dev, key.ino, trusted);
        }
    }
}

impl Network {
    /// When the quarantine is in force (lockdown), judges the programs of the processes
    /// already running (they started before it, so no exec verdict named them), in the
    /// background: until then their network is refused.
    pub fn trust_running_if_quarantined(
        self: &Arc<Self>,
        mode: Mode,
        judge: impl Fn(&str) -> bool + Send + 'static,
    ) {
        if !(self.quarantine_wanted && mode == Mode::Lockdown) {
            return;
        }
        let me = self.clone();
        let spawned = std::thread::Builder::new()
            .name("custos-net-trust".into())
            .spawn(move || {
                use std::os::unix::fs::MetadataExt;
                let mut seen = HashSet::new();
                let Ok(dir) = std::fs::read_dir("/proc") else {
                    return;
                };
                for e in dir.flatten() {
                    if !e
                        .file_name()
                        .to_string_lossy()
                        .bytes()
                        .all(|b| b.is_ascii_digit())
                    {
                        continue;
                    }
                    let exe = e.path().join("exe");
                    let (Ok(meta), Ok(path)) = (std::fs::metadata(&exe), std::fs::read_link(&exe))
                    else {
                        continue;
                    };
                    if seen.insert((meta.dev(), meta.ino())) {
                        let trusted = judge(&path.to_string_lossy());
                        me.judged(meta.dev(), meta.ino(), trusted);
                    }
                }
                tracing::info!(
                    programs = seen.len(),
                    "running programs judged for the network quarantine"
                );
            });
        if let Err(e) = spawned {
            tracing::error!("cannot judge running programs for the quarantine: {e}");
        }
    }
}
