//! Attention of docs/MODEL.md#attention for one sample, in `f64`: scores over the valid
//! steps, the masked softmax, and the backward pass of both.
//!
//! The keys are the `L` valid rows (`[L, A]`) of whatever is attended over:
//! the extractor states `h_t` (`dien*`), the evolving states `h'_t`
//! (`gru_att`) or the raw behaviours `e_t` (`din`). Padded steps are never
//! passed in, so they cannot influence anything.

// Index loops mirror the subscripts of the equations; clarity is the point here.
#![allow(clippy::needless_range_loop)]

use crate::config::{AttForm, ModelConfig};
use crate::params::ParamStore;
use crate::reference::layers::{
    MlpCache, MlpGrads, MlpParams, dense_backward, dense_forward, masked_softmax, mlp_backward, mlp_forward,
    prelu_backward, prelu_forward, softmax_backward,
};

/// Borrowed attention parameters; `A` is the key width, `E` the width of the
/// target item `e_a`.
#[derive(Clone, Copy, Debug)]
pub enum AttParams<'a> {
    /// `q = PReLU(att.q.w e_a + att.q.b)`, `s_t = MLP([q; k_t; q − k_t; q ∘ k_t])`.
    Mlp {
        /// `att.q.w [A, E]`.
        q_w: &'a [f64],
        /// `att.q.b [A]`.
        q_b: &'a [f64],
        /// `att.q.prelu [A]`.
        prelu: &'a [f64],
        /// `att.fc1 [80, 4A]`, `att.fc2 [40, 80]`, `att.fc3 [1, 40]`.
        mlp: MlpParams<'a>,
    },
    /// `s_t = k_tᵀ att.w e_a`.
    Bilinear {
        /// `att.w [A, E]`.
        w: &'a [f64],
    },
}

/// Gradients of an [`AttParams`], same layouts.
#[derive(Clone, Debug, PartialEq)]
pub enum AttGrads {
    /// Gradients of the MLP form.
    Mlp {
        /// `∂L/∂att.q.w`.
        q_w: Vec<f64>,
        /// `∂L/∂att.q.b`.
        q_b: Vec<f64>,
        /// `∂L/∂att.q.prelu`.
        prelu: Vec<f64>,
        /// `∂L/∂att.fc*`.
        mlp: MlpGrads,
    },
    /// Gradient of the bilinear form, `∂L/∂att.w`.
    Bilinear {
        /// `∂L/∂att.w`.
        w: Vec<f64>,
    },
}

impl AttGrads {
    /// Zero gradients shaped like `p`.
    pub fn zeros_like(p: &AttParams<'_>) -> Self {
        match p {
            AttParams::Mlp { q_w, q_b, prelu, mlp } => AttGrads::Mlp {
                q_w: vec![0.0; q_w.len()],
                q_b: vec![0.0; q_b.len()],
                prelu: vec![0.0; prelu.len()],
                mlp: MlpGrads::zeros_like(mlp),
            },
            AttParams::Bilinear { w } => AttGrads::Bilinear { w: vec![0.0; w.len()] },
        }
    }
}

/// Everything [`attention_forward`] computed for one sample.
#[derive(Clone, Debug, Default)]
pub struct AttCache {
    /// MLP form: `att.q.w e_a + att.q.b`; bilinear form: `att.w e_a`.
    pub q_pre: Vec<f64>,
    /// MLP form: the query `q = PReLU(q_pre)`; bilinear form: equal to `q_pre`.
    pub q: Vec<f64>,
    /// MLP form: the scorer inputs `z_t = [q; k_t; q − k_t; q ∘ k_t]`, `[L][4A]`.
    pub z: Vec<Vec<f64>>,
    /// MLP form: the scorer activations, one per step.
    pub mlp: Vec<MlpCache>,
    /// Scores `s_t`, `[L]`.
    pub scores: Vec<f64>,
    /// Softmax weights `a_t`, `[L]` (empty when `L = 0`).
    pub weights: Vec<f64>,
}

/// Scores and softmax weights of one sample; `keys` holds the `L` valid rows
/// `[L, width]`.
pub fn attention_forward(p: &AttParams<'_>, width: usize, e_a: &[f64], keys: &[f64]) -> AttCache {
    assert!(keys.len().is_multiple_of(width), "attention: keys must be [L, A]");
    let len = keys.len() / width;
    let mut c = AttCache { q_pre: vec![0.0; width], q: vec![0.0; width], ..AttCache::default() };
    match p {
        AttParams::Mlp { q_w, q_b, prelu, mlp } => {
            dense_forward(q_w, q_b, e_a, &mut c.q_pre);
            prelu_forward(&c.q_pre, prelu, &mut c.q);
            for k in keys.chunks_exact(width) {
                let mut z = Vec::with_capacity(4 * width);
                z.extend_from_slice(&c.q);
                z.extend_from_slice(k);
                z.extend(c.q.iter().zip(k).map(|(q, k)| q - k));
                z.extend(c.q.iter().zip(k).map(|(q, k)| q * k));
                let mut mc = MlpCache::default();
                c.scores.push(mlp_forward(mlp, &z, &mut mc));
                c.z.push(z);
                c.mlp.push(mc);
            }
        }
        AttParams::Bilinear { w } => {
            let zero = vec![0.0; width];
            dense_forward(w, &zero, e_a, &mut c.q_pre);
            c.q.clone_from(&c.q_pre);
            for k in keys.chunks_exact(width) {
                c.scores.push(k.iter().zip(&c.q).map(|(k, v)| k * v).sum());
            }
        }
    }
    debug_assert_eq!(c.scores.len(), len);
    c.weights = masked_softmax(&c.scores);
    c
}

/// Backward of [`attention_forward`] for the weight gradients `d_weights
/// [L]`: accumulates parameter gradients into `g`, `∂L/∂keys [L, A]` into
/// `d_keys` and `∂L/∂e_a` into `d_e_a`.
#[allow(clippy::too_many_arguments)]
pub fn attention_backward(
    p: &AttParams<'_>,
    width: usize,
    e_a: &[f64],
    keys: &[f64],
    c: &AttCache,
    d_weights: &[f64],
    g: &mut AttGrads,
    d_keys: &mut [f64],
    d_e_a: &mut [f64],
) {
    let len = c.weights.len();
    assert!(d_weights.len() == len && keys.len() == len * width && d_keys.len() == len * width, "attention: shapes");
    if len == 0 {
        return;
    }
    let d_scores = softmax_backward(&c.weights, d_weights);
    match (p, g) {
        (
            AttParams::Mlp { q_w, prelu, mlp, .. },
            AttGrads::Mlp { q_w: g_qw, q_b: g_qb, prelu: g_prelu, mlp: g_mlp },
        ) => {
            let mut dq = vec![0.0; width];
            let mut dz = vec![0.0; 4 * width];
            for t in 0..len {
                dz.fill(0.0);
                mlp_backward(mlp, &c.z[t], &c.mlp[t], d_scores[t], g_mlp, &mut dz);
                let k = &keys[t * width..(t + 1) * width];
                let dk = &mut d_keys[t * width..(t + 1) * width];
                for i in 0..width {
                    let (d_q, d_k, d_diff, d_prod) = (dz[i], dz[width + i], dz[2 * width + i], dz[3 * width + i]);
                    dq[i] += d_q + d_diff + d_prod * k[i];
                    dk[i] += d_k - d_diff + d_prod * c.q[i];
                }
            }
            let mut d_pre = vec![0.0; width];
            prelu_backward(&c.q_pre, prelu, &dq, g_prelu, &mut d_pre);
            dense_backward(q_w, e_a, &d_pre, g_qw, g_qb, Some(d_e_a));
        }
        (AttParams::Bilinear { w }, AttGrads::Bilinear { w: g_w }) => {
            // s_t = k_t · v with v = W e_a.
            let mut dv = vec![0.0; width];
            for t in 0..len {
                let k = &keys[t * width..(t + 1) * width];
                let dk = &mut d_keys[t * width..(t + 1) * width];
                for i in 0..width {
                    dk[i] += d_scores[t] * c.q[i];
                    dv[i] += d_scores[t] * k[i];
                }
            }
            let mut no_bias = vec![0.0; width];
            dense_backward(w, e_a, &dv, g_w, &mut no_bias, Some(d_e_a));
        }
        _ => panic!("attention: parameter and gradient forms differ"),
    }
}

/// The `fc1`–`fc3` tensors under `prefix` (an MLP scorer).
pub(crate) fn mlp_params<'a>(p: &'a ParamStore<f64>, prefix: &str) -> MlpParams<'a> {
    MlpParams {
        w1: p.get(&format!("{prefix}.fc1.w")),
        b1: p.get(&format!("{prefix}.fc1.b")),
        w2: p.get(&format!("{prefix}.fc2.w")),
        b2: p.get(&format!("{prefix}.fc2.b")),
        w3: p.get(&format!("{prefix}.fc3.w")),
        b3: p.get(&format!("{prefix}.fc3.b")),
    }
}

/// The attention parameters of `cfg`.
pub(crate) fn att_params<'a>(cfg: &ModelConfig, p: &'a ParamStore<f64>) -> AttParams<'a> {
    match cfg.att {
        AttForm::Mlp => AttParams::Mlp {
            q_w: p.get("att.q.w"),
            q_b: p.get("att.q.b"),
            prelu: p.get("att.q.prelu"),
            mlp: mlp_params(p, "att"),
        },
        AttForm::Bilinear => AttParams::Bilinear { w: p.get("att.w") },
    }
}
