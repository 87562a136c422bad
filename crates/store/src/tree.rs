//! Process trees from stored process events: lineage up, children down.
//!
//! A process's parent is the one its *first* stored event names (its fork, or its snapshot
//! when it was running before the agent): an exec after the parent died names the reaper.

use crate::query::{Reader, Stored, COLUMNS};
use crate::StoreError;
use rusqlite::types::Value as Sql;
use serde_json::Value;

/// Which process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TreeKey {
    /// The most recent process stored with this pid.
    Pid(i64),
    /// Exactly this process.
    Entity(String),
}

impl TreeKey {
    /// A number is a pid; anything else an entity id.
    pub fn parse(s: &str) -> TreeKey {
        match s.parse::<i64>() {
            Ok(p) => TreeKey::Pid(p),
            Err(_) => TreeKey::Entity(s.to_owned()),
        }
    }
}

/// One process as its stored events describe it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ProcessNode {
    /// Entity id.
    pub entity_id: String,
    /// Pid.
    pub pid: Option<i64>,
    /// Parent pid, from the first event.
    pub ppid: Option<i64>,
    /// Parent entity, from the first event.
    pub parent_entity_id: Option<String>,
    /// Programs it ran, in order (the inherited one from its fork first).
    pub programs: Vec<String>,
    /// Command line of its last exec.
    pub command_line: Option<String>,
    /// First event's time (µs since the epoch).
    pub first_us: Option<i64>,
    /// `exit CODE` or `signal N`, if it ended.
    pub ended: Option<String>,
    /// Whether any event names it (an ancestor may only be known by its child's reference).
    pub known: bool,
    /// Children, in start order.
    pub children: Vec<ProcessNode>,
}

/// A process, its ancestors and its descendants.
#[derive(Debug, Clone, PartialEq)]
pub struct Tree {
    /// From the oldest known ancestor down to the parent.
    pub ancestors: Vec<ProcessNode>,
    /// The process asked for, with its descendants.
    pub node: ProcessNode,
    /// More descendants than were loaded (see [`MAX_NODES`]).
    pub truncated: bool,
}

/// Most ancestors followed (a cycle or a broken chain stops earlier).
pub const MAX_DEPTH: usize = 64;
/// Most descendants loaded.
pub const MAX_NODES: usize = 2000;

/// The events that describe a process's life, read through the partial indexes on process
/// events (`INDEXED BY`: the planner might otherwise walk every process event by kind).
const LIFECYCLE: &str = "kind = 'process' AND action IN ('fork', 'exec', 'snapshot', 'exit')";

impl Reader {
    /// The tree around a process, or `None` if no event names it.
    pub fn tree(&self, key: &TreeKey) -> Result<Option<Tree>, StoreError> {
        let entity = match key {
            TreeKey::Entity(e) => e.clone(),
            TreeKey::Pid(p) => {
                let sql = "SELECT entity_id FROM events WHERE pid = ?1 AND entity_id IS NOT NULL
                           ORDER BY ts DESC LIMIT 1";
                match self.conn.query_row(sql, [p], |r| r.get::<_, String>(0)) {
                    Ok(e) => e,
                    Err(rusqlite::Error::QueryReturnedNoRows) => return Ok(None),
                    Err(e) => return Err(StoreError::sqlite(&self.path, "query events", e)),
                }
            }
        };
        let mut node = self.node(&entity)?;
        if !node.known {
            return Ok(None);
        }
        let mut ancestors = Vec::new();
        let mut seen = vec![entity.clone()];
        let mut up = node.parent_entity_id.clone();
        while let Some(p) = up.filter(|p| !seen.contains(p) && ancestors.len() < MAX_DEPTH) {
            let n = self.node(&p)?;
            seen.push(p);
            up = n.parent_entity_id.clone();
            ancestors.push(n);
        }
        ancestors.reverse();
        let mut budget = MAX_NODES;
        let truncated = self.descend(&mut node, &mut budget, 0)?;
        Ok(Some(Tree {
            ancestors,
            node,
            truncated,
        }))
    }

    /// Loads children recursively; returns whether the budget ran out.
    fn descend(
        &self,
        node: &mut ProcessNode,
        budget: &mut usize,
        depth: usize,
    ) -> Result<bool, StoreError> {
        if depth >= MAX_DEPTH {
            return Ok(true);
        }
        let sql = format!(
            "SELECT entity_id FROM events INDEXED BY events_children
             WHERE parent_entity_id = ?1 AND {LIFECYCLE}
             GROUP BY entity_id ORDER BY min(ts)"
        );
        let ids: Vec<String> = {
            let err = |e| StoreError::sqlite(&self.path, "query events", e);
            let mut st = self.conn.prepare_cached(&sql).map_err(err)?;
            let rows = st.query_map([&node.entity_id], |r| r.get(0)).map_err(err)?;
            rows.collect::<Result<_, _>>().map_err(err)?
        };
        let mut truncated = false;
        for id in ids {
            if id == node.entity_id {
                continue;
            }
            if *budget == 0 {
                return Ok(true);
            }
            let mut child = self.node(&id)?;
            // Reparented later: its first event names another parent.
            if child.parent_entity_id.as_deref() != Some(&node.entity_id) {
                continue;
            }
            *budget -= 1;
            truncated |= self.descend(&mut child, budget, depth + 1)?;
            node.children.push(child);
        }
        Ok(truncated)
    }

    /// What the stored lifecycle events say about one process.
    fn node(&self, entity: &str) -> Result<ProcessNode, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM events INDEXED BY events_lifecycle
             WHERE entity_id = ?1 AND {LIFECYCLE} ORDER BY ts, id"
        );
        let events = self.select(&sql, &[Sql::Text(entity.to_owned())])?;
        Ok(describe(entity, &events))
    }
}

fn describe(entity: &str, events: &[Stored]) -> ProcessNode {
    let mut n = ProcessNode {
        entity_id: entity.to_owned(),
        // The entity id ends in the pid: an ancestor known only by reference still has one.
        pid: entity.rsplit(':').next().and_then(|p| p.parse().ok()),
        ..ProcessNode::default()
    };
    for (i, e) in events.iter().enumerate() {
        n.known = true;
        if i == 0 {
            n.first_us = Some(e.row.ts_us);
            n.ppid = e.row.ppid;
            n.parent_entity_id = e.row.parent_entity_id.clone();
            n.pid = e.row.pid.or(n.pid);
        }
        let doc: Value = serde_json::from_str(&e.row.doc).unwrap_or(Value::Null);
        match e.row.action.as_str() {
            "exit" => {
                n.ended = Some(match doc["custos"]["signal"].as_u64() {
                    Some(s) => format!("signal {s}"),
                    None => format!("exit {}", doc["process"]["exit_code"].as_u64().unwrap_or(0)),
                });
            }
            action => {
                if let Some(p) = &e.row.path {
                    if action == "exec" || n.programs.is_empty() {
                        n.programs.push(p.clone());
                    }
                }
                if let Some(c) = doc["process"]["command_line"].as_str() {
                    n.command_line = Some(c.to_owned());
                }
            }
        }
    }
    n
}
