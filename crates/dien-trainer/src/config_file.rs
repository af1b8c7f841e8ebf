//! `dien train --config FILE`: a TOML (or JSON) file whose keys are the
//! command's flags. Its settings become flags placed before the command
//! line's own, so that a flag given on the command line overrides the file.
//! A run record (the first line of a metrics log, or a checkpoint's `run`
//! metadata) is read as its `config` object, so a run can be repeated.
//! `train --resume` takes the settings the checkpoint recorded the same way:
//! flags left out continue the recorded run, flags given are checked
//! against it by the training loop.

use std::ffi::OsString;
use std::fs;
use std::path::Path;

use clap::CommandFactory;
use dien_trainer::train::{RUN_METADATA_KEY, fill_legacy_settings};
use serde_json::Value;

use crate::cli::Cli;

/// Config files are small: anything larger is not one.
const MAX_BYTES: u64 = 1 << 20;

/// The command line with settings inserted right after `train`: those of
/// the run recorded in the checkpoint that `train --resume --out CKPT`
/// continues, then those of `--config FILE`, then the command line's own.
/// Unchanged for other commands.
pub(crate) fn expand(args: Vec<OsString>) -> Result<Vec<OsString>, String> {
    let Some(sub) = args.iter().position(|a| a == "train") else { return Ok(args) };
    let value_of = |flag: &str| -> Option<OsString> {
        let eq = format!("{flag}=");
        let mut found = None;
        for (i, a) in args.iter().enumerate().skip(sub + 1) {
            let a = a.to_string_lossy();
            if a == flag {
                found = args.get(i + 1).cloned();
            } else if let Some(p) = a.strip_prefix(&eq) {
                found = Some(p.into());
            }
        }
        found
    };
    let mut settings = Vec::new();
    if args[sub + 1..].iter().any(|a| a == "--resume")
        && let Some(out) = value_of("--out")
    {
        let out = Path::new(&out);
        if !out.exists() {
            return Err(format!("--resume: there is no checkpoint at {} to continue", out.display()));
        }
        settings.extend(recorded(out));
    }
    if let Some(path) = value_of("--config") {
        settings.extend(read(Path::new(&path)).map_err(|e| format!("--config {}: {e}", Path::new(&path).display()))?);
    }
    let mut out = args[..=sub].to_vec();
    out.extend(settings);
    out.extend(args[sub + 1..].iter().cloned());
    Ok(out)
}

/// The settings recorded in checkpoint `ckpt` (its run record) as flags,
/// but `out` and `resume`, which the command line gives; a run recorded
/// before validation splits continues without one. Nothing when the
/// checkpoint cannot be read or has no record: the training run itself then
/// reports what is wrong.
fn recorded(ckpt: &Path) -> Vec<OsString> {
    let Ok((_, _, meta)) = dien_model::checkpoint::load_with_metadata(ckpt) else { return Vec::new() };
    let Some(Value::Object(mut m)) = meta.get(RUN_METADATA_KEY).and_then(|t| serde_json::from_str(t).ok()) else {
        return Vec::new();
    };
    let Some(Value::Object(mut settings)) = m.remove("config") else { return Vec::new() };
    fill_legacy_settings(&mut settings);
    settings.remove("out");
    settings.remove("resume");
    flags(settings).unwrap_or_default()
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
    flags(table)
}

/// The flag of `dien train` that setting `key` names; an unknown key is an
/// error listing the keys.
fn train_flag<'a>(train: &'a clap::Command, key: &str) -> Result<&'a clap::Arg, String> {
    let long = key.replace('_', "-");
    train.get_arguments().find(|a| a.get_long() == Some(long.as_str()) && long != "config").ok_or_else(|| {
        let known: Vec<String> = train
            .get_arguments()
            .filter_map(|a| a.get_long())
            .filter(|l| !matches!(*l, "config" | "help"))
            .map(|l| l.replace('-', "_"))
            .collect();
        format!("unknown key `{key}` (the keys are the flags of `dien train`: {})", known.join(", "))
    })
}

/// One value of setting `key` as `dien train` flags, for `dien sweep --set
/// KEY=V1,V2`: a switch takes `true` or `false`, other settings the value
/// as written (checked when the flags are parsed).
pub(crate) fn setting_flags(key: &str, value: &str) -> Result<Vec<OsString>, String> {
    let cmd = Cli::command();
    let train = cmd.find_subcommand("train").ok_or("no `train` command")?;
    let value = match (train_flag(train, key)?.get_action().takes_values(), value) {
        (false, "true") => Value::Bool(true),
        (false, "false") => Value::Bool(false),
        (_, v) => Value::String(v.to_string()),
    };
    flags([(key.to_string(), value)].into_iter().collect())
}

/// Settings as `dien train` flags: `true` switches on a flag without a
/// value, `false` and `null` leave it out; a key that is not a flag is an
/// error listing the keys.
fn flags(table: serde_json::Map<String, Value>) -> Result<Vec<OsString>, String> {
    let cmd = Cli::command();
    let train = cmd.find_subcommand("train").ok_or("no `train` command")?;
    let mut flags = Vec::new();
    for (key, value) in table {
        let long = key.replace('_', "-");
        let takes_value = train_flag(train, &key)?.get_action().takes_values();
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
