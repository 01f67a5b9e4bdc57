//! The `filter=` expression language (consul-compat.md §1.5): a parser and
//! evaluator for the go-bexpr dialect Consul accepts on its list endpoints.
//!
//! [`Filter::parse`] turns the query parameter into an AST once per request
//! (compiling every `matches` pattern up front) and [`Filter::matches`] tests
//! the JSON form of one response element (PascalCase field names, §2). This
//! module owns only the language: it knows no endpoint, never looks at HTTP
//! and never fails while evaluating. Hostile input is bounded: at most
//! [`MAX_LENGTH`] bytes, [`MAX_DEPTH`] levels of `(`/`not` nesting and
//! [`MAX_PATTERNS`] regular expressions, each with a compiled-size cap, so
//! neither parsing nor evaluation can exhaust the stack or memory.
//!
//! # Grammar
//! ```text
//! expr   := or ; or := and ("or" and)* ; and := unary ("and" unary)*
//! unary  := "not" unary | "(" expr ")" | match
//! match  := sel "==" val | sel "!=" val | sel "is" ["not"] "empty"
//!         | val ["not"] "in" sel | sel ["not"] "contains" val
//!         | sel ["not"] "matches" val
//! sel    := ident ("." ident | "[" string "]")*      (no spaces inside)
//! val    := "double-quoted" | `raw` | number | ident ("." ident)*
//! ident  := [A-Za-z][A-Za-z0-9_]*
//! number := "-"? ("0" | [1-9][0-9]*) ("." [0-9]+)?   (then space, ")" or end)
//! ```
//! Keywords (`and or not in contains matches is empty`) are lowercase and
//! case-sensitive. A selector cannot begin with `not`. As in go-bexpr, a
//! value is just its raw text: `Port == 80` and `Port == "80"` are the same
//! filter, and the type of the field decides how the text is compared.
//! Double-quoted strings take Go's escapes (`\" \\ \n \t \r \a \b \f \v`,
//! `\xHH` and `\ooo` below 0x80, `\uHHHH`, `\UHHHHHHHH`); raw strings drop
//! `\r` like Go's `strconv.Unquote`.
//!
//! # Semantics
//! - A selector walks objects by exact (case-sensitive) key. Walking a key
//!   through an array applies it to every object element ("fan-out"), so
//!   `Checks.Status` yields one value per check. Nested arrays (`[[..]]`)
//!   are not entered. A missing key, or a key applied to a scalar, yields
//!   nothing ("missing").
//! - `==` compares a string exactly, a JSON number numerically (the value
//!   parsed as a number; integers exactly), a boolean with Go's
//!   `strconv.ParseBool` spellings (`true`, `True`, `t`, `1`, ...). Null,
//!   arrays and objects equal nothing.
//! - `contains` / `in`: array membership (by `==`), object key presence, or
//!   substring for strings; false for anything else.
//! - `matches`: regex search on a string, or on any string element of an
//!   array; false for anything else. Patterns use the `regex` crate (RE2
//!   syntax, like Go's `regexp`).
//! - `is empty`: null, `""`, `[]`, `{}` or missing.
//! - Fan-out: `==`, `contains`, `in`, `matches` and `is not empty` hold if
//!   ANY selected value satisfies them; every negated form (`!=`,
//!   `not contains`, `not in`, `not matches`, `is empty`) is the exact
//!   negation of its positive form, so `Checks.Status != passing` means "no
//!   check is passing" and `Checks.Notes is empty` means "every check's
//!   notes are empty". Hence a missing selector makes `==` false, `!=`
//!   true and `is empty` true.
//! - go-bexpr reports a type mismatch (`Port == abc`) as an evaluation
//!   error; here it is simply a non-match, so [`Filter::matches`] is total.
//!
//! # Layout
//! - `mod.rs` (this file): the public types, their `Display` form and the
//!   limits.
//! - `parse.rs`: the lexer and the recursive-descent parser.
//! - `eval.rs`: evaluating an expression against one JSON element.
//! - `tests.rs`: unit and property tests of the language.

use std::fmt;

use regex::{Regex, RegexBuilder};

mod eval;
mod parse;
#[cfg(test)]
mod tests;

/// The JSON value filters are evaluated against (re-exported so callers
/// and the fuzz target need not name `serde_json`).
pub use serde_json::Value;

/// Longest accepted expression, in bytes.
pub const MAX_LENGTH: usize = 64 * 1024;
/// Deepest accepted nesting of `(` and `not`.
pub const MAX_DEPTH: usize = 64;
/// Most `matches` clauses in one expression.
pub const MAX_PATTERNS: usize = 32;
/// Compiled-program and lazy-DFA cap per regular expression, in bytes.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Prefix of the HTTP error body for a malformed filter (§13).
pub const ERROR_PREFIX: &str = "Failed to create boolean expression evaluator: ";

/// A malformed filter expression. Displays like go-bexpr (pigeon):
/// `<line>:<column> (<byte offset>): <message>`, 1-based line and column
/// (the column counts characters).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{line}:{column} ({offset}): {message}")]
pub struct FilterError {
    /// 1-based line of the offending input.
    pub line: usize,
    /// 1-based column (in characters) of the offending input.
    pub column: usize,
    /// Byte offset of the offending input.
    pub offset: usize,
    /// What was wrong there.
    pub message: String,
}

impl FilterError {
    fn at(src: &str, offset: usize, message: impl Into<String>) -> FilterError {
        // Offsets always come from char_indices, but stay total regardless.
        let before = src.get(..offset).unwrap_or(src);
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
        FilterError {
            line,
            column,
            offset,
            message: message.into(),
        }
    }

    /// The body Consul answers for this error:
    /// `Failed to create boolean expression evaluator: <pos>: <msg>`.
    pub fn http_message(&self) -> String {
        format!("{ERROR_PREFIX}{self}")
    }
}

/// A parsed `filter=` expression, ready to test response elements.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    /// The expression tree.
    expr: Expr,
}

impl Filter {
    /// Parse `src`. Errors carry go-bexpr style positions. An empty
    /// expression is an error; callers skip filtering when `filter=` is
    /// absent or empty.
    pub fn parse(src: &str) -> Result<Filter, FilterError> {
        parse::parse(src)
    }

    /// Whether `item` (one element of a response, as JSON) passes.
    pub fn matches(&self, item: &Value) -> bool {
        self.expr.eval(item)
    }

    /// The expression tree.
    pub fn expr(&self) -> &Expr {
        &self.expr
    }
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.expr.fmt(f)
    }
}

/// An expression node. `Or`/`And` hold at least two operands; parentheses
/// leave no node of their own.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// True if any operand is.
    Or(Vec<Expr>),
    /// True if every operand is.
    And(Vec<Expr>),
    /// The negation of the operand.
    Not(Box<Expr>),
    /// One comparison.
    Match(Match),
}

/// One comparison: a positive operator on a selector, optionally negated.
#[derive(Debug, Clone, PartialEq)]
pub struct Match {
    /// The field(s) tested.
    pub selector: Selector,
    /// The positive operator and its value.
    pub op: Op,
    /// `!=`, `is not empty`, `not in`, `not contains`, `not matches`: the
    /// exact negation of `op`.
    pub negated: bool,
}

/// A positive match operator with its raw value.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// `sel == value`.
    Equal(String),
    /// `sel is empty`.
    IsEmpty,
    /// `value in sel`.
    In(String),
    /// `sel contains value`.
    Contains(String),
    /// `sel matches "regex"`.
    Matches(Pattern),
}

/// A compiled regular expression; equal when the sources are.
#[derive(Debug, Clone)]
pub struct Pattern {
    /// The pattern as written (after unquoting).
    source: String,
    /// Its compiled form.
    regex: Regex,
}

impl Pattern {
    /// Compile `source` within the size caps.
    pub fn new(source: &str) -> Result<Pattern, regex::Error> {
        let regex = RegexBuilder::new(source)
            .size_limit(REGEX_SIZE_LIMIT)
            .dfa_size_limit(REGEX_SIZE_LIMIT)
            .build()?;
        Ok(Pattern {
            source: source.to_string(),
            regex,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether the pattern matches anywhere in `text` (an unanchored
    /// search, like Go's `MatchString`).
    pub fn is_match(&self, text: &str) -> bool {
        self.regex.is_match(text)
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Pattern) -> bool {
        self.source == other.source
    }
}

/// A path of object keys; the first is always an identifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector(pub Vec<String>);

// ---------------------------------------------------------------------------
// Display: prints an expression that parses back to the same tree. It adds
// parentheses only where the tree needs them, so it never nests deeper than
// the source did.

const KEYWORDS: [&str; 8] = [
    "and", "or", "not", "in", "contains", "matches", "is", "empty",
];

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Or(items) => {
                for (i, e) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" or ")?;
                    }
                    match e {
                        Expr::Or(_) => write!(f, "({e})")?,
                        _ => write!(f, "{e}")?,
                    }
                }
                Ok(())
            }
            Expr::And(items) => {
                for (i, e) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" and ")?;
                    }
                    match e {
                        Expr::Or(_) | Expr::And(_) => write!(f, "({e})")?,
                        _ => write!(f, "{e}")?,
                    }
                }
                Ok(())
            }
            Expr::Not(e) => match **e {
                Expr::Or(_) | Expr::And(_) => write!(f, "not ({e})"),
                _ => write!(f, "not {e}"),
            },
            Expr::Match(m) => m.fmt(f),
        }
    }
}

impl fmt::Display for Match {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sel = &self.selector;
        let not = if self.negated { "not " } else { "" };
        match &self.op {
            Op::Equal(v) => {
                let op = if self.negated { "!=" } else { "==" };
                write!(f, "{sel} {op} {}", DisplayValue(v))
            }
            Op::IsEmpty => write!(f, "{sel} is {not}empty"),
            Op::In(v) => write!(f, "{} {not}in {sel}", DisplayValue(v)),
            Op::Contains(v) => write!(f, "{sel} {not}contains {}", DisplayValue(v)),
            Op::Matches(p) => write!(f, "{sel} {not}matches {}", Quoted(&p.source)),
        }
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, key) in self.0.iter().enumerate() {
            if i == 0 && is_ident(key) {
                f.write_str(key)?;
            } else if i > 0 && is_ident(key) {
                write!(f, ".{key}")?;
            } else {
                write!(f, "[{}]", Quoted(key))?;
            }
        }
        Ok(())
    }
}

/// A raw value, bare when it lexes back to the same text, else quoted.
struct DisplayValue<'a>(&'a str);

impl fmt::Display for DisplayValue<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if is_number(self.0) || is_bare_word(self.0) {
            f.write_str(self.0)
        } else {
            Quoted(self.0).fmt(f)
        }
    }
}

/// A double-quoted string with Go escapes.
struct Quoted<'a>(&'a str);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"")?;
        for c in self.0.chars() {
            match c {
                '"' => f.write_str("\\\"")?,
                '\\' => f.write_str("\\\\")?,
                '\n' => f.write_str("\\n")?,
                '\r' => f.write_str("\\r")?,
                '\t' => f.write_str("\\t")?,
                c if c.is_control() => write!(f, "\\u{:04x}", u32::from(c))?,
                c => write!(f, "{c}")?,
            }
        }
        f.write_str("\"")
    }
}

fn is_ident(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `ident ("." ident)*` not starting with a keyword.
fn is_bare_word(s: &str) -> bool {
    let mut parts = s.split('.');
    parts
        .next()
        .is_some_and(|first| is_ident(first) && !KEYWORDS.contains(&first))
        && parts.all(is_ident)
}

/// Exactly the number literals the lexer accepts.
fn is_number(s: &str) -> bool {
    let digits = s.strip_prefix('-').unwrap_or(s);
    let (int, frac) = match digits.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (digits, None),
    };
    let int_ok = int == "0"
        || (int.starts_with(|c: char| matches!(c, '1'..='9'))
            && int.chars().all(|c| c.is_ascii_digit()));
    int_ok && frac.is_none_or(|f| !f.is_empty() && f.chars().all(|c| c.is_ascii_digit()))
}
