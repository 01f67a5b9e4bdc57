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

pub mod definitions;
pub mod error;
pub mod settings;
pub mod value;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use muster_agent::{CheckDefinition, ServiceDefinition};
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
}

/// Read, check and merge `sources` in order. Errors name the file and key.
pub fn load(sources: &[ConfigSource]) -> Result<LoadedConfig, ConfigError> {
    let mut out = LoadedConfig::default();
    // Service ID → file that defined it, for duplicate reports.
    let mut service_files: BTreeMap<String, PathBuf> = BTreeMap::new();
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
            out.services.push(service);
        }
        out.checks.extend(parsed.checks);
        out.settings.merge(parsed.settings);
        out.files.push(file);
    }
    Ok(out)
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
        serde_json::from_str(text).map_err(|err| err.to_string())?
    };
    if !value.is_object() {
        return Err("the top level must be an object".into());
    }
    Ok(value)
}

/// Decode one file's top-level object.
fn decode(ctx: Ctx<'_>, value: &Value) -> Result<FileConfig, ConfigError> {
    let mut out = FileConfig::default();
    for (key, v) in ctx.object("", value)? {
        match key.as_str() {
            "service" | "services" => {
                out.services.extend(definitions::services(ctx, key, v)?);
            }
            "check" | "checks" => {
                out.checks.extend(definitions::node_checks(ctx, key, v)?);
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
