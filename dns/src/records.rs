//! Building resource records (§10.2).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use hickory_proto::rr::rdata::{A, AAAA, SOA, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};

/// A domain name from text; `None` if it is not a valid name.
pub(crate) fn name(text: &str) -> Option<Name> {
    let mut n = Name::from_ascii(text).ok()?;
    n.set_fqdn(true);
    Some(n)
}

/// The A or AAAA record for `ip`.
pub(crate) fn addr(owner: &Name, ttl: u32, ip: IpAddr) -> Record {
    let data = match ip {
        IpAddr::V4(v4) => RData::A(A(v4)),
        IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
    };
    Record::from_rdata(owner.clone(), ttl, data)
}

/// Whether `ip` answers a question of type `qtype`.
pub(crate) fn fits(qtype: RecordType, ip: IpAddr) -> bool {
    matches!(
        (qtype, ip),
        (RecordType::A | RecordType::ANY, IpAddr::V4(_))
            | (RecordType::AAAA | RecordType::ANY, IpAddr::V6(_))
    )
}

/// The SOA of `domain` (without the trailing dot).
pub(crate) fn soa(domain: &str) -> Option<Record> {
    let owner = name(&format!("{domain}."))?;
    let serial = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(0);
    let data = SOA::new(
        name(&format!("ns.{domain}."))?,
        name(&format!("hostmaster.{domain}."))?,
        serial,
        3600,
        600,
        86400,
        0,
    );
    Some(Record::from_rdata(owner, 0, RData::SOA(data)))
}

/// Node meta as TXT records: RFC 1464 `key=value` (with `` ` `` and `=`
/// in keys escaped by `` ` ``), the bare value for `rfc1035-` keys.
pub(crate) fn meta_txt(owner: &Name, ttl: u32, meta: &BTreeMap<String, String>) -> Vec<Record> {
    meta.iter()
        .map(|(k, v)| {
            let text = if k.starts_with("rfc1035-") {
                v.clone()
            } else {
                let mut key = String::with_capacity(k.len());
                for c in k.chars() {
                    if c == '`' || c == '=' {
                        key.push('`');
                    }
                    key.push(c);
                }
                format!("{key}={v}")
            };
            // A character-string holds at most 255 bytes.
            let chunks = text
                .as_bytes()
                .chunks(255)
                .map(|c| String::from_utf8_lossy(c).into_owned())
                .collect();
            Record::from_rdata(owner.clone(), ttl, RData::TXT(TXT::new(chunks)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn txt_escaping() {
        let owner = name("n1.node.dc1.consul.").expect("name");
        let meta = BTreeMap::from([
            ("a=b".to_string(), "c".to_string()),
            ("rfc1035-x".to_string(), "raw".to_string()),
        ]);
        let txt: Vec<String> = meta_txt(&owner, 0, &meta)
            .iter()
            .map(|r| r.data.to_string())
            .collect();
        assert_eq!(txt.len(), 2);
        assert!(txt[0].contains("a`=b=c"), "{txt:?}");
        assert!(txt[1].contains("raw") && !txt[1].contains('='), "{txt:?}");
    }
}
