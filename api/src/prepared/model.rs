//! A prepared query in Consul's JSON shape (`api.PreparedQueryDefinition`),
//! its validation (Consul's `parseQuery` rules and messages), and how a
//! name finds its query: an ID, an exact name, or the template whose name
//! is the longest prefix of it, rendered for that name (`${name.full}`,
//! `${name.prefix}`, `${name.suffix}`, `${match(N)}` from the template's
//! `Regexp`, in every string of the query).

use std::collections::BTreeMap;
use std::time::Duration;

use muster_engine::{duration, StoredObject};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The stored-object kind of prepared queries.
pub(crate) const KIND: &str = "query";
/// Consul's message for an unknown query (404).
pub(crate) const NOT_FOUND: &str = "Query not found";
/// The one template type.
const NAME_PREFIX_MATCH: &str = "name_prefix_match";

/// `Template`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(crate) struct Template {
    #[serde(rename = "Type")]
    pub kind: String,
    pub regexp: String,
    pub remove_empty_tags: bool,
}

/// `Service.Failover`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(crate) struct Failover {
    #[serde(rename = "NearestN")]
    pub nearest_n: i64,
    pub datacenters: Vec<String>,
}

/// `Service`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(crate) struct ServiceSpec {
    pub service: String,
    pub failover: Failover,
    pub only_passing: bool,
    #[serde(rename = "IgnoreCheckIDs")]
    pub ignore_check_ids: Vec<String>,
    pub near: String,
    pub tags: Vec<String>,
    pub node_meta: BTreeMap<String, String>,
    pub service_meta: BTreeMap<String, String>,
    pub connect: bool,
}

/// `DNS`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(crate) struct DnsSpec {
    #[serde(rename = "TTL")]
    pub ttl: String,
}

/// A prepared query as the API reads and writes it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(crate) struct Query {
    #[serde(rename = "ID")]
    pub id: String,
    pub name: String,
    pub session: String,
    pub token: String,
    pub template: Template,
    pub service: ServiceSpec,
    #[serde(rename = "DNS")]
    pub dns: DnsSpec,
    pub create_index: u64,
    pub modify_index: u64,
}

impl Query {
    /// Decode a request body (400 on bad JSON).
    pub(crate) fn decode(body: &[u8]) -> Result<Query, String> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Query::default());
        }
        serde_json::from_slice(body).map_err(|e| format!("Request decode failed: {e}"))
    }

    /// Consul's rules for a query definition (its messages; a 500).
    pub(crate) fn validate(&self) -> Result<(), String> {
        match self.template.kind.as_str() {
            "" => {}
            NAME_PREFIX_MATCH => {
                if !self.template.regexp.is_empty() {
                    regex::Regex::new(&self.template.regexp)
                        .map_err(|e| format!("Bad Regexp: {e}"))?;
                }
            }
            other => return Err(format!("Bad Template.Type '{other}'")),
        }
        if self.template.kind.is_empty() && self.service.service.is_empty() {
            return Err("Must provide a Service name to query".into());
        }
        if self.service.failover.nearest_n < 0 {
            return Err(format!(
                "Bad NearestN '{}', must be >= 0",
                self.service.failover.nearest_n
            ));
        }
        self.dns_ttl()?;
        Ok(())
    }

    /// `DNS.TTL` (`None` when empty: the agent's service TTL applies).
    pub(crate) fn dns_ttl(&self) -> Result<Option<Duration>, String> {
        if self.dns.ttl.is_empty() {
            return Ok(None);
        }
        match duration::parse_signed(&self.dns.ttl) {
            Ok((false, d)) => Ok(Some(d)),
            Ok((true, _)) => Err(format!("DNS TTL '{}', must be >=0", self.dns.ttl)),
            Err(e) => Err(format!("Bad DNS TTL '{}': {e}", self.dns.ttl)),
        }
    }

    /// The stored form.
    pub(crate) fn to_object(&self) -> StoredObject {
        let mut body = self.clone();
        body.create_index = 0;
        body.modify_index = 0;
        StoredObject {
            kind: KIND.into(),
            id: self.id.clone(),
            name: self.name.clone(),
            session: self.session.clone(),
            body: serde_json::to_vec(&body).unwrap_or_default(),
            ..StoredObject::default()
        }
    }

    /// Back from the stored form (indexes from the object).
    pub(crate) fn from_object(o: &StoredObject) -> Query {
        let mut q: Query = serde_json::from_slice(&o.body).unwrap_or_default();
        q.id.clone_from(&o.id);
        q.create_index = o.create_index;
        q.modify_index = o.modify_index;
        q
    }

    fn is_template(&self) -> bool {
        self.template.kind == NAME_PREFIX_MATCH
    }
}

/// The query `id_or_name` names among `all`, rendered for that name: by
/// ID, by exact name (not a template), else the template whose name is
/// the longest prefix of it (an empty name matches everything).
pub(crate) fn resolve(all: &[Query], id_or_name: &str) -> Result<Option<Query>, String> {
    if let Some(q) = all.iter().find(|q| q.id == id_or_name) {
        return match q.is_template() {
            true => render(q, &q.name).map(Some),
            false => Ok(Some(q.clone())),
        };
    }
    if let Some(q) = all
        .iter()
        .find(|q| !q.is_template() && q.name == id_or_name)
    {
        return Ok(Some(q.clone()));
    }
    let best = all
        .iter()
        .filter(|q| q.is_template() && id_or_name.starts_with(q.name.as_str()))
        .max_by_key(|q| q.name.len());
    best.map(|q| render(q, id_or_name)).transpose()
}

/// A template rendered for `name`: every string in it (but its ID, name
/// and template) interpolated; with `RemoveEmptyTags`, tags that came
/// out empty dropped.
fn render(template: &Query, name: &str) -> Result<Query, String> {
    let matches: Vec<String> = if template.template.regexp.is_empty() {
        Vec::new()
    } else {
        let re =
            regex::Regex::new(&template.template.regexp).map_err(|e| format!("Bad Regexp: {e}"))?;
        re.captures(name)
            .map(|c| {
                c.iter()
                    .map(|m| m.map_or(String::new(), |m| m.as_str().to_string()))
                    .collect()
            })
            .unwrap_or_default()
    };
    let vars = Vars {
        full: name,
        prefix: &template.name,
        suffix: name.get(template.name.len()..).unwrap_or_default(),
        matches: &matches,
    };
    let mut value = serde_json::to_value(&template.service).map_err(|e| e.to_string())?;
    interpolate(&mut value, &vars)?;
    let mut out = template.clone();
    out.service = serde_json::from_value(value).map_err(|e| e.to_string())?;
    out.dns.ttl = vars.expand(&template.dns.ttl)?;
    if template.template.remove_empty_tags {
        out.service.tags.retain(|t| !t.is_empty());
    }
    Ok(out)
}

/// What `${...}` may name.
struct Vars<'a> {
    full: &'a str,
    prefix: &'a str,
    suffix: &'a str,
    matches: &'a [String],
}

impl Vars<'_> {
    fn lookup(&self, expr: &str) -> Result<String, String> {
        match expr.trim() {
            "name.full" => Ok(self.full.to_string()),
            "name.prefix" => Ok(self.prefix.to_string()),
            "name.suffix" => Ok(self.suffix.to_string()),
            "agent.segment" => Ok(String::new()),
            other => {
                let n = other
                    .strip_prefix("match(")
                    .and_then(|r| r.strip_suffix(')'))
                    .and_then(|n| n.trim().parse::<usize>().ok())
                    .ok_or_else(|| {
                        format!("Failed to interpolate template: unknown variable {other:?}")
                    })?;
                Ok(self.matches.get(n).cloned().unwrap_or_default())
            }
        }
    }

    /// `text` with every `${...}` replaced.
    fn expand(&self, text: &str) -> Result<String, String> {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after.find('}').ok_or_else(|| {
                format!("Failed to interpolate template: unclosed ${{ in {text:?}")
            })?;
            out.push_str(&self.lookup(&after[..end])?);
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

fn interpolate(v: &mut Value, vars: &Vars<'_>) -> Result<(), String> {
    match v {
        Value::String(s) => *s = vars.expand(s)?,
        Value::Array(items) => {
            for item in items {
                interpolate(item, vars)?;
            }
        }
        Value::Object(map) => {
            for item in map.values_mut() {
                interpolate(item, vars)?;
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(id: &str, name: &str, service: &str) -> Query {
        Query {
            id: id.into(),
            name: name.into(),
            service: ServiceSpec {
                service: service.into(),
                ..ServiceSpec::default()
            },
            ..Query::default()
        }
    }

    #[test]
    fn names_find_ids_exact_names_then_the_longest_template() -> Result<(), String> {
        let mut t = q("t1", "geo-", "${name.suffix}");
        t.template.kind = NAME_PREFIX_MATCH.into();
        let mut t2 = q("t2", "geo-db-", "${match(1)}-x");
        t2.template = Template {
            kind: NAME_PREFIX_MATCH.into(),
            regexp: "^geo-db-(.*)$".into(),
            remove_empty_tags: true,
        };
        t2.service.tags = vec!["${match(2)}".into(), "v1".into()];
        let all = vec![q("a", "web", "web"), t, t2];
        let found = |n: &str| resolve(&all, n).map(|o| o.map(|q| q.service.service));
        assert_eq!(found("a")?, Some("web".into()));
        assert_eq!(found("web")?, Some("web".into()));
        assert_eq!(found("geo-api")?, Some("api".into()));
        assert_eq!(found("geo-db-pg")?, Some("pg-x".into()));
        assert_eq!(found("nothing")?, None);
        let r = resolve(&all, "geo-db-pg")?.ok_or("none")?;
        assert_eq!(r.service.tags, vec!["v1".to_string()], "empty tag removed");
        Ok(())
    }

    #[test]
    fn validation_follows_consul() {
        let mut bad = q("x", "n", "");
        assert_eq!(
            bad.validate(),
            Err("Must provide a Service name to query".into())
        );
        bad.service.service = "web".into();
        bad.service.failover.nearest_n = -1;
        assert_eq!(
            bad.validate(),
            Err("Bad NearestN '-1', must be >= 0".into())
        );
        bad.service.failover.nearest_n = 0;
        bad.dns.ttl = "soon".into();
        assert!(bad
            .validate()
            .is_err_and(|e| e.starts_with("Bad DNS TTL 'soon'")));
        bad.dns.ttl = "10s".into();
        bad.template.kind = "other".into();
        assert_eq!(bad.validate(), Err("Bad Template.Type 'other'".into()));
        bad.template.kind = NAME_PREFIX_MATCH.into();
        bad.template.regexp = "(".into();
        assert!(bad.validate().is_err_and(|e| e.starts_with("Bad Regexp")));
        bad.template.regexp = String::new();
        assert_eq!(bad.validate(), Ok(()));
    }
}
