//! What a run keeps beside its checkpoint: the optimiser state with the
//! training progress (to resume), the vocabularies, the best model.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use dien_model::ModelConfig;
use dien_model::checkpoint::{self, Decoded, OPTIM_SUFFIX, VOCAB_SUFFIX, set, sidecar_path};
use dien_model::fast::Model;
use dien_model::vocab::Vocabs;

use crate::data::DataPosition;
use crate::error::TrainError;
use crate::optim::Optimizer;

/// Metadata entries every checkpoint of a run carries beside its
/// configuration (the run record).
pub(crate) type RunMeta = BTreeMap<String, String>;

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
    /// The best test AUC so far and the step it was measured at (the model
    /// of `<out>.best.safetensors`).
    pub(crate) best: Option<(f64, u64)>,
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
        if let Some((auc, step)) = self.best {
            // `Display` of an f64 is its shortest exact form: it reads back.
            m.insert("train.best_auc".into(), auc.to_string());
            m.insert("train.best_step".into(), step.to_string());
        }
        m
    }
    /// Reads the entries written by [`to_meta`](Self::to_meta) from `path`'s metadata.
    pub(crate) fn from_meta(m: &BTreeMap<String, String>, path: &Path) -> Result<Self, TrainError> {
        let get = |k: &str| -> Result<u64, TrainError> {
            m.get(k).and_then(|v| v.parse().ok()).ok_or_else(|| {
                TrainError::Config(format!("{}: missing or invalid metadata `{k}` (cannot resume)", path.display()))
            })
        };
        Ok(Self {
            epoch: get("train.epoch")?,
            pos: DataPosition { line: get("train.line")?, batch: get("train.batch")? },
            step: get("train.step")?,
            samples: get("train.samples")?,
            best: match (m.get("train.best_auc"), m.get("train.best_step")) {
                (None, None) => None,
                (Some(auc), Some(_)) => {
                    let auc: f64 = auc.parse().ok().filter(|a: &f64| a.is_finite()).ok_or_else(|| {
                        TrainError::Config(format!(
                            "{}: invalid metadata `train.best_auc` (cannot resume)",
                            path.display()
                        ))
                    })?;
                    Some((auc, get("train.best_step")?))
                }
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
/// them, so that it can be evaluated and served on its own.
pub(crate) fn save_best(out: &Path, model: &Model, vocabs: &Vocabs, run: &RunMeta) -> Result<(), TrainError> {
    let best = best_path(out);
    let vocab_path = sidecar_path(&best, VOCAB_SUFFIX);
    let vocab_bytes = vocabs.to_json_bytes();
    set::write_part(&vocab_path, &vocab_bytes)?;
    let mut meta = run.clone();
    meta.extend([set::entry(set::VOCAB_ROLE, &vocab_path, &vocab_bytes)?]);
    checkpoint::save_with(&best, model.config(), model.params(), &meta)?;
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
        set::entry(set::OPTIM_ROLE, &optim_path, &optim_bytes)?,
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
