//! `dien train --config FILE`: a TOML (or JSON) file whose keys are the
//! command's flags. Its settings become flags placed before the command
//! line's own, so that a flag given on the command line overrides the file.
//! A run record (the first line of a metrics log, or a checkpoint's `run`
//! metadata) is read as its `config` object, so a run can be repeated.

use std::ffi::OsString;
use std::fs;
use std::path::Path;

use clap::CommandFactory;
use serde_json::Value;

use crate::cli::Cli;

/// Config files are small: anything larger is not one.
const MAX_BYTES: u64 = 1 << 20;

/// The command line with the settings of `train --config FILE` inserted
/// right after `train` (unchanged when there is no such flag).
pub(crate) fn expand(args: Vec<OsString>) -> Result<Vec<OsString>, String> {
    let Some(sub) = args.iter().position(|a| a == "train") else { return Ok(args) };
    let mut path = None;
    for (i, a) in args.iter().enumerate().skip(sub + 1) {
        let a = a.to_string_lossy();
        if a == "--config" {
            path = args.get(i + 1).cloned();
        } else if let Some(p) = a.strip_prefix("--config=") {
            path = Some(p.into());
        }
    }
    let Some(path) = path else { return Ok(args) };
    let settings = read(Path::new(&path)).map_err(|e| format!("--config {}: {e}", Path::new(&path).display()))?;
    let mut out = args[..=sub].to_vec();
    out.extend(settings);
    out.extend(args[sub + 1..].iter().cloned());
    Ok(out)
}

/// The flags a config file stands for.
fn read(path: &Path) -> Result<Vec<OsString>, String> {
    let len = fs::metadata(path).map_err(|e| e.to_string())?.len();
    if len > MAX_BYTES {
        return Err(format!("{len} bytes; a config file has at most {MAX_BYTES}"));
    }
    let text = fs::read_to_string(path).map_err(|e| e.to_string())?;
    let value: Value = if path.extension().is_some_and(|e| e == "json") {
        serde_json::from_str(&text).map_err(|e| format!("not valid JSON: {e}"))?
    } else {
        let table: toml::Table = text.parse().map_err(|e| format!("not valid TOML: {e}"))?;
        serde_json::to_value(table).map_err(|e| e.to_string())?
    };
    let table = match value {
        Value::Object(mut m) if m.get("kind").and_then(Value::as_str) == Some("run") => match m.remove("config") {
            Some(Value::Object(c)) => c,
            _ => return Err("a run record without a `config` object".into()),
        },
        Value::Object(m) => m,
        _ => return Err("expected a table of settings".into()),
    };
    let cmd = Cli::command();
    let train = cmd.find_subcommand("train").ok_or("no `train` command")?;
    let mut flags = Vec::new();
    for (key, value) in table {
        let long = key.replace('_', "-");
        let arg = train.get_arguments().find(|a| a.get_long() == Some(long.as_str()) && long != "config").ok_or_else(
            || {
                let known: Vec<String> = train
                    .get_arguments()
                    .filter_map(|a| a.get_long())
                    .filter(|l| !matches!(*l, "config" | "help"))
                    .map(|l| l.replace('-', "_"))
                    .collect();
                format!("unknown key `{key}` (the keys are the flags of `dien train`: {})", known.join(", "))
            },
        )?;
        let takes_value = arg.get_action().takes_values();
        match (value, takes_value) {
            (Value::Null, _) | (Value::Bool(false), false) => {}
            (Value::Bool(true), false) => flags.push(format!("--{long}").into()),
            (v @ (Value::String(_) | Value::Number(_)), true) => {
                flags.push(format!("--{long}").into());
                flags.push(match v {
                    Value::String(s) => s.into(),
                    other => other.to_string().into(),
                });
            }
            (v, true) => return Err(format!("key `{key}`: expected a string or a number, found {v}")),
            (v, false) => return Err(format!("key `{key}`: expected true or false, found {v}")),
        }
    }
    Ok(flags)
}
