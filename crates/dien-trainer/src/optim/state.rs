//! The optimiser state kept in checkpoints: the moments as named tensors,
//! the step count, learning rate and hyperparameters as metadata, and their
//! save and load (file or bytes) with validation.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use dien_model::ModelError;
use dien_model::checkpoint::{self, OPTIM_SUFFIX, TensorRef};

use super::{OptimKind, Optimizer};
use crate::error::TrainError;

/// Version of the optimiser-state file layout (metadata `optim.format_version`).
pub const STATE_FORMAT_VERSION: &str = "1";

/// Metadata keys read back by [`Optimizer::load_state`].
const META_VERSION: &str = "optim.format_version";
const META_KIND: &str = "optim.kind";
const META_STEP: &str = "optim.step";
const META_LR: &str = "optim.lr";
const META_BETA1: &str = "optim.beta1";
const META_BETA2: &str = "optim.beta2";
const META_EPS: &str = "optim.eps";

/// Origin named in errors of [`Optimizer::load_state`].
const STATE_ORIGIN: &str = "<optimiser state>";

/// The optimiser-state sidecar of checkpoint `ckpt`:
/// `run/model.safetensors` → `run/model.optim.safetensors`.
pub fn sidecar_path(ckpt: &Path) -> PathBuf {
    checkpoint::sidecar_path(ckpt, OPTIM_SUFFIX)
}

impl Optimizer {
    /// The optimiser state as named tensors: `adam.m.<param>` and
    /// `adam.v.<param>` for every trainable tensor (none for SGD), in
    /// parameter order. Copies; [`Optimizer::save`] writes without copying.
    pub fn state_tensors(&self) -> Vec<(String, Vec<usize>, Vec<f32>)> {
        self.write_set().into_iter().map(|(n, s, d)| (n, s.to_vec(), d.to_vec())).collect()
    }

    /// String metadata of the state, every key under `optim.` so that a
    /// caller may add its own: `optim.format_version`, `optim.kind`,
    /// `optim.step`, `optim.lr` (current; shortest round-trip decimal),
    /// `optim.beta1`, `optim.beta2`, `optim.eps`, `optim.lazy_embeddings` and
    /// `optim.clip_norm` (`none` or the limit) and `optim.aux_lr_scale`.
    pub fn state_metadata(&self) -> BTreeMap<String, String> {
        let c = &self.cfg;
        [
            (META_VERSION, STATE_FORMAT_VERSION.to_string()),
            (META_KIND, c.kind.name().to_string()),
            (META_STEP, self.step.to_string()),
            (META_LR, self.lr.to_string()),
            (META_BETA1, c.beta1.to_string()),
            (META_BETA2, c.beta2.to_string()),
            (META_EPS, c.eps.to_string()),
            ("optim.lazy_embeddings", c.lazy_embeddings.to_string()),
            ("optim.clip_norm", c.clip_norm.map_or_else(|| "none".to_string(), |x| x.to_string())),
            ("optim.aux_lr_scale", c.aux_lr_scale.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// Borrowed state tensors for writing, with their owned names.
    fn write_set(&self) -> Vec<(String, &[usize], &[f32])> {
        let mut out = Vec::new();
        if self.cfg.kind == OptimKind::Adam {
            for s in &self.slots {
                out.push((format!("adam.m.{}", s.name), s.shape.as_slice(), s.m.as_slice()));
                out.push((format!("adam.v.{}", s.name), s.shape.as_slice(), s.v.as_slice()));
            }
        }
        out
    }

    /// Writes the state to `path` (atomically, checksummed; see
    /// [`checkpoint::save_tensors`]).
    pub fn save(&self, path: &Path) -> Result<(), TrainError> {
        let set = self.write_set();
        let refs: Vec<TensorRef<'_>> = set.iter().map(|(n, s, d)| (n.as_str(), *s, *d)).collect();
        checkpoint::save_tensors(path, &refs, &self.state_metadata())?;
        Ok(())
    }

    /// The state file as bytes (what [`Optimizer::save`] writes).
    pub fn state_to_bytes(&self) -> Result<Vec<u8>, TrainError> {
        let set = self.write_set();
        let refs: Vec<TensorRef<'_>> = set.iter().map(|(n, s, d)| (n.as_str(), *s, *d)).collect();
        Ok(checkpoint::tensors_to_bytes(&refs, &self.state_metadata())?)
    }

    /// Restores the state written by [`Optimizer::save`] at `path`.
    pub fn load(&mut self, path: &Path) -> Result<(), TrainError> {
        let (meta, tensors) = checkpoint::load_tensors(path)?;
        self.load_state_from(&meta, tensors, &path.display().to_string())
    }

    /// Restores the state from the bytes of [`Optimizer::state_to_bytes`].
    pub fn load_bytes(&mut self, bytes: &[u8]) -> Result<(), TrainError> {
        let (meta, tensors) = checkpoint::tensors_from_bytes(bytes)?;
        self.load_state_from(&meta, tensors, STATE_ORIGIN)
    }

    /// Restores the state from metadata and tensors (as
    /// [`checkpoint::load_tensors`] returns them): step count, learning rate
    /// and moments. Metadata keys outside `optim.` are ignored. The kind,
    /// `beta1`, `beta2` and `eps` must equal this optimiser's (a resumed run
    /// continues the same rule); `lazy_embeddings`, `clip_norm` and `aux_lr_scale` come from
    /// this optimiser's configuration. Every tensor must be present with its shape, finite,
    /// and `adam.v.*` non-negative; unknown tensors are rejected. On error
    /// nothing is changed.
    pub fn load_state(
        &mut self,
        meta: &BTreeMap<String, String>,
        tensors: Vec<(String, Vec<usize>, Vec<f32>)>,
    ) -> Result<(), TrainError> {
        self.load_state_from(meta, tensors, STATE_ORIGIN)
    }

    fn load_state_from(
        &mut self,
        meta: &BTreeMap<String, String>,
        tensors: Vec<(String, Vec<usize>, Vec<f32>)>,
        origin: &str,
    ) -> Result<(), TrainError> {
        let key_err = |key: &str, msg: String| {
            TrainError::from(ModelError::Checkpoint(key.to_string(), format!("{msg} (in {origin})")))
        };
        let get = |key: &str| meta.get(key).ok_or_else(|| key_err(key, "metadata key is missing".into()));
        let version = get(META_VERSION)?;
        if version != STATE_FORMAT_VERSION {
            return Err(key_err(META_VERSION, format!("unsupported version `{version}`")));
        }
        let kind = get(META_KIND)?;
        if kind != self.cfg.kind.name() {
            return Err(key_err(META_KIND, format!("state of `{kind}`, this optimiser is `{}`", self.cfg.kind)));
        }
        let step: u64 = get(META_STEP)?.parse().map_err(|e| key_err(META_STEP, format!("not a step count: {e}")))?;
        let lr: f32 = get(META_LR)?.parse().map_err(|e| key_err(META_LR, format!("not a number: {e}")))?;
        if !(lr.is_finite() && lr > 0.0) {
            return Err(key_err(META_LR, format!("{lr} must be finite and > 0")));
        }
        if self.cfg.kind == OptimKind::Adam {
            for (key, want) in [(META_BETA1, self.cfg.beta1), (META_BETA2, self.cfg.beta2), (META_EPS, self.cfg.eps)] {
                let got: f32 = get(key)?.parse().map_err(|e| key_err(key, format!("not a number: {e}")))?;
                if got.to_bits() != want.to_bits() {
                    return Err(key_err(key, format!("state has {got}, this optimiser {want}")));
                }
            }
        }

        // Match every tensor to its slot before changing anything.
        let mut m_new: Vec<Option<Vec<f32>>> = vec![None; self.slots.len()];
        let mut v_new: Vec<Option<Vec<f32>>> = vec![None; self.slots.len()];
        for (name, shape, data) in tensors {
            let tensor_err =
                |msg: String| TrainError::from(ModelError::Checkpoint(name.clone(), format!("{msg} (in {origin})")));
            let target = if self.cfg.kind != OptimKind::Adam {
                None
            } else if let Some(p) = name.strip_prefix("adam.m.") {
                self.slots.iter().position(|s| s.name == p).map(|i| (i, &mut m_new))
            } else if let Some(p) = name.strip_prefix("adam.v.") {
                self.slots.iter().position(|s| s.name == p).map(|i| (i, &mut v_new))
            } else {
                None
            };
            let Some((i, dst)) = target else {
                return Err(tensor_err(format!("unknown tensor for a `{}` optimiser", self.cfg.kind)));
            };
            if shape != self.slots[i].shape || data.len() != self.slots[i].numel() {
                return Err(tensor_err(format!("shape {shape:?}, expected {:?}", self.slots[i].shape)));
            }
            if let Some(j) = data.iter().position(|x| !x.is_finite()) {
                return Err(tensor_err(format!("non-finite value {} at element {j}", data[j])));
            }
            if name.starts_with("adam.v.")
                && let Some(j) = data.iter().position(|&x| x < 0.0)
            {
                return Err(tensor_err(format!("negative second moment {} at element {j}", data[j])));
            }
            dst[i] = Some(data);
        }
        if self.cfg.kind == OptimKind::Adam {
            for (i, s) in self.slots.iter().enumerate() {
                for (prefix, got) in [("adam.m.", &m_new[i]), ("adam.v.", &v_new[i])] {
                    if got.is_none() {
                        let name = format!("{prefix}{}", s.name);
                        return Err(TrainError::from(ModelError::Checkpoint(name, format!("missing (in {origin})"))));
                    }
                }
            }
            for ((s, m), v) in self.slots.iter_mut().zip(m_new).zip(v_new) {
                s.m = m.expect("checked");
                s.v = v.expect("checked");
            }
        }
        self.step = step;
        self.lr = lr;
        Ok(())
    }
}
