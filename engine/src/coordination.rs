//! The engine's coordination surface: session reads and renew, the
//! lock-delay check, read-only transactions, and the leader's session TTL
//! timers, which expire a session by proposing its destroy (so apply stays
//! deterministic and followers see the same invalidation).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError, Weak};
use std::time::Duration;

use tokio::time::Instant;

use crate::command::{Command, Response};
use crate::engine::{Engine, Inner};
use crate::error::{Error, Result};
use crate::rpc::{RpcFailure, PATH_RENEW};
use crate::stage::Stage;
use crate::tables::session;
use crate::txn::{self, TxnError, TxnOp, TxnResult};
use crate::types::{Indexed, Session};
use crate::view::table_index;
use crate::watch::{Table, WatchKey, WatchSet};

/// How often the leader looks for expired sessions.
const TTL_TICK: Duration = Duration::from_millis(100);
/// How soon a failed expiry proposal is tried again.
const EXPIRY_RETRY: Duration = Duration::from_secs(1);

/// Per-session expiry deadlines, kept by the leader only.
#[derive(Default)]
pub(crate) struct SessionTimers {
    /// Session ID → (deadline, TTL).
    deadlines: Mutex<HashMap<String, (Instant, Duration)>>,
}

impl SessionTimers {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, Duration)>> {
        self.deadlines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Restart a session's timer at twice its TTL.
    fn reset(&self, id: &str, ttl: Duration) {
        self.lock()
            .insert(id.to_string(), (Instant::now() + ttl * 2, ttl));
    }
}

/// The leader's TTL loop: keep a timer per TTL session (restarted at 2×TTL
/// whenever this server becomes leader or first sees the session), and
/// propose `SessionDestroy` for each that runs out. Ends with the engine.
pub(crate) async fn session_ttl_loop(inner: Weak<Inner>) {
    let mut was_leader = false;
    let mut seen_index = u64::MAX;
    loop {
        tokio::time::sleep(TTL_TICK).await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let engine = Engine { inner };
        if engine.check_leader().is_err() {
            if was_leader {
                engine.inner.session_timers.lock().clear();
            }
            was_leader = false;
            continue;
        }
        let view = engine.read_view();
        let index = table_index(&view, Table::Sessions).unwrap_or(0);
        if !was_leader || index != seen_index {
            match session::list(&view) {
                Ok(all) => {
                    let now = Instant::now();
                    let mut timers = engine.inner.session_timers.lock();
                    timers.retain(|id, _| all.iter().any(|s| &s.id == id));
                    for s in all {
                        if let Some(ttl) = s.ttl_duration() {
                            timers.entry(s.id).or_insert((now + ttl * 2, ttl));
                        }
                    }
                    seen_index = index;
                    was_leader = true;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "reading sessions for TTL timers failed");
                    continue;
                }
            }
        }
        let now = Instant::now();
        let expired: Vec<(String, Duration)> = {
            let mut timers = engine.inner.session_timers.lock();
            let ids: Vec<(String, Duration)> = timers
                .iter()
                .filter(|(_, (deadline, _))| *deadline <= now)
                .map(|(id, (_, ttl))| (id.clone(), *ttl))
                .collect();
            for (id, _) in &ids {
                timers.remove(id);
            }
            ids
        };
        for (id, ttl) in expired {
            tracing::info!(session = %id, "session TTL expired; destroying it");
            let engine = engine.clone();
            tokio::spawn(async move {
                if let Err(e) = engine
                    .propose(Command::SessionDestroy { id: id.clone() })
                    .await
                {
                    // Try again shortly: nothing else would (the timer is
                    // gone, and the sessions table has not changed). A lost
                    // leadership clears every timer; the next leader starts
                    // its own.
                    tracing::warn!(session = %id, error = %e, "destroying an expired session failed; retrying");
                    engine
                        .inner
                        .session_timers
                        .lock()
                        .entry(id)
                        .or_insert((Instant::now() + EXPIRY_RETRY, ttl));
                }
            });
        }
    }
}

impl Engine {
    /// One session. Index: the sessions table, which it watches (a
    /// destroy moves it).
    pub fn session_get(&self, id: &str, ws: &mut WatchSet) -> Result<Indexed<Option<Session>>> {
        let v = self.read_view();
        ws.add(WatchKey::Table(Table::Sessions));
        Ok(Indexed {
            index: table_index(&v, Table::Sessions)?.max(1),
            value: session::get(&v, id)?,
        })
    }

    /// Every session, sorted by ID. Index and watch as for
    /// [`Engine::session_get`].
    pub fn session_list(&self, ws: &mut WatchSet) -> Result<Indexed<Vec<Session>>> {
        let v = self.read_view();
        ws.add(WatchKey::Table(Table::Sessions));
        Ok(Indexed {
            index: table_index(&v, Table::Sessions)?.max(1),
            value: session::list(&v)?,
        })
    }

    /// The sessions of a node (any case), sorted by ID. Index and watch as
    /// for [`Engine::session_get`].
    pub fn session_node(&self, node: &str, ws: &mut WatchSet) -> Result<Indexed<Vec<Session>>> {
        let v = self.read_view();
        ws.add(WatchKey::Table(Table::Sessions));
        Ok(Indexed {
            index: table_index(&v, Table::Sessions)?.max(1),
            value: session::of_node(&v, &node.to_lowercase())?,
        })
    }

    /// Renew a session: restart its TTL timer at 2×TTL on the leader (a
    /// follower forwards the renew there). `Ok(None)` if the session does
    /// not exist (the API's 404).
    pub async fn session_renew(&self, id: &str) -> Result<Option<Session>> {
        if self.check_leader().is_err() {
            let Some(leader) = self.leader_addr() else {
                return Err(Error::NoLeader);
            };
            return self.call_leader(&leader, PATH_RENEW, &id).await;
        }
        self.renew_local(id)
    }

    /// Leader side of a forwarded renew.
    pub(crate) fn serve_renew(&self, id: &str) -> std::result::Result<Option<Session>, RpcFailure> {
        if self.check_leader().is_err() {
            return Err(RpcFailure::NotLeader {
                leader: self.leader_addr(),
            });
        }
        self.renew_local(id)
            .map_err(|e| RpcFailure::Failed(e.to_string()))
    }

    fn renew_local(&self, id: &str) -> Result<Option<Session>> {
        let Some(s) = session::get(self.views(), id)? else {
            return Ok(None);
        };
        if let Some(ttl) = s.ttl_duration() {
            self.inner.session_timers.reset(id, ttl);
        }
        Ok(Some(s))
    }

    /// The time left in `key`'s lock-delay window (an `acquire` in it must
    /// answer `false` without writing), if any.
    pub fn kv_lock_delay(&self, key: &str) -> Option<Duration> {
        self.inner.shared.lock_delay_left(key)
    }

    /// Run a transaction of only read verbs against the current views,
    /// without the log. Returns its results, or its errors.
    pub fn txn_read(&self, ops: &[TxnOp]) -> Result<(Vec<TxnResult>, Vec<TxnError>)> {
        let mut st = Stage::new(self.views());
        match txn::run(&mut st, 0, ops)? {
            Response::Txn { results, errors } => Ok((results, errors)),
            _ => Ok((Vec::new(), Vec::new())),
        }
    }
}
