//! The fake engine's coordination side: sessions (create with the node and
//! check rules, destroy with the release/delete effect and lock-delays),
//! KV lock/unlock, and transactions (all-or-nothing over a saved copy of
//! the state), following the engine's rules and messages in a few lines
//! each. Session TTL timers are not modelled, and the catalog `cas` verbs
//! do not compare indexes.

use std::time::{Duration, Instant};

use muster_engine::txn::{CatalogVerb, KvVerb, TxnError, TxnOp, TxnResult};
use muster_engine::watch::Table;
use muster_engine::{Command, Response, SessionBehavior, Status, WatchKey};

use super::{set, FakeState};

impl FakeState {
    /// Apply a session, lock or transaction command at `index`: the
    /// response and the watch keys it touched.
    pub(super) fn apply_coord(&mut self, cmd: Command, index: u64) -> (Response, Vec<WatchKey>) {
        let mut keys = Vec::new();
        let response = match cmd {
            Command::SessionCreate { session } => {
                let r = self.create_session(session, index);
                keys.push(WatchKey::Table(Table::Sessions));
                r
            }
            Command::SessionDestroy { id } => {
                keys = self.destroy_session(&id, index);
                Response::Bool(true)
            }
            Command::KvLock {
                key,
                value,
                flags,
                session,
            } => {
                let r = self.lock_key(&key, value, flags, &session, index);
                keys = vec![WatchKey::KvKey(key), WatchKey::Table(Table::Kv)];
                r
            }
            Command::KvUnlock {
                key,
                value,
                flags,
                session,
            } => {
                let r = self.unlock_key(&key, value, flags, &session, index);
                keys = vec![WatchKey::KvKey(key), WatchKey::Table(Table::Kv)];
                r
            }
            Command::Txn { ops } => {
                let saved = self.save();
                let (results, errors) = self.run_txn(&ops, index);
                if !errors.is_empty() {
                    self.restore(saved);
                }
                keys = vec![
                    WatchKey::Table(Table::Kv),
                    WatchKey::Table(Table::Sessions),
                    WatchKey::Table(Table::Nodes),
                    WatchKey::Table(Table::Services),
                    WatchKey::Table(Table::Checks),
                ];
                keys.extend(ops.iter().filter_map(|op| match op {
                    TxnOp::Kv { key, .. } => Some(WatchKey::KvKey(key.clone())),
                    _ => None,
                }));
                Response::Txn { results, errors }
            }
            _ => Response::None,
        };
        (response, keys)
    }

    fn create_session(&mut self, session: muster_engine::Session, index: u64) -> Response {
        let lc = session.node.to_lowercase();
        let Some(node) = self.cat.nodes.get(&lc) else {
            return Response::Rejected("Missing node registration".into());
        };
        for id in session.linked_checks() {
            match self.cat.checks.get(&(lc.clone(), id.clone())) {
                None => return Response::Rejected(format!("Missing check '{id}' registration")),
                Some(c) if c.status == Status::Critical => {
                    return Response::Rejected(format!("Check '{id}' is in critical state"))
                }
                Some(_) => {}
            }
        }
        let stored = muster_engine::Session {
            node: node.node.clone(),
            create_index: index,
            modify_index: index,
            ..session
        };
        self.sessions.insert(stored.id.clone(), stored);
        self.sessions_index = index;
        Response::Bool(true)
    }

    /// Invalidate a session: its locks are released or deleted and get a
    /// lock-delay.
    pub(super) fn destroy_session(&mut self, id: &str, index: u64) -> Vec<WatchKey> {
        let Some(s) = self.sessions.remove(id) else {
            return Vec::new();
        };
        self.sessions_index = index;
        let mut keys = vec![WatchKey::Table(Table::Sessions)];
        let held: Vec<String> = self
            .kv
            .values()
            .filter(|e| e.session.as_deref() == Some(id))
            .map(|e| e.key.clone())
            .collect();
        for key in held {
            match s.behavior {
                SessionBehavior::Release => {
                    if let Some(e) = self.kv.get_mut(&key) {
                        e.session = None;
                        e.modify_index = index;
                    }
                }
                SessionBehavior::Delete => {
                    self.kv.remove(&key);
                }
            }
            self.kv_index = index;
            if s.lock_delay_ns > 0 {
                let until = Instant::now() + Duration::from_nanos(s.lock_delay_ns);
                self.lock_delays.insert(key.clone(), until);
            }
            keys.push(WatchKey::KvKey(key));
            keys.push(WatchKey::Table(Table::Kv));
        }
        keys
    }

    fn lock_key(
        &mut self,
        key: &str,
        value: Vec<u8>,
        flags: u64,
        session: &str,
        index: u64,
    ) -> Response {
        if session.is_empty() {
            return Response::Rejected("missing session".into());
        }
        if !self.sessions.contains_key(session) {
            return Response::Rejected(format!("invalid session \"{session}\""));
        }
        let holder = self.kv.get(key).and_then(|e| e.session.clone());
        match holder {
            Some(h) if h != session => return Response::Bool(false),
            Some(_) => set(self, key, value, flags, index),
            None => {
                set(self, key, value, flags, index);
                if let Some(e) = self.kv.get_mut(key) {
                    e.lock_index += 1;
                    e.session = Some(session.to_string());
                }
            }
        }
        Response::Bool(true)
    }

    fn unlock_key(
        &mut self,
        key: &str,
        value: Vec<u8>,
        flags: u64,
        session: &str,
        index: u64,
    ) -> Response {
        let held = self
            .kv
            .get(key)
            .is_some_and(|e| !session.is_empty() && e.session.as_deref() == Some(session));
        if !held {
            return Response::Bool(false);
        }
        set(self, key, value, flags, index);
        if let Some(e) = self.kv.get_mut(key) {
            e.session = None;
        }
        Response::Bool(true)
    }

    fn save(&self) -> Saved {
        Saved {
            kv: self.kv.clone(),
            kv_index: self.kv_index,
            cat: self.cat.clone(),
            sessions: self.sessions.clone(),
            sessions_index: self.sessions_index,
        }
    }

    fn restore(&mut self, s: Saved) {
        self.kv = s.kv;
        self.kv_index = s.kv_index;
        self.cat = s.cat;
        self.sessions = s.sessions;
        self.sessions_index = s.sessions_index;
    }

    /// Run a read-only transaction on a copy of the state.
    pub(super) fn read_txn(&self, ops: &[TxnOp]) -> (Vec<TxnResult>, Vec<TxnError>) {
        let mut copy = FakeState::default();
        copy.restore(self.save());
        copy.run_txn(ops, 0)
    }

    /// Run every op; on errors the results are dropped (the caller
    /// restores the state).
    fn run_txn(&mut self, ops: &[TxnOp], index: u64) -> (Vec<TxnResult>, Vec<TxnError>) {
        let mut results = Vec::new();
        let mut errors = Vec::new();
        for (i, op) in ops.iter().enumerate() {
            match self.run_op(op, index) {
                Ok(mut r) => results.append(&mut r),
                Err(what) => errors.push(TxnError { op_index: i, what }),
            }
        }
        if !errors.is_empty() {
            results.clear();
        }
        (results, errors)
    }

    fn kv_result(&self, key: &str) -> Vec<TxnResult> {
        self.kv
            .get(key)
            .cloned()
            .map(TxnResult::Kv)
            .into_iter()
            .collect()
    }

    fn run_op(&mut self, op: &TxnOp, index: u64) -> Result<Vec<TxnResult>, String> {
        let bool_or = |r: Response, msg: String| match r {
            Response::Rejected(m) => Err(m),
            Response::Bool(false) => Err(msg),
            _ => Ok(()),
        };
        match op {
            TxnOp::Kv {
                verb,
                key,
                value,
                flags,
                index: want,
                session,
            } => {
                let current = self.kv.get(key).cloned();
                match verb {
                    KvVerb::Set => set(self, key, value.clone(), *flags, index),
                    KvVerb::Cas => {
                        let ok = current.as_ref().map_or(*want == 0, |e| e.modify_index == *want);
                        if !ok {
                            return Err(format!("failed to set key {key:?}, index is stale"));
                        }
                        set(self, key, value.clone(), *flags, index);
                    }
                    KvVerb::Lock => bool_or(
                        self.lock_key(key, value.clone(), *flags, session, index),
                        format!("failed to lock key {key:?}, lock is already held"),
                    )?,
                    KvVerb::Unlock => bool_or(
                        self.unlock_key(key, value.clone(), *flags, session, index),
                        format!("failed to unlock key {key:?}, lock isn't held, or is held by another session"),
                    )?,
                    KvVerb::Get if current.is_none() => {
                        return Err(format!("key {key:?} doesn't exist"))
                    }
                    KvVerb::Get | KvVerb::GetOrEmpty => {}
                    KvVerb::GetTree => {
                        return Ok(self
                            .kv
                            .values()
                            .filter(|e| e.key.starts_with(key.as_str()))
                            .cloned()
                            .map(TxnResult::Kv)
                            .collect())
                    }
                    KvVerb::CheckIndex => match current {
                        Some(e) if e.modify_index == *want => {}
                        _ => return Err(format!("failed index check for key {key:?}")),
                    },
                    KvVerb::CheckSession => match current {
                        Some(e) if e.session.as_deref() == Some(session.as_str()) => {}
                        _ => return Err(format!("failed session check for key {key:?}")),
                    },
                    KvVerb::CheckNotExists if current.is_some() => {
                        return Err(format!("key {key:?} exists"))
                    }
                    KvVerb::CheckNotExists => return Ok(Vec::new()),
                    KvVerb::Delete | KvVerb::DeleteTree | KvVerb::DeleteCas => {
                        let stale = *verb == KvVerb::DeleteCas
                            && current.as_ref().is_some_and(|e| e.modify_index != *want);
                        if stale {
                            return Err(format!("failed to delete key {key:?}, index is stale"));
                        }
                        let tree = *verb == KvVerb::DeleteTree;
                        self.kv.retain(|k, _| {
                            !(k == key || (tree && k.starts_with(key.as_str())))
                        });
                        self.kv_index = index;
                        return Ok(Vec::new());
                    }
                }
                let mut out = self.kv_result(key);
                if !verb.returns_value() {
                    // The engine returns write and check results without values.
                    for r in &mut out {
                        if let TxnResult::Kv(e) = r {
                            e.value.clear();
                        }
                    }
                }
                Ok(out)
            }
            TxnOp::Node { verb, node } => {
                let lc = node.node.to_lowercase();
                match verb {
                    CatalogVerb::Get => self
                        .cat
                        .nodes
                        .get(&lc)
                        .map(|n| vec![TxnResult::Node(n.clone())])
                        .ok_or_else(|| format!("node {:?} doesn't exist", node.node)),
                    CatalogVerb::Set | CatalogVerb::Cas => {
                        self.register(node.clone(), None, Vec::new(), false, index)?;
                        Ok(self
                            .cat
                            .nodes
                            .get(&lc)
                            .cloned()
                            .map(TxnResult::Node)
                            .into_iter()
                            .collect())
                    }
                    CatalogVerb::Delete | CatalogVerb::DeleteCas => {
                        self.deregister(&node.node, None, None, index)?;
                        Ok(Vec::new())
                    }
                }
            }
            TxnOp::Service {
                verb,
                node,
                service,
            } => {
                let lc = node.to_lowercase();
                let Some(n) = self.cat.nodes.get(&lc).cloned() else {
                    return Err(format!("node {node:?} doesn't exist"));
                };
                let key = (lc, service.id.clone());
                match verb {
                    CatalogVerb::Get => self
                        .cat
                        .services
                        .get(&key)
                        .map(|s| vec![TxnResult::Service(s.clone())])
                        .ok_or_else(|| format!("service {:?} doesn't exist", service.id)),
                    CatalogVerb::Set | CatalogVerb::Cas => {
                        self.register(n, Some(service.clone()), Vec::new(), true, index)?;
                        Ok(self
                            .cat
                            .services
                            .get(&key)
                            .cloned()
                            .map(TxnResult::Service)
                            .into_iter()
                            .collect())
                    }
                    CatalogVerb::Delete | CatalogVerb::DeleteCas => {
                        self.deregister(node, Some(service.id.clone()), None, index)?;
                        Ok(Vec::new())
                    }
                }
            }
            TxnOp::Check { verb, check } => {
                let lc = check.node.to_lowercase();
                let Some(n) = self.cat.nodes.get(&lc).cloned() else {
                    return Err(format!("node {:?} doesn't exist", check.node));
                };
                let key = (lc, check.check_id.clone());
                match verb {
                    CatalogVerb::Get => self
                        .cat
                        .checks
                        .get(&key)
                        .map(|c| vec![TxnResult::Check(c.clone())])
                        .ok_or_else(|| format!("check {:?} doesn't exist", check.check_id)),
                    CatalogVerb::Set | CatalogVerb::Cas => {
                        self.register(n, None, vec![check.clone()], true, index)?;
                        Ok(self
                            .cat
                            .checks
                            .get(&key)
                            .cloned()
                            .map(TxnResult::Check)
                            .into_iter()
                            .collect())
                    }
                    CatalogVerb::Delete | CatalogVerb::DeleteCas => {
                        self.deregister(&check.node, None, Some(check.check_id.clone()), index)?;
                        Ok(Vec::new())
                    }
                }
            }
            TxnOp::SessionDelete { id } => {
                self.destroy_session(id, index);
                Ok(Vec::new())
            }
        }
    }

    fn register(
        &mut self,
        node: muster_engine::Node,
        service: Option<muster_engine::Service>,
        checks: Vec<muster_engine::Check>,
        skip_node_update: bool,
        index: u64,
    ) -> Result<(), String> {
        let cmd = Command::CatalogRegister {
            node,
            skip_node_update,
            service,
            checks,
        };
        self.cat.apply(cmd, index).map(|_| ())
    }

    fn deregister(
        &mut self,
        node: &str,
        service_id: Option<String>,
        check_id: Option<String>,
        index: u64,
    ) -> Result<(), String> {
        let cmd = Command::CatalogDeregister {
            node: node.to_string(),
            service_id,
            check_id,
        };
        self.cat.apply(cmd, index).map(|_| ())
    }
}

/// A copy of the state a transaction may roll back to.
struct Saved {
    kv: std::collections::BTreeMap<String, muster_engine::KvEntry>,
    kv_index: u64,
    cat: super::FakeCatalog,
    sessions: std::collections::BTreeMap<String, muster_engine::Session>,
    sessions_index: u64,
}
