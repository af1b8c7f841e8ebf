//! What a run keeps beside its checkpoint: the optimiser state with the
//! training progress (to resume), the vocabularies, the best model.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use dien_model::checkpoint::{self, OPTIM_SUFFIX, VOCAB_SUFFIX, sidecar_path};
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
        })
    }
}

/// The best-model checkpoint kept beside `out`.
pub fn best_path(out: &Path) -> PathBuf {
    sidecar_path(out, "best.safetensors")
}

/// Writes the best model beside `out` ([`best_path`]) with the run's
/// metadata and its own vocabulary sidecar, so that it can be evaluated and served on its own.
pub(crate) fn save_best(out: &Path, model: &Model, vocabs: &Vocabs, run: &RunMeta) -> Result<(), TrainError> {
    let best = best_path(out);
    checkpoint::save_with(&best, model.config(), model.params(), run)?;
    vocabs.save_json(&sidecar_path(&best, VOCAB_SUFFIX))?;
    Ok(())
}

/// Writes the checkpoint `out` (with the run's metadata) and its sidecars:
/// optimiser state with the progress, and the vocabularies.
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
    checkpoint::save_with(out, model.config(), model.params(), run)?;
    let state = opt.state_tensors();
    let refs: Vec<(&str, &[usize], &[f32])> =
        state.iter().map(|(n, s, v)| (n.as_str(), s.as_slice(), v.as_slice())).collect();
    let mut meta = opt.state_metadata();
    meta.extend(p.to_meta());
    checkpoint::save_tensors(&sidecar_path(out, OPTIM_SUFFIX), &refs, &meta)?;
    vocabs.save_json(&sidecar_path(out, VOCAB_SUFFIX))?;
    Ok(())
}

/// Loads a checkpoint and its vocabulary sidecar.
pub fn load_checkpoint(path: &Path) -> Result<(Model, Vocabs), TrainError> {
    let (cfg, params) = checkpoint::load(path)?;
    let vocabs = Vocabs::from_json_file(&sidecar_path(path, VOCAB_SUFFIX))?;
    let sizes = vocabs.table_sizes();
    if (sizes.uid, sizes.mid, sizes.cat) != (cfg.n_uid, cfg.n_mid, cfg.n_cat) {
        return Err(TrainError::Config(format!(
            "{}: vocabularies ({}, {}, {}) do not match the checkpoint's tables ({}, {}, {})",
            sidecar_path(path, VOCAB_SUFFIX).display(),
            sizes.uid,
            sizes.mid,
            sizes.cat,
            cfg.n_uid,
            cfg.n_mid,
            cfg.n_cat
        )));
    }
    Ok((Model::new(cfg, params)?, vocabs))
}
