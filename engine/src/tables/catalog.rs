//! The catalog and health tables: nodes, service instances (with a name
//! index) and checks. Apply of register/deregister and the reads behind
//! `/v1/catalog/*` and `/v1/health/*`.
//!
//! Keys: nodes by lowercase name (node names match case-insensitively);
//! instances by `node\0id`; the name index by `name\0node\0id`; checks by
//! `node\0check_id`. Every write marks the per-service index of each service
//! whose health result it can change (its instances, their checks, and their
//! node and node checks) and the per-node index of the node.

use crate::command::Response;
use crate::error::Result;
use crate::stage::{Ks, Read, Stage};
use crate::tables::session;
use crate::types::{Check, Node, Service, ServiceHealth, Status};
use crate::views::{decode, encode};
use crate::watch::Table;

const SEP: u8 = 0;

pub(crate) fn pair_key(a: &str, b: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(a.len() + b.len() + 1);
    k.extend_from_slice(a.as_bytes());
    k.push(SEP);
    k.extend_from_slice(b.as_bytes());
    k
}

pub(crate) fn prefix_key(a: &str) -> Vec<u8> {
    let mut k = a.as_bytes().to_vec();
    k.push(SEP);
    k
}

pub(crate) fn name_key(service: &str, lower: &str, id: &str) -> Vec<u8> {
    let mut k = pair_key(service, lower);
    k.push(SEP);
    k.extend_from_slice(id.as_bytes());
    k
}

/// A node by (any-case) name.
pub(crate) fn get_node(r: &(impl Read + ?Sized), name: &str) -> Result<Option<Node>> {
    match r.get(Ks::Nodes, name.to_lowercase().as_bytes())? {
        Some(v) => Ok(Some(decode(&v, "node")?)),
        None => Ok(None),
    }
}

/// Every node, sorted by lowercase name.
pub(crate) fn all_nodes(r: &(impl Read + ?Sized)) -> Result<Vec<Node>> {
    scan_rows(r, Ks::Nodes, b"", "node")
}

/// Decode every row under `prefix`.
pub(crate) fn scan_rows<T: serde::de::DeserializeOwned>(
    r: &(impl Read + ?Sized),
    ks: Ks,
    prefix: &[u8],
    what: &'static str,
) -> Result<Vec<T>> {
    let mut out = Vec::new();
    r.scan(ks, prefix, &mut |_, v| {
        out.push(decode(v, what)?);
        Ok(true)
    })?;
    Ok(out)
}

/// The instances on a node (`lower` = lowercase name), sorted by ID.
pub(crate) fn node_services(r: &(impl Read + ?Sized), lower: &str) -> Result<Vec<Service>> {
    scan_rows(r, Ks::Services, &prefix_key(lower), "service")
}

/// The checks on a node (`lower` = lowercase name), sorted by ID.
pub(crate) fn node_checks(r: &(impl Read + ?Sized), lower: &str) -> Result<Vec<Check>> {
    scan_rows(r, Ks::Checks, &prefix_key(lower), "check")
}

/// Every check, sorted by node then ID.
pub(crate) fn all_checks(r: &(impl Read + ?Sized)) -> Result<Vec<Check>> {
    scan_rows(r, Ks::Checks, b"", "check")
}

pub(crate) fn get_service(
    r: &(impl Read + ?Sized),
    lower: &str,
    id: &str,
) -> Result<Option<Service>> {
    match r.get(Ks::Services, &pair_key(lower, id))? {
        Some(v) => Ok(Some(decode(&v, "service")?)),
        None => Ok(None),
    }
}

pub(crate) fn get_check(r: &(impl Read + ?Sized), lower: &str, id: &str) -> Result<Option<Check>> {
    match r.get(Ks::Checks, &pair_key(lower, id))? {
        Some(v) => Ok(Some(decode(&v, "check")?)),
        None => Ok(None),
    }
}

/// `(lowercase node, instance id)` of every instance of a service, sorted.
pub(crate) fn instances_of(
    r: &(impl Read + ?Sized),
    service: &str,
) -> Result<Vec<(String, String)>> {
    let prefix = prefix_key(service);
    let mut out = Vec::new();
    r.scan(Ks::ServiceNames, &prefix, &mut |key, _| {
        let rest = key.get(prefix.len()..).unwrap_or_default();
        let mut parts = rest.splitn(2, |b| *b == SEP);
        let node = parts.next().unwrap_or_default();
        let id = parts.next().unwrap_or_default();
        out.push((
            String::from_utf8_lossy(node).into_owned(),
            String::from_utf8_lossy(id).into_owned(),
        ));
        Ok(true)
    })?;
    Ok(out)
}

/// The instances of a service with their nodes and (with `with_checks`)
/// their checks: the node's checks, then the instance's.
pub(crate) fn service_health(
    views: &(impl Read + ?Sized),
    name: &str,
    with_checks: bool,
) -> Result<Vec<ServiceHealth>> {
    let mut out = Vec::new();
    let mut node_cache: Option<(String, Node, Vec<Check>)> = None;
    for (lower, id) in instances_of(views, name)? {
        let Some(service) = get_service(views, &lower, &id)? else {
            continue;
        };
        if node_cache.as_ref().is_none_or(|(l, _, _)| l != &lower) {
            let Some(node) = get_node(views, &lower)? else {
                continue;
            };
            let checks = if with_checks {
                node_checks(views, &lower)?
            } else {
                Vec::new()
            };
            node_cache = Some((lower.clone(), node, checks));
        }
        let Some((_, node, checks_on_node)) = node_cache.as_ref() else {
            continue;
        };
        let mut checks: Vec<Check> = checks_on_node
            .iter()
            .filter(|c| c.service_id.is_empty())
            .cloned()
            .collect();
        checks.extend(
            checks_on_node
                .iter()
                .filter(|c| c.service_id == service.id)
                .cloned(),
        );
        out.push(ServiceHealth {
            node: node.clone(),
            service,
            checks,
        });
    }
    Ok(out)
}

fn same_node(a: &Node, b: &Node) -> bool {
    Node {
        create_index: 0,
        modify_index: 0,
        ..a.clone()
    } == Node {
        create_index: 0,
        modify_index: 0,
        ..b.clone()
    }
}

fn same_service(a: &Service, b: &Service) -> bool {
    Service {
        create_index: 0,
        modify_index: 0,
        ..a.clone()
    } == Service {
        create_index: 0,
        modify_index: 0,
        ..b.clone()
    }
}

fn same_check(a: &Check, b: &Check) -> bool {
    Check {
        create_index: 0,
        modify_index: 0,
        ..a.clone()
    } == Check {
        create_index: 0,
        modify_index: 0,
        ..b.clone()
    }
}

/// Mark every service on a node changed (a node or node-check write changes
/// their health results).
fn touch_node_services(st: &mut Stage, lower: &str, extra: Option<&Service>) -> Result<()> {
    for s in node_services(st, lower)? {
        st.touched.service(&s.service);
    }
    if let Some(s) = extra {
        st.touched.service(&s.service);
    }
    Ok(())
}

/// Stage a check write; a check going critical invalidates the sessions
/// linked to it (§8.3).
fn put_check(st: &mut Stage, index: u64, lower: &str, check: &Check) -> Result<()> {
    st.insert(
        Ks::Checks,
        pair_key(lower, &check.check_id),
        encode(check, "check")?,
    );
    st.touched.table(Table::Checks);
    st.touched.node(lower);
    if check.status == Status::Critical {
        session::invalidate_linked(st, index, lower, &check.check_id)?;
    }
    Ok(())
}

/// Stage a check removal; sessions linked to it are invalidated.
fn remove_check(st: &mut Stage, index: u64, lower: &str, check_id: &str) -> Result<()> {
    st.remove(Ks::Checks, pair_key(lower, check_id));
    st.touched.table(Table::Checks);
    st.touched.node(lower);
    session::invalidate_linked(st, index, lower, check_id)
}

/// Upsert a node and optionally a service instance and checks on it.
#[allow(clippy::too_many_arguments)]
pub(crate) fn register(
    st: &mut Stage,
    index: u64,
    node: &Node,
    skip_node_update: bool,
    service: Option<&Service>,
    checks: &[Check],
) -> Result<Response> {
    if node.node.is_empty() {
        return Ok(Response::Rejected("Must provide node".into()));
    }
    let lower = node.node.to_lowercase();
    let existing_node = get_node(st, &node.node)?;

    // Validate everything before staging any write: a rejected register
    // changes nothing.
    if let Some(s) = service {
        if s.id.is_empty() || s.service.is_empty() {
            return Ok(Response::Rejected(
                "Must provide service name and ID".into(),
            ));
        }
    }
    for c in checks {
        if c.check_id.is_empty() {
            return Ok(Response::Rejected("Must provide check ID".into()));
        }
        if !c.service_id.is_empty()
            && service.map(|s| s.id != c.service_id).unwrap_or(true)
            && get_service(st, &lower, &c.service_id)?.is_none()
        {
            return Ok(Response::Rejected("Missing service registration".into()));
        }
    }

    // The node.
    let stored_node = match existing_node {
        Some(e) if skip_node_update => e,
        Some(e) => {
            let new = Node {
                create_index: e.create_index,
                modify_index: index,
                ..node.clone()
            };
            if same_node(&e, &new) {
                e
            } else {
                st.insert(Ks::Nodes, lower.as_bytes(), encode(&new, "node")?);
                st.touched.table(Table::Nodes);
                st.touched.node(&lower);
                touch_node_services(st, &lower, None)?;
                new
            }
        }
        None => {
            let new = Node {
                create_index: index,
                modify_index: index,
                ..node.clone()
            };
            st.insert(Ks::Nodes, lower.as_bytes(), encode(&new, "node")?);
            st.touched.table(Table::Nodes);
            st.touched.node(&lower);
            new
        }
    };

    // The service instance.
    let mut instance: Option<Service> = None;
    if let Some(s) = service {
        let existing = get_service(st, &lower, &s.id)?;
        let new = Service {
            node: stored_node.node.clone(),
            create_index: existing.as_ref().map(|e| e.create_index).unwrap_or(index),
            modify_index: index,
            ..s.clone()
        };
        match &existing {
            Some(e) if same_service(e, &new) => instance = Some(e.clone()),
            _ => {
                if let Some(e) = &existing {
                    if e.service != new.service {
                        st.remove(Ks::ServiceNames, name_key(&e.service, &lower, &e.id));
                        st.touched.service(&e.service);
                    }
                }
                st.insert(
                    Ks::Services,
                    pair_key(&lower, &new.id),
                    encode(&new, "service")?,
                );
                st.insert(
                    Ks::ServiceNames,
                    name_key(&new.service, &lower, &new.id),
                    Vec::new(),
                );
                st.touched.table(Table::Services);
                st.touched.service(&new.service);
                st.touched.node(&lower);
                // The instance's checks carry copies of its name and tags.
                for mut c in node_checks(st, &lower)? {
                    if c.service_id == new.id
                        && !checks.iter().any(|r| r.check_id == c.check_id)
                        && (c.service_name != new.service || c.service_tags != new.tags)
                    {
                        c.service_name = new.service.clone();
                        c.service_tags = new.tags.clone();
                        c.modify_index = index;
                        put_check(st, index, &lower, &c)?;
                    }
                }
                instance = Some(new);
            }
        }
    }

    // The checks.
    for c in checks {
        let owner = if c.service_id.is_empty() {
            None
        } else if let Some(s) = instance.as_ref().filter(|s| s.id == c.service_id) {
            Some(s.clone())
        } else {
            get_service(st, &lower, &c.service_id)?
        };
        let existing = get_check(st, &lower, &c.check_id)?;
        let new = Check {
            node: stored_node.node.clone(),
            service_name: owner
                .as_ref()
                .map(|s| s.service.clone())
                .unwrap_or_default(),
            service_tags: owner.as_ref().map(|s| s.tags.clone()).unwrap_or_default(),
            create_index: existing.as_ref().map(|e| e.create_index).unwrap_or(index),
            modify_index: index,
            ..c.clone()
        };
        if existing.as_ref().is_some_and(|e| same_check(e, &new)) {
            continue;
        }
        put_check(st, index, &lower, &new)?;
        // A check that moved between services changes both.
        if let Some(e) = &existing {
            if !e.service_name.is_empty() {
                st.touched.service(&e.service_name);
            } else {
                touch_node_services(st, &lower, instance.as_ref())?;
            }
        }
        match &owner {
            Some(s) => st.touched.service(&s.service),
            None => touch_node_services(st, &lower, instance.as_ref())?,
        }
    }
    Ok(Response::Bool(true))
}

/// Remove a check, a service instance and its checks, or a whole node.
pub(crate) fn deregister(
    st: &mut Stage,
    index: u64,
    node: &str,
    service_id: Option<&str>,
    check_id: Option<&str>,
) -> Result<Response> {
    let lower = node.to_lowercase();
    if !st.contains(Ks::Nodes, lower.as_bytes())? {
        return Ok(Response::Bool(true));
    }
    match (
        service_id.filter(|s| !s.is_empty()),
        check_id.filter(|c| !c.is_empty()),
    ) {
        (Some(sid), _) => {
            let Some(s) = get_service(st, &lower, sid)? else {
                return Ok(Response::Bool(true));
            };
            remove_service(st, index, &lower, &s)?;
        }
        (None, Some(cid)) => {
            let Some(c) = get_check(st, &lower, cid)? else {
                return Ok(Response::Bool(true));
            };
            remove_check(st, index, &lower, cid)?;
            if c.service_name.is_empty() {
                touch_node_services(st, &lower, None)?;
            } else {
                st.touched.service(&c.service_name);
            }
        }
        (None, None) => {
            for s in node_services(st, &lower)? {
                remove_service(st, index, &lower, &s)?;
            }
            for c in node_checks(st, &lower)? {
                remove_check(st, index, &lower, &c.check_id)?;
            }
            session::invalidate_node(st, index, &lower)?;
            st.remove(Ks::Nodes, lower.as_bytes());
            st.touched.table(Table::Nodes);
            st.touched.node(&lower);
        }
    }
    Ok(Response::Bool(true))
}

fn remove_service(st: &mut Stage, index: u64, lower: &str, s: &Service) -> Result<()> {
    st.remove(Ks::Services, pair_key(lower, &s.id));
    st.remove(Ks::ServiceNames, name_key(&s.service, lower, &s.id));
    st.touched.table(Table::Services);
    st.touched.service(&s.service);
    st.touched.node(lower);
    for c in node_checks(st, lower)? {
        if c.service_id == s.id {
            remove_check(st, index, lower, &c.check_id)?;
        }
    }
    Ok(())
}
