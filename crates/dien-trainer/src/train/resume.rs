//! Honest resume: a resumed run continues the run its checkpoint recorded.
//! Settings that would make it a different run (the architecture, the
//! longest history, the batch size, the data, the seed, the optimiser, the
//! validation split and what chooses the best model) are refused when they
//! differ from the checkpoint's; settings that may change between sittings
//! (learning rate, epochs, evaluation and save cadence, early stopping,
//! step limit, clipping, recalibration) are applied and reported.

use std::path::Path;

use serde_json::Value;

use super::TrainConfig;
use super::run::RUN_METADATA_KEY;
use super::state::Resumed;
use crate::error::TrainError;

/// What a resumed run changes, to report.
pub(crate) struct Reconciled {
    /// One line per setting that differs from the recorded run and is
    /// applied (`lr: 0.001 → 0.0005`).
    pub(crate) changes: Vec<String>,
    /// The learning rate to continue with when `--lr` changed: the new base
    /// rate halved once per finished epoch, as if the run had used it all
    /// along.
    pub(crate) lr: Option<f32>,
}

/// The settings that define a run: a resumed run must keep them.
const FIXED: [&str; 10] = [
    "batch",
    "seed",
    "optimizer",
    "dense_embedding_updates",
    "data",
    "model",
    "max_len",
    "valid_frac",
    "select",
    "recipe",
];

/// The settings a resumed run may change.
const CHANGEABLE: [&str; 11] = [
    "lr",
    "epochs",
    "eval_every",
    "no_epoch_eval",
    "early_stop",
    "save_every",
    "max_steps",
    "clip_norm",
    "no_recalibrate",
    "recal_samples",
    "aux_lr_scale",
];

/// Completes the settings of a run recorded before some settings existed
/// with what that run did: one without `valid_frac` trained on every user,
/// kept the best test AUC and evaluated at no epoch's end; one without
/// `recipe` trained with the reference recipe and an unscaled auxiliary
/// learning rate. A resumed run compares itself with (and `train --resume`
/// continues) these.
pub fn fill_legacy_settings(recorded: &mut serde_json::Map<String, Value>) {
    if !recorded.contains_key("valid_frac") {
        for (key, value) in
            [("valid_frac", Value::from(0.0)), ("select", Value::from("test")), ("no_epoch_eval", Value::from(true))]
        {
            recorded.entry(key).or_insert(value);
        }
    }
    for (key, value) in [("recipe", Value::from("reference")), ("aux_lr_scale", Value::from(1.0))] {
        recorded.entry(key).or_insert(value);
    }
}

/// Compares `cfg` with the checkpoint `r` resumes from; refuses any
/// conflict, naming every one.
pub(crate) fn reconcile(cfg: &TrainConfig, r: &Resumed) -> Result<Reconciled, TrainError> {
    let saved = r.model.config();
    let want = &cfg.model;
    let mut conflicts = Vec::new();
    let arch = [
        ("model", saved.model.name().to_string(), want.model.name().to_string()),
        ("variant", saved.variant.name().to_string(), want.variant.name().to_string()),
        ("att", saved.att.name().to_string(), want.att.name().to_string()),
        ("aux", saved.aux.name().to_string(), want.aux.name().to_string()),
        ("dim", saved.d.to_string(), want.d.to_string()),
        ("hidden", saved.hidden.to_string(), want.hidden.to_string()),
        ("max_len", saved.max_len.to_string(), want.max_len.to_string()),
    ];
    for (key, had, asked) in arch {
        if had != asked {
            conflicts.push(format!("{key}: the checkpoint has {had}, this run asks for {asked}"));
        }
    }
    if saved.has_aux() && saved.alpha_aux.to_bits() != want.alpha_aux.to_bits() {
        conflicts
            .push(format!("alpha_aux: the checkpoint has {}, this run asks for {}", saved.alpha_aux, want.alpha_aux));
    }

    let mut changes = Vec::new();
    let mut lr = None;
    // Checkpoints written before run records carry only the architecture.
    if let Some(mut recorded) = recorded_settings(r)? {
        fill_legacy_settings(&mut recorded);
        let now = cfg.settings();
        let get = |m: &serde_json::Map<String, Value>, k: &str| m.get(k).cloned().unwrap_or(Value::Null);
        for key in FIXED {
            let (had, asked) = (get(&recorded, key), get(&now, key));
            let same = if key == "data" { same_path(&had, &asked) } else { had == asked };
            if !same && !conflicts.iter().any(|c| c.starts_with(&format!("{key}:"))) {
                conflicts.push(format!(
                    "{key}: the checkpoint's run used {}, this run asks for {}",
                    show(&had),
                    show(&asked)
                ));
            }
        }
        for key in CHANGEABLE {
            let (had, asked) = (get(&recorded, key), get(&now, key));
            if had != asked {
                changes.push(format!("{key}: {} → {}", show(&had), show(&asked)));
                if key == "lr" {
                    let epochs_done = r.progress.epoch.min(64) as i32;
                    lr = Some(cfg.optim.lr * 0.5f32.powi(epochs_done));
                }
            }
        }
    }
    if !conflicts.is_empty() {
        return Err(TrainError::Config(format!(
            "cannot resume {}: {} (leave these flags out to continue the recorded run, or train a new checkpoint)",
            cfg.out.display(),
            conflicts.join("; ")
        )));
    }
    Ok(Reconciled { changes, lr })
}

/// The `config` object of the checkpoint's run record, if it has one.
fn recorded_settings(r: &Resumed) -> Result<Option<serde_json::Map<String, Value>>, TrainError> {
    let Some(text) = r.meta.get(RUN_METADATA_KEY) else { return Ok(None) };
    let bad = |msg: &str| TrainError::Config(format!("checkpoint metadata `{RUN_METADATA_KEY}`: {msg}"));
    let v: Value = serde_json::from_str(text).map_err(|e| bad(&format!("not JSON: {e}")))?;
    match v.get("config") {
        Some(Value::Object(m)) => Ok(Some(m.clone())),
        _ => Err(bad("no `config` object")),
    }
}

/// Two data paths name the same directory (compared resolved when both
/// exist, as given otherwise).
fn same_path(a: &Value, b: &Value) -> bool {
    match (a.as_str(), b.as_str()) {
        (Some(a), Some(b)) => match (Path::new(a).canonicalize(), Path::new(b).canonicalize()) {
            (Ok(x), Ok(y)) => x == y,
            _ => a == b,
        },
        _ => a == b,
    }
}

fn show(v: &Value) -> String {
    match v {
        Value::Null => "(unset)".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
