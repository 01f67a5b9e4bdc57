//! Config files (consul-compat.md §11.1): `-config-file` / `-config-dir`
//! sources read in command-line order, each file JSON or HCL, decoded and
//! checked on its own (so every error names its file and key), then merged:
//! scalars later-wins, lists appended, maps merged key by key.
//!
//! [`load`] is the whole API: the agent (and `muster validate`, `muster
//! services`) call it and get a [`LoadedConfig`]. Loading never touches the
//! paths a config names (`data_dir`, `ui_dir` need not exist) and never
//! talks to an agent.
//!
//! # Layout
//! - `error.rs`: [`ConfigError`], one line naming file, key and reason.
//! - `value.rs`: typed reads of parsed values and the deep merge of maps.
//! - `settings.rs`: [`AgentSettings`], the agent keys.
//! - `definitions.rs`: service and check definitions (through the agent's
//!   one decoder).
//! - `unsupported.rs`: Consul keys muster does not implement: refused where
//!   ignoring them would weaken security, else ignored with a warning.
//! - `watches.rs`: the `watches` key (watch plans the agent runs).
//! - `tls.rs`: the `tls` block and the deprecated top-level TLS keys.

pub mod acl;
pub mod definitions;
pub mod error;
pub mod settings;
pub mod telemetry;
pub mod tls;
pub mod unsupported;
pub mod value;
pub mod watches;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use muster_agent::{CheckDefinition, CheckKind, ServiceDefinition};
use serde_json::Value;

pub use error::ConfigError;
pub use settings::AgentSettings;
use value::Ctx;

/// One `-config-file` or `-config-dir`, in command-line order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    /// `-config-file`: `.hcl` is HCL, anything else JSON.
    File(PathBuf),
    /// `-config-dir`: its `*.json` and `*.hcl` files (not subdirectories),
    /// in lexical order of their names.
    Dir(PathBuf),
}

impl ConfigSource {
    /// A file or a directory, whichever `path` is (for `muster validate`
    /// and `muster services`, which take either). A missing path is taken
    /// as a file, so reading it reports it.
    pub fn detect(path: impl Into<PathBuf>) -> ConfigSource {
        let path = path.into();
        if path.is_dir() {
            ConfigSource::Dir(path)
        } else {
            ConfigSource::File(path)
        }
    }
}

/// Everything the config files say, merged.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadedConfig {
    /// The agent keys; `None` where no file set one (flags override these).
    pub settings: AgentSettings,
    /// Service definitions, normalized and validated, in file order; IDs
    /// are unique.
    pub services: Vec<ServiceDefinition>,
    /// Node-level check definitions (`check` / `checks` at the top level),
    /// validated, in file order.
    pub checks: Vec<CheckDefinition>,
    /// The files read, in the order they were merged.
    pub files: Vec<PathBuf>,
    /// What loaded but has no effect (keys of features not built yet), one
    /// line each naming the file and the key.
    pub warnings: Vec<String>,
}

/// Read, check and merge `sources` in order. Errors name the file and key.
pub fn load(sources: &[ConfigSource]) -> Result<LoadedConfig, ConfigError> {
    let mut out = LoadedConfig::default();
    // Service ID → file that defined it, for duplicate reports.
    let mut service_files: BTreeMap<String, PathBuf> = BTreeMap::new();
    // Check ID → file, likewise; also where each script check came from.
    let mut check_files: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut scripts: Vec<(PathBuf, Option<String>, String)> = Vec::new();
    for file in files_of(sources)? {
        let parsed = load_file(&file)?;
        for service in parsed.services {
            if let Some(first) = service_files.get(&service.id) {
                return Err(ConfigError::DuplicateService {
                    id: service.id.clone(),
                    first: first.clone(),
                    second: file.clone(),
                });
            }
            service_files.insert(service.id.clone(), file.clone());
            let mut owned = service.clone();
            owned.normalize();
            for check in &owned.checks {
                note_check(
                    &mut check_files,
                    &mut scripts,
                    &file,
                    Some(&owned.id),
                    check,
                )?;
            }
            out.services.push(service);
        }
        for check in &parsed.checks {
            note_check(&mut check_files, &mut scripts, &file, None, check)?;
        }
        out.checks.extend(parsed.checks);
        out.settings.merge(parsed.settings);
        out.warnings.extend(parsed.warnings);
        out.files.push(file);
    }
    let st = &out.settings;
    let scripts_on =
        st.enable_script_checks == Some(true) || st.enable_local_script_checks == Some(true);
    if let (false, Some((file, service, check))) = (scripts_on, scripts.into_iter().next()) {
        return Err(ConfigError::ScriptChecksDisabled {
            file,
            service,
            check,
        });
    }
    Ok(out)
}

/// Record one check from `file`: its ID must be new (Consul refuses two
/// checks with one ID), and a script or Docker check is remembered, since
/// it needs `enable_local_script_checks` from whichever file sets it.
fn note_check(
    ids: &mut BTreeMap<String, PathBuf>,
    scripts: &mut Vec<(PathBuf, Option<String>, String)>,
    file: &Path,
    service: Option<&str>,
    check: &CheckDefinition,
) -> Result<(), ConfigError> {
    if let Some(first) = ids.get(&check.id) {
        return Err(ConfigError::DuplicateCheck {
            id: check.id.clone(),
            first: first.clone(),
            second: file.to_path_buf(),
        });
    }
    ids.insert(check.id.clone(), file.to_path_buf());
    if matches!(
        check.kind,
        CheckKind::Script { .. } | CheckKind::Docker { .. }
    ) {
        scripts.push((
            file.to_path_buf(),
            service.map(str::to_string),
            check.id.clone(),
        ));
    }
    Ok(())
}

/// The files of `sources`, expanded and ordered.
fn files_of(sources: &[ConfigSource]) -> Result<Vec<PathBuf>, ConfigError> {
    let mut files = Vec::new();
    for source in sources {
        match source {
            ConfigSource::File(path) => files.push(path.clone()),
            ConfigSource::Dir(dir) => {
                let io_err = |err: std::io::Error| ConfigError::Io {
                    path: dir.clone(),
                    reason: format!("cannot read config dir: {err}"),
                };
                let mut found = Vec::new();
                for entry in fs::read_dir(dir).map_err(io_err)? {
                    let path = entry.map_err(io_err)?.path();
                    let wanted = matches!(
                        path.extension().and_then(|e| e.to_str()),
                        Some("json" | "hcl")
                    );
                    if wanted && path.is_file() {
                        found.push(path);
                    }
                }
                // Lexical order of the file names (all share the dir).
                found.sort();
                files.extend(found);
            }
        }
    }
    Ok(files)
}

/// One file's contents, decoded but not merged.
#[derive(Debug, Default)]
struct FileConfig {
    settings: AgentSettings,
    services: Vec<ServiceDefinition>,
    checks: Vec<CheckDefinition>,
    warnings: Vec<String>,
}

/// Read and decode one file.
fn load_file(file: &Path) -> Result<FileConfig, ConfigError> {
    let text = fs::read_to_string(file).map_err(|err| ConfigError::Io {
        path: file.to_path_buf(),
        reason: format!("cannot read config file: {err}"),
    })?;
    let is_hcl = file.extension().and_then(|e| e.to_str()) == Some("hcl");
    let value = parse(&text, is_hcl).map_err(|reason| ConfigError::Parse {
        file: file.to_path_buf(),
        reason,
    })?;
    decode(Ctx { file }, &value)
}

/// JSON or HCL text → a value (HCL through its JSON mapping: one block is
/// an object, repeated blocks a list of objects).
pub fn parse(text: &str, hcl: bool) -> Result<Value, String> {
    let value: Value = if hcl {
        hcl::from_str(text).map_err(|err| err.to_string().replace('\n', " "))?
    } else {
        serde_json::from_str(text).map_err(|err| json_error(text, &err))?
    };
    if !value.is_object() {
        return Err("the top level must be an object".into());
    }
    Ok(value)
}

/// A JSON parse error, with the fix when the file has comments (Consul's
/// own guides show JSON with `//` remarks, which JSON does not allow).
fn json_error(text: &str, err: &serde_json::Error) -> String {
    let line = text.lines().nth(err.line().saturating_sub(1)).unwrap_or("");
    let commented = |l: &str| {
        let l = l.trim_start();
        l.starts_with("//") || l.starts_with("/*") || l.starts_with('#')
    };
    if commented(line) || line.contains(" //") {
        format!(
            "{err}: JSON has no comments: remove the remark, or write the file in HCL (a .hcl \
             file), which allows # and // comments"
        )
    } else {
        err.to_string()
    }
}

/// Decode one file's top-level object.
fn decode(ctx: Ctx<'_>, value: &Value) -> Result<FileConfig, ConfigError> {
    let mut out = FileConfig::default();
    for (key, v) in ctx.object("", value)? {
        match unsupported::classify(key, v) {
            Some(unsupported::Verdict::Refuse(reason)) => {
                return Err(ConfigError::Unsupported {
                    file: ctx.file.to_path_buf(),
                    key: key.clone(),
                    reason,
                })
            }
            Some(unsupported::Verdict::Ignore(why)) => {
                out.warnings.push(format!(
                    "{}: {key:?} has no effect: {why}",
                    ctx.file.display()
                ));
                // Still type-checked where muster reads the key.
                out.settings.decode_key(ctx, key, v)?;
                continue;
            }
            None => {}
        }
        match key.as_str() {
            "service" | "services" => {
                out.services.extend(definitions::services(ctx, key, v)?);
            }
            "check" | "checks" => {
                out.checks.extend(definitions::node_checks(ctx, key, v)?);
            }
            "watches" => {
                let found = watches::decode(ctx, key, v, &mut out.warnings)?;
                out.settings.watches.extend(found);
            }
            k if tls::is_tls_key(k) => {
                out.settings
                    .tls
                    .decode_key(ctx, key, v, &mut out.warnings)?;
            }
            _ => {
                if !out.settings.decode_key(ctx, key, v)? {
                    return Err(ctx.unknown(key));
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
