//! Recently seen processes, for naming the process behind a file event after it has exited:
//! short-lived programs (`cp`, `mv`, `touch`) are usually gone by the time their file event is
//! read, and `/proc` no longer knows them. The process sensor notes every exec, fork and
//! snapshot event here.

use custos_event::ProcessRef;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Mutex;

/// How many processes one generation holds; two generations are kept.
const GENERATION: usize = 32_768;

/// pid → the newest process the sensor reported with that pid.
#[derive(Debug, Default)]
pub struct Recent {
    gens: Mutex<[HashMap<u32, ProcessRef>; 2]>,
}

impl Recent {
    /// Notes the process of a process event (`custos.process` exec, fork or snapshot).
    pub fn note(&self, ecs: &Value) {
        if ecs["event"]["module"] != "custos.process" {
            return;
        }
        let p = &ecs["process"];
        let Some(pid) = p["pid"].as_u64().and_then(|n| u32::try_from(n).ok()) else {
            return;
        };
        let text = |v: &Value| v.as_str().map(str::to_owned);
        let known = ProcessRef {
            pid,
            entity_id: text(&p["entity_id"]),
            executable: text(&p["executable"]),
        };
        if known.executable.is_none() {
            return;
        }
        let mut g = self.gens.lock().unwrap_or_else(|e| e.into_inner());
        if g[0].len() >= GENERATION {
            g[1] = std::mem::take(&mut g[0]);
        }
        g[1].remove(&pid);
        g[0].insert(pid, known);
    }

    /// The newest process noted with `pid`.
    pub fn get(&self, pid: u32) -> Option<ProcessRef> {
        let g = self.gens.lock().unwrap_or_else(|e| e.into_inner());
        g[0].get(&pid).or_else(|| g[1].get(&pid)).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn exec(pid: u32, exe: &str) -> Value {
        json!({ "event": { "module": "custos.process", "action": "exec" },
                "process": { "pid": pid, "entity_id": format!("b:1:{pid}"), "executable": exe } })
    }

    #[test]
    fn newest_per_pid_across_generations() {
        let r = Recent::default();
        r.note(&exec(5, "/bin/a"));
        r.note(&exec(5, "/bin/b"));
        r.note(&json!({ "event": { "module": "custos.file" }, "process": { "pid": 6, "executable": "/x" } }));
        assert_eq!(
            r.get(5).and_then(|p| p.executable).as_deref(),
            Some("/bin/b")
        );
        assert_eq!(r.get(6), None, "only process events are noted");
        for pid in 100..100 + GENERATION as u32 + 1 {
            r.note(&exec(pid, "/bin/c"));
        }
        // 5 moved to the older generation and is still found; a second roll drops it.
        assert_eq!(r.get(5).and_then(|p| p.entity_id).as_deref(), Some("b:1:5"));
        for pid in 200_000..200_000 + GENERATION as u32 + 1 {
            r.note(&exec(pid, "/bin/d"));
        }
        assert_eq!(r.get(5), None);
    }
}
