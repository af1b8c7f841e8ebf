//! The prediction head (docs/MODEL.md#prediction-head) in evaluation form: BatchNorm and Dice
//! use their running statistics, so each row is scored on its own and the
//! normalisation constants are computed once when the predictor is built.
//! The two hidden layers' products go through a [`Linear`], in the
//! predictor's [`Precision`](crate::serve::Precision) ([`HeadServe::to_bf16`]).

use dien_engine::gemm::bf16::{Bf16Cpu, Bf16Rows};
use dien_engine::gemm::tile::Accumulate;
use dien_engine::simd::V;
use dien_engine::simd::{LANES, dot, grow, load, pad_lanes, store};
use dien_engine::vecmath::simd::sigmoid_v;

use crate::params::ParamStore;
use crate::serve::linear::Linear;

/// Hidden widths of the head (docs/MODEL.md#prediction-head).
pub(crate) const H1: usize = 200;
pub(crate) const H2: usize = 80;
const BN_EPS: f32 = 1e-3;
const DICE_EPS: f32 = 1e-8;

/// Running statistics of one normalisation, as `(mean, 1/sqrt(var + eps))`.
#[derive(Clone, Debug)]
struct Norm {
    mean: Vec<f32>,
    inv_std: Vec<f32>,
}

impl Norm {
    /// Reads `{prefix}.running_mean`/`running_var`, padded with zeros to `width`.
    fn new(p: &ParamStore<f32>, prefix: &str, eps: f32, width: usize) -> Self {
        let (m, v) = (p.get(&format!("{prefix}.running_mean")), p.get(&format!("{prefix}.running_var")));
        let mut mean = vec![0.0; width];
        let mut inv_std = vec![0.0; width];
        mean[..m.len()].copy_from_slice(m);
        for (s, &x) in inv_std.iter_mut().zip(v) {
            // The same expression as the training path, so scores agree closely.
            *s = 1.0 / (x + eps).sqrt();
        }
        Self { mean, inv_std }
    }
}

/// The head packed for the request path.
#[derive(Clone, Debug)]
pub(crate) struct HeadServe {
    /// Input width `D`.
    d: usize,
    bn: Norm,
    gamma: Vec<f32>,
    beta: Vec<f32>,
    fc1: Linear,
    b1: Vec<f32>,
    dice1: Norm,
    alpha1: Vec<f32>,
    fc2: Linear,
    b2: Vec<f32>,
    dice2: Norm,
    alpha2: Vec<f32>,
    w3: Vec<f32>,
    b3: f32,
}

/// Buffers of [`HeadServe::logits`] (grow only).
#[derive(Clone, Debug, Default)]
pub(crate) struct HeadWs {
    z1: Vec<f32>,
    z2: Vec<f32>,
    /// The bf16 copy of a product's input (bf16 only).
    bf: Bf16Rows,
}

fn padded(v: &[f32], width: usize) -> Vec<f32> {
    let mut out = vec![0.0; width];
    out[..v.len()].copy_from_slice(v);
    out
}

/// Dice in evaluation mode over rows of `width` padded to `ld`:
/// `y = z·(α + ρ(1 − α))`, `ρ = σ((z − μ)·s)`. Padding lanes stay zero (`z = 0`).
fn dice(z: &mut [f32], rows: usize, ld: usize, st: &Norm, alpha: &[f32]) {
    for r in 0..rows {
        for o in (0..ld).step_by(LANES) {
            let i = r * ld + o;
            let zv = load(z, i);
            let zh = (zv - load(&st.mean, o)) * load(&st.inv_std, o);
            let rho = sigmoid_v(zh);
            let a = load(alpha, o);
            store(z, i, zv * rho.mul_add(V::ONE - a, a));
        }
    }
}

impl HeadServe {
    /// Packs the head of input width `d` from the parameters.
    pub fn new(d: usize, p: &ParamStore<f32>) -> Self {
        let (l1, l2) = (pad_lanes(H1), pad_lanes(H2));
        Self {
            d,
            bn: Norm::new(p, "head.bn", BN_EPS, d),
            gamma: p.get("head.bn.gamma").to_vec(),
            beta: p.get("head.bn.beta").to_vec(),
            fc1: Linear::new(p.get("head.fc1.w"), H1, d),
            b1: padded(p.get("head.fc1.b"), l1),
            dice1: Norm::new(p, "head.dice1", DICE_EPS, l1),
            alpha1: padded(p.get("head.dice1.alpha"), l1),
            fc2: Linear::new(p.get("head.fc2.w"), H2, H1),
            b2: padded(p.get("head.fc2.b"), l2),
            dice2: Norm::new(p, "head.dice2", DICE_EPS, l2),
            alpha2: padded(p.get("head.dice2.alpha"), l2),
            w3: p.get("head.fc3.w").to_vec(),
            b3: p.get("head.fc3.b")[0],
        }
    }

    /// The same head with its two hidden layers' products in bf16.
    pub fn to_bf16(&self, cpu: Bf16Cpu) -> Self {
        Self { fc1: self.fc1.to_bf16(cpu), fc2: self.fc2.to_bf16(cpu), ..self.clone() }
    }

    /// Logits `out [rows]` of head inputs `x [rows, D]`; `x` is normalised
    /// in place (BatchNorm with running statistics).
    pub fn logits(&self, x: &mut [f32], rows: usize, ws: &mut HeadWs, out: &mut [f32]) {
        let d = self.d;
        let (l1, l2) = (pad_lanes(H1), pad_lanes(H2));
        assert!(x.len() >= rows * d && out.len() >= rows, "head: buffers too short");
        for row in x[..rows * d].chunks_exact_mut(d) {
            for (j, v) in row.iter_mut().enumerate() {
                let xh = (*v - self.bn.mean[j]) * self.bn.inv_std[j];
                *v = self.gamma[j].mul_add(xh, self.beta[j]);
            }
        }
        grow(&mut ws.z1, rows * l1);
        grow(&mut ws.z2, rows * l2);
        for r in 0..rows {
            ws.z1[r * l1..(r + 1) * l1].copy_from_slice(&self.b1);
            ws.z2[r * l2..(r + 1) * l2].copy_from_slice(&self.b2);
        }
        self.fc1.gemm(rows, x, d, &mut ws.z1, l1, Accumulate::Yes, &mut ws.bf);
        dice(&mut ws.z1, rows, l1, &self.dice1, &self.alpha1);
        self.fc2.gemm(rows, &ws.z1, l1, &mut ws.z2, l2, Accumulate::Yes, &mut ws.bf);
        dice(&mut ws.z2, rows, l2, &self.dice2, &self.alpha2);
        for (r, o) in out[..rows].iter_mut().enumerate() {
            *o = dot(&ws.z2[r * l2..r * l2 + H2], &self.w3) + self.b3;
        }
    }
}
