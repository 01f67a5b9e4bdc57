//! ACL tokens, policies and roles in Consul's JSON shapes, as stored
//! objects (kinds `acl-token` keyed by AccessorID with the SecretID as the
//! unique name, `acl-policy` and `acl-role` keyed by ID with unique names),
//! and the rules service and node identities stand for.

use muster_engine::StoredObject;
use serde::{Deserialize, Serialize};

use super::rules::{Access, Resource, Rule, Rules};

/// Stored-object kinds.
pub(crate) const TOKEN: &str = "acl-token";
pub(crate) const POLICY: &str = "acl-policy";
pub(crate) const ROLE: &str = "acl-role";
/// The bootstrap marker (its CAS makes bootstrap happen once).
pub(crate) const BOOTSTRAP: &str = "acl-bootstrap";

/// The built-in management policy's ID and name (Consul's).
pub const MANAGEMENT_POLICY_ID: &str = "00000000-0000-0000-0000-000000000001";
pub(crate) const MANAGEMENT_POLICY_NAME: &str = "global-management";
/// The anonymous token's AccessorID (Consul's).
pub const ANONYMOUS_ACCESSOR: &str = "00000000-0000-0000-0000-000000000002";

/// A link to a policy or role: by ID or by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(crate) struct Link {
    #[serde(rename = "ID")]
    pub id: String,
    pub name: String,
}

impl Link {
    /// Whether it names the item with this ID and name (by ID when it has
    /// one, else by name).
    pub(crate) fn names(&self, id: &str, name: &str) -> bool {
        if self.id.is_empty() {
            self.name == name
        } else {
            self.id == id
        }
    }
}

/// `ServiceIdentities` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(crate) struct ServiceIdentity {
    pub service_name: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub datacenters: Vec<String>,
}

/// `NodeIdentities` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(crate) struct NodeIdentity {
    pub node_name: String,
    pub datacenter: String,
}

/// A token (`api.ACLToken`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(crate) struct Token {
    #[serde(rename = "AccessorID")]
    pub accessor_id: String,
    #[serde(rename = "SecretID")]
    pub secret_id: String,
    pub description: String,
    pub policies: Vec<Link>,
    pub roles: Vec<Link>,
    pub service_identities: Vec<ServiceIdentity>,
    pub node_identities: Vec<NodeIdentity>,
    pub local: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expiration_time: Option<String>,
    pub create_time: String,
    pub create_index: u64,
    pub modify_index: u64,
}

/// A policy (`api.ACLPolicy`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(crate) struct Policy {
    #[serde(rename = "ID")]
    pub id: String,
    pub name: String,
    pub description: String,
    pub rules: String,
    pub datacenters: Vec<String>,
    pub create_index: u64,
    pub modify_index: u64,
}

/// A role (`api.ACLRole`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(crate) struct Role {
    #[serde(rename = "ID")]
    pub id: String,
    pub name: String,
    pub description: String,
    pub policies: Vec<Link>,
    pub service_identities: Vec<ServiceIdentity>,
    pub node_identities: Vec<NodeIdentity>,
    pub create_index: u64,
    pub modify_index: u64,
}

/// What the three have in common as stored objects.
pub(crate) trait Stored: Serialize + serde::de::DeserializeOwned + Clone {
    const KIND: &'static str;
    fn id(&self) -> &str;
    fn unique(&self) -> &str;
    fn set_indexes(&mut self, create: u64, modify: u64);

    fn to_object(&self) -> StoredObject {
        let mut body = self.clone();
        body.set_indexes(0, 0);
        StoredObject {
            kind: Self::KIND.into(),
            id: self.id().to_string(),
            name: self.unique().to_string(),
            body: serde_json::to_vec(&body).unwrap_or_default(),
            ..StoredObject::default()
        }
    }

    fn from_object(o: &StoredObject) -> Option<Self> {
        let mut v: Self = serde_json::from_slice(&o.body).ok()?;
        v.set_indexes(o.create_index, o.modify_index);
        Some(v)
    }
}

impl Stored for Token {
    const KIND: &'static str = TOKEN;
    fn id(&self) -> &str {
        &self.accessor_id
    }
    fn unique(&self) -> &str {
        &self.secret_id
    }
    fn set_indexes(&mut self, create: u64, modify: u64) {
        self.create_index = create;
        self.modify_index = modify;
    }
}

impl Stored for Policy {
    const KIND: &'static str = POLICY;
    fn id(&self) -> &str {
        &self.id
    }
    fn unique(&self) -> &str {
        &self.name
    }
    fn set_indexes(&mut self, create: u64, modify: u64) {
        self.create_index = create;
        self.modify_index = modify;
    }
}

impl Stored for Role {
    const KIND: &'static str = ROLE;
    fn id(&self) -> &str {
        &self.id
    }
    fn unique(&self) -> &str {
        &self.name
    }
    fn set_indexes(&mut self, create: u64, modify: u64) {
        self.create_index = create;
        self.modify_index = modify;
    }
}

/// The built-in management policy.
pub(crate) fn management_policy() -> Policy {
    Policy {
        id: MANAGEMENT_POLICY_ID.into(),
        name: MANAGEMENT_POLICY_NAME.into(),
        description: "Builtin Policy that grants unlimited access".into(),
        rules: String::new(),
        ..Policy::default()
    }
}

fn rule(resource: Resource, segment: &str, prefix: bool, access: Access) -> Rule {
    Rule {
        resource,
        segment: segment.to_string(),
        prefix,
        access,
    }
}

/// The rules a service identity stands for (Consul's): write on the
/// service and its sidecar proxy, read on every service and node.
pub(crate) fn service_identity_rules(name: &str) -> Rules {
    Rules {
        rules: vec![
            rule(Resource::Service, name, false, Access::Write),
            rule(
                Resource::Service,
                &format!("{name}-sidecar-proxy"),
                false,
                Access::Write,
            ),
            rule(Resource::Service, "", true, Access::Read),
            rule(Resource::Node, "", true, Access::Read),
        ],
        globals: Vec::new(),
    }
}

/// The rules a node identity stands for (Consul's): write on the node,
/// read on every service.
pub(crate) fn node_identity_rules(name: &str) -> Rules {
    Rules {
        rules: vec![
            rule(Resource::Node, name, false, Access::Write),
            rule(Resource::Service, "", true, Access::Read),
        ],
        globals: Vec::new(),
    }
}
