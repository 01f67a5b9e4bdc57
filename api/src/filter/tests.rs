//! Unit and property tests of the `filter=` language: parsing, errors,
//! evaluation semantics and `Display` round trips.

use super::*;
use proptest::prelude::*;
use serde_json::json;

fn entry() -> Value {
    json!({
        "Node": {
            "Node": "n1",
            "Address": "10.0.0.5",
            "Meta": {"env": "prod", "consul-version": "1.20.0", "empty": ""},
        },
        "Service": {
            "ID": "web1",
            "Service": "web",
            "Tags": ["v1", "primary"],
            "Port": 8080,
            "Meta": {"env": "prod"},
            "EnableTagOverride": false,
            "Weights": {"Passing": 1, "Warning": 1},
            "Ratio": 0.5,
            "Offset": -3,
            "Proxy": null,
            "Connect": {},
        },
        "Checks": [
            {"CheckID": "serfHealth", "Status": "passing", "Notes": "", "ServiceTags": []},
            {"CheckID": "service:web1", "Status": "critical", "Notes": "", "ServiceTags": ["v1"]},
        ],
    })
}

fn eval(src: &str) -> Result<bool, FilterError> {
    Ok(Filter::parse(src)?.matches(&entry()))
}

fn check(cases: &[(&str, bool)]) -> Result<(), FilterError> {
    for (src, want) in cases {
        assert_eq!(eval(src)?, *want, "{src}");
    }
    Ok(())
}

fn err(src: &str) -> String {
    match Filter::parse(src) {
        Ok(f) => panic!("{src:?} parsed as {f}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn filter_equality_on_strings_numbers_and_bools() -> Result<(), FilterError> {
    check(&[
        ("Service.Service == web", true),
        ("Service.Service == \"web\"", true),
        ("Service.Service == `web`", true),
        ("Service.Service == Web", false),
        ("Service.Service != web", false),
        ("Service.Service != db", true),
        ("Service.Port == 8080", true),
        ("Service.Port == \"8080\"", true),
        ("Service.Port == 8080.0", true),
        ("Service.Port != 80", true),
        ("Service.Port == abc", false),
        ("Service.Ratio == 0.5", true),
        ("Service.Offset == -3", true),
        ("Service.EnableTagOverride == false", true),
        ("Service.EnableTagOverride == False", true),
        ("Service.EnableTagOverride == true", false),
        ("Service.Weights.Passing == 1", true),
        ("Service.Tags == v1", false),
        ("Service.Proxy == null", false),
    ])
}

#[test]
fn filter_maps_and_index_selectors() -> Result<(), FilterError> {
    check(&[
        ("Node.Meta[\"consul-version\"] == \"1.20.0\"", true),
        ("Node.Meta[ `env` ] == prod", true),
        ("Node.Meta.env == prod", true),
        ("Node.Meta.Env == prod", false),
        ("Node.Meta contains env", true),
        ("env in Node.Meta", true),
        ("\"consul-version\" in Node.Meta", true),
        ("prod in Node.Meta", false),
        ("Node.Meta not contains zone", true),
        ("zone not in Node.Meta", true),
        ("Service.Meta[\"env\"] != dev", true),
    ])
}

#[test]
fn filter_contains_in_and_substrings() -> Result<(), FilterError> {
    check(&[
        ("Service.Tags contains v1", true),
        ("Service.Tags contains v2", false),
        ("v1 in Service.Tags", true),
        ("\"primary\" in Service.Tags", true),
        ("v2 not in Service.Tags", true),
        ("v1 not in Service.Tags", false),
        ("Service.Tags not contains v1", false),
        ("Node.Address contains \"10.0\"", true),
        ("\"0.0\" in Node.Address", true),
        ("Service.Port contains 80", false),
    ])
}

#[test]
fn filter_matches_regex() -> Result<(), FilterError> {
    check(&[
        ("Service.Service matches \"^w.b$\"", true),
        ("Service.Service matches `^db`", false),
        ("Service.Service not matches `^db`", true),
        ("Service.Tags matches \"^prim\"", true),
        ("Checks.Status matches crit", true),
        ("Service.Port matches \"8\"", false),
        ("Missing matches \".*\"", false),
        ("Missing not matches \".*\"", true),
    ])?;
    let e = err("Service.Service matches \"(\"");
    assert!(
        e.starts_with("1:25 (24): failed to compile regular expression"),
        "{e}"
    );
    Ok(())
}

#[test]
fn filter_is_empty() -> Result<(), FilterError> {
    check(&[
        ("Node.Meta.empty is empty", true),
        ("Node.Meta.env is empty", false),
        ("Node.Meta.env is not empty", true),
        ("Service.Proxy is empty", true),
        ("Service.Connect is empty", true),
        ("Service.Tags is empty", false),
        ("Service.Tags is not empty", true),
        ("Service.Port is empty", false),
        ("Nope is empty", true),
        ("Nope is not empty", false),
        ("Checks.Notes is empty", true),
        ("Checks.ServiceTags is empty", false),
        ("Checks.ServiceTags is not empty", true),
    ])
}

#[test]
fn filter_list_fan_out_is_existential_and_negations_exact() -> Result<(), FilterError> {
    check(&[
        ("Checks.Status == passing", true),
        ("Checks.Status == critical", true),
        ("Checks.Status == warning", false),
        ("Checks.Status != warning", true),
        ("Checks.Status != passing", false),
        ("Checks.ServiceTags contains v1", true),
        ("v1 in Checks.ServiceTags", true),
        ("Checks.CheckID contains web", true),
        ("Checks.Nope == x", false),
        ("Checks.Nope != x", true),
    ])?;
    let empty = json!({"Checks": []});
    let f = Filter::parse("Checks.Status != passing")?;
    assert!(f.matches(&empty));
    assert!(!Filter::parse("Checks.Status == passing")?.matches(&empty));
    Ok(())
}

#[test]
fn filter_missing_selectors() -> Result<(), FilterError> {
    check(&[
        ("Nope == x", false),
        ("Nope != x", true),
        ("Service.Nope.Deeper == x", false),
        ("Service.Port.Sub == x", false),
        ("Nope contains x", false),
        ("x in Nope", false),
        ("x not in Nope", true),
        ("service.Service == web", false),
    ])?;
    assert!(!Filter::parse("Anything == 1")?.matches(&json!(null)));
    assert!(Filter::parse("Anything != 1")?.matches(&json!(42)));
    Ok(())
}

#[test]
fn filter_precedence_and_parentheses() -> Result<(), FilterError> {
    // `not a or b and c` is `(not a) or (b and c)`.
    let f = Filter::parse("not a == 1 or b == 2 and c == 3")?;
    let Expr::Or(items) = f.expr() else {
        panic!("{f:?}")
    };
    assert!(matches!(items.as_slice(), [Expr::Not(_), Expr::And(and)] if and.len() == 2));
    let ab = |a: i32, b: i32, c: i32| json!({"a": a, "b": b, "c": c});
    assert!(f.matches(&ab(0, 0, 0)));
    assert!(!f.matches(&ab(1, 2, 0)));
    assert!(f.matches(&ab(1, 2, 3)));
    let g = Filter::parse("not (a == 1 or b == 2) and c == 3")?;
    assert!(!g.matches(&ab(1, 0, 3)));
    assert!(g.matches(&ab(0, 0, 3)));
    let h = Filter::parse("(a == 1 or b == 2) and (c == 3)")?;
    assert!(h.matches(&ab(0, 2, 3)));
    assert!(!h.matches(&ab(0, 2, 4)));
    check(&[
        ("not not Service.Service == web", true),
        ("((((Service.Service == web))))", true),
        (
            "Service.Service == db or Checks.Status == passing and Service.Port == 8080",
            true,
        ),
        (
            "(Service.Service == db or Checks.Status == passing) and Service.Port == 1",
            false,
        ),
        ("Service.Port==8080 and(Service.Service==web)", true),
    ])
}

#[test]
fn filter_quoting_and_escapes() -> Result<(), FilterError> {
    let item = json!({"S": "a\"b\\c\nd\te\u{263a}/é", "R": "x\\ny"});
    let f = Filter::parse(r#"S == "a\"b\\c\nd\te\u263a/é""#)?;
    assert!(f.matches(&item));
    assert!(Filter::parse(r#"S == "a\x22b\134c\nd\te\U0000263a/é""#)?.matches(&item));
    assert!(Filter::parse(r"R == `x\ny`")?.matches(&item));
    assert!(Filter::parse("R == `x\\n\r\ny`")?.matches(&json!({"R": "x\\n\ny"})));
    assert_eq!(err(r#"S == "a\qb""#), "1:8 (7): invalid escape sequence");
    assert_eq!(err(r#"S == "\xff""#), "1:7 (6): invalid escape sequence");
    assert_eq!(err(r#"S == "\ud800""#), "1:7 (6): invalid escape sequence");
    assert_eq!(err("S == \"abc"), "1:6 (5): string literal not terminated");
    assert_eq!(
        err("S == \"a\nb\""),
        "1:6 (5): string literal not terminated"
    );
    assert_eq!(err("S == `abc"), "1:6 (5): raw string not terminated");
    Ok(())
}

#[test]
fn filter_keywords_are_case_sensitive() {
    assert!(Filter::parse("a == 1 AND b == 2").is_err());
    assert!(Filter::parse("a IS empty").is_err());
    assert!(Filter::parse("NOT a == 1").is_err());
    assert!(Filter::parse("a == 1 and b == 2").is_ok());
}

#[test]
fn filter_error_positions() {
    let cases = [
        ("", "1:1 (0): unexpected end of input, expected: \"(\", \"not\", selector, value"),
        ("Service", "1:8 (7): unexpected end of input, expected: \"!=\", \"==\", \"contains\", \"in\", \"is\", \"matches\", \"not\""),
        ("Service.Port ==", "1:16 (15): unexpected end of input, expected: value"),
        ("Service.Port = 1", "1:14 (13): invalid operator '=', expected \"==\" or \"!=\""),
        ("a == 1 and", "1:11 (10): unexpected end of input, expected: \"(\", \"not\", selector, value"),
        ("a == 1 b == 2", "1:8 (7): unexpected \"b\", expected: \"and\", \"or\", end of input"),
        ("(a == 1", "1:8 (7): unexpected end of input, expected: \")\", \"and\", \"or\""),
        ("a == 1)", "1:7 (6): unexpected \")\", expected: \"and\", \"or\", end of input"),
        ("a is full", "1:6 (5): unexpected \"full\", expected: \"empty\", \"not\""),
        ("a is not", "1:9 (8): unexpected end of input, expected: \"empty\""),
        ("a not is empty", "1:7 (6): unexpected \"is\", expected: \"contains\", \"in\", \"matches\""),
        ("1 == a", "1:3 (2): unexpected \"==\", expected: \"in\", \"not\""),
        ("x in 1", "1:6 (5): unexpected number 1, expected: selector"),
        ("a == 01", "1:6 (5): invalid number literal"),
        ("a == 1x", "1:6 (5): invalid number literal"),
        ("a == 1.", "1:6 (5): invalid number literal"),
        ("a. b == 1", "1:4 (3): unexpected \"b\", expected: identifier"),
        ("a .b == 1", "1:3 (2): unexpected \".\", expected: \"!=\", \"==\", \"contains\", \"in\", \"is\", \"matches\", \"not\""),
        ("a[1] == 1", "1:3 (2): invalid number literal"),
        ("a[b] == 1", "1:3 (2): unexpected \"b\", expected: string"),
        ("a[\"k\" == 1", "1:7 (6): unexpected \"==\", expected: \"]\""),
        ("a == 1 &&\n b == 2", "1:8 (7): invalid character '&'"),
        ("a == 1 and\n  b === 2", "2:7 (17): invalid operator '=', expected \"==\" or \"!=\""),
        ("é == 1", "1:1 (0): invalid character 'é'"),
        ("a == \"é\" b", "1:10 (10): unexpected \"b\", expected: \"and\", \"or\", end of input"),
        ("a[\"k\"] in b", "1:8 (7): unexpected \"in\", expected: \"!=\", \"==\", \"contains\", \"in\", \"is\", \"matches\", \"not\""),
        ("Node.Meta.consul-version == x", "1:17 (16): invalid number literal"),
        ("not == 1", "1:5 (4): unexpected \"==\", expected: \"(\", \"not\", selector, value"),
    ];
    for (src, want) in cases {
        assert_eq!(err(src), want, "{src:?}");
    }
    let e = Filter::parse("a ==").err();
    assert_eq!(
        e.map(|e| e.http_message()).as_deref(),
        Some("Failed to create boolean expression evaluator: 1:5 (4): unexpected end of input, expected: value")
    );
}

#[test]
fn filter_limits_reject_hostile_input() -> Result<(), FilterError> {
    let ok = format!("{}a == 1{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
    assert!(Filter::parse(&ok)?.matches(&json!({"a": 1})));
    let deep = format!(
        "{}a == 1{}",
        "(".repeat(MAX_DEPTH + 1),
        ")".repeat(MAX_DEPTH + 1)
    );
    assert!(err(&deep).contains("nested too deeply"));
    assert!(err(&"(".repeat(60_000)).contains("nested too deeply"));
    assert!(err(&"not ".repeat(10_000)).contains("nested too deeply"));
    let long = format!("a == \"{}\"", "x".repeat(MAX_LENGTH));
    assert!(err(&long).starts_with("1:1 (0): expression too long"));
    // A long flat chain is fine: "and"/"or" loop rather than recurse.
    let chain = vec!["a == 1"; 5000].join(" or ");
    assert!(Filter::parse(&chain)?.matches(&json!({"a": 1})));
    let many = vec!["a matches x"; MAX_PATTERNS + 1].join(" or ");
    assert!(err(&many).contains("too many \"matches\""));
    assert!(err("a matches \"\\\\w{1000}{1000}\"").contains("failed to compile"));
    Ok(())
}

#[test]
fn filter_display_round_trips() -> Result<(), FilterError> {
    let cases = [
        (
            "not a == 1 or b == 2 and c == 3",
            "not a == 1 or b == 2 and c == 3",
        ),
        (
            "(a == 1 or b == 2) and c != x.y",
            "(a == 1 or b == 2) and c != x.y",
        ),
        ("not (a is empty)", "not a is empty"),
        (
            "not (a is not empty and b == 1)",
            "not (a is not empty and b == 1)",
        ),
        ("((a==1) or (b==2)) or c==3", "(a == 1 or b == 2) or c == 3"),
        (
            "`x y` not in Node.Meta[\"a b\"]",
            "\"x y\" not in Node.Meta[\"a b\"]",
        ),
        (
            "Node.Meta[\"k\"] contains \"not\"",
            "Node.Meta.k contains \"not\"",
        ),
        ("a not matches `^\\d+$`", "a not matches \"^\\\\d+$\""),
        ("a == \"-1.50\"", "a == -1.50"),
        ("a == \"01\"", "a == \"01\""),
        ("a == \"\\u0001\\n\"", "a == \"\\u0001\\n\""),
    ];
    for (src, want) in cases {
        let f = Filter::parse(src)?;
        assert_eq!(f.to_string(), want, "{src:?}");
        assert_eq!(Filter::parse(want)?, f, "{src:?}");
    }
    Ok(())
}

fn arb_value() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z]{1,6}",
        "-?[0-9]{1,4}(\\.[0-9]{1,2})?",
        any::<String>(),
        Just("not".to_string()),
        Just("in".to_string()),
    ]
}

fn arb_selector() -> impl Strategy<Value = Selector> {
    (
        "[A-Za-z][A-Za-z0-9_]{0,5}".prop_filter("not a keyword", |s| s != "not"),
        prop::collection::vec(
            prop_oneof!["[A-Za-z][A-Za-z0-9_]{0,5}", any::<String>()],
            0..3,
        ),
    )
        .prop_map(|(first, rest)| {
            let mut v = vec![first];
            v.extend(rest);
            Selector(v)
        })
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        arb_value().prop_map(Op::Equal),
        Just(Op::IsEmpty),
        arb_value().prop_map(Op::In),
        arb_value().prop_map(Op::Contains),
        prop::sample::select(vec!["^web", "v[0-9]+", "a\"b", "\\d", "(?i)x|y", ""])
            .prop_filter_map("compiles", |s| Pattern::new(s).ok())
            .prop_map(Op::Matches),
    ]
}

fn arb_expr() -> impl Strategy<Value = Expr> {
    let leaf = (arb_selector(), arb_op(), any::<bool>()).prop_map(|(selector, op, negated)| {
        Expr::Match(Match {
            selector,
            op,
            negated,
        })
    });
    leaf.prop_recursive(6, 48, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 2..4).prop_map(Expr::Or),
            prop::collection::vec(inner.clone(), 2..4).prop_map(Expr::And),
            inner.prop_map(|e| Expr::Not(Box::new(e))),
        ]
    })
}

proptest! {
    #[test]
    fn filter_parse_never_panics(src in any::<String>()) {
        if let Ok(f) = Filter::parse(&src) {
            let _ = f.matches(&entry());
            prop_assert_eq!(Filter::parse(&f.to_string()).ok(), Some(f));
        }
    }

    #[test]
    fn filter_parse_never_panics_on_grammar_soup(
        words in prop::collection::vec(prop::sample::select(vec![
            "a", "Service", ".", "Tags", "[", "]", "\"k\"", "`r`", "(", ")", "==", "!=",
            "and", "or", "not", "in", "contains", "matches", "is", "empty", "1", "-2.5",
            " ", "\"", "\\", "=", "!", "0", "\n", "Checks", "Status", "passing",
        ]), 0..40)
    ) {
        let src = words.concat();
        if let Ok(f) = Filter::parse(&src) {
            let item = entry();
            let again = Filter::parse(&f.to_string());
            prop_assert_eq!(again.as_ref().ok(), Some(&f));
            prop_assert_eq!(again.map(|g| g.matches(&item)).ok(), Some(f.matches(&item)));
        }
    }

    #[test]
    fn filter_display_parse_round_trips(expr in arb_expr()) {
        let f = Filter { expr };
        let printed = f.to_string();
        let parsed = Filter::parse(&printed);
        prop_assert_eq!(parsed.as_ref().ok(), Some(&f), "{} -> {:?}", printed, parsed);
    }
}
