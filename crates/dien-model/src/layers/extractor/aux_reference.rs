//! Auxiliary loss of docs/MODEL.md#auxiliary-loss in `f64`: for every sample `b` and step
//! `t < L_b − 1`, the extractor state `h_t` scores the next real behaviour
//! `e_{t+1}` (positive) and the sampled negative `ê_{t+1}`:
//!
//! ```text
//! L_aux = (1/N) Σ_b Σ_{t<L_b−1} [softplus(−g([h_t; e_{t+1}])) + softplus(g([h_t; ê_{t+1}]))],
//! N = Σ_b max(L_b − 1, 0),   L_aux = 0 when N = 0.
//! ```

// Index loops mirror the subscripts of the equations; clarity is the point here.
#![allow(clippy::needless_range_loop)]

use crate::config::{AuxForm, ModelConfig};
use crate::params::ParamStore;
use crate::reference::layers::{MlpCache, MlpGrads, MlpParams, mlp_backward, mlp_forward, sigmoid, softplus};

/// The scorer `g` of the auxiliary loss.
#[derive(Clone, Copy, Debug)]
pub enum AuxParams<'a> {
    /// `aux.fc1 [100, H+E] → σ → aux.fc2 [50, 100] → σ → aux.fc3 [1, 50]` on `[h; e]`.
    Mlp(MlpParams<'a>),
    /// The inner product `h · e` (requires `H = E`).
    Dot,
}

/// Inputs of the auxiliary loss, all batch-major and padded to `T` steps.
#[derive(Clone, Copy, Debug)]
pub struct AuxInputs<'a> {
    /// Extractor states `h [B, T, H]`.
    pub states: &'a [f64],
    /// Behaviour embeddings `e [B, T, E]`.
    pub pos: &'a [f64],
    /// Negative embeddings `ê [B, T, E]`.
    pub neg: &'a [f64],
    /// True lengths `[B]`.
    pub lengths: &'a [usize],
    /// Padded length `T`.
    pub steps: usize,
    /// `H`.
    pub hidden: usize,
    /// `E`.
    pub item: usize,
}

/// Gradients of the auxiliary loss (scaled by the weight given to
/// [`aux_loss`]).
#[derive(Clone, Debug, PartialEq)]
pub struct AuxGrads {
    /// `∂/∂aux.fc*` (MLP form only).
    pub mlp: Option<MlpGrads>,
    /// `∂/∂h [B, T, H]`.
    pub d_states: Vec<f64>,
    /// `∂/∂e [B, T, E]`.
    pub d_pos: Vec<f64>,
    /// `∂/∂ê [B, T, E]`.
    pub d_neg: Vec<f64>,
}

impl AuxGrads {
    /// Zero gradients for `p` and inputs shaped like `inp`.
    pub fn zeros(p: &AuxParams<'_>, inp: &AuxInputs<'_>) -> Self {
        Self {
            mlp: match p {
                AuxParams::Mlp(m) => Some(MlpGrads::zeros_like(m)),
                AuxParams::Dot => None,
            },
            d_states: vec![0.0; inp.states.len()],
            d_pos: vec![0.0; inp.pos.len()],
            d_neg: vec![0.0; inp.neg.len()],
        }
    }
}

/// The number of terms `N = Σ_b max(L_b − 1, 0)`.
pub fn aux_terms(lengths: &[usize]) -> usize {
    lengths.iter().map(|&l| l.saturating_sub(1)).sum()
}

/// `L_aux`; when `grad` is given as `(w, g)`, also accumulates the gradient
/// of `w · L_aux` into `g`.
pub fn aux_loss(p: &AuxParams<'_>, inp: &AuxInputs<'_>, mut grad: Option<(f64, &mut AuxGrads)>) -> f64 {
    let (t_, h, e) = (inp.steps, inp.hidden, inp.item);
    let b_ = inp.lengths.len();
    assert_eq!(inp.states.len(), b_ * t_ * h, "aux: states must be [B, T, H]");
    assert!(inp.pos.len() == b_ * t_ * e && inp.neg.len() == b_ * t_ * e, "aux: items must be [B, T, E]");
    if matches!(p, AuxParams::Dot) {
        assert_eq!(h, e, "aux = dot needs H = E");
    }
    let n = aux_terms(inp.lengths);
    if n == 0 {
        return 0.0;
    }
    let inv_n = 1.0 / n as f64;
    let mut total = 0.0;
    let mut x = vec![0.0; h + e];
    let mut dx = vec![0.0; h + e];
    let mut cache = MlpCache::default();
    for (b, &len) in inp.lengths.iter().enumerate() {
        for t in 0..len.saturating_sub(1) {
            let hs = (b * t_ + t) * h;
            let state = &inp.states[hs..hs + h];
            let is = (b * t_ + t + 1) * e;
            for (items, positive) in [(inp.pos, true), (inp.neg, false)] {
                let item = &items[is..is + e];
                let logit = match p {
                    AuxParams::Mlp(m) => {
                        x[..h].copy_from_slice(state);
                        x[h..].copy_from_slice(item);
                        mlp_forward(m, &x, &mut cache)
                    }
                    AuxParams::Dot => state.iter().zip(item).map(|(a, b)| a * b).sum(),
                };
                // softplus(−p) for the positive, softplus(p) for the negative.
                total += if positive { softplus(-logit) } else { softplus(logit) };
                let Some((w, g)) = grad.as_mut() else { continue };
                let d_logit = *w * inv_n * if positive { sigmoid(logit) - 1.0 } else { sigmoid(logit) };
                let d_item = if positive { &mut g.d_pos[is..is + e] } else { &mut g.d_neg[is..is + e] };
                match p {
                    AuxParams::Mlp(m) => {
                        dx.fill(0.0);
                        mlp_backward(m, &x, &cache, d_logit, g.mlp.as_mut().expect("mlp grads"), &mut dx);
                        for (d, v) in g.d_states[hs..hs + h].iter_mut().zip(&dx[..h]) {
                            *d += v;
                        }
                        for (d, v) in d_item.iter_mut().zip(&dx[h..]) {
                            *d += v;
                        }
                    }
                    AuxParams::Dot => {
                        for i in 0..h {
                            g.d_states[hs + i] += d_logit * item[i];
                            d_item[i] += d_logit * state[i];
                        }
                    }
                }
            }
        }
    }
    total * inv_n
}

/// The auxiliary scorer of `cfg`.
pub(crate) fn aux_params<'a>(cfg: &ModelConfig, p: &'a ParamStore<f64>) -> AuxParams<'a> {
    match cfg.aux {
        AuxForm::Mlp => AuxParams::Mlp(crate::layers::attention::reference::mlp_params(p, "aux")),
        AuxForm::Dot => AuxParams::Dot,
    }
}
