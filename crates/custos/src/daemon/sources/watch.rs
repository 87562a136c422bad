//! Reloading a source when its files change: a thread polls a cheap stamp (directory mtimes)
//! every two seconds, and after a change waits a second for the writer to finish.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

/// Calls `reload` whenever `stamp` changes, until `stop`.
pub fn spawn<S: PartialEq + Send + 'static>(
    name: &str,
    stop: Arc<AtomicBool>,
    stamp: impl Fn() -> S + Send + 'static,
    reload: impl Fn() + Send + 'static,
) -> std::io::Result<()> {
    let mut seen = stamp();
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            while !stop.load(Relaxed) {
                std::thread::sleep(Duration::from_secs(2));
                if stamp() != seen {
                    std::thread::sleep(Duration::from_secs(1));
                    seen = stamp();
                    reload();
                }
            }
        })?;
    Ok(())
}
