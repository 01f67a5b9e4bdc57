//! JSON text as Consul's watch hands it on: compact (a handler's stdin,
//! an HTTP handler's body) or indented by four spaces (`muster watch`
//! without a handler), with Go's HTML escapes, and the elements of an
//! array as text (to drop the events a handler has already seen).
//!
//! Everything here works on the text the agent sent, so object keys keep
//! the agent's order (Consul's field order); `serde_json::Value` would sort
//! them. Callers parse the text with serde_json first: these functions
//! assume valid JSON and never fail.

/// Reformat valid JSON `text`: compact when `indent` is `None`, else in
/// Go's `json.MarshalIndent(v, "", indent)` layout (`"k": v`, one member
/// per line, `{}` and `[]` for empty containers). Inside strings `<`, `>`,
/// `&`, U+2028 and U+2029 are escaped as Go's encoder escapes them.
pub fn format(text: &[u8], indent: Option<&str>) -> String {
    let mut out: Vec<u8> = Vec::with_capacity(text.len() + text.len() / 4);
    let mut depth = 0usize;
    let mut i = 0;
    let newline = |out: &mut Vec<u8>, depth: usize| {
        if let Some(unit) = indent {
            out.push(b'\n');
            for _ in 0..depth {
                out.extend_from_slice(unit.as_bytes());
            }
        }
    };
    while let Some(&b) = text.get(i) {
        i += 1;
        match b {
            b' ' | b'\t' | b'\n' | b'\r' => {}
            b'"' => i = copy_string(text, i, &mut out),
            b'{' | b'[' => {
                out.push(b);
                let close = if b == b'{' { b'}' } else { b']' };
                let next = skip_ws(text, i);
                if text.get(next) == Some(&close) {
                    out.push(close);
                    i = next + 1;
                } else {
                    depth += 1;
                    newline(&mut out, depth);
                }
            }
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(b);
            }
            b',' => {
                out.push(b',');
                newline(&mut out, depth);
            }
            b':' => {
                out.push(b':');
                if indent.is_some() {
                    out.push(b' ');
                }
            }
            other => out.push(other),
        }
    }
    // Only ASCII was added and whole UTF-8 sequences were copied.
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// The texts of the elements of the JSON array `text`, in order; `None`
/// if `text` is not an array.
pub fn elements(text: &[u8]) -> Option<Vec<&[u8]>> {
    let start = skip_ws(text, 0);
    if text.get(start) != Some(&b'[') {
        return None;
    }
    let mut items = Vec::new();
    let mut depth = 0usize;
    let mut item_start = start + 1;
    let mut i = start + 1;
    while let Some(&b) = text.get(i) {
        match b {
            b'"' => {
                i = skip_string(text, i + 1);
                continue;
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' if depth > 0 => depth -= 1,
            b',' | b']' if depth == 0 => {
                let item = trim(text.get(item_start..i).unwrap_or_default());
                if !item.is_empty() {
                    items.push(item);
                }
                if b == b']' {
                    return Some(items);
                }
                item_start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// Copy the rest of a string whose opening quote is already consumed (and
/// not yet written) from `text[i..]`; returns the index after its closing
/// quote.
fn copy_string(text: &[u8], mut i: usize, out: &mut Vec<u8>) -> usize {
    out.push(b'"');
    while let Some(&b) = text.get(i) {
        i += 1;
        match b {
            b'\\' => {
                out.push(b'\\');
                if let Some(&escaped) = text.get(i) {
                    out.push(escaped);
                    i += 1;
                }
            }
            b'"' => {
                out.push(b'"');
                return i;
            }
            b'<' => out.extend_from_slice(b"\\u003c"),
            b'>' => out.extend_from_slice(b"\\u003e"),
            b'&' => out.extend_from_slice(b"\\u0026"),
            0xE2 if text.get(i) == Some(&0x80) && matches!(text.get(i + 1), Some(0xA8 | 0xA9)) => {
                let last = if text.get(i + 1) == Some(&0xA8) {
                    b'8'
                } else {
                    b'9'
                };
                out.extend_from_slice(b"\\u202");
                out.push(last);
                i += 2;
            }
            other => out.push(other),
        }
    }
    i
}

/// The index after the closing quote of a string starting at `text[i..]`
/// (just after its opening quote).
fn skip_string(text: &[u8], mut i: usize) -> usize {
    while let Some(&b) = text.get(i) {
        i += 1;
        match b {
            b'\\' => i += 1,
            b'"' => return i,
            _ => {}
        }
    }
    i
}

/// The first index at or after `i` that is not JSON whitespace.
fn skip_ws(text: &[u8], mut i: usize) -> usize {
    while matches!(text.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// `text` without surrounding JSON whitespace.
fn trim(text: &[u8]) -> &[u8] {
    let start = skip_ws(text, 0);
    let mut end = text.len();
    while end > start && matches!(text.get(end - 1), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        end -= 1;
    }
    text.get(start..end).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indents_like_go_marshal_indent_and_keeps_key_order() {
        let text = br#"{"Z":1, "A":[ ], "B":{},"C":[{"x":"a,b:[c]"},2],"D":null}"#;
        assert_eq!(
            format(text, Some("    ")),
            "{\n    \"Z\": 1,\n    \"A\": [],\n    \"B\": {},\n    \"C\": [\n        {\n            \
             \"x\": \"a,b:[c]\"\n        },\n        2\n    ],\n    \"D\": null\n}"
        );
        assert_eq!(format(b"null", Some("    ")), "null");
        assert_eq!(format(b"[]", Some("    ")), "[]");
    }

    #[test]
    fn compacts_and_escapes_html_as_go_does() {
        let text = "{ \"k\" : \"<a&b> \\\"q\\\" \u{2028}é\" }".as_bytes();
        assert_eq!(
            format(text, None),
            "{\"k\":\"\\u003ca\\u0026b\\u003e \\\"q\\\" \\u2028é\"}"
        );
    }

    #[test]
    fn splits_arrays_into_element_texts() {
        let text = br#" [ {"ID":"a","P":"x,]"} , [1,2], "s\"]" ] "#;
        let items = elements(text).expect("an array");
        assert_eq!(
            items,
            [
                br#"{"ID":"a","P":"x,]"}"#.as_slice(),
                b"[1,2]".as_slice(),
                br#""s\"]""#.as_slice()
            ]
        );
        assert_eq!(elements(b"[]"), Some(vec![]));
        assert_eq!(elements(b"{}"), None);
        assert_eq!(elements(b"null"), None);
    }
}
