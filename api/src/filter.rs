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

use std::fmt;
use std::iter::Peekable;
use std::str::CharIndices;

use regex::{Regex, RegexBuilder};

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
        if src.len() > MAX_LENGTH {
            return Err(FilterError::at(
                src,
                0,
                format!(
                    "expression too long ({} bytes, max {MAX_LENGTH})",
                    src.len()
                ),
            ));
        }
        let tokens = lex(src)?;
        let eof = Token {
            tok: Tok::Eof,
            pos: src.len(),
            spaced: false,
        };
        let mut p = Parser {
            src,
            tokens,
            next: 0,
            eof,
            depth: 0,
            patterns: 0,
        };
        let expr = p.parse_or()?;
        let t = p.peek();
        if t.tok != Tok::Eof {
            return Err(p.unexpected(t, &["\"and\"", "\"or\"", "end of input"]));
        }
        Ok(Filter { expr })
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

impl Expr {
    fn eval(&self, item: &Value) -> bool {
        match self {
            Expr::Or(items) => items.iter().any(|e| e.eval(item)),
            Expr::And(items) => items.iter().all(|e| e.eval(item)),
            Expr::Not(e) => !e.eval(item),
            Expr::Match(m) => m.eval(item),
        }
    }
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

impl Match {
    fn eval(&self, item: &Value) -> bool {
        let found = self.selector.resolve(item);
        let hit = match &self.op {
            Op::Equal(v) => found.iter().any(|x| scalar_eq(x, v)),
            // "is not empty" is the existential form; see the module docs.
            Op::IsEmpty => found.iter().all(|x| is_empty(x)),
            Op::In(v) | Op::Contains(v) => found.iter().any(|x| contains(x, v)),
            Op::Matches(p) => found.iter().any(|x| regex_match(x, &p.regex)),
        };
        hit != self.negated
    }
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
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Pattern) -> bool {
        self.source == other.source
    }
}

/// A path of object keys; the first is always an identifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector(pub Vec<String>);

impl Selector {
    /// Every value the path reaches in `item`, fanning out through arrays.
    /// Iterative, so its cost is bounded by the item's size.
    fn resolve<'v>(&self, item: &'v Value) -> Vec<&'v Value> {
        let mut current = vec![item];
        for key in &self.0 {
            let mut next = Vec::new();
            for v in current {
                match v {
                    Value::Object(m) => next.extend(m.get(key)),
                    Value::Array(items) => next.extend(
                        items
                            .iter()
                            .filter_map(|e| e.as_object().and_then(|m| m.get(key))),
                    ),
                    _ => {}
                }
            }
            if next.is_empty() {
                return next;
            }
            current = next;
        }
        current
    }
}

/// `==` between one JSON value and a raw filter value (see module docs).
fn scalar_eq(v: &Value, raw: &str) -> bool {
    match v {
        Value::String(s) => s == raw,
        Value::Bool(b) => parse_bool(raw) == Some(*b),
        Value::Number(n) => {
            if let (Some(a), Ok(b)) = (n.as_u64(), raw.parse::<u64>()) {
                return a == b;
            }
            if let (Some(a), Ok(b)) = (n.as_i64(), raw.parse::<i64>()) {
                return a == b;
            }
            match (n.as_f64(), raw.parse::<f64>()) {
                (Some(a), Ok(b)) if b.is_finite() => a == b,
                _ => false,
            }
        }
        Value::Null | Value::Array(_) | Value::Object(_) => false,
    }
}

/// Go's `strconv.ParseBool`.
fn parse_bool(raw: &str) -> Option<bool> {
    match raw {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

fn contains(v: &Value, raw: &str) -> bool {
    match v {
        Value::Array(items) => items.iter().any(|e| scalar_eq(e, raw)),
        Value::Object(m) => m.contains_key(raw),
        Value::String(s) => s.contains(raw),
        Value::Null | Value::Bool(_) | Value::Number(_) => false,
    }
}

fn regex_match(v: &Value, re: &Regex) -> bool {
    match v {
        Value::String(s) => re.is_match(s),
        Value::Array(items) => items
            .iter()
            .any(|e| e.as_str().is_some_and(|s| re.is_match(s))),
        _ => false,
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(m) => m.is_empty(),
        Value::Bool(_) | Value::Number(_) => false,
    }
}

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

// ---------------------------------------------------------------------------
// Lexer.

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    /// `[A-Za-z][A-Za-z0-9_]*`, keywords included.
    Ident(String),
    /// A quoted or raw string, unescaped.
    Str(String),
    /// A number literal as written.
    Num(String),
    LParen,
    RParen,
    LBracket,
    RBracket,
    Dot,
    Eq,
    Ne,
    Eof,
}

#[derive(Debug, Clone)]
struct Token {
    /// What was read.
    tok: Tok,
    /// Byte offset of its first character.
    pos: usize,
    /// Whether whitespace precedes it (selectors may not contain spaces).
    spaced: bool,
}

type Chars<'a> = Peekable<CharIndices<'a>>;

fn lex(src: &str) -> Result<Vec<Token>, FilterError> {
    let mut tokens = Vec::new();
    let mut chars = src.char_indices().peekable();
    let mut spaced = false;
    while let Some(&(pos, c)) = chars.peek() {
        let tok = match c {
            ' ' | '\t' | '\n' | '\r' => {
                chars.next();
                spaced = true;
                continue;
            }
            '(' | ')' | '[' | ']' | '.' => {
                chars.next();
                match c {
                    '(' => Tok::LParen,
                    ')' => Tok::RParen,
                    '[' => Tok::LBracket,
                    ']' => Tok::RBracket,
                    _ => Tok::Dot,
                }
            }
            '=' | '!' => {
                chars.next();
                if chars.next_if(|&(_, c)| c == '=').is_none() {
                    return Err(FilterError::at(
                        src,
                        pos,
                        format!("invalid operator {c:?}, expected \"==\" or \"!=\""),
                    ));
                }
                if c == '=' {
                    Tok::Eq
                } else {
                    Tok::Ne
                }
            }
            '"' => {
                chars.next();
                Tok::Str(lex_quoted(src, &mut chars, pos)?)
            }
            '`' => {
                chars.next();
                let mut s = String::new();
                loop {
                    match chars.next() {
                        None => return Err(FilterError::at(src, pos, "raw string not terminated")),
                        Some((_, '`')) => break,
                        Some((_, '\r')) => {}
                        Some((_, c)) => s.push(c),
                    }
                }
                Tok::Str(s)
            }
            c if c.is_ascii_alphabetic() => {
                let mut s = String::new();
                while let Some((_, c)) =
                    chars.next_if(|&(_, c)| c.is_ascii_alphanumeric() || c == '_')
                {
                    s.push(c);
                }
                Tok::Ident(s)
            }
            c if c == '-' || c.is_ascii_digit() => Tok::Num(lex_number(src, &mut chars, pos)?),
            c => {
                return Err(FilterError::at(
                    src,
                    pos,
                    format!("invalid character {c:?}"),
                ))
            }
        };
        tokens.push(Token { tok, pos, spaced });
        spaced = false;
    }
    Ok(tokens)
}

fn lex_number(src: &str, chars: &mut Chars<'_>, pos: usize) -> Result<String, FilterError> {
    let invalid = || FilterError::at(src, pos, "invalid number literal");
    let mut s = String::new();
    if chars.next_if(|&(_, c)| c == '-').is_some() {
        s.push('-');
    }
    match chars.next() {
        Some((_, '0')) => s.push('0'),
        Some((_, c @ '1'..='9')) => {
            s.push(c);
            while let Some((_, c)) = chars.next_if(|&(_, c)| c.is_ascii_digit()) {
                s.push(c);
            }
        }
        _ => return Err(invalid()),
    }
    if chars.next_if(|&(_, c)| c == '.').is_some() {
        s.push('.');
        let before = s.len();
        while let Some((_, c)) = chars.next_if(|&(_, c)| c.is_ascii_digit()) {
            s.push(c);
        }
        if s.len() == before {
            return Err(invalid());
        }
    }
    // go-bexpr: a number must be followed by whitespace, ")" or the end.
    match chars.peek() {
        None | Some((_, ' ' | '\t' | '\n' | '\r' | ')')) => Ok(s),
        Some(_) => Err(invalid()),
    }
}

fn lex_quoted(src: &str, chars: &mut Chars<'_>, pos: usize) -> Result<String, FilterError> {
    let mut s = String::new();
    loop {
        match chars.next() {
            None | Some((_, '\n')) => {
                return Err(FilterError::at(src, pos, "string literal not terminated"))
            }
            Some((_, '"')) => return Ok(s),
            Some((at, '\\')) => s.push(lex_escape(src, chars, at)?),
            Some((_, c)) => s.push(c),
        }
    }
}

fn lex_escape(src: &str, chars: &mut Chars<'_>, at: usize) -> Result<char, FilterError> {
    let code = match chars.next() {
        Some((_, 'a')) => return Ok('\x07'),
        Some((_, 'b')) => return Ok('\x08'),
        Some((_, 'f')) => return Ok('\x0c'),
        Some((_, 'n')) => return Ok('\n'),
        Some((_, 'r')) => return Ok('\r'),
        Some((_, 't')) => return Ok('\t'),
        Some((_, 'v')) => return Ok('\x0b'),
        Some((_, '\\')) => return Ok('\\'),
        Some((_, '"')) => return Ok('"'),
        Some((_, 'x')) => digits(chars, 2, 16).and_then(ascii_byte),
        Some((_, d @ '0'..='7')) => {
            let high = d.to_digit(8).unwrap_or(0);
            digits(chars, 2, 8).and_then(|low| ascii_byte(high * 64 + low))
        }
        Some((_, 'u')) => digits(chars, 4, 16),
        Some((_, 'U')) => digits(chars, 8, 16),
        _ => None,
    };
    code.and_then(char::from_u32)
        .ok_or_else(|| FilterError::at(src, at, "invalid escape sequence"))
}

/// Exactly `n` digits in `radix`.
fn digits(chars: &mut Chars<'_>, n: usize, radix: u32) -> Option<u32> {
    let mut v: u32 = 0;
    for _ in 0..n {
        let d = chars
            .next_if(|&(_, c)| c.is_digit(radix))?
            .1
            .to_digit(radix)?;
        v = v.checked_mul(radix)?.checked_add(d)?;
    }
    Some(v)
}

/// `\x` and octal escapes denote bytes; only ASCII ones form valid UTF-8.
fn ascii_byte(b: u32) -> Option<u32> {
    (b < 0x80).then_some(b)
}

// ---------------------------------------------------------------------------
// Parser: recursive descent over the token list. Recursion happens only at
// "(" and "not", both counted against MAX_DEPTH; "and"/"or" chains loop.

struct Parser<'a> {
    /// The expression, for error positions.
    src: &'a str,
    /// Every token but the end.
    tokens: Vec<Token>,
    /// Index of the next unread token.
    next: usize,
    /// The end-of-input token, returned once `tokens` runs out.
    eof: Token,
    /// Current `(`/`not` nesting.
    depth: usize,
    /// `matches` clauses so far.
    patterns: usize,
}

const MATCH_OPERATORS: &[&str] = &[
    "\"!=\"",
    "\"==\"",
    "\"contains\"",
    "\"in\"",
    "\"is\"",
    "\"matches\"",
    "\"not\"",
];

impl Parser<'_> {
    fn peek(&self) -> Token {
        self.tokens.get(self.next).unwrap_or(&self.eof).clone()
    }

    fn bump(&mut self) -> Token {
        let t = self.peek();
        if self.next < self.tokens.len() {
            self.next += 1;
        }
        t
    }

    fn peek_keyword(&self, kw: &str) -> bool {
        matches!(&self.peek().tok, Tok::Ident(s) if s == kw)
    }

    fn unexpected(&self, t: Token, expected: &[&str]) -> FilterError {
        let found = match &t.tok {
            Tok::Ident(s) => format!("\"{s}\""),
            Tok::Str(_) => "string".to_string(),
            Tok::Num(n) => format!("number {n}"),
            Tok::LParen => "\"(\"".to_string(),
            Tok::RParen => "\")\"".to_string(),
            Tok::LBracket => "\"[\"".to_string(),
            Tok::RBracket => "\"]\"".to_string(),
            Tok::Dot => "\".\"".to_string(),
            Tok::Eq => "\"==\"".to_string(),
            Tok::Ne => "\"!=\"".to_string(),
            Tok::Eof => "end of input".to_string(),
        };
        FilterError::at(
            self.src,
            t.pos,
            format!("unexpected {found}, expected: {}", expected.join(", ")),
        )
    }

    fn enter(&mut self, at: usize) -> Result<(), FilterError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(FilterError::at(
                self.src,
                at,
                format!("expression nested too deeply (max {MAX_DEPTH})"),
            ));
        }
        Ok(())
    }

    fn parse_or(&mut self) -> Result<Expr, FilterError> {
        let first = self.parse_and()?;
        if !self.peek_keyword("or") {
            return Ok(first);
        }
        let mut items = vec![first];
        while self.peek_keyword("or") {
            self.bump();
            items.push(self.parse_and()?);
        }
        Ok(Expr::Or(items))
    }

    fn parse_and(&mut self) -> Result<Expr, FilterError> {
        let first = self.parse_unary()?;
        if !self.peek_keyword("and") {
            return Ok(first);
        }
        let mut items = vec![first];
        while self.peek_keyword("and") {
            self.bump();
            items.push(self.parse_unary()?);
        }
        Ok(Expr::And(items))
    }

    fn parse_unary(&mut self) -> Result<Expr, FilterError> {
        let t = self.peek();
        match &t.tok {
            Tok::Ident(s) if s == "not" => {
                self.enter(t.pos)?;
                self.bump();
                let e = self.parse_unary()?;
                self.depth -= 1;
                Ok(Expr::Not(Box::new(e)))
            }
            Tok::LParen => {
                self.enter(t.pos)?;
                self.bump();
                let e = self.parse_or()?;
                let close = self.bump();
                if close.tok != Tok::RParen {
                    return Err(self.unexpected(close, &["\")\"", "\"and\"", "\"or\""]));
                }
                self.depth -= 1;
                Ok(e)
            }
            _ => self.parse_match().map(Expr::Match),
        }
    }

    fn parse_match(&mut self) -> Result<Match, FilterError> {
        let t = self.peek();
        match &t.tok {
            Tok::Str(v) | Tok::Num(v) => {
                self.bump();
                self.parse_in(v.clone())
            }
            Tok::Ident(_) => {
                let (path, indexed) = self.parse_path()?;
                let op = self.peek();
                let (negated, kw) = match &op.tok {
                    Tok::Eq | Tok::Ne => {
                        self.bump();
                        let value = self.parse_value()?;
                        return Ok(Match {
                            selector: Selector(path),
                            op: Op::Equal(value),
                            negated: op.tok == Tok::Ne,
                        });
                    }
                    Tok::Ident(s) if s == "not" => {
                        self.bump();
                        let next = self.peek();
                        match &next.tok {
                            Tok::Ident(s)
                                if matches!(s.as_str(), "in" | "contains" | "matches") =>
                            {
                                (true, next)
                            }
                            _ => {
                                return Err(self
                                    .unexpected(next, &["\"contains\"", "\"in\"", "\"matches\""]))
                            }
                        }
                    }
                    _ => (false, op),
                };
                match &kw.tok {
                    Tok::Ident(s) if s == "in" && !indexed => {
                        self.bump();
                        let selector = self.parse_selector()?;
                        Ok(Match {
                            selector,
                            op: Op::In(path.join(".")),
                            negated,
                        })
                    }
                    Tok::Ident(s) if s == "contains" => {
                        self.bump();
                        let value = self.parse_value()?;
                        Ok(Match {
                            selector: Selector(path),
                            op: Op::Contains(value),
                            negated,
                        })
                    }
                    Tok::Ident(s) if s == "matches" => {
                        self.bump();
                        let at = self.peek().pos;
                        let source = self.parse_value()?;
                        let pattern = self.pattern(&source, at)?;
                        Ok(Match {
                            selector: Selector(path),
                            op: Op::Matches(pattern),
                            negated,
                        })
                    }
                    Tok::Ident(s) if s == "is" && !negated => {
                        self.bump();
                        let negated = self.peek_keyword("not");
                        if negated {
                            self.bump();
                        }
                        if !self.peek_keyword("empty") {
                            let expected: &[&str] = if negated {
                                &["\"empty\""]
                            } else {
                                &["\"empty\"", "\"not\""]
                            };
                            return Err(self.unexpected(self.peek(), expected));
                        }
                        self.bump();
                        Ok(Match {
                            selector: Selector(path),
                            op: Op::IsEmpty,
                            negated,
                        })
                    }
                    _ => Err(self.unexpected(kw, MATCH_OPERATORS)),
                }
            }
            _ => Err(self.unexpected(t, &["\"(\"", "\"not\"", "selector", "value"])),
        }
    }

    /// After a leading value: `["not"] "in" sel`.
    fn parse_in(&mut self, value: String) -> Result<Match, FilterError> {
        let negated = self.peek_keyword("not");
        if negated {
            self.bump();
        }
        if !self.peek_keyword("in") {
            let expected: &[&str] = if negated {
                &["\"in\""]
            } else {
                &["\"in\"", "\"not\""]
            };
            return Err(self.unexpected(self.peek(), expected));
        }
        self.bump();
        let selector = self.parse_selector()?;
        Ok(Match {
            selector,
            op: Op::In(value),
            negated,
        })
    }

    fn parse_selector(&mut self) -> Result<Selector, FilterError> {
        let t = self.peek();
        match &t.tok {
            Tok::Ident(s) if s != "not" => Ok(Selector(self.parse_path()?.0)),
            _ => Err(self.unexpected(t, &["selector"])),
        }
    }

    /// `ident ("." ident | "[" string "]")*` with no whitespace before a
    /// "." or "[" or after a "."; also whether any "[...]" was used.
    fn parse_path(&mut self) -> Result<(Vec<String>, bool), FilterError> {
        let first = self.bump();
        let Tok::Ident(name) = first.tok else {
            return Err(self.unexpected(first, &["selector"]));
        };
        let mut path = vec![name];
        let mut indexed = false;
        loop {
            let t = self.peek();
            if t.spaced {
                break;
            }
            match t.tok {
                Tok::Dot => {
                    self.bump();
                    let key = self.bump();
                    match key.tok {
                        Tok::Ident(s) if !key.spaced => path.push(s),
                        _ => return Err(self.unexpected(key, &["identifier"])),
                    }
                }
                Tok::LBracket => {
                    self.bump();
                    let key = self.bump();
                    let Tok::Str(s) = key.tok else {
                        return Err(self.unexpected(key, &["string"]));
                    };
                    let close = self.bump();
                    if close.tok != Tok::RBracket {
                        return Err(self.unexpected(close, &["\"]\""]));
                    }
                    path.push(s);
                    indexed = true;
                }
                _ => break,
            }
        }
        Ok((path, indexed))
    }

    /// A value: string, number or bare dotted word (its text).
    fn parse_value(&mut self) -> Result<String, FilterError> {
        let t = self.peek();
        match &t.tok {
            Tok::Str(s) | Tok::Num(s) => {
                self.bump();
                Ok(s.clone())
            }
            Tok::Ident(_) => {
                let mut word = String::new();
                loop {
                    let part = self.bump();
                    match part.tok {
                        Tok::Ident(s) if word.is_empty() || !part.spaced => word.push_str(&s),
                        _ => return Err(self.unexpected(part, &["identifier"])),
                    }
                    let dot = self.peek();
                    if dot.tok != Tok::Dot || dot.spaced {
                        return Ok(word);
                    }
                    self.bump();
                    word.push('.');
                }
            }
            _ => Err(self.unexpected(t, &["value"])),
        }
    }

    fn pattern(&mut self, source: &str, at: usize) -> Result<Pattern, FilterError> {
        self.patterns += 1;
        if self.patterns > MAX_PATTERNS {
            return Err(FilterError::at(
                self.src,
                at,
                format!("too many \"matches\" expressions (max {MAX_PATTERNS})"),
            ));
        }
        Pattern::new(source).map_err(|e| {
            FilterError::at(
                self.src,
                at,
                format!("failed to compile regular expression: {e}"),
            )
        })
    }
}

#[cfg(test)]
mod tests {
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
}
