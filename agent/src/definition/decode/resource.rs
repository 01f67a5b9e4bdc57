//! muster's resource checks in a definition: `Memory`, `CPU`, `Disk` and
//! `Inodes` objects with `Warning`/`Critical` thresholds (`"80%"` or
//! `80`), a `Path` for disks and inodes, and an optional `Source` file
//! read instead of `/proc/meminfo` or `/proc/stat`; and `Process` with a
//! `PidFile` or `Name` (thresholds optional: its RSS as a share of
//! memory). Keys match any case,
//! as every other check key does.

use serde_json::Value;

use super::fields::{err, object, string};
use super::{Problem, Result};
use crate::definition::{Resource, ResourceCheck};

/// The resource keys of a check.
pub(super) const KEYS: [&str; 5] = ["Memory", "CPU", "Disk", "Inodes", "Process"];

/// The resource check `name` (one of [`KEYS`]) at `path`, or a rule it
/// breaks (reported as `Invalid check: <reason>`).
pub(super) fn parse(
    name: &str,
    path: &str,
    v: &Value,
) -> Result<std::result::Result<ResourceCheck, String>> {
    let mut warning = None;
    let mut critical = None;
    let mut at = String::new();
    let mut source = String::new();
    let mut pidfile = String::new();
    let mut pname = String::new();
    for (key, value) in object(path, v)? {
        let p = format!("{path}.{key}");
        match key.to_ascii_lowercase().as_str() {
            "warning" => warning = Some(threshold(&p, value)?),
            "critical" => critical = Some(threshold(&p, value)?),
            "path" => at = string(&p, value)?,
            "source" => source = string(&p, value)?,
            "pidfile" => pidfile = string(&p, value)?,
            "name" => pname = string(&p, value)?,
            _ => {
                // Warning, Critical, Path (disk, inodes), Source (memory,
                // cpu) only.
                return Err(err(&p, Problem::UnknownKey { key: key.clone() }));
            }
        }
    }
    let lower = name.to_ascii_lowercase();
    let resource = match lower.as_str() {
        "memory" => Resource::Memory { source },
        "cpu" => Resource::Cpu { source },
        "disk" | "inodes" if at.is_empty() => {
            return Ok(Err(format!("{lower} checks need a Path")));
        }
        "disk" => Resource::Disk { path: at },
        "process" if pidfile.is_empty() && pname.is_empty() => {
            return Ok(Err("process checks need a PidFile or a Name".into()));
        }
        "process" => Resource::Process {
            pidfile,
            name: pname,
        },
        _ => Resource::Inodes { path: at },
    };
    let (warning, critical) = match (warning, critical) {
        (Some(Err(e)), _) | (_, Some(Err(e))) => return Ok(Err(e)),
        (w, c) => (w.and_then(|w| w.ok()), c.and_then(|c| c.ok())),
    };
    if warning.is_none() && critical.is_none() && lower != "process" {
        return Ok(Err(format!(
            "{lower} checks need a Warning or Critical threshold (\"80%\")"
        )));
    }
    if let (Some(w), Some(c)) = (warning, critical) {
        if w > c {
            return Ok(Err(format!(
                "{lower} check's Warning ({}) is above its Critical ({})",
                crate::definition::percent(w),
                crate::definition::percent(c)
            )));
        }
    }
    Ok(Ok(ResourceCheck {
        resource,
        warning,
        critical,
    }))
}

/// `"80%"`, `"80.5%"` or `80`: hundredths of a percent, 0-100%.
fn threshold(path: &str, v: &Value) -> Result<std::result::Result<u32, String>> {
    let text = match v {
        Value::Number(n) => n.to_string(),
        _ => string(path, v)?,
    };
    let bad = || format!("{path}: {text:?} is not a percentage such as \"80%\"");
    let n: f64 = match text.trim().trim_end_matches('%').trim().parse() {
        Ok(n) => n,
        Err(_) => return Ok(Err(bad())),
    };
    if !(0.0..=100.0).contains(&n) {
        return Ok(Err(bad()));
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // 0..=10_000
    Ok(Ok((n * 100.0).round() as u32))
}
