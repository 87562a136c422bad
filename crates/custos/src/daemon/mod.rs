//! `custos run`: wires config, rules, the fanotify sensor, the arbiter, the event output and the
//! control socket together, then reads events until SIGTERM/SIGINT.

mod access;
mod actor;
mod files;
mod guard;
mod guardian;
mod handler;
mod net;
mod net_events;
mod output;
mod recent;
mod records;
mod rotate;
mod sources;
mod telemetry;
mod unseen;

pub use sources::{essential_in, inspect, offline};

use anyhow::{bail, Context};
use custos_config::{Config, Unseen};
use custos_event::Mode;
use custos_sensor_fanotify::{follow, mounts, Group};
use custos_verdict::{Arbiter, Options, RuleStore};
use handler::Daemon;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Runs the agent in the foreground until a termination signal.
/// `config_path` is the file the config came from, if any (self-protection covers it).
pub fn run(cfg: Config, mode: Option<Mode>, config_path: Option<&Path>) -> anyhow::Result<()> {
    let mode = mode.unwrap_or(cfg.mode);
    if !nix::unistd::geteuid().is_root() {
        bail!("custos run needs root (fanotify permission events need CAP_SYS_ADMIN)");
    }
    // First, while the process has one thread: the guardian is forked.
    let guardian = if holds_unseen(&cfg) {
        Some(guardian::Guardian::spawn().context("cannot start the guardian process")?)
    } else {
        None
    };
    let store = RuleStore::new(&cfg.state_dir);
    let rules = store.load().context("cannot load rules")?;
    let listener = custos_control::bind(&cfg.socket).context("cannot open control socket")?;
    let socket = cfg.socket.clone();
    let result = serve(cfg, mode, store, rules, listener, guardian, config_path);
    let _ = std::fs::remove_file(&socket);
    result
}

fn serve(
    cfg: Config,
    mode: Mode,
    store: RuleStore,
    rules: custos_verdict::RuleSet,
    listener: std::os::unix::net::UnixListener,
    guardian: Option<guardian::Guardian>,
    config_path: Option<&Path>,
) -> anyhow::Result<()> {
    // Dropped (closing its socket) only after every hold is answered, below.
    let guardian = guardian.map(Arc::new);
    // Signals first: a SIGTERM during start-up still ends the agent cleanly.
    let (stop_rx, stop_tx) = UnixStream::pair().context("cannot create signal pipe")?;
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::low_level::pipe::register(sig, stop_tx.try_clone()?)
            .context("cannot install signal handler")?;
    }
    let max_pending = raise_fd_limit();
    // Loaded before anything is watched: nothing waits on an exec meanwhile. Changes reach the
    // arbiter once it exists.
    let engine: Arc<std::sync::OnceLock<Arc<Arbiter<unseen::AnyHeld>>>> = Arc::default();
    let publish_to = engine.clone();
    let registry = Arc::new(sources::Registry::new(
        cfg.reputation.order.clone(),
        move |list| {
            if let Some(a) = publish_to.get() {
                a.set_sources(list);
            }
        },
    ));
    let loaded = sources::load_all(&registry, &cfg);
    let output = output::Output::open(&cfg)?;
    // Noted by the process sensor only when file or network events will ask.
    let recent = (cfg.files.events || cfg.net.enabled).then(|| Arc::new(recent::Recent::default()));
    // Before the arbiter: exec verdicts tell the quarantine what is trusted from the first.
    let net = net::Network::start(&cfg, mode, output.clone(), recent.clone())
        .context("cannot start the network sensor")?;
    let group = Group::new()?;
    // Before the first mark, so every filesystem gets the mask the mode asks for.
    group.set_images(controls_images(&cfg, mode), &[]);
    let entries = mounts::read_mountinfo().context("cannot read /proc/self/mountinfo")?;
    let discovering = cfg.exec.watch.is_empty();
    let watched = if discovering {
        group.watch_all(&mounts::discover(&entries, &cfg.exec.watch_types), false)?
    } else {
        group.watch_all(&mounts::describe(&cfg.exec.watch, &entries), true)?
    };
    if watched.is_empty() && !discovering {
        bail!("no filesystem could be watched");
    }
    let mounts: Vec<_> = watched.iter().map(|w| w.mount.clone()).collect();
    let controls = unseen::SharedControls::default();
    let arbiter = Arc::new(Arbiter::new(
        Options {
            deadline: Duration::from_millis(cfg.deadline_ms),
            workers: cfg.workers(),
            deny_ttl: Duration::from_millis(cfg.exec.deny_cache_ms),
            cache_entries: cfg.exec.cache_entries,
            self_pid: std::process::id() as i32,
            kernel_cache: cfg.exec.kernel_cache,
            max_pending,
            max_hash_bytes: cfg.exec.max_hash_mb << 20,
        },
        mode,
        rules,
        Arc::new(net::Verdicts {
            output: output.clone(),
            net: net.clone(),
        }),
        Arc::new(unseen::Invalidate {
            group: group.clone(),
            controls: controls.clone(),
        }),
    )?);
    let _ = engine.set(arbiter.clone());
    // The sources are in force before the first exec is read, and the guard judges with them
    // (package trust lets lockdown run the shell).
    arbiter.set_sources(registry.sources());
    guard::check_mode(
        &arbiter.rules(),
        mode,
        &guard::covered(&mounts, holds_unwatched(&cfg)),
        &arbiter.sources(),
    )
    .map_err(anyhow::Error::msg)?;
    let sources_stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    sources::follow(&registry, &cfg, &loaded, sources_stop.clone())
        .context("cannot start following the reputation sources")?;
    let mode_now = arbiter.clone();
    let access = access::FileAccess::start(
        &cfg,
        config_path,
        output.clone(),
        Arc::new(move || mode_now.mode()),
    )
    .context("cannot start the file access rules")?;
    let files = files::FileEvents::start(
        &cfg,
        &mounts,
        access.clone(),
        output.clone(),
        recent.clone(),
    )
    .context("cannot start file events")?;
    let n_rules = arbiter.rules().rules().len();
    let watched_live: follow::Watched = Arc::new(Mutex::new(watched));
    let telemetry = if cfg.telemetry.process {
        telemetry::Telemetry::start(telemetry::Wiring {
            output: output.clone(),
            arbiter: arbiter.clone(),
            controls,
            guardian: guardian.clone(),
            watched: watched_live.clone(),
            unseen: cfg.exec.unseen,
            images: cfg.telemetry.images,
            recent,
        })
        .context("cannot start process telemetry")?
    } else {
        telemetry::Telemetry::off()
    };
    let daemon = Arc::new(Daemon {
        arbiter: arbiter.clone(),
        store,
        watched: watched_live.clone(),
        cfg,
        started: Instant::now(),
        output: output.clone(),
        group: group.clone(),
        telemetry: telemetry.clone(),
        rule_lock: Mutex::new(()),
        sources: registry,
        files: files.clone(),
        access: access.clone(),
        net: net.clone(),
    });
    if let Some(n) = &net {
        n.trust_running_if_quarantined(mode, daemon.running_judge());
    }
    custos_control::serve(listener, daemon.clone()).context("cannot serve control socket")?;
    if discovering {
        let files = files.clone();
        follow::follow_mounts(
            group.clone(),
            daemon.cfg.exec.watch_types.clone(),
            watched_live,
            move |fs| {
                if let Some(f) = &files {
                    f.follow(&fs.mount);
                }
            },
        )
        .context("cannot follow the mount table")?;
    }
    let shown: Vec<_> = mounts.iter().map(|m| m.display().to_string()).collect();
    tracing::info!(%mode, rules = n_rules, watched = ?shown, deadline_ms = daemon.cfg.deadline_ms, "custos running");

    let stop = OwnedFd::from(stop_rx);
    let run = group.run(&stop, |held| arbiter.submit(unseen::AnyHeld::Exec(held)));
    tracing::info!("stopping: answering pending execs");
    // The sensor first: holds it already reported reach the arbiter, which answers them all.
    daemon.telemetry.stop();
    if let Some(f) = &files {
        f.stop();
    }
    if let Some(a) = &access {
        a.stop();
    }
    if let Some(n) = &net {
        n.stop();
    }
    sources_stop.store(true, std::sync::atomic::Ordering::Relaxed);
    loaded.save(&daemon.cfg);
    arbiter.shutdown();
    daemon.telemetry.answer_leftovers(arbiter.mode());
    drop(guardian);
    group.release_kernel();
    output.close(Duration::from_secs(3));
    run.context("exec sensor failed")?;
    Ok(())
}

/// Plain opens of ELF images are judged too: lockdown with `[exec] images`.
fn controls_images(cfg: &Config, mode: Mode) -> bool {
    mode == Mode::Lockdown && cfg.exec.images
}

/// The eBPF sensor will hold execs fanotify cannot see.
fn holds_unseen(cfg: &Config) -> bool {
    cfg.telemetry.process && cfg.exec.unseen != Unseen::Off
}

/// The eBPF sensor will hold execs from every unwatched filesystem.
fn holds_unwatched(cfg: &Config) -> bool {
    cfg.telemetry.process && cfg.exec.unseen == Unseen::Unwatched
}

/// Every held exec pins fds until it is answered: fanotify's event fd, or for an exec the eBPF
/// sensor stopped a pidfd and the program's file; every in-flight hash a dup of one. Raises the
/// soft fd limit to the hard one and returns how many holds plus hashes may exist at once: a
/// quarter of the limit, so the kernel can always open the next event's fd (if it cannot, it
/// denies that exec and the read fails).
fn raise_fd_limit() -> usize {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap_or((1024, 1024));
    let soft = if hard > soft && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        hard
    } else {
        soft
    };
    usize::try_from(soft / 4)
        .unwrap_or(usize::MAX)
        .clamp(16, 65_536)
}
