//! What a run keeps beside its checkpoint: the optimiser state with the
//! training progress (to resume), the vocabularies, the best model.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use dien_model::checkpoint::{self, Decoded, OPTIM_SUFFIX, VOCAB_SUFFIX, set, sidecar_path};
use dien_model::fast::Model;
use dien_model::vocab::Vocabs;
use dien_model::{ModelConfig, ParamStore};

use super::config::Select;
use crate::data::DataPosition;
use crate::error::TrainError;
use crate::optim::Optimizer;

/// Metadata entries every checkpoint of a run carries beside its
/// configuration (the run record).
pub(crate) type RunMeta = BTreeMap<String, String>;

/// The best model of a run so far (the model of `<out>.best.safetensors`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Best {
    /// The AUC that chose it: validation AUC, or test AUC with
    /// `Select::Test` (and in runs recorded before validation splits).
    pub(crate) auc: f64,
    /// The step it was evaluated at.
    pub(crate) step: u64,
    /// Its epoch (0-based; unknown for runs recorded before it was kept).
    pub(crate) epoch: Option<u64>,
    /// Its validation AUC, when the run has a validation split.
    pub(crate) valid_auc: Option<f64>,
}

/// Training progress stored beside a checkpoint so that a run can resume.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Progress {
    /// Epoch (0-based) being trained.
    pub(crate) epoch: u64,
    /// Where the next batch of that epoch comes from.
    pub(crate) pos: DataPosition,
    /// Iterations done.
    pub(crate) step: u64,
    /// Training samples seen.
    pub(crate) samples: u64,
    /// The best model so far.
    pub(crate) best: Option<Best>,
    /// Evaluations in a row since the last new best (early stopping).
    pub(crate) since_best: u64,
}

impl Progress {
    /// The checkpoint metadata entries of this progress.
    pub(crate) fn to_meta(self) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        m.insert("train.epoch".into(), self.epoch.to_string());
        m.insert("train.line".into(), self.pos.line.to_string());
        m.insert("train.batch".into(), self.pos.batch.to_string());
        m.insert("train.step".into(), self.step.to_string());
        m.insert("train.samples".into(), self.samples.to_string());
        m.insert("train.since_best".into(), self.since_best.to_string());
        if let Some(b) = self.best {
            // `Display` of an f64 is its shortest exact form: it reads back.
            m.insert("train.best_auc".into(), b.auc.to_string());
            m.insert("train.best_step".into(), b.step.to_string());
            if let Some(e) = b.epoch {
                m.insert("train.best_epoch".into(), e.to_string());
            }
            if let Some(v) = b.valid_auc {
                m.insert("train.best_valid_auc".into(), v.to_string());
            }
        }
        m
    }
    /// Reads the entries written by [`to_meta`](Self::to_meta) from `path`'s
    /// metadata (those added later are optional, for older checkpoints).
    pub(crate) fn from_meta(m: &BTreeMap<String, String>, path: &Path) -> Result<Self, TrainError> {
        let invalid = |k: &str| {
            TrainError::Config(format!("{}: missing or invalid metadata `{k}` (cannot resume)", path.display()))
        };
        let get =
            |k: &str| -> Result<u64, TrainError> { m.get(k).and_then(|v| v.parse().ok()).ok_or_else(|| invalid(k)) };
        let optional = |k: &str| -> Result<Option<u64>, TrainError> { m.get(k).map(|_| get(k)).transpose() };
        let auc = |k: &str| -> Result<Option<f64>, TrainError> {
            m.get(k).map(|v| v.parse().ok().filter(|a: &f64| a.is_finite()).ok_or_else(|| invalid(k))).transpose()
        };
        Ok(Self {
            epoch: get("train.epoch")?,
            pos: DataPosition { line: get("train.line")?, batch: get("train.batch")? },
            step: get("train.step")?,
            samples: get("train.samples")?,
            since_best: optional("train.since_best")?.unwrap_or(0),
            best: match (auc("train.best_auc")?, m.get("train.best_step")) {
                (None, None) => None,
                (Some(a), Some(_)) => Some(Best {
                    auc: a,
                    step: get("train.best_step")?,
                    epoch: optional("train.best_epoch")?,
                    valid_auc: auc("train.best_valid_auc")?,
                }),
                _ => {
                    return Err(TrainError::Config(format!(
                        "{}: `train.best_auc` and `train.best_step` come together (cannot resume)",
                        path.display()
                    )));
                }
            },
        })
    }
}

/// The best-model checkpoint kept beside `out`.
pub fn best_path(out: &Path) -> PathBuf {
    sidecar_path(out, "best.safetensors")
}

/// Writes the best model beside `out` ([`best_path`]) as a set of its own:
/// its vocabularies (`<best>.vocab.json`) first, then the checkpoint naming
/// them, so that it can be evaluated and served on its own. Its metadata
/// says when it was chosen and by what (`best.step`, `best.epoch`,
/// `best.select`, `best.auc`).
pub(crate) fn save_best(
    out: &Path,
    model: &Model,
    vocabs: &Vocabs,
    run: &RunMeta,
    best: &Best,
    select: Select,
) -> Result<(), TrainError> {
    let path = best_path(out);
    let vocab_path = sidecar_path(&path, VOCAB_SUFFIX);
    let vocab_bytes = vocabs.to_json_bytes();
    set::write_part(&vocab_path, &vocab_bytes)?;
    let mut meta = run.clone();
    meta.extend([set::entry(set::VOCAB_ROLE, &vocab_path, &vocab_bytes)?]);
    meta.insert("best.step".into(), best.step.to_string());
    if let Some(e) = best.epoch {
        meta.insert("best.epoch".into(), e.to_string());
    }
    meta.insert("best.select".into(), select.name().into());
    meta.insert("best.auc".into(), best.auc.to_string());
    checkpoint::save_with(&path, model.config(), model.params(), &meta)?;
    Ok(())
}

/// Writes the checkpoint set of `out`: the vocabularies, the optimiser
/// state with the progress (under a name derived from its content, so it
/// never replaces the state the published checkpoint names), then the
/// checkpoint naming both, whose atomic rename publishes the set
/// (docs/FORMATS.md#checkpoint-sets). State files of earlier saves are
/// removed only after that.
pub(crate) fn save_all(
    out: &Path,
    model: &Model,
    opt: &Optimizer,
    vocabs: &Vocabs,
    p: Progress,
    run: &RunMeta,
) -> Result<(), TrainError> {
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
    }
    let vocab_path = sidecar_path(out, VOCAB_SUFFIX);
    let vocab_bytes = vocabs.to_json_bytes();
    set::write_part(&vocab_path, &vocab_bytes)?;

    let state = opt.state_tensors();
    let refs: Vec<(&str, &[usize], &[f32])> =
        state.iter().map(|(n, s, v)| (n.as_str(), s.as_slice(), v.as_slice())).collect();
    let mut state_meta = opt.state_metadata();
    state_meta.extend(p.to_meta());
    let optim_bytes = checkpoint::tensors_to_bytes(&refs, &state_meta)?;
    let sum = set::bytes_checksum(&optim_bytes);
    let digits = sum.rsplit(':').next().unwrap_or(&sum);
    let optim_path = sidecar_path(out, &format!("optim.{digits}.safetensors"));
    set::write_part(&optim_path, &optim_bytes)?;

    let mut meta = run.clone();
    meta.extend([
        set::entry(set::VOCAB_ROLE, &vocab_path, &vocab_bytes)?,
        set::entry_with_checksum(set::OPTIM_ROLE, &optim_path, &sum)?,
    ]);
    checkpoint::save_with(out, model.config(), model.params(), &meta)?;
    remove_stale_states(out, &optim_path);
    Ok(())
}

/// Removes the optimiser-state files of `out` other than `keep` (states of
/// earlier saves, and the unnamed `<out>.optim.safetensors` of older
/// versions). A file that cannot be removed is left: it is never read.
fn remove_stale_states(out: &Path, keep: &Path) {
    let Some(stem) = sidecar_path(out, OPTIM_SUFFIX).file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
        return;
    };
    // `m.optim.safetensors` → the prefix `m.optim.` and suffix `safetensors`.
    let Some(prefix) = stem.strip_suffix("safetensors") else { return };
    let dir = match out.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let Ok(entries) = fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        let ours = name.starts_with(prefix) && name.ends_with(".safetensors") || name == stem;
        if ours && Some(std::ffi::OsStr::new(name)) != keep.file_name() {
            let _ = fs::remove_file(e.path());
        }
    }
}

/// A checkpoint's vocabularies: the part it names (checked to be the one it
/// was saved with), or the conventional sidecar of an older checkpoint.
fn load_vocabs(path: &Path, meta: &BTreeMap<String, String>, cfg: &ModelConfig) -> Result<Vocabs, TrainError> {
    let Some((file, bytes)) = set::read_part(path, meta, set::VOCAB_ROLE, VOCAB_SUFFIX)? else {
        let expected = sidecar_path(path, VOCAB_SUFFIX);
        return Err(TrainError::Config(format!(
            "{}: no vocabularies beside the checkpoint (expected {})",
            path.display(),
            expected.display()
        )));
    };
    let vocabs = Vocabs::from_json_bytes(&bytes, &file)?;
    let sizes = vocabs.table_sizes();
    if (sizes.uid, sizes.mid, sizes.cat) != (cfg.n_uid, cfg.n_mid, cfg.n_cat) {
        return Err(TrainError::Config(format!(
            "{}: vocabularies ({}, {}, {}) do not match the checkpoint's tables ({}, {}, {})",
            file.display(),
            sizes.uid,
            sizes.mid,
            sizes.cat,
            cfg.n_uid,
            cfg.n_mid,
            cfg.n_cat
        )));
    }
    Ok(vocabs)
}

/// Loads a checkpoint and its vocabularies.
pub fn load_checkpoint(path: &Path) -> Result<(Model, Vocabs), TrainError> {
    let (cfg, params, meta) = checkpoint::load_with_metadata(path)?;
    let vocabs = load_vocabs(path, &meta, &cfg)?;
    Ok((Model::new(cfg, params)?, vocabs))
}

/// Everything a run resumes from: the checkpoint's model, vocabularies and
/// metadata, and the optimiser state it names with the progress.
pub(crate) struct Resumed {
    pub(crate) model: Model,
    pub(crate) vocabs: Vocabs,
    pub(crate) meta: BTreeMap<String, String>,
    pub(crate) state: Decoded,
    pub(crate) progress: Progress,
}

/// Loads the checkpoint set of `out` to resume from: refused when a part
/// is missing or does not belong to the checkpoint.
pub(crate) fn load_for_resume(out: &Path) -> Result<Resumed, TrainError> {
    let (cfg, params, meta) = checkpoint::load_with_metadata(out)?;
    let vocabs = load_vocabs(out, &meta, &cfg)?;
    let Some((file, bytes)) = set::read_part(out, &meta, set::OPTIM_ROLE, OPTIM_SUFFIX)? else {
        return Err(TrainError::Config(format!(
            "{}: cannot resume: no optimiser state beside the checkpoint (was it written by `dien train`?)",
            out.display()
        )));
    };
    let state = checkpoint::tensors_from_file_bytes(&bytes, &file)?;
    let progress = Progress::from_meta(&state.0, &file)?;
    Ok(Resumed { model: Model::new(cfg, params)?, vocabs, meta, state, progress })
}

/// The parameters of the best model of a run resumed from `out`
/// (`<out>.best.safetensors`, which the saved progress names as the model
/// of `step`), checked to be a model of the run; `note` hears of a best
/// model newer than the saved progress.
pub(crate) fn load_best(
    out: &Path,
    model: &Model,
    step: u64,
    note: &mut dyn FnMut(String),
) -> Result<ParamStore<f32>, TrainError> {
    let path = best_path(out);
    let (cfg, params, meta) = checkpoint::load_with_metadata(&path).map_err(|e| {
        TrainError::Config(format!(
            "cannot resume {}: the saved progress names a best model (step {step}), but {} cannot be read: {e}",
            out.display(),
            path.display()
        ))
    })?;
    if cfg != *model.config() {
        return Err(TrainError::Config(format!(
            "cannot resume {}: the best model {} is not a model of this run",
            out.display(),
            path.display()
        )));
    }
    // The best model can be newer than the saved progress (chosen after the
    // last save): the resumed run chooses it again when it gets there.
    if let Some(saved) = meta.get("best.step").filter(|s| **s != step.to_string()) {
        note(format!("{} holds the model of step {saved}, the saved progress the best of step {step}", path.display()));
    }
    Ok(params)
}
