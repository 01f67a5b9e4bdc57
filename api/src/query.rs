//! Query-string parsing with Go's `url.ParseQuery` rules, and the typed
//! accessors the handlers use (`index`, `wait`, consistency, `dc`, `token`,
//! the KV flags). [`parse`] never fails: like Go's `Request.URL.Query()`, a
//! malformed pair is dropped and the rest is kept. Validation happens in the
//! accessors, so a parameter is only checked by the endpoints that read it.
//! Presence flags (`stale`, `recurse`, ...) ignore their values.

use std::time::Duration;

use hyper::HeaderMap;
use muster_engine::{duration, Blocking};

use crate::error::{Error, Result};

/// `Cannot specify ?stale with ?consistent` body.
pub const CONFLICTING_CONSISTENCY: &str =
    "Cannot specify ?stale with ?consistent, conflicting semantics.";

/// A decoded query string: `(key, value)` pairs in request order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    pairs: Vec<(String, String)>,
}

/// The consistency mode of a read (consul-compat.md §1.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consistency {
    /// The leader answers without a quorum round-trip (the default).
    Leader,
    /// Any server answers, even without a leader.
    Stale,
    /// The leader confirms leadership with a quorum first.
    Consistent,
}

impl Consistency {
    /// The `X-Consul-Effective-Consistency` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Consistency::Leader => "leader",
            Consistency::Stale => "stale",
            Consistency::Consistent => "consistent",
        }
    }
}

/// Parse a raw query string (without the `?`). Never fails and never panics:
/// pairs containing `;` or a bad `%` escape are dropped, as Go does.
pub fn parse(raw: &str) -> Query {
    let mut pairs = Vec::new();
    for piece in raw.split('&') {
        if piece.is_empty() || piece.contains(';') {
            continue;
        }
        let (k, v) = piece.split_once('=').unwrap_or((piece, ""));
        let (Some(k), Some(v)) = (unescape(k), unescape(v)) else {
            continue;
        };
        pairs.push((k, v));
    }
    Query { pairs }
}

/// Go's `url.QueryUnescape`: `+` is a space, `%XX` must be two hex digits.
/// Invalid UTF-8 after decoding is replaced (Go keeps raw bytes; no client
/// sends them).
fn unescape(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        match c {
            b'%' => {
                let hi = b.get(i + 1).and_then(|&h| hex(h))?;
                let lo = b.get(i + 2).and_then(|&l| hex(l))?;
                out.push(hi << 4 | lo);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Go's `url.QueryEscape`.
fn escape(s: &str, out: &mut String) {
    for &c in s.as_bytes() {
        match c {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(char::from(c));
            }
            b' ' => out.push('+'),
            _ => {
                const HEX: &[u8; 16] = b"0123456789ABCDEF";
                out.push('%');
                out.push(char::from(HEX[usize::from(c >> 4)]));
                out.push(char::from(HEX[usize::from(c & 0xf)]));
            }
        }
    }
}

/// Go's `strconv.ParseUint(s, 10, 64)`: ASCII digits only, no sign.
fn parse_u64(s: &str) -> std::result::Result<u64, &'static str> {
    if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
        return Err("invalid syntax");
    }
    s.parse::<u64>().map_err(|_| "value out of range")
}

impl Query {
    /// True if `key` is present, whatever its value.
    pub fn has(&self, key: &str) -> bool {
        self.pairs.iter().any(|(k, _)| k == key)
    }

    /// The first value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The first value of `key` if present and non-empty.
    fn non_empty(&self, key: &str) -> Option<&str> {
        self.get(key).filter(|v| !v.is_empty())
    }

    /// All pairs in request order.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.pairs
    }

    /// `index`: absent or empty → 0; not a uint64 → 400 `Invalid index`.
    pub fn index(&self) -> Result<u64> {
        match self.non_empty("index") {
            None => Ok(0),
            Some(v) => parse_u64(v).map_err(|_| Error::bad_request("Invalid index")),
        }
    }

    /// `wait`: a Go duration; absent, empty or negative → `None` (the
    /// default); malformed → 400 `Invalid wait time`.
    pub fn wait(&self) -> Result<Option<Duration>> {
        match self.non_empty("wait") {
            None => Ok(None),
            Some(v) => match duration::parse_signed(v) {
                Ok((true, _)) => Ok(None),
                Ok((false, d)) => Ok(Some(d)),
                Err(_) => Err(Error::bad_request("Invalid wait time")),
            },
        }
    }

    /// `index` and `wait` as the engine's blocking parameters.
    pub fn blocking(&self) -> Result<Blocking> {
        Ok(Blocking::new(self.index()?, self.wait()?))
    }

    /// The consistency mode, as Consul's `parseConsistency` computes it:
    /// `stale` (or a positive `max_stale`) allows stale reads, `leader`
    /// cancels that, and stale together with `consistent` is a 400.
    pub fn consistency(&self) -> Result<Consistency> {
        let mut stale = self.has("stale");
        if let Some(v) = self.non_empty("max_stale") {
            match duration::parse_signed(v) {
                Ok((neg, d)) => {
                    if !neg && !d.is_zero() {
                        stale = true;
                    }
                }
                Err(_) => {
                    return Err(Error::bad_request(format!("Invalid max_stale value {v:?}")));
                }
            }
        }
        let consistent = self.has("consistent");
        if self.has("leader") {
            stale = false;
        }
        match (stale, consistent) {
            (true, true) => Err(Error::bad_request(CONFLICTING_CONSISTENCY)),
            (true, false) => Ok(Consistency::Stale),
            (false, true) => Ok(Consistency::Consistent),
            (false, false) => Ok(Consistency::Leader),
        }
    }

    /// `pretty` (presence only).
    pub fn pretty(&self) -> bool {
        self.has("pretty")
    }

    /// `dc`, if given and non-empty.
    pub fn dc(&self) -> Option<&str> {
        self.non_empty("dc")
    }

    /// `token`, if given and non-empty (see [`resolve_token`] for headers).
    pub fn token(&self) -> Option<&str> {
        self.non_empty("token")
    }

    /// `recurse` (presence only).
    pub fn recurse(&self) -> bool {
        self.has("recurse")
    }

    /// `keys` (presence only).
    pub fn keys(&self) -> bool {
        self.has("keys")
    }

    /// `raw` (presence only).
    pub fn raw(&self) -> bool {
        self.has("raw")
    }

    /// `separator` (or the historical `seperator`; `separator` wins), if
    /// non-empty.
    pub fn separator(&self) -> Option<&str> {
        self.non_empty("separator")
            .or_else(|| self.non_empty("seperator"))
    }

    /// A uint64 parameter that is validated when present (`flags`, `cas`):
    /// absent → `None`; present but not a uint64 (including empty) → 400
    /// with Go's `strconv` message.
    pub fn u64_param(&self, key: &str) -> Result<Option<u64>> {
        if !self.has(key) {
            return Ok(None);
        }
        let v = self.get(key).unwrap_or_default();
        parse_u64(v)
            .map(Some)
            .map_err(|why| Error::bad_request(format!("strconv.ParseUint: parsing {v:?}: {why}")))
    }

    /// `flags`: default 0.
    pub fn flags(&self) -> Result<u64> {
        Ok(self.u64_param("flags")?.unwrap_or(0))
    }

    /// `cas`, when present.
    pub fn cas(&self) -> Result<Option<u64>> {
        self.u64_param("cas")
    }

    /// `acquire=<session>`, when present (possibly empty).
    pub fn acquire(&self) -> Option<&str> {
        self.has("acquire")
            .then(|| self.get("acquire").unwrap_or_default())
    }

    /// `release=<session>`, when present (possibly empty).
    pub fn release(&self) -> Option<&str> {
        self.has("release")
            .then(|| self.get("release").unwrap_or_default())
    }

    /// At most one of `flags` may be present, else 400 `Conflicting flags:
    /// <encoded query>` (Consul's `conflictingFlags`).
    pub fn check_conflicting(&self, flags: &[&str]) -> Result<()> {
        if flags.iter().filter(|f| self.has(f)).count() > 1 {
            return Err(Error::bad_request(format!(
                "Conflicting flags: {}",
                self.encode()
            )));
        }
        Ok(())
    }

    /// Go's `url.Values.Encode`: keys sorted (values in request order),
    /// `QueryEscape`d, joined by `&`.
    pub fn encode(&self) -> String {
        let mut sorted: Vec<&(String, String)> = self.pairs.iter().collect();
        // A stable sort keeps each key's values in request order.
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out = String::new();
        for (k, v) in sorted {
            if !out.is_empty() {
                out.push('&');
            }
            escape(k, &mut out);
            out.push('=');
            escape(v, &mut out);
        }
        out
    }
}

/// The request's ACL token: `?token=` wins, then `X-Consul-Token`, then
/// `Authorization: Bearer <t>`.
pub fn resolve_token(query: &Query, headers: &HeaderMap) -> Option<String> {
    if let Some(t) = query.token() {
        return Some(t.to_string());
    }
    if let Some(t) = headers
        .get("x-consul-token")
        .and_then(|v| v.to_str().ok())
        .filter(|t| !t.is_empty())
    {
        return Some(t.to_string());
    }
    headers
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        })
        .filter(|t| !t.is_empty())
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;
    use proptest::prelude::*;

    fn msg(r: Result<impl std::fmt::Debug>) -> String {
        match r {
            Ok(v) => format!("ok {v:?}"),
            Err(e) => format!("{} {e}", e.status().as_u16()),
        }
    }

    #[test]
    fn query_decodes_like_go() {
        let q = parse("a=1&b=x+y%2Fz&c&d=&a=2&bad=%zz&semi=1;x=2&&e=%E2%82%AC");
        assert_eq!(q.get("a"), Some("1"));
        assert_eq!(q.get("b"), Some("x y/z"));
        assert!(q.has("c") && q.get("c") == Some(""));
        assert!(q.has("d"));
        assert!(!q.has("bad"));
        assert!(!q.has("semi") && !q.has("x"));
        assert_eq!(q.get("e"), Some("€"));
        assert_eq!(parse("").pairs().len(), 0);
        assert_eq!(parse("%").pairs().len(), 0);
    }

    #[test]
    fn query_index_and_wait() {
        assert_eq!(msg(parse("").index()), "ok 0");
        assert_eq!(msg(parse("index=").index()), "ok 0");
        assert_eq!(msg(parse("index=42").index()), "ok 42");
        assert_eq!(
            msg(parse("index=18446744073709551615").index()),
            "ok 18446744073709551615"
        );
        for bad in [
            "index=x",
            "index=-1",
            "index=+1",
            "index=1.0",
            "index=18446744073709551616",
        ] {
            assert_eq!(msg(parse(bad).index()), "400 Invalid index", "{bad}");
        }
        assert_eq!(msg(parse("wait=120000ms").wait()), "ok Some(120s)");
        assert_eq!(msg(parse("wait=9.98s").wait()), "ok Some(9.98s)");
        assert_eq!(msg(parse("wait=-5s").wait()), "ok None");
        assert_eq!(msg(parse("wait=").wait()), "ok None");
        for bad in ["wait=10", "wait=1d", "wait=abc", "wait=1e3s"] {
            assert_eq!(msg(parse(bad).wait()), "400 Invalid wait time", "{bad}");
        }
        let b = parse("index=7&wait=1s")
            .blocking()
            .map_err(|e| e.to_string());
        assert_eq!(b, Ok(Blocking::new(7, Some(Duration::from_secs(1)))));
    }

    #[test]
    fn query_consistency_modes() {
        assert_eq!(msg(parse("").consistency()), "ok Leader");
        assert_eq!(msg(parse("stale").consistency()), "ok Stale");
        assert_eq!(msg(parse("stale=").consistency()), "ok Stale");
        assert_eq!(msg(parse("stale=0").consistency()), "ok Stale");
        assert_eq!(msg(parse("consistent=1").consistency()), "ok Consistent");
        assert_eq!(msg(parse("max_stale=10s").consistency()), "ok Stale");
        assert_eq!(msg(parse("stale&leader").consistency()), "ok Leader");
        assert_eq!(
            msg(parse("stale=1&consistent=1").consistency()),
            format!("400 {CONFLICTING_CONSISTENCY}")
        );
        assert_eq!(
            msg(parse("max_stale=x").consistency()),
            "400 Invalid max_stale value \"x\""
        );
        assert_eq!(Consistency::Stale.as_str(), "stale");
        assert_eq!(Consistency::Leader.as_str(), "leader");
        assert_eq!(Consistency::Consistent.as_str(), "consistent");
    }

    #[test]
    fn query_kv_params() {
        let q = parse("recurse&keys=false&raw=0&seperator=%2F&dc=dc2&token=t&pretty");
        assert!(q.recurse() && q.keys() && q.raw() && q.pretty());
        assert_eq!(q.separator(), Some("/"));
        assert_eq!(parse("separator=-&seperator=/").separator(), Some("-"));
        assert_eq!(parse("separator=").separator(), None);
        assert_eq!(q.dc(), Some("dc2"));
        assert_eq!(parse("dc=").dc(), None);
        assert_eq!(q.token(), Some("t"));
        assert_eq!(msg(parse("").flags()), "ok 0");
        assert_eq!(msg(parse("flags=42").flags()), "ok 42");
        assert_eq!(
            msg(parse("flags=abc").flags()),
            "400 strconv.ParseUint: parsing \"abc\": invalid syntax"
        );
        assert_eq!(
            msg(parse("flags=").flags()),
            "400 strconv.ParseUint: parsing \"\": invalid syntax"
        );
        assert_eq!(msg(parse("cas=0").cas()), "ok Some(0)");
        assert_eq!(msg(parse("").cas()), "ok None");
        assert_eq!(
            msg(parse("cas=99999999999999999999").cas()),
            "400 strconv.ParseUint: parsing \"99999999999999999999\": value out of range"
        );
        assert_eq!(parse("acquire=").acquire(), Some(""));
        assert_eq!(parse("release=s1").release(), Some("s1"));
        assert_eq!(parse("").acquire(), None);
    }

    #[test]
    fn query_conflicting_flags_echo_the_encoded_query() {
        let q = parse("release=s%201&cas=5&flags=3");
        assert_eq!(
            msg(q.check_conflicting(&["cas", "acquire", "release"])),
            "400 Conflicting flags: cas=5&flags=3&release=s+1"
        );
        assert_eq!(
            msg(parse("cas=1&flags=2").check_conflicting(&["cas", "acquire", "release"])),
            "ok ()"
        );
        assert_eq!(
            msg(parse("recurse&cas=0").check_conflicting(&["recurse", "cas"])),
            "400 Conflicting flags: cas=0&recurse="
        );
        assert_eq!(parse("b=2&a=%2F&b=1").encode(), "a=%2F&b=2&b=1");
    }

    #[test]
    fn query_token_sources() {
        let mut h = HeaderMap::new();
        assert_eq!(resolve_token(&parse(""), &h), None);
        h.insert("authorization", HeaderValue::from_static("Bearer abc"));
        assert_eq!(resolve_token(&parse(""), &h).as_deref(), Some("abc"));
        h.insert("x-consul-token", HeaderValue::from_static("hdr"));
        assert_eq!(resolve_token(&parse(""), &h).as_deref(), Some("hdr"));
        assert_eq!(resolve_token(&parse("token=q"), &h).as_deref(), Some("q"));
    }

    proptest! {
        #[test]
        fn query_parse_never_panics(s in "\\PC{0,64}") {
            let q = parse(&s);
            let _ = (q.index(), q.wait(), q.consistency(), q.flags(), q.cas(), q.encode());
            let _ = q.check_conflicting(&["cas", "acquire", "release"]);
        }

        #[test]
        fn query_reencode_is_stable(s in "[a-z=&%+;0-9A-F\\PC]{0,40}") {
            let q = parse(&s);
            let mut sorted = q.pairs.clone();
            sorted.sort_by(|a, b| a.0.cmp(&b.0));
            prop_assert_eq!(parse(&q.encode()).pairs, sorted);
        }

        #[test]
        fn query_encode_round_trips(pairs in proptest::collection::vec(("[a-z%+ =&;/]{1,6}", "\\PC{0,8}"), 0..6)) {
            let mut q = Query::default();
            for (k, v) in &pairs {
                q.pairs.push((k.clone(), v.clone()));
            }
            let mut sorted = q.pairs.clone();
            sorted.sort_by(|a, b| a.0.cmp(&b.0));
            prop_assert_eq!(parse(&q.encode()).pairs, sorted);
        }
    }
}
