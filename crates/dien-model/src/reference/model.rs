//! The whole model in `f64`: embedding, interest extractor, auxiliary loss,
//! attention, interest evolving layer (every variant), DIN and base
//! interests, the prediction head and the losses (docs/MODEL.md, from #embedding to #models).

// Index loops mirror the subscripts of the equations; clarity is the point here.
#![allow(clippy::needless_range_loop)]

use dien_engine::cell::reference::{self as cell, RefForward};
use dien_engine::cell::{CellKind, GruGrads, GruParams, SeqInput};

use super::layers::{MlpGrads, add, add_slice, target_loss};
use crate::config::{Evolution, ModelConfig};
use crate::layers::attention::reference::{AttCache, AttGrads, att_params, attention_backward, attention_forward};
use crate::layers::embedding::{self, RefEmbeddingGrads, RefEmbeddings};
use crate::layers::extractor::aux_reference::{AuxGrads, AuxInputs, aux_loss, aux_params};
use crate::layers::head::reference::{HeadCache, head_backward, head_forward};
use crate::mode::Mode;
use crate::params::{ParamStore, tensor_specs};
use crate::plan::{EvolvingPlan, Interest, Plan};
use crate::{Batch, ModelError};

/// Losses and logits of one reference forward pass.
#[derive(Clone, Debug, PartialEq)]
pub struct RefOutput {
    /// Logits `z [B]`.
    pub logits: Vec<f64>,
    /// The objective `L_target + α_aux · L_aux` (docs/MODEL.md#losses).
    pub loss: f64,
    /// `L_target`, the mean log-loss of the logits.
    pub loss_target: f64,
    /// `L_aux` (unweighted), 0 when the model has no auxiliary head or the
    /// batch has no negatives.
    pub loss_aux: f64,
    /// Training mode: the batch mean and biased batch variance of every
    /// normalising layer, named like the running buffers they would update
    /// (`head.bn.running_mean`, `head.bn.running_var`,
    /// `head.dice1.running_mean`, …), in network order. Empty in evaluation.
    pub batch_stats: Vec<(String, Vec<f64>)>,
}

/// Intermediate values of a reference pass, for comparing a fast path
/// stage by stage.
#[derive(Clone, Debug, PartialEq)]
pub struct RefTrace {
    /// Head input `x = [u; e_a; s; e_a ∘ s; interest]`, `[B, D]`.
    pub head_input: Vec<f64>,
    /// The interest slot `[B, interest_width]`.
    pub interest: Vec<f64>,
    /// Attention weights `[B, T]`, zero at padded steps (for `gru_att` the
    /// weights over the evolving states); empty for `base`.
    pub att_weights: Vec<f64>,
    /// Extractor states `h [B, T, H]` (zero at padded steps); empty without GRUs.
    pub extractor_states: Vec<f64>,
    /// Evolving states `h' [B, T, H]` (zero at padded steps); empty without GRUs.
    pub evolving_states: Vec<f64>,
    /// `∂L/∂head_input [B, D]` after a backward pass; empty after a forward only.
    pub d_head_input: Vec<f64>,
}

/// Runs the model on `batch` in `mode`.
///
/// Errors: an invalid configuration, a parameter store whose tensors differ
/// from `tensor_specs(cfg)`, an empty batch, or an index out of range.
pub fn forward(
    cfg: &ModelConfig,
    params: &ParamStore<f64>,
    batch: &Batch,
    mode: Mode,
) -> Result<RefOutput, ModelError> {
    Ok(forward_traced(cfg, params, batch, mode)?.0)
}

/// [`forward`], also returning the intermediate values.
pub fn forward_traced(
    cfg: &ModelConfig,
    params: &ParamStore<f64>,
    batch: &Batch,
    mode: Mode,
) -> Result<(RefOutput, RefTrace), ModelError> {
    check_inputs(cfg, params, batch)?;
    let f = run_forward(cfg, params, batch, mode);
    let trace = f.trace();
    Ok((f.out, trace))
}

/// Training-mode forward and backward: the output and `∂loss/∂θ` for every
/// tensor of `params` (dense, also for the embedding tables; zero for the
/// running-statistics buffers). Nothing in `params` changes.
pub fn forward_backward(
    cfg: &ModelConfig,
    params: &ParamStore<f64>,
    batch: &Batch,
) -> Result<(RefOutput, ParamStore<f64>), ModelError> {
    let (out, grads, _) = forward_backward_traced(cfg, params, batch)?;
    Ok((out, grads))
}

/// [`forward_backward`], also returning the intermediate values (including
/// `∂L/∂head_input`).
pub fn forward_backward_traced(
    cfg: &ModelConfig,
    params: &ParamStore<f64>,
    batch: &Batch,
) -> Result<(RefOutput, ParamStore<f64>, RefTrace), ModelError> {
    check_inputs(cfg, params, batch)?;
    let f = run_forward(cfg, params, batch, Mode::Train);
    let mut grads = ParamStore::<f64>::zeros(cfg);
    let d_head_input = run_backward(cfg, params, batch, &f, &mut grads);
    let mut trace = f.trace();
    trace.d_head_input = d_head_input;
    Ok((f.out, grads, trace))
}

fn check_inputs(cfg: &ModelConfig, params: &ParamStore<f64>, batch: &Batch) -> Result<(), ModelError> {
    cfg.validate()?;
    let want = tensor_specs(cfg);
    let got = params.specs();
    for (i, w) in want.iter().enumerate() {
        match got.get(i) {
            Some(g) if g.name == w.name && g.shape == w.shape => {}
            Some(g) => {
                return Err(ModelError::Config(format!(
                    "parameter {i} is `{}` {:?}, the configuration needs `{}` {:?}",
                    g.name, g.shape, w.name, w.shape
                )));
            }
            None => return Err(ModelError::Config(format!("parameter `{}` is missing", w.name))),
        }
    }
    if let Some(extra) = got.get(want.len()) {
        return Err(ModelError::Config(format!("parameter `{}` is not part of this configuration", extra.name)));
    }
    if batch.batch == 0 {
        return Err(ModelError::Batch("the batch is empty".into()));
    }
    batch.validate(cfg.n_uid, cfg.n_mid, cfg.n_cat)
}

fn gru_params<'a>(p: &'a ParamStore<f64>, prefix: &str, input: usize, hidden: usize) -> GruParams<'a, f64> {
    GruParams {
        w_ih: p.get(&format!("{prefix}.w_ih")),
        w_hh: p.get(&format!("{prefix}.w_hh")),
        b: p.get(&format!("{prefix}.b")),
        input,
        hidden,
    }
}

pub(crate) fn add_mlp(grads: &mut ParamStore<f64>, prefix: &str, g: &MlpGrads) {
    add(grads, &format!("{prefix}.fc1.w"), &g.w1);
    add(grads, &format!("{prefix}.fc1.b"), &g.b1);
    add(grads, &format!("{prefix}.fc2.w"), &g.w2);
    add(grads, &format!("{prefix}.fc2.b"), &g.b2);
    add(grads, &format!("{prefix}.fc3.w"), &g.w3);
    add(grads, &format!("{prefix}.fc3.b"), &g.b3);
}

fn add_gru(grads: &mut ParamStore<f64>, prefix: &str, g: &GruGrads<f64>) {
    add(grads, &format!("{prefix}.w_ih"), &g.w_ih);
    add(grads, &format!("{prefix}.w_hh"), &g.w_hh);
    add(grads, &format!("{prefix}.b"), &g.b);
}

/// The forward passes of the two GRUs of a DIEN stage.
struct Grus {
    plan: EvolvingPlan,
    /// Interest extractor.
    gru1: RefForward<f64>,
    /// Interest-evolving layer.
    gru2: RefForward<f64>,
}

/// Everything the forward pass computed.
struct Fwd {
    out: RefOutput,
    /// `d`, `E`, `H`, interest width, head width.
    dims: (usize, usize, usize, usize, usize),
    /// `e_a [B, E]`.
    ea: Vec<f64>,
    /// `e [B, T, E]`, zero at padded steps.
    items: Vec<f64>,
    /// `ê [B, T, E]`, zero at padded steps (when negatives are given).
    neg: Option<Vec<f64>>,
    /// `s [B, E]`.
    s: Vec<f64>,
    /// The recurrent layers, for the models that have them.
    gru: Option<Grus>,
    /// Per-sample attention (empty for `base`).
    att: Vec<AttCache>,
    /// Attention weights `[B, T]`, zero at padding.
    att_full: Vec<f64>,
    /// Interest `[B, interest_width]`.
    interest: Vec<f64>,
    head: HeadCache,
    /// `∂L_target/∂z [B]`.
    dz: Vec<f64>,
}

impl Fwd {
    fn trace(&self) -> RefTrace {
        RefTrace {
            head_input: self.head.x.clone(),
            interest: self.interest.clone(),
            att_weights: self.att_full.clone(),
            extractor_states: self.gru.as_ref().map(|g| g.gru1.states.clone()).unwrap_or_default(),
            evolving_states: self.gru.as_ref().map(|g| g.gru2.states.clone()).unwrap_or_default(),
            d_head_input: Vec::new(),
        }
    }
}

fn run_forward(cfg: &ModelConfig, p: &ParamStore<f64>, batch: &Batch, mode: Mode) -> Fwd {
    let (bn, tn) = (batch.batch, batch.steps);
    let (d, e, h, iw, dh) = (cfg.d, cfg.e(), cfg.hidden, cfg.interest_width(), cfg.head_in());
    let lengths = &batch.lengths;

    // Embeddings; padded positions are never read.
    let RefEmbeddings { u, ea, items, neg, s } = embedding::reference_lookup(p, batch, d);

    let plan = Plan::new(cfg);
    // Interest extractor (docs/MODEL.md#gru), attention (#attention), interest evolving
    // (#interest-evolving-layer) and the interest slot (#models).
    let mut att = Vec::new();
    let mut att_full = Vec::new();
    let mut gru = None;
    let mut interest = vec![0.0; bn * iw];
    let attend = |keys_all: &[f64], width: usize, att: &mut Vec<AttCache>, att_full: &mut Vec<f64>| {
        let ap = att_params(cfg, p);
        *att_full = vec![0.0; bn * tn];
        for b in 0..bn {
            let start = b * tn * width;
            let keys = &keys_all[start..start + lengths[b] * width];
            let c = attention_forward(&ap, width, &ea[b * e..(b + 1) * e], keys);
            att_full[b * tn..b * tn + lengths[b]].copy_from_slice(&c.weights);
            att.push(c);
        }
    };
    // Σ_t a_t v_t over the valid steps of `values [B, T, width]`.
    let pool = |values: &[f64], width: usize, att: &[AttCache], interest: &mut [f64]| {
        for b in 0..bn {
            for (t, a) in att[b].weights.iter().enumerate() {
                let v = &values[(b * tn + t) * width..(b * tn + t + 1) * width];
                for (o, x) in interest[b * width..(b + 1) * width].iter_mut().zip(v) {
                    *o += a * x;
                }
            }
        }
    };
    match &plan.interest {
        Interest::Evolving(ev) => {
            let input = SeqInput { x: &items, lengths, att: None, h0: None, batch: bn, steps: tn };
            let g1 = cell::forward(CellKind::Gru, &gru_params(p, "gru1", e, h), &input);
            let h_states = &g1.states;
            let gp = gru_params(p, "gru2", h, h);
            match ev.evolution {
                Evolution::Pooled => {
                    let input = SeqInput { x: h_states, lengths, att: None, h0: None, batch: bn, steps: tn };
                    let g2 = cell::forward(ev.cell, &gp, &input);
                    attend(&g2.states, h, &mut att, &mut att_full);
                    pool(&g2.states, h, &att, &mut interest);
                    gru = Some(Grus { plan: *ev, gru1: g1, gru2: g2 });
                }
                Evolution::Gated => {
                    attend(h_states, h, &mut att, &mut att_full);
                    let input = SeqInput { x: h_states, lengths, att: Some(&att_full), h0: None, batch: bn, steps: tn };
                    let g2 = cell::forward(ev.cell, &gp, &input);
                    interest.copy_from_slice(&g2.last);
                    gru = Some(Grus { plan: *ev, gru1: g1, gru2: g2 });
                }
            }
        }
        Interest::AttentionPool { .. } => {
            attend(&items, e, &mut att, &mut att_full);
            pool(&items, e, &att, &mut interest);
        }
        Interest::SumPool => interest.copy_from_slice(&s),
    }

    // Head input x = [u; e_a; s; e_a ∘ s; interest] (docs/MODEL.md#prediction-head).
    let mut x = Vec::with_capacity(bn * dh);
    for b in 0..bn {
        let (eab, sb) = (&ea[b * e..(b + 1) * e], &s[b * e..(b + 1) * e]);
        x.extend_from_slice(&u[b * d..(b + 1) * d]);
        x.extend_from_slice(eab);
        x.extend_from_slice(sb);
        x.extend(eab.iter().zip(sb).map(|(a, b)| a * b));
        x.extend_from_slice(&interest[b * iw..(b + 1) * iw]);
    }
    let mut batch_stats = Vec::new();
    let (head, logits) = head_forward(p, x, bn, mode, &mut batch_stats);

    // Losses (docs/MODEL.md#auxiliary-loss, #losses).
    let (loss_target, dz) = target_loss(&logits, &batch.label);
    let loss_aux = match (&neg, &gru) {
        (Some(ng), Some(g)) if g.plan.aux.is_some() => {
            let inp =
                AuxInputs { states: &g.gru1.states, pos: &items, neg: ng, lengths, steps: tn, hidden: h, item: e };
            aux_loss(&aux_params(cfg, p), &inp, None)
        }
        _ => 0.0,
    };
    let loss = loss_target + f64::from(plan.aux_weight) * loss_aux;
    Fwd {
        out: RefOutput { logits, loss, loss_target, loss_aux, batch_stats },
        dims: (d, e, h, iw, dh),
        ea,
        items,
        neg,
        s,
        gru,
        att,
        att_full,
        interest,
        head,
        dz,
    }
}

/// Backward of [`run_forward`] (training mode); fills `grads` and returns
/// `∂L/∂head_input`.
fn run_backward(
    cfg: &ModelConfig,
    p: &ParamStore<f64>,
    batch: &Batch,
    f: &Fwd,
    grads: &mut ParamStore<f64>,
) -> Vec<f64> {
    let (bn, tn) = (batch.batch, batch.steps);
    let (d, e, h, iw, dh) = f.dims;
    let lengths = &batch.lengths;

    let dx = head_backward(p, &f.head, &f.dz, grads);

    // Split ∂x into its slots.
    let mut du = vec![0.0; bn * d];
    let mut dea = vec![0.0; bn * e];
    let mut ds = vec![0.0; bn * e];
    let mut dint = vec![0.0; bn * iw];
    for b in 0..bn {
        let r = &dx[b * dh..(b + 1) * dh];
        du[b * d..(b + 1) * d].copy_from_slice(&r[..d]);
        let (eab, sb) = (&f.ea[b * e..(b + 1) * e], &f.s[b * e..(b + 1) * e]);
        for k in 0..e {
            let (d_ea, d_s, d_prod) = (r[d + k], r[d + e + k], r[d + 2 * e + k]);
            dea[b * e + k] = d_ea + d_prod * sb[k];
            ds[b * e + k] = d_s + d_prod * eab[k];
        }
        dint[b * iw..(b + 1) * iw].copy_from_slice(&r[d + 3 * e..]);
    }

    let mut d_items = vec![0.0; bn * tn * e];
    let mut d_neg = vec![0.0; bn * tn * e];
    let mut d_h = vec![0.0; bn * tn * h];
    let plan = Plan::new(cfg);
    let mut att_grads = cfg.has_attention().then(|| AttGrads::zeros_like(&att_params(cfg, p)));

    // Weighted pooling Σ_t a_t v_t: ∂a_t = ∂int · v_t, ∂v_t += a_t ∂int.
    let pool_backward = |values: &[f64], width: usize, d_values: &mut [f64]| -> Vec<Vec<f64>> {
        (0..bn)
            .map(|b| {
                let di = &dint[b * width..(b + 1) * width];
                let weights = &f.att[b].weights;
                let mut da = vec![0.0; weights.len()];
                for (t, (a, dat)) in weights.iter().zip(&mut da).enumerate() {
                    let o = (b * tn + t) * width;
                    *dat = values[o..o + width].iter().zip(di).map(|(v, g)| v * g).sum();
                    for (dv, g) in d_values[o..o + width].iter_mut().zip(di) {
                        *dv += a * g;
                    }
                }
                da
            })
            .collect()
    };
    // Attention backward of every sample; keys and their gradients are
    // `[B, T, width]`. Only the stages with attention call it, and exactly
    // those have attention gradients.
    let mut attend_backward = |keys_all: &[f64], width: usize, d_att: &[Vec<f64>], d_keys_all: &mut [f64]| {
        let ap = att_params(cfg, p);
        let Some(g) = att_grads.as_mut() else { return };
        for b in 0..bn {
            let (start, n) = (b * tn * width, lengths[b] * width);
            attention_backward(
                &ap,
                width,
                &f.ea[b * e..(b + 1) * e],
                &keys_all[start..start + n],
                &f.att[b],
                &d_att[b],
                g,
                &mut d_keys_all[start..start + n],
                &mut dea[b * e..(b + 1) * e],
            );
        }
    };

    match (&plan.interest, &f.gru) {
        (_, Some(Grus { plan: ev, gru1: g1, gru2: g2 })) => {
            let gp = gru_params(p, "gru2", h, h);
            let mut gg = GruGrads::zeros(h, h);
            match ev.evolution {
                Evolution::Pooled => {
                    let mut d_states2 = vec![0.0; bn * tn * h];
                    let d_att = pool_backward(&g2.states, h, &mut d_states2);
                    attend_backward(&g2.states, h, &d_att, &mut d_states2);
                    let input = SeqInput { x: &g1.states, lengths, att: None, h0: None, batch: bn, steps: tn };
                    let ig = cell::backward(ev.cell, &gp, &input, g2, Some(&d_states2), None, &mut gg);
                    add_slice(&mut d_h, &ig.x);
                }
                Evolution::Gated => {
                    let input =
                        SeqInput { x: &g1.states, lengths, att: Some(&f.att_full), h0: None, batch: bn, steps: tn };
                    let ig = cell::backward(ev.cell, &gp, &input, g2, None, Some(&dint), &mut gg);
                    add_slice(&mut d_h, &ig.x);
                    let d_att: Vec<Vec<f64>> = (0..bn).map(|b| ig.att[b * tn..b * tn + lengths[b]].to_vec()).collect();
                    attend_backward(&g1.states, h, &d_att, &mut d_h);
                }
            }
            add_gru(grads, "gru2", &gg);
        }
        (Interest::AttentionPool { .. }, None) => {
            let d_att = pool_backward(&f.items, e, &mut d_items);
            attend_backward(&f.items, e, &d_att, &mut d_items);
        }
        // Sum pooling: the only stage without attention.
        (_, None) => add_slice(&mut ds, &dint),
    }
    match att_grads {
        Some(AttGrads::Mlp { q_w, q_b, prelu, mlp }) => {
            add(grads, "att.q.w", &q_w);
            add(grads, "att.q.b", &q_b);
            add(grads, "att.q.prelu", &prelu);
            add_mlp(grads, "att", &mlp);
        }
        Some(AttGrads::Bilinear { w }) => add(grads, "att.w", &w),
        None => {}
    }

    // Auxiliary loss, weighted by α_aux in the objective.
    if let (Some(ng), Some(Grus { plan: ev, gru1: g1, .. })) = (&f.neg, &f.gru)
        && ev.aux.is_some()
    {
        let ap = aux_params(cfg, p);
        let inp = AuxInputs { states: &g1.states, pos: &f.items, neg: ng, lengths, steps: tn, hidden: h, item: e };
        let mut ag = AuxGrads::zeros(&ap, &inp);
        aux_loss(&ap, &inp, Some((f64::from(plan.aux_weight), &mut ag)));
        add_slice(&mut d_h, &ag.d_states);
        add_slice(&mut d_items, &ag.d_pos);
        add_slice(&mut d_neg, &ag.d_neg);
        if let Some(m) = &ag.mlp {
            add_mlp(grads, "aux", m);
        }
    }

    // Interest extractor.
    if let Some(Grus { gru1: g1, .. }) = &f.gru {
        let input = SeqInput { x: &f.items, lengths, att: None, h0: None, batch: bn, steps: tn };
        let mut gg = GruGrads::zeros(e, h);
        let ig = cell::backward(CellKind::Gru, &gru_params(p, "gru1", e, h), &input, g1, Some(&d_h), None, &mut gg);
        add_slice(&mut d_items, &ig.x);
        add_gru(grads, "gru1", &gg);
    }

    // Sum pooling, then the rows of the tables.
    let d_emb = RefEmbeddingGrads { du: &du, dea: &dea, d_items: &mut d_items, d_neg: &d_neg, ds: &ds };
    embedding::reference_scatter(batch, d, d_emb, grads);
    dx
}
