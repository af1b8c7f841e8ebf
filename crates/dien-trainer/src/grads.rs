//! One forward (and backward) pass of a model on a given batch, with every
//! output a comparison with another implementation needs: logits, losses
//! and the gradient of every parameter tensor.

use std::path::Path;

use dien_model::fast::Model;
use dien_model::{Batch, Mode, ModelConfig, ModelError, ParamStore, TensorKind, checkpoint, reference};

/// The outputs of [`compute_grads`].
#[derive(Clone, Debug)]
pub struct GradsOutput {
    /// One logit per sample.
    pub logits: Vec<f32>,
    /// The training objective.
    pub loss: f64,
    /// Its target (click) part.
    pub loss_target: f64,
    /// Its auxiliary part.
    pub loss_aux: f64,
    /// `(grad.<name>, shape, values)` of every trainable tensor, in
    /// canonical order (empty in evaluation mode).
    pub grads: Vec<(String, Vec<usize>, Vec<f32>)>,
}

/// Runs `cfg` with `params` on `batch`: forward only with running
/// statistics when `eval`, else forward and backward in training mode; on
/// the double-precision reference path when `f64`, else on the fast path.
pub fn compute_grads(
    cfg: &ModelConfig,
    params: ParamStore<f32>,
    batch: &Batch,
    eval: bool,
    f64: bool,
) -> Result<GradsOutput, ModelError> {
    let mode = if eval { Mode::Eval } else { Mode::Train };
    let mut grads: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
    let (logits, loss, lt, la): (Vec<f32>, f64, f64, f64);
    if f64 {
        let p64 = params.map(|x| x as f64);
        if eval {
            let o = reference::forward(cfg, &p64, batch, mode)?;
            (logits, loss, lt, la) = (o.logits.iter().map(|&x| x as f32).collect(), o.loss, o.loss_target, o.loss_aux);
        } else {
            let (o, g) = reference::forward_backward(cfg, &p64, batch)?;
            (logits, loss, lt, la) = (o.logits.iter().map(|&x| x as f32).collect(), o.loss, o.loss_target, o.loss_aux);
            for (spec, v) in g.iter() {
                if spec.kind == TensorKind::Param {
                    grads.push((
                        format!("grad.{}", spec.name),
                        spec.shape.clone(),
                        v.iter().map(|&x| x as f32).collect(),
                    ));
                }
            }
        }
    } else {
        let mut model = Model::new(cfg.clone(), params)?;
        let l = if eval { model.forward(batch, mode)? } else { model.forward_backward(batch)? };
        (logits, loss, lt, la) = (model.logits().to_vec(), l.loss, l.loss_target, l.loss_aux);
        if !eval {
            let g = model.gradients().to_dense_store(cfg);
            for (spec, v) in g.iter() {
                if spec.kind == TensorKind::Param {
                    grads.push((format!("grad.{}", spec.name), spec.shape.clone(), v.to_vec()));
                }
            }
        }
    }
    Ok(GradsOutput { logits, loss, loss_target: lt, loss_aux: la, grads })
}

/// Writes `out` as a safetensors file at `path`: the gradients, then
/// `logits`, `loss`, `loss_target` and `loss_aux`, with the model's
/// metadata plus `mode` (`eval` or `train`) and `precision` (`f64` or
/// `f32`).
pub fn save_grads(path: &Path, cfg: &ModelConfig, out: &GradsOutput, eval: bool, f64: bool) -> Result<(), ModelError> {
    let scalars =
        [("loss", [out.loss as f32]), ("loss_target", [out.loss_target as f32]), ("loss_aux", [out.loss_aux as f32])];
    let (logits_shape, scalar_shape) = ([out.logits.len()], [1usize]);
    let mut refs: Vec<(&str, &[usize], &[f32])> =
        out.grads.iter().map(|(n, s, v)| (n.as_str(), s.as_slice(), v.as_slice())).collect();
    refs.push(("logits", logits_shape.as_slice(), out.logits.as_slice()));
    for (name, v) in &scalars {
        refs.push((*name, scalar_shape.as_slice(), v.as_slice()));
    }
    let mut meta = cfg.metadata();
    meta.insert("mode".into(), if eval { "eval" } else { "train" }.into());
    meta.insert("precision".into(), if f64 { "f64" } else { "f32" }.into());
    checkpoint::save_tensors(path, &refs, &meta)
}
