//! Control requests against the running agent.

use super::guard;
use super::output::Output;
use custos_config::Config;
use custos_control::{FilesStatus, Handler, Reply, ReputationStatus, Request, StatusReply};
use custos_event::{Decision, Mode};
use custos_sensor_fanotify::{follow, Group, WatchedFs};
use custos_verdict::{Arbiter, RuleSet, RuleStore};
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// What the control socket can see and change.
pub struct Daemon {
    pub arbiter: Arc<Arbiter<super::unseen::AnyHeld>>,
    pub store: RuleStore,
    pub watched: follow::Watched,
    pub cfg: Config,
    pub started: Instant,
    pub output: Arc<Output>,
    pub group: Arc<Group>,
    pub telemetry: Arc<super::telemetry::Telemetry>,
    /// Serialises rule and mode changes: the rule set applied is always the one last stored,
    /// and the lockdown guard always judges the rules and mode that will be in force.
    pub rule_lock: Mutex<()>,
    /// The reputation sources.
    pub sources: Arc<super::sources::Registry>,
    /// File events, when on (or when access rules follow new files).
    pub files: Option<Arc<super::files::FileEvents>>,
    /// File access rules, when any are in force.
    pub access: Option<Arc<super::access::FileAccess>>,
    /// The network sensor and policy, when on.
    pub net: Option<Arc<super::net::Network>>,
}

const NET_OFF: &str = "the network sensor is off ([net] enabled = false)";

impl Daemon {
    /// Whether the verdict engine trusts the program at a path now, for the quarantine's view
    /// of processes that were running before it was in force.
    pub fn running_judge(&self) -> impl Fn(&str) -> bool + Send + 'static {
        let arbiter = self.arbiter.clone();
        move |path| {
            super::sources::inspect(&arbiter.sources(), &arbiter.rules(), Mode::Lockdown, path)
                .is_ok_and(|r| r.now.decision == Decision::Allow)
        }
    }

    fn watched_now(&self) -> Vec<WatchedFs> {
        self.watched
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Where the guard must look: the watched mounts, and every essential program when the
    /// eBPF sensor holds execs from unwatched filesystems too.
    fn watched_mounts(&self) -> Vec<PathBuf> {
        let mounts: Vec<PathBuf> = self.watched_now().into_iter().map(|w| w.mount).collect();
        guard::covered(&mounts, super::holds_unwatched(&self.cfg))
    }

    /// The check for a rule change: it must not make the current mode deny an essential program
    /// ([`guard::check_rule_change`]). Called under `rule_lock`, so the mode cannot change before
    /// the new rules are applied.
    fn rule_change_check(&self) -> impl FnOnce(&RuleSet) -> Result<(), String> + '_ {
        let mode = self.arbiter.mode();
        move |new| {
            guard::check_rule_change(
                &self.arbiter.rules(),
                new,
                mode,
                &self.watched_mounts(),
                &self.arbiter.sources(),
            )
        }
    }

    fn status(&self) -> StatusReply {
        StatusReply {
            version: env!("CARGO_PKG_VERSION").into(),
            pid: std::process::id(),
            uptime_s: self.started.elapsed().as_secs(),
            mode: self.arbiter.mode(),
            deadline_ms: self.cfg.deadline_ms,
            watched: self
                .watched_now()
                .iter()
                .filter_map(|w| serde_json::to_value(w).ok())
                .collect(),
            rules: self.arbiter.rules().rules().len(),
            exec: self.arbiter.stats(),
            events_written: self.output.written(),
            events_dropped: self.output.dropped(),
            kernel_cache: self.cfg.exec.kernel_cache,
            images: self.group.images_on(),
            unmarked_on_write: self.group.stats().unmarked_on_write.load(Relaxed),
            bad_events: self.group.stats().bad_events.load(Relaxed),
            read_errors: self.group.stats().read_errors.load(Relaxed),
            telemetry: self.telemetry.status(),
            reputation: ReputationStatus {
                sources: self.sources.status(),
            },
            events_by_kind: self.output.by_kind(),
            store: self.output.store(),
            net: self.net.as_ref().map(|n| n.status()).unwrap_or_default(),
            files: FilesStatus {
                access: self.access.as_ref().map(|a| a.status()),
                ..self.files.as_ref().map(|f| f.status()).unwrap_or_default()
            },
        }
    }
}

impl Handler for Daemon {
    fn handle(&self, req: Request) -> Reply {
        match req {
            Request::Status {} => Reply::ok(self.status()),
            Request::RuleList {} => Reply::ok(self.arbiter.rules().rules()),
            Request::RuleAdd { rule } => {
                let _g = self.rule_lock.lock().unwrap_or_else(|p| p.into_inner());
                match self.store.add_checked(rule, self.rule_change_check()) {
                    Ok((rule, set)) => {
                        self.arbiter.set_rules(set);
                        tracing::info!(id = rule.id, target = %rule.target, policy = ?rule.policy, "rule added");
                        Reply::ok(rule)
                    }
                    Err(e) => {
                        tracing::warn!("rule change refused: {e}");
                        Reply::err(e.to_string())
                    }
                }
            }
            Request::RuleRemove { id } => {
                let _g = self.rule_lock.lock().unwrap_or_else(|p| p.into_inner());
                match self.store.remove_checked(id, self.rule_change_check()) {
                    Ok((rule, set)) => {
                        self.arbiter.set_rules(set);
                        tracing::info!(id, "rule removed");
                        Reply::ok(rule)
                    }
                    Err(e) => {
                        tracing::warn!("rule change refused: {e}");
                        Reply::err(e.to_string())
                    }
                }
            }
            Request::Mode { set: None } => {
                Reply::ok(serde_json::json!({ "mode": self.arbiter.mode() }))
            }
            Request::Mode { set: Some(m) } => {
                // Under the rule lock: a rule change cannot slip in between the guard's check
                // and the switch.
                let _g = self.rule_lock.lock().unwrap_or_else(|p| p.into_inner());
                if m != self.arbiter.mode() {
                    let rules = self.arbiter.rules();
                    if let Err(e) = guard::check_mode(
                        &rules,
                        m,
                        &self.watched_mounts(),
                        &self.arbiter.sources(),
                    ) {
                        tracing::warn!(to = %m, "mode change refused: {e}");
                        return Reply::err(e);
                    }
                }
                let old = self.arbiter.set_mode(m);
                {
                    // Under the list's lock: the mount follower marks with the new mask or is
                    // in the list this marks.
                    let list = self.watched.lock().unwrap_or_else(|p| p.into_inner());
                    self.group
                        .set_images(super::controls_images(&self.cfg, m), &list);
                }
                self.telemetry.set_mode(m);
                if let Some(n) = &self.net {
                    if let Err(e) = n.set_mode(m) {
                        tracing::error!("{e:#}");
                    }
                    if old != m {
                        n.trust_running_if_quarantined(m, self.running_judge());
                    }
                }
                tracing::info!(from = %old, to = %m, "mode changed");
                Reply::ok(serde_json::json!({ "mode": m, "previous": old }))
            }
            Request::ReloadReputation {} => {
                match super::sources::load_databases(&self.sources, &self.cfg) {
                    Ok(()) => {
                        tracing::info!("reputation databases reloaded");
                        Reply::ok(serde_json::json!({ "reloaded": true }))
                    }
                    Err(e) => Reply::err(format!(
                        "reloaded except: {e} (those keep what they had; the others are in force)"
                    )),
                }
            }
            Request::NetRuleList {} => match &self.net {
                Some(n) => Reply::ok(n.rules()),
                None => Reply::err(NET_OFF),
            },
            Request::NetRuleAdd { rule } => match &self.net {
                Some(n) => match n.add(rule) {
                    Ok(r) => {
                        tracing::info!(id = r.id, rule = %custos_network::rules::describe(&r.rule), "network rule added");
                        Reply::ok(r)
                    }
                    Err(e) => Reply::err(e),
                },
                None => Reply::err(NET_OFF),
            },
            Request::NetRuleRemove { id } => match &self.net {
                Some(n) => match n.remove(id) {
                    Ok(r) => {
                        tracing::info!(id, "network rule removed");
                        Reply::ok(r)
                    }
                    Err(e) => Reply::err(e),
                },
                None => Reply::err(NET_OFF),
            },
            Request::Inspect { path } => {
                let rules = self.arbiter.rules();
                let sources = self.arbiter.sources();
                match super::sources::inspect(&sources, &rules, self.arbiter.mode(), &path) {
                    Ok(r) => Reply::ok(r),
                    Err(e) => Reply::err(e),
                }
            }
        }
    }
}
