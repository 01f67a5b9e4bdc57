//! The catalog and health tables: nodes, service instances (with a name
//! index) and checks. Apply of register/deregister and the reads behind
//! `/v1/catalog/*` and `/v1/health/*`.
//!
//! Keys: nodes by lowercase name (node names match case-insensitively);
//! instances by `node\0id`; the name index by `name\0node\0id`; checks by
//! `node\0check_id`. Every write marks the per-service index of each service
//! whose health result it can change (its instances, their checks, and their
//! node and node checks) and the per-node index of the node.

use fjall::OwnedWriteBatch;

use crate::apply::Touched;
use crate::command::Response;
use crate::error::Result;
use crate::types::{Check, Node, Service, ServiceHealth};
use crate::views::{decode, encode, Views};
use crate::watch::Table;

const SEP: u8 = 0;

fn pair_key(a: &str, b: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(a.len() + b.len() + 1);
    k.extend_from_slice(a.as_bytes());
    k.push(SEP);
    k.extend_from_slice(b.as_bytes());
    k
}

fn prefix_key(a: &str) -> Vec<u8> {
    let mut k = a.as_bytes().to_vec();
    k.push(SEP);
    k
}

fn name_key(service: &str, lower: &str, id: &str) -> Vec<u8> {
    let mut k = pair_key(service, lower);
    k.push(SEP);
    k.extend_from_slice(id.as_bytes());
    k
}

/// A node by (any-case) name.
pub(crate) fn get_node(views: &Views, name: &str) -> Result<Option<Node>> {
    match views.nodes.get(name.to_lowercase().as_bytes())? {
        Some(v) => Ok(Some(decode(&v, "node")?)),
        None => Ok(None),
    }
}

/// Every node, sorted by lowercase name.
pub(crate) fn all_nodes(views: &Views) -> Result<Vec<Node>> {
    let mut out = Vec::new();
    for item in views.nodes.iter() {
        let (_, v) = item.into_inner()?;
        out.push(decode(&v, "node")?);
    }
    Ok(out)
}

/// The instances on a node (`lower` = lowercase name), sorted by ID.
pub(crate) fn node_services(views: &Views, lower: &str) -> Result<Vec<Service>> {
    let mut out = Vec::new();
    for item in views.services.prefix(prefix_key(lower)) {
        let (_, v) = item.into_inner()?;
        out.push(decode(&v, "service")?);
    }
    Ok(out)
}

/// The checks on a node (`lower` = lowercase name), sorted by ID.
pub(crate) fn node_checks(views: &Views, lower: &str) -> Result<Vec<Check>> {
    let mut out = Vec::new();
    for item in views.checks.prefix(prefix_key(lower)) {
        let (_, v) = item.into_inner()?;
        out.push(decode(&v, "check")?);
    }
    Ok(out)
}

/// Every check, sorted by node then ID.
pub(crate) fn all_checks(views: &Views) -> Result<Vec<Check>> {
    let mut out = Vec::new();
    for item in views.checks.iter() {
        let (_, v) = item.into_inner()?;
        out.push(decode(&v, "check")?);
    }
    Ok(out)
}

fn get_service(views: &Views, lower: &str, id: &str) -> Result<Option<Service>> {
    match views.services.get(pair_key(lower, id))? {
        Some(v) => Ok(Some(decode(&v, "service")?)),
        None => Ok(None),
    }
}

fn get_check(views: &Views, lower: &str, id: &str) -> Result<Option<Check>> {
    match views.checks.get(pair_key(lower, id))? {
        Some(v) => Ok(Some(decode(&v, "check")?)),
        None => Ok(None),
    }
}

/// `(lowercase node, instance id)` of every instance of a service, sorted.
pub(crate) fn instances_of(views: &Views, service: &str) -> Result<Vec<(String, String)>> {
    let prefix = prefix_key(service);
    let mut out = Vec::new();
    for item in views.service_names.prefix(&prefix) {
        let key = item.key()?;
        let rest = key.get(prefix.len()..).unwrap_or_default();
        let mut parts = rest.splitn(2, |b| *b == SEP);
        let node = parts.next().unwrap_or_default();
        let id = parts.next().unwrap_or_default();
        out.push((
            String::from_utf8_lossy(node).into_owned(),
            String::from_utf8_lossy(id).into_owned(),
        ));
    }
    Ok(out)
}

/// The instances of a service with their nodes and (with `with_checks`)
/// their checks: the node's checks, then the instance's.
pub(crate) fn service_health(
    views: &Views,
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
fn touch_node_services(
    views: &Views,
    touched: &mut Touched,
    lower: &str,
    extra: Option<&Service>,
) -> Result<()> {
    for s in node_services(views, lower)? {
        touched.service(&s.service);
    }
    if let Some(s) = extra {
        touched.service(&s.service);
    }
    Ok(())
}

fn put_check(
    views: &Views,
    batch: &mut OwnedWriteBatch,
    touched: &mut Touched,
    lower: &str,
    check: &Check,
) -> Result<()> {
    batch.insert(
        &views.checks,
        pair_key(lower, &check.check_id),
        encode(check, "check")?,
    );
    touched.table(Table::Checks);
    touched.node(lower);
    Ok(())
}

/// Upsert a node and optionally a service instance and checks on it.
#[allow(clippy::too_many_arguments)]
pub(crate) fn register(
    views: &Views,
    batch: &mut OwnedWriteBatch,
    touched: &mut Touched,
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
    let existing_node = get_node(views, &node.node)?;

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
            && get_service(views, &lower, &c.service_id)?.is_none()
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
                batch.insert(&views.nodes, lower.as_bytes(), encode(&new, "node")?);
                touched.table(Table::Nodes);
                touched.node(&lower);
                touch_node_services(views, touched, &lower, None)?;
                new
            }
        }
        None => {
            let new = Node {
                create_index: index,
                modify_index: index,
                ..node.clone()
            };
            batch.insert(&views.nodes, lower.as_bytes(), encode(&new, "node")?);
            touched.table(Table::Nodes);
            touched.node(&lower);
            new
        }
    };

    // The service instance.
    let mut instance: Option<Service> = None;
    if let Some(s) = service {
        let existing = get_service(views, &lower, &s.id)?;
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
                        batch.remove(&views.service_names, name_key(&e.service, &lower, &e.id));
                        touched.service(&e.service);
                    }
                }
                batch.insert(
                    &views.services,
                    pair_key(&lower, &new.id),
                    encode(&new, "service")?,
                );
                batch.insert(
                    &views.service_names,
                    name_key(&new.service, &lower, &new.id),
                    Vec::new(),
                );
                touched.table(Table::Services);
                touched.service(&new.service);
                touched.node(&lower);
                // The instance's checks carry copies of its name and tags.
                for mut c in node_checks(views, &lower)? {
                    if c.service_id == new.id
                        && !checks.iter().any(|r| r.check_id == c.check_id)
                        && (c.service_name != new.service || c.service_tags != new.tags)
                    {
                        c.service_name = new.service.clone();
                        c.service_tags = new.tags.clone();
                        c.modify_index = index;
                        put_check(views, batch, touched, &lower, &c)?;
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
            get_service(views, &lower, &c.service_id)?
        };
        let existing = get_check(views, &lower, &c.check_id)?;
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
        put_check(views, batch, touched, &lower, &new)?;
        // A check that moved between services changes both.
        if let Some(e) = &existing {
            if !e.service_name.is_empty() {
                touched.service(&e.service_name);
            } else {
                touch_node_services(views, touched, &lower, instance.as_ref())?;
            }
        }
        match &owner {
            Some(s) => touched.service(&s.service),
            None => touch_node_services(views, touched, &lower, instance.as_ref())?,
        }
    }
    Ok(Response::Bool(true))
}

/// Remove a check, a service instance and its checks, or a whole node.
pub(crate) fn deregister(
    views: &Views,
    batch: &mut OwnedWriteBatch,
    touched: &mut Touched,
    _index: u64,
    node: &str,
    service_id: Option<&str>,
    check_id: Option<&str>,
) -> Result<Response> {
    let lower = node.to_lowercase();
    if views.nodes.get(lower.as_bytes())?.is_none() {
        return Ok(Response::Bool(true));
    }
    match (
        service_id.filter(|s| !s.is_empty()),
        check_id.filter(|c| !c.is_empty()),
    ) {
        (Some(sid), _) => {
            let Some(s) = get_service(views, &lower, sid)? else {
                return Ok(Response::Bool(true));
            };
            remove_service(views, batch, touched, &lower, &s)?;
        }
        (None, Some(cid)) => {
            let Some(c) = get_check(views, &lower, cid)? else {
                return Ok(Response::Bool(true));
            };
            batch.remove(&views.checks, pair_key(&lower, cid));
            touched.table(Table::Checks);
            touched.node(&lower);
            if c.service_name.is_empty() {
                touch_node_services(views, touched, &lower, None)?;
            } else {
                touched.service(&c.service_name);
            }
        }
        (None, None) => {
            for s in node_services(views, &lower)? {
                remove_service(views, batch, touched, &lower, &s)?;
            }
            for c in node_checks(views, &lower)? {
                batch.remove(&views.checks, pair_key(&lower, &c.check_id));
                touched.table(Table::Checks);
            }
            batch.remove(&views.nodes, lower.as_bytes());
            touched.table(Table::Nodes);
            touched.node(&lower);
        }
    }
    Ok(Response::Bool(true))
}

fn remove_service(
    views: &Views,
    batch: &mut OwnedWriteBatch,
    touched: &mut Touched,
    lower: &str,
    s: &Service,
) -> Result<()> {
    batch.remove(&views.services, pair_key(lower, &s.id));
    batch.remove(&views.service_names, name_key(&s.service, lower, &s.id));
    touched.table(Table::Services);
    touched.service(&s.service);
    touched.node(lower);
    for c in node_checks(views, lower)? {
        if c.service_id == s.id {
            batch.remove(&views.checks, pair_key(lower, &c.check_id));
            touched.table(Table::Checks);
        }
    }
    Ok(())
}
