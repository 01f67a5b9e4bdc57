//! Go duration strings (`"300ms"`, `"-1.5h"`, `"2h45m15s"`, `"1µs"`):
//! parsing and formatting, matching Go's `time.ParseDuration` and
//! `time.Duration.String`.
//!
//! Grammar: an optional sign, then one or more `<decimal><unit>` pairs where
//! a decimal is `digits`, `digits.`, `.digits` or `digits.digits` and a unit
//! is one of `ns us µs μs ms s m h`. The bare string `"0"` (optionally
//! signed) is also valid. There is no `d` unit and no exponent. As in Go, the
//! magnitude must fit in an `i64` of nanoseconds (`-(1<<63)` is allowed);
//! anything larger is an overflow error. Std only: this module must not pull
//! in crates, and it never panics on any input.

use std::fmt;
use std::time::Duration;

/// The largest magnitude Go accepts (that of `i64::MIN` nanoseconds).
const LIMIT: u64 = 1 << 63;

/// Why a duration string was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurationError {
    /// What was wrong.
    pub kind: DurationErrorKind,
    /// The whole input, for the message.
    pub input: String,
}

/// The kinds of [`DurationError`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DurationErrorKind {
    /// Not a duration at all (empty, bad character, no digits).
    Invalid,
    /// A number without a unit (other than the bare `"0"`).
    MissingUnit,
    /// A unit that is not one of `ns us µs ms s m h`.
    UnknownUnit(String),
    /// The value does not fit in an `i64` of nanoseconds.
    Overflow,
    /// A negative duration where only non-negative ones are accepted.
    Negative,
}

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            DurationErrorKind::Invalid | DurationErrorKind::Overflow => {
                write!(f, "time: invalid duration {:?}", self.input)
            }
            DurationErrorKind::MissingUnit => {
                write!(f, "time: missing unit in duration {:?}", self.input)
            }
            DurationErrorKind::UnknownUnit(u) => {
                write!(f, "time: unknown unit {u:?} in duration {:?}", self.input)
            }
            DurationErrorKind::Negative => {
                write!(f, "time: negative duration {:?}", self.input)
            }
        }
    }
}

impl std::error::Error for DurationError {}

fn err(kind: DurationErrorKind, input: &str) -> DurationError {
    DurationError {
        kind,
        input: input.to_string(),
    }
}

/// Nanoseconds per unit, or `None` for an unknown unit.
fn unit_nanos(unit: &str) -> Option<u64> {
    Some(match unit {
        "ns" => 1,
        // U+00B5 MICRO SIGN and U+03BC GREEK SMALL LETTER MU.
        "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60 * 1_000_000_000,
        "h" => 3_600 * 1_000_000_000,
        _ => return None,
    })
}

/// Parse a non-negative Go duration. A negative zero (`"-0s"`) is accepted;
/// any other negative value is [`DurationErrorKind::Negative`].
pub fn parse(s: &str) -> Result<Duration, DurationError> {
    match parse_signed(s)? {
        (true, d) if !d.is_zero() => Err(err(DurationErrorKind::Negative, s)),
        (_, d) => Ok(d),
    }
}

/// Parse a Go duration with an optional sign: `(negative, magnitude)`.
pub fn parse_signed(input: &str) -> Result<(bool, Duration), DurationError> {
    let mut s = input.as_bytes();
    let mut neg = false;
    if let Some((&c, rest)) = s.split_first() {
        if c == b'-' || c == b'+' {
            neg = c == b'-';
            s = rest;
        }
    }
    if s == b"0" {
        return Ok((neg, Duration::ZERO));
    }
    if s.is_empty() {
        return Err(err(DurationErrorKind::Invalid, input));
    }
    let mut total: u64 = 0;
    while let Some(&first) = s.first() {
        if !(first == b'.' || first.is_ascii_digit()) {
            return Err(err(DurationErrorKind::Invalid, input));
        }
        // Integer part.
        let digits = s.iter().take_while(|c| c.is_ascii_digit()).count();
        let (int_part, rest) = s.split_at(digits);
        s = rest;
        let mut v: u64 = 0;
        for &c in int_part {
            v = v
                .checked_mul(10)
                .and_then(|v| v.checked_add(u64::from(c - b'0')))
                .filter(|&v| v <= LIMIT)
                .ok_or_else(|| err(DurationErrorKind::Overflow, input))?;
        }
        let pre = digits > 0;
        // Fraction: keep digits while they fit, ignore the rest (as Go does).
        let mut frac: u64 = 0;
        let mut scale: f64 = 1.0;
        let mut post = false;
        if let Some((&b'.', rest)) = s.split_first() {
            s = rest;
            let digits = s.iter().take_while(|c| c.is_ascii_digit()).count();
            let (frac_part, rest) = s.split_at(digits);
            s = rest;
            post = digits > 0;
            let mut overflowed = false;
            for &c in frac_part {
                if overflowed {
                    continue;
                }
                match frac
                    .checked_mul(10)
                    .and_then(|f| f.checked_add(u64::from(c - b'0')))
                    .filter(|&f| f <= LIMIT)
                {
                    Some(f) => {
                        frac = f;
                        scale *= 10.0;
                    }
                    None => overflowed = true,
                }
            }
        }
        if !pre && !post {
            return Err(err(DurationErrorKind::Invalid, input));
        }
        // Unit: everything up to the next digit or '.'.
        let ulen = s
            .iter()
            .take_while(|&&c| !(c == b'.' || c.is_ascii_digit()))
            .count();
        if ulen == 0 {
            return Err(err(DurationErrorKind::MissingUnit, input));
        }
        let (unit_bytes, rest) = s.split_at(ulen);
        s = rest;
        let unit_str = String::from_utf8_lossy(unit_bytes);
        let unit = unit_nanos(&unit_str)
            .ok_or_else(|| err(DurationErrorKind::UnknownUnit(unit_str.to_string()), input))?;
        if v > LIMIT / unit {
            return Err(err(DurationErrorKind::Overflow, input));
        }
        v *= unit;
        if frac > 0 {
            // Go computes this in float64; the result is below `unit`, so
            // the cast cannot exceed the range of u64.
            let extra = (frac as f64 * (unit as f64 / scale)) as u64;
            v = v
                .checked_add(extra)
                .filter(|&v| v <= LIMIT)
                .ok_or_else(|| err(DurationErrorKind::Overflow, input))?;
        }
        total = total
            .checked_add(v)
            .filter(|&t| t <= LIMIT)
            .ok_or_else(|| err(DurationErrorKind::Overflow, input))?;
    }
    if !neg && total > LIMIT - 1 {
        return Err(err(DurationErrorKind::Overflow, input));
    }
    Ok((neg, Duration::from_nanos(total)))
}

/// Split `v` into `v / 10^prec` and the fraction `".ddd"` with trailing
/// zeros removed (empty when the fraction is zero).
fn split_frac(v: u128, prec: u32) -> (u128, String) {
    let div = 10u128.pow(prec);
    let (int, frac) = (v / div, v % div);
    if frac == 0 {
        return (int, String::new());
    }
    let width = usize::try_from(prec).unwrap_or(0);
    let digits = format!("{frac:0width$}");
    (int, format!(".{}", digits.trim_end_matches('0')))
}

/// Format like Go's `Duration.String`: `"0s"`, `"300ms"`, `"1.5s"`,
/// `"1m30s"`, `"1h0m0s"`, `"2µs"`.
pub fn format(d: Duration) -> String {
    let u = d.as_nanos();
    if u == 0 {
        return "0s".to_string();
    }
    if u < 1_000_000_000 {
        let (prec, unit) = if u < 1_000 {
            (0, "ns")
        } else if u < 1_000_000 {
            (3, "\u{b5}s")
        } else {
            (6, "ms")
        };
        let (int, frac) = split_frac(u, prec);
        return format!("{int}{frac}{unit}");
    }
    let (secs, frac) = split_frac(u, 9);
    let mut out = format!("{}{frac}s", secs % 60);
    let mins = secs / 60;
    if mins > 0 {
        out = format!("{}m{out}", mins % 60);
        let hours = mins / 60;
        if hours > 0 {
            out = format!("{hours}h{out}");
        }
    }
    out
}

/// Format a signed duration (`"-1.5s"`; a negative zero is `"0s"`).
pub fn format_signed(negative: bool, d: Duration) -> String {
    if negative && !d.is_zero() {
        format!("-{}", format(d))
    } else {
        format(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn duration_parses_go_examples() -> Result<(), DurationError> {
        assert_eq!(parse("0")?, Duration::ZERO);
        assert_eq!(parse("+0")?, Duration::ZERO);
        assert_eq!(parse("-0")?, Duration::ZERO);
        assert_eq!(parse("0s")?, Duration::ZERO);
        assert_eq!(parse("10s")?, Duration::from_secs(10));
        assert_eq!(parse(".5s")?, ms(500));
        assert_eq!(parse("5.s")?, Duration::from_secs(5));
        assert_eq!(parse("15.0s")?, Duration::from_secs(15));
        assert_eq!(parse("9.983s")?, ms(9983));
        assert_eq!(parse("9.98s")?, ms(9980));
        assert_eq!(parse("0.001s")?, ms(1));
        assert_eq!(parse("120000ms")?, Duration::from_secs(120));
        assert_eq!(
            parse("2h45m15s")?,
            Duration::from_secs(2 * 3600 + 45 * 60 + 15)
        );
        assert_eq!(parse("1h1m1.5s")?, Duration::from_millis(3_661_500));
        assert_eq!(parse("3ns")?, Duration::from_nanos(3));
        assert_eq!(parse("3us")?, Duration::from_micros(3));
        assert_eq!(parse("3\u{b5}s")?, Duration::from_micros(3));
        assert_eq!(parse("3\u{3bc}s")?, Duration::from_micros(3));
        assert_eq!(parse("1.5h")?, Duration::from_secs(5400));
        assert_eq!(parse("+5m")?, Duration::from_secs(300));
        assert_eq!(parse("1s500ms")?, ms(1500));
        assert_eq!(
            parse("9223372036854775807ns")?,
            Duration::from_nanos(i64::MAX as u64)
        );
        // Extra fraction digits beyond u64 precision are ignored, as in Go.
        assert_eq!(parse("0.100000000000000000000h")?, Duration::from_secs(360));
        Ok(())
    }

    #[test]
    fn duration_signed() -> Result<(), DurationError> {
        assert_eq!(parse_signed("-1.5h")?, (true, Duration::from_secs(5400)));
        assert_eq!(parse_signed("+3s")?, (false, Duration::from_secs(3)));
        assert_eq!(
            parse_signed("-9223372036854775808ns")?,
            (true, Duration::from_nanos(1 << 63))
        );
        assert_eq!(
            parse("-1s").map_err(|e| e.kind),
            Err(DurationErrorKind::Negative)
        );
        assert_eq!(parse("-0s")?, Duration::ZERO);
        Ok(())
    }

    #[test]
    fn duration_rejects_bad_input() {
        for bad in [
            "", "-", "+", "s", ".", ".s", "1", "10", "1.5", "1d", "1e3s", "1S", "1 s", " 1s",
            "1s ", "1..5s", "--1s", "1s-1s", "0x10s", "1µ", "ms", "1sec", "\u{b5}s", "0.0", "00",
            "∞s", "1h\u{0}",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should be rejected");
        }
        assert_eq!(
            parse("1").map_err(|e| e.kind),
            Err(DurationErrorKind::MissingUnit)
        );
        assert_eq!(
            parse("1d").map_err(|e| e.kind),
            Err(DurationErrorKind::UnknownUnit("d".into()))
        );
    }

    #[test]
    fn duration_overflow_is_an_error() {
        for bad in [
            "9223372036854775808ns",
            "18446744073709551616ns",
            "2562048h",
            "9223372036s1s",
            "99999999999999999999999999h",
            "2562047h47m16.854775808s",
        ] {
            assert_eq!(
                parse(bad).map_err(|e| e.kind),
                Err(DurationErrorKind::Overflow),
                "{bad}"
            );
        }
        assert!(parse("2562047h47m16.854775807s").is_ok());
    }

    #[test]
    fn duration_formats_like_go() {
        let cases: &[(Duration, &str)] = &[
            (Duration::ZERO, "0s"),
            (Duration::from_nanos(1), "1ns"),
            (Duration::from_nanos(1100), "1.1\u{b5}s"),
            (Duration::from_micros(2), "2\u{b5}s"),
            (ms(300), "300ms"),
            (Duration::from_micros(2200), "2.2ms"),
            (ms(1500), "1.5s"),
            (Duration::from_secs(10), "10s"),
            (Duration::from_secs(90), "1m30s"),
            (Duration::from_secs(60), "1m0s"),
            (Duration::from_secs(3600), "1h0m0s"),
            (Duration::from_secs(2 * 3600 + 45 * 60 + 15), "2h45m15s"),
            (Duration::from_nanos(3_661_000_000_001), "1h1m1.000000001s"),
            (
                Duration::from_nanos(i64::MAX as u64),
                "2562047h47m16.854775807s",
            ),
        ];
        for (d, want) in cases {
            assert_eq!(format(*d), *want, "{d:?}");
        }
        assert_eq!(format_signed(true, ms(1500)), "-1.5s");
        assert_eq!(format_signed(true, Duration::ZERO), "0s");
    }

    proptest! {
        #[test]
        fn duration_format_parse_round_trip(n in 0u64..=(i64::MAX as u64)) {
            let d = Duration::from_nanos(n);
            prop_assert_eq!(parse(&format(d)), Ok(d));
        }

        #[test]
        fn duration_signed_round_trip(n in 0u64..=(i64::MAX as u64), neg: bool) {
            let d = Duration::from_nanos(n);
            let (got_neg, got) = parse_signed(&format_signed(neg, d))
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(got, d);
            prop_assert_eq!(got_neg, neg && n != 0);
        }

        #[test]
        fn duration_garbage_never_panics(s in "\\PC{0,24}") {
            let _ = parse_signed(&s);
            let _ = parse(&s);
        }

        #[test]
        fn duration_near_grammar_never_panics(s in "[-+]?[0-9.]{0,25}(ns|us|µs|μs|ms|s|m|h|d|x)?([0-9.]{0,22}(ns|us|ms|s|m|h)?){0,3}") {
            if let Ok((_, d)) = parse_signed(&s) {
                prop_assert!(d.as_nanos() <= u128::from(LIMIT));
            }
        }
    }
}
