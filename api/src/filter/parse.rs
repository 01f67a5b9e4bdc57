//! The lexer and recursive-descent parser behind [`Filter::parse`]: turns
//! a `filter=` expression into an [`Expr`] tree (grammar in the module
//! docs of [`filter`](super)).

use std::iter::Peekable;
use std::str::CharIndices;

use super::{
    Expr, Filter, FilterError, Match, Op, Pattern, Selector, MAX_DEPTH, MAX_LENGTH, MAX_PATTERNS,
};

/// Parse `src` (see [`Filter::parse`]).
pub(super) fn parse(src: &str) -> Result<Filter, FilterError> {
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
