//! Property and unit tests of sessions, locks and transactions: random
//! sequences of session, lock, KV and check commands (and transactions of
//! them) against a model, checking the invariants of §8.3: at most one
//! holder per key and only a live session, `LockIndex` never going
//! backwards while a key lives, the lock lookups in step with the keys, and
//! snapshot + replay equal to direct apply.

use std::collections::BTreeMap;

use proptest::prelude::*;

use crate::apply::apply_entry;
use crate::command::{Command, Response};
use crate::sm_tests::{dump, entry};
use crate::snapshot;
use crate::tables::{kv, session};
use crate::txn::{KvVerb, TxnOp};
use crate::types::{Check, Node, ServiceCheckRef, Session, SessionBehavior, Status};
use crate::views::Views;

const SIDS: &[&str] = &["s0", "s1", "s2"];
const KEYS: &[&str] = &["lock/a", "lock/b", "other"];
const NODE: &str = "n1";
const CHECK: &str = "c1";

#[derive(Debug, Clone)]
enum Op {
    /// Create session i: delete behaviour?, linked to the check?
    Create(usize, bool, bool),
    Destroy(usize),
    Lock(usize, usize),
    Unlock(usize, usize),
    Set(usize),
    Delete(usize),
    CheckStatus(Status),
    DeregCheck,
    DeregNode,
    RegNode,
    /// A transaction locking a key for a session, then (if `fail`) a check
    /// that fails so the whole transaction rolls back.
    TxnLock(usize, usize, bool),
}

fn op() -> impl Strategy<Value = Op> {
    let s = 0..SIDS.len();
    let k = 0..KEYS.len();
    prop_oneof![
        4 => (s.clone(), any::<bool>(), any::<bool>()).prop_map(|(s, d, c)| Op::Create(s, d, c)),
        2 => s.clone().prop_map(Op::Destroy),
        6 => (k.clone(), s.clone()).prop_map(|(k, s)| Op::Lock(k, s)),
        2 => (k.clone(), s.clone()).prop_map(|(k, s)| Op::Unlock(k, s)),
        2 => k.clone().prop_map(Op::Set),
        1 => k.clone().prop_map(Op::Delete),
        3 => prop_oneof![Just(Status::Passing), Just(Status::Critical)].prop_map(Op::CheckStatus),
        1 => Just(Op::DeregCheck),
        1 => Just(Op::DeregNode),
        2 => Just(Op::RegNode),
        2 => (k, s, any::<bool>()).prop_map(|(k, s, f)| Op::TxnLock(k, s, f)),
    ]
}

#[derive(Debug, Default, Clone, PartialEq)]
struct ModelKey {
    holder: Option<String>,
    lock_index: u64,
}

#[derive(Debug, Default)]
struct Model {
    node: bool,
    /// The check's status, if registered.
    check: Option<Status>,
    /// Live sessions: id → (delete behaviour, linked to the check).
    sessions: BTreeMap<String, (bool, bool)>,
    keys: BTreeMap<String, ModelKey>,
}

impl Model {
    fn invalidate(&mut self, sid: &str) {
        let Some((delete, _)) = self.sessions.remove(sid) else {
            return;
        };
        let held: Vec<String> = self
            .keys
            .iter()
            .filter(|(_, k)| k.holder.as_deref() == Some(sid))
            .map(|(k, _)| k.clone())
            .collect();
        for k in held {
            if delete {
                self.keys.remove(&k);
            } else if let Some(e) = self.keys.get_mut(&k) {
                e.holder = None;
            }
        }
    }

    fn invalidate_linked(&mut self) {
        let linked: Vec<String> = self
            .sessions
            .iter()
            .filter(|(_, (_, l))| *l)
            .map(|(s, _)| s.clone())
            .collect();
        for s in linked {
            self.invalidate(&s);
        }
    }

    /// `Some(true/false)` for a lock outcome, `None` if rejected.
    fn lock(&mut self, key: &str, sid: &str) -> Option<bool> {
        if !self.sessions.contains_key(sid) {
            return None;
        }
        let e = self.keys.entry(key.to_string()).or_default();
        match e.holder.as_deref() {
            Some(h) if h == sid => Some(true),
            Some(_) => Some(false),
            None => {
                e.holder = Some(sid.to_string());
                e.lock_index += 1;
                Some(true)
            }
        }
    }

    /// The command for `op` and the response the model expects.
    fn apply(&mut self, op: &Op) -> (Command, Response) {
        match op {
            Op::Create(i, delete, linked) => {
                let sid = SIDS[*i];
                let ok = self.node
                    && !self.sessions.contains_key(sid)
                    && (!linked || matches!(self.check, Some(s) if s != Status::Critical));
                let cmd = Command::SessionCreate {
                    session: Session {
                        id: sid.into(),
                        node: NODE.into(),
                        behavior: if *delete {
                            SessionBehavior::Delete
                        } else {
                            SessionBehavior::Release
                        },
                        lock_delay_ns: 1_000_000_000,
                        node_checks: Some(Vec::new()),
                        service_checks: linked.then(|| {
                            vec![ServiceCheckRef {
                                id: CHECK.into(),
                                namespace: String::new(),
                            }]
                        }),
                        ..Session::default()
                    },
                };
                if ok {
                    self.sessions.insert(sid.into(), (*delete, *linked));
                    (cmd, Response::Bool(true))
                } else {
                    (cmd, Response::Rejected(String::new()))
                }
            }
            Op::Destroy(i) => {
                self.invalidate(SIDS[*i]);
                (
                    Command::SessionDestroy {
                        id: SIDS[*i].into(),
                    },
                    Response::Bool(true),
                )
            }
            Op::Lock(k, i) => {
                let cmd = Command::KvLock {
                    key: KEYS[*k].into(),
                    value: b"v".to_vec(),
                    flags: 0,
                    session: SIDS[*i].into(),
                };
                match self.lock(KEYS[*k], SIDS[*i]) {
                    Some(b) => (cmd, Response::Bool(b)),
                    None => (cmd, Response::Rejected(String::new())),
                }
            }
            Op::Unlock(k, i) => {
                let ok = self
                    .keys
                    .get(KEYS[*k])
                    .is_some_and(|e| e.holder.as_deref() == Some(SIDS[*i]));
                if ok {
                    if let Some(e) = self.keys.get_mut(KEYS[*k]) {
                        e.holder = None;
                    }
                }
                (
                    Command::KvUnlock {
                        key: KEYS[*k].into(),
                        value: b"u".to_vec(),
                        flags: 0,
                        session: SIDS[*i].into(),
                    },
                    Response::Bool(ok),
                )
            }
            Op::Set(k) => {
                self.keys.entry(KEYS[*k].into()).or_default();
                (
                    Command::KvSet {
                        key: KEYS[*k].into(),
                        value: b"plain".to_vec(),
                        flags: 0,
                    },
                    Response::Bool(true),
                )
            }
            Op::Delete(k) => {
                self.keys.remove(KEYS[*k]);
                (
                    Command::KvDelete {
                        key: KEYS[*k].into(),
                    },
                    Response::Bool(true),
                )
            }
            Op::CheckStatus(status) => {
                self.node = true;
                self.check = Some(*status);
                if *status == Status::Critical {
                    self.invalidate_linked();
                }
                (register(Some(*status)), Response::Bool(true))
            }
            Op::DeregCheck => {
                if self.node && self.check.take().is_some() {
                    self.invalidate_linked();
                }
                (
                    Command::CatalogDeregister {
                        node: NODE.into(),
                        service_id: None,
                        check_id: Some(CHECK.into()),
                    },
                    Response::Bool(true),
                )
            }
            Op::DeregNode => {
                if self.node {
                    let all: Vec<String> = self.sessions.keys().cloned().collect();
                    for s in all {
                        self.invalidate(&s);
                    }
                }
                self.node = false;
                self.check = None;
                (
                    Command::CatalogDeregister {
                        node: NODE.into(),
                        service_id: None,
                        check_id: None,
                    },
                    Response::Bool(true),
                )
            }
            Op::RegNode => {
                self.node = true;
                (register(None), Response::Bool(true))
            }
            Op::TxnLock(k, i, fail) => {
                let key = KEYS[*k];
                let lock = TxnOp::Kv {
                    verb: KvVerb::Lock,
                    key: key.into(),
                    value: b"t".to_vec(),
                    flags: 0,
                    index: 0,
                    session: SIDS[*i].into(),
                };
                let mut ops = vec![lock];
                if *fail {
                    ops.push(TxnOp::Kv {
                        verb: KvVerb::Get,
                        key: "missing/key".into(),
                        value: Vec::new(),
                        flags: 0,
                        index: 0,
                        session: String::new(),
                    });
                }
                let before = self.keys.get(key).cloned();
                let outcome = self.lock(key, SIDS[*i]);
                let commits = !*fail && outcome == Some(true);
                if !commits {
                    // Rolled back: nothing changes.
                    match before {
                        Some(b) => {
                            self.keys.insert(key.into(), b);
                        }
                        None => {
                            self.keys.remove(key);
                        }
                    }
                }
                // The response is checked loosely (commit or not) below.
                (Command::Txn { ops }, Response::Bool(commits))
            }
        }
    }
}

fn register(check: Option<Status>) -> Command {
    Command::CatalogRegister {
        node: Node {
            node: NODE.into(),
            address: "10.0.0.1".into(),
            ..Node::default()
        },
        skip_node_update: true,
        service: None,
        checks: check
            .map(|status| {
                vec![Check {
                    node: NODE.into(),
                    check_id: CHECK.into(),
                    name: "c".into(),
                    status,
                    ..Check::default()
                }]
            })
            .unwrap_or_default(),
    }
}

/// Does `got` match what the model expected? Rejections compare by kind;
/// transactions by whether they committed.
fn matches_expected(got: &Response, expected: &Response) -> bool {
    match (got, expected) {
        (Response::Rejected(_), Response::Rejected(_)) => true,
        (Response::Txn { errors, .. }, Response::Bool(commits)) => {
            // A lock that returns false also fails the transaction.
            errors.is_empty() == *commits
        }
        (a, b) => a == b,
    }
}

/// Check the views against the model and the lock invariants.
fn check_views(v: &Views, model: &Model, last_lock_index: &mut BTreeMap<String, u64>) {
    let sessions: Vec<String> = session::list(v)
        .expect("sessions")
        .into_iter()
        .map(|s| s.id)
        .collect();
    let want: Vec<String> = model.sessions.keys().cloned().collect();
    assert_eq!(sessions, want, "live sessions");
    let entries = kv::list(v, "").expect("kv");
    let got: BTreeMap<String, ModelKey> = entries
        .iter()
        .map(|e| {
            (
                e.key.clone(),
                ModelKey {
                    holder: e.session.clone(),
                    lock_index: e.lock_index,
                },
            )
        })
        .collect();
    assert_eq!(got, model.keys, "keys, holders and lock indexes");
    for e in &entries {
        // Only live sessions hold locks, and the lookups agree.
        if let Some(h) = &e.session {
            assert!(model.sessions.contains_key(h), "{} held by dead {h}", e.key);
            assert!(session::held_keys(v, h).expect("held").contains(&e.key));
        }
        let last = last_lock_index.entry(e.key.clone()).or_insert(0);
        assert!(
            e.lock_index >= *last,
            "LockIndex of {} went backwards",
            e.key
        );
        *last = e.lock_index;
    }
    for sid in SIDS {
        for k in session::held_keys(v, sid).expect("held") {
            let e = entries.iter().find(|e| e.key == k);
            assert!(
                e.is_some_and(|e| e.session.as_deref() == Some(*sid)),
                "stale lock row {sid}/{k}"
            );
        }
    }
    // Deleted keys start their LockIndex over.
    last_lock_index.retain(|k, _| model.keys.contains_key(k));
}

fn dump_all(v: &Views) -> Vec<Vec<(Vec<u8>, Vec<u8>)>> {
    vec![
        dump(v.ks(crate::views::Ks::Kv)),
        dump(v.ks(crate::views::Ks::Tombstones)),
        dump(v.ks(crate::views::Ks::Sessions)),
        dump(v.ks(crate::views::Ks::SessionIndex)),
        dump(v.ks(crate::views::Ks::Checks)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 20, ..ProptestConfig::default() })]

    #[test]
    fn sessions_and_locks_keep_their_invariants(
        ops in proptest::collection::vec(op(), 1..40),
        cut in 0usize..50,
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let direct = Views::open(&dir.path().join("direct")).expect("open");
        let mut model = Model::default();
        let mut last = BTreeMap::new();
        let mut entries = Vec::new();
        for (i, op) in ops.iter().enumerate() {
            let (cmd, expected) = model.apply(op);
            let e = entry(i as u64 + 1, cmd);
            let (resp, _) = apply_entry(&direct, &e).expect("apply");
            prop_assert!(matches_expected(&resp, &expected), "op {:?}: got {:?}, want {:?}", op, resp, expected);
            check_views(&direct, &model, &mut last);
            entries.push(e);
        }
        let cut = cut.min(entries.len());
        let partial = Views::open(&dir.path().join("partial")).expect("open");
        for e in &entries[..cut] {
            apply_entry(&partial, e).expect("apply");
        }
        let (_, path) = snapshot::build(&partial, &dir.path().join("snaps"), 1).expect("build");
        let restored = Views::open(&dir.path().join("restored")).expect("open");
        let mut file = std::fs::File::open(&path).expect("open snap");
        snapshot::install(&restored, &mut file).expect("install");
        for e in &entries[cut..] {
            apply_entry(&restored, e).expect("apply");
        }
        prop_assert_eq!(dump_all(&direct), dump_all(&restored));
    }
}

fn apply(v: &Views, index: u64, cmd: Command) -> (Response, crate::apply::Effects) {
    apply_entry(v, &entry(index, cmd)).expect("apply")
}

#[test]
fn invalidation_reports_lock_delays_and_release_does_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let v = Views::open(dir.path()).expect("open");
    apply(&v, 1, register(Some(Status::Passing)));
    let create = |id: &str| Command::SessionCreate {
        session: Session {
            id: id.into(),
            node: "N1".into(),
            lock_delay_ns: 2_000_000_000,
            node_checks: Some(vec![CHECK.into()]),
            ..Session::default()
        },
    };
    assert_eq!(apply(&v, 2, create("a")).0, Response::Bool(true));
    assert_eq!(apply(&v, 3, create("b")).0, Response::Bool(true));
    let lock = |key: &str, s: &str| Command::KvLock {
        key: key.into(),
        value: b"x".to_vec(),
        flags: 0,
        session: s.into(),
    };
    assert_eq!(apply(&v, 4, lock("k1", "a")).0, Response::Bool(true));
    assert_eq!(apply(&v, 5, lock("k2", "b")).0, Response::Bool(true));
    // Explicit release: no lock-delay.
    let (r, fx) = apply(
        &v,
        6,
        Command::KvUnlock {
            key: "k2".into(),
            value: b"y".to_vec(),
            flags: 0,
            session: "b".into(),
        },
    );
    assert_eq!(r, Response::Bool(true));
    assert!(fx.lock_delays.is_empty());
    // The linked check going critical invalidates both sessions; only the
    // key still held gets a lock-delay.
    let (_, fx) = apply(&v, 7, register(Some(Status::Critical)));
    assert_eq!(fx.lock_delays, vec![("k1".to_string(), 2_000_000_000)]);
    assert!(session::list(&v).expect("list").is_empty());
    let k1 = kv::get(&v, "k1").expect("get").expect("k1");
    assert_eq!((k1.session, k1.lock_index, k1.modify_index), (None, 1, 7));
    // A critical check refuses new sessions linked to it.
    match apply(&v, 8, create("c")).0 {
        Response::Rejected(m) => assert_eq!(m, "Check 'c1' is in critical state"),
        other => panic!("expected a rejection, got {other:?}"),
    }
    match apply(&v, 9, lock("k1", "a")).0 {
        Response::Rejected(m) => assert_eq!(m, "invalid session \"a\""),
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[test]
fn transaction_sees_its_own_writes_and_rolls_back_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    let v = Views::open(dir.path()).expect("open");
    let kvop = |verb, key: &str, index| TxnOp::Kv {
        verb,
        key: key.into(),
        value: b"1".to_vec(),
        flags: 0,
        index,
        session: String::new(),
    };
    // set then check-index on the same key at this entry's index.
    let (r, _) = apply(
        &v,
        5,
        Command::Txn {
            ops: vec![
                kvop(KvVerb::Set, "a", 0),
                kvop(KvVerb::CheckIndex, "a", 5),
                kvop(KvVerb::Set, "b", 0),
            ],
        },
    );
    match r {
        Response::Txn { results, errors } => {
            assert!(errors.is_empty(), "{errors:?}");
            assert_eq!(results.len(), 3);
        }
        other => panic!("{other:?}"),
    }
    // A failing op rolls back the write before it.
    let (r, _) = apply(
        &v,
        6,
        Command::Txn {
            ops: vec![
                kvop(KvVerb::Set, "c", 0),
                kvop(KvVerb::Delete, "a", 0),
                kvop(KvVerb::CheckNotExists, "b", 0),
            ],
        },
    );
    match r {
        Response::Txn { results, errors } => {
            assert!(results.is_empty());
            assert_eq!(errors.len(), 1);
            assert_eq!(errors[0].op_index, 2);
            assert_eq!(errors[0].what, "key \"b\" exists");
        }
        other => panic!("{other:?}"),
    }
    assert!(kv::get(&v, "c").expect("get").is_none());
    assert!(kv::get(&v, "a").expect("get").is_some());
    assert_eq!(
        crate::view::table_index(&v, crate::watch::Table::Kv).expect("index"),
        5
    );
}
