//! Reputation sources in the agent. Each is loaded from its database, rules or service and kept
//! in a [`Registry`], which hands the verdict engine the list in the configured order whenever
//! one changes. A source that fails to (re)load keeps what it had and says why in `status`.

mod dpkg;
mod essential;
mod feeds;
mod hashlookup;
mod inspect;
mod nsrl;
mod watch;
mod yara;

pub use feeds::essential_in;
pub use inspect::inspect;

use custos_config::{Config, SourceName};
use custos_control::SourceStatus;
use custos_verdict::{Source, Sources};
use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

struct Slot {
    source: Option<Arc<dyn Source>>,
    state: String,
}

/// The sources the agent has, by name, and where a change goes.
pub struct Registry {
    order: Vec<SourceName>,
    /// Always asked first (see [`essential`]).
    essential: Arc<dyn Source>,
    slots: Mutex<HashMap<SourceName, Slot>>,
    publish: Box<dyn Fn(Sources) + Send + Sync>,
}

impl Registry {
    /// An empty registry for the sources in `order`; `publish` gets the new list on every
    /// change (under the registry's lock, so lists arrive in the order they were made).
    pub fn new(order: Vec<SourceName>, publish: impl Fn(Sources) + Send + Sync + 'static) -> Self {
        let slots = order
            .iter()
            .map(|n| {
                let state = "not loaded".to_owned();
                (
                    *n,
                    Slot {
                        source: None,
                        state,
                    },
                )
            })
            .collect();
        Registry {
            order,
            essential: Arc::new(essential::Essential::here()),
            slots: Mutex::new(slots),
            publish: Box::new(publish),
        }
    }

    /// Whether `name` is configured (in `reputation.order`).
    pub fn wants(&self, name: SourceName) -> bool {
        self.order.contains(&name)
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<SourceName, Slot>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn list(&self, slots: &HashMap<SourceName, Slot>) -> Sources {
        let configured = self
            .order
            .iter()
            .filter_map(|n| slots.get(n)?.source.clone());
        Sources::new(
            std::iter::once(self.essential.clone())
                .chain(configured)
                .collect(),
        )
    }

    /// Puts `source` (or nothing) in force for `name`, with its state for `status`.
    pub fn install(&self, name: SourceName, source: Option<Arc<dyn Source>>, state: String) {
        let mut slots = self.slots();
        let Some(slot) = slots.get_mut(&name) else {
            return;
        };
        *slot = Slot { source, state };
        (self.publish)(self.list(&slots));
    }

    /// A reload of `name` failed: what it had stays in force, `status` says why.
    pub fn keep(&self, name: SourceName, why: &str) {
        tracing::error!(
            source = name.as_str(),
            "not (re)loaded, keeping what it had: {why}"
        );
        if let Some(slot) = self.slots().get_mut(&name) {
            let had = if slot.source.is_some() {
                "previous kept"
            } else {
                "nothing loaded"
            };
            slot.state = format!("last load failed ({had}): {why}");
        }
    }

    /// The sources in force, in order.
    pub fn sources(&self) -> Sources {
        self.list(&self.slots())
    }

    /// For `status`: every configured source with its state.
    pub fn status(&self) -> Vec<SourceStatus> {
        let slots = self.slots();
        self.order
            .iter()
            .filter_map(|n| {
                let s = slots.get(n)?;
                Some(SourceStatus {
                    name: n.as_str().to_owned(),
                    active: s.source.is_some(),
                    state: s.state.clone(),
                })
            })
            .collect()
    }
}

/// `{:#}` of an error chain, for states and replies.
fn chain(e: impl std::error::Error + Send + Sync + 'static) -> String {
    format!("{:#}", anyhow::Error::new(e))
}

/// (Re)loads what lives in the state dir and the rules dir: feeds, the NSRL set, YARA rules.
/// Each source that fails keeps its previous state; the errors are returned together.
pub fn load_databases(reg: &Registry, cfg: &Config) -> Result<(), String> {
    let mut errors = Vec::new();
    if reg.wants(SourceName::Feeds) {
        if let Err(e) = feeds::load(reg, &cfg.state_dir) {
            errors.push(format!("feeds: {e}"));
        }
    }
    if reg.wants(SourceName::Nsrl) {
        if let Err(e) = nsrl::load(reg, &cfg.state_dir, cfg.reputation.nsrl_trust) {
            errors.push(format!("nsrl: {e}"));
        }
    }
    if reg.wants(SourceName::Yara) {
        if let Err(e) = yara::load(reg, cfg) {
            errors.push(format!("yara: {e}"));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

/// What [`load_all`] started that [`follow`] keeps up.
#[derive(Default)]
pub struct Loaded {
    remote: Option<Arc<hashlookup::Remote>>,
}

impl Loaded {
    /// Saves what is worth keeping across a restart (the remote lookup's answers).
    pub fn save(&self, cfg: &Config) {
        if let Some(r) = &self.remote {
            hashlookup::save(r, &cfg.state_dir);
        }
    }
}

/// Loads every configured source once. A source that does not load is not fatal: the agent
/// runs with the others and `status` says why.
pub fn load_all(reg: &Registry, cfg: &Config) -> Loaded {
    if let Err(e) = load_databases(reg, cfg) {
        tracing::error!("some reputation sources not loaded: {e}");
    }
    if reg.wants(SourceName::Dpkg) {
        if cfg.reputation.dpkg {
            dpkg::load(reg, &cfg.reputation.dpkg_info);
        } else {
            reg.install(
                SourceName::Dpkg,
                None,
                "off (reputation.dpkg = false)".into(),
            );
        }
    }
    let mut loaded = Loaded::default();
    if reg.wants(SourceName::Hashlookup) {
        loaded.remote = hashlookup::load(reg, cfg);
    }
    loaded
}

/// Until `stop`: follows dpkg's database and the YARA rules directory, reloading on change,
/// and saves the remote lookup's answers now and then.
pub fn follow(
    reg: &Arc<Registry>,
    cfg: &Config,
    loaded: &Loaded,
    stop: Arc<AtomicBool>,
) -> std::io::Result<()> {
    if reg.wants(SourceName::Dpkg) && cfg.reputation.dpkg {
        dpkg::follow(reg.clone(), cfg.reputation.dpkg_info.clone(), stop.clone())?;
    }
    if reg.wants(SourceName::Yara) {
        yara::follow(reg.clone(), cfg.clone(), stop.clone())?;
    }
    if let Some(remote) = &loaded.remote {
        hashlookup::follow(remote.clone(), cfg.state_dir.clone(), stop)?;
    }
    Ok(())
}

/// Every configured source loaded once, for a command run without the agent.
pub fn offline(cfg: &Config) -> Registry {
    let reg = Registry::new(cfg.reputation.order.clone(), |_| {});
    let _ = load_all(&reg, cfg);
    reg
}
