//! Attention of many candidates over one history (request path).
//!
//! `mlp` form, with the first layer split as in the
//! [layer documentation](super), grouped as
//!
//! ```text
//! W1·z_t + b1 = [(Wk − Wd)·k_t + b1] + Wp·(q ∘ k_t) + (Wq + Wd)·q
//! ```
//!
//! The first bracket depends on the history only: it is computed once per
//! request (`[L, 80]`) and shared by every candidate. Per candidate remain
//! `(Wq + Wd)·q` (one row) and `Wp·(q ∘ k_t)`, an inner width of `A`
//! instead of `4A` for the per-step product. Candidates are processed a few
//! at a time so each block's activations stay in the L1/L2 caches.
//!
//! Every product goes through a [`Linear`], so the same code runs in either
//! [`Precision`](crate::serve::Precision) ([`AttServe::to_bf16`]).

use dien_engine::gemm::bf16::{Bf16Cpu, Bf16Rows};
use dien_engine::gemm::tile::Accumulate;
use dien_engine::vecmath::sigmoid_inplace;

use super::{F1, F2, split_first_layer};
use crate::config::AttForm;
use crate::params::ParamStore;
use crate::serve::linear::Linear;
use dien_engine::simd::{dot, grow};
/// Rows (candidate × step) per block of the per-candidate products.
const ROWS: usize = 256;

/// Packed `mlp` weights.
#[derive(Clone, Debug)]
struct Mlp {
    /// `att.q.wᵀ`: `[E → A]`.
    q_w: Linear,
    q_b: Vec<f32>,
    prelu: Vec<f32>,
    /// `(Wk − Wd)ᵀ`: `[A → F1]` (shared key part).
    fc1_k: Linear,
    /// `Wpᵀ`: `[A → F1]` (per-candidate `q ∘ k` part).
    fc1_p: Linear,
    /// `(Wq + Wd)ᵀ`: `[A → F1]` (per-candidate constant).
    fc1_q: Linear,
    fc1_b: Vec<f32>,
    fc2: Linear,
    fc2_b: Vec<f32>,
    fc3_w: Vec<f32>,
    fc3_b: f32,
}

#[derive(Clone, Debug)]
enum Form {
    Mlp(Box<Mlp>),
    /// `att.wᵀ`: `[E → A]`.
    Bilinear(Linear),
}

/// Attention packed for the request path.
#[derive(Clone, Debug)]
pub(crate) struct AttServe {
    /// Key width `A`.
    a: usize,
    /// Query (candidate) width `E`.
    e: usize,
    form: Form,
}

/// Buffers of [`AttServe`] (grow only).
#[derive(Clone, Debug, Default)]
pub(crate) struct AttWs {
    /// `(Wk − Wd)·k_t + b1`: `[L, F1]`.
    kp: Vec<f32>,
    /// Queries `[nc, A]` (`att.w·e_a` for bilinear).
    q: Vec<f32>,
    /// `(Wq + Wd)·q`: `[nc, F1]`.
    cq: Vec<f32>,
    /// `q ∘ k_t` rows `[ROWS, A]`.
    x1: Vec<f32>,
    y1: Vec<f32>,
    y2: Vec<f32>,
    /// The bf16 copy of a product's input (bf16 only).
    bf: Bf16Rows,
}

impl AttServe {
    /// Packs the attention of a model whose keys have width `a` and whose
    /// candidates width `e`.
    pub fn new(form: AttForm, a: usize, e: usize, p: &ParamStore<f32>) -> Self {
        let form = match form {
            AttForm::Mlp => {
                let (mut k, mut pp, mut q) = (vec![0.0; F1 * a], vec![0.0; F1 * a], vec![0.0; F1 * a]);
                split_first_layer(p.get("att.fc1.w"), a, |o, j, k_minus_d, wp, q_plus_d| {
                    k[o * a + j] = k_minus_d;
                    pp[o * a + j] = wp;
                    q[o * a + j] = q_plus_d;
                });
                Form::Mlp(Box::new(Mlp {
                    q_w: Linear::new(p.get("att.q.w"), a, e),
                    q_b: p.get("att.q.b").to_vec(),
                    prelu: p.get("att.q.prelu").to_vec(),
                    fc1_k: Linear::new(&k, F1, a),
                    fc1_p: Linear::new(&pp, F1, a),
                    fc1_q: Linear::new(&q, F1, a),
                    fc1_b: p.get("att.fc1.b").to_vec(),
                    fc2: Linear::new(p.get("att.fc2.w"), F2, F1),
                    fc2_b: p.get("att.fc2.b").to_vec(),
                    fc3_w: p.get("att.fc3.w").to_vec(),
                    fc3_b: p.get("att.fc3.b")[0],
                }))
            }
            AttForm::Bilinear => Form::Bilinear(Linear::new(p.get("att.w"), a, e)),
        };
        Self { a, e, form }
    }

    /// The same attention with every product in bf16.
    pub fn to_bf16(&self, cpu: Bf16Cpu) -> Self {
        let form = match &self.form {
            Form::Mlp(m) => Form::Mlp(Box::new(Mlp {
                q_w: m.q_w.to_bf16(cpu),
                fc1_k: m.fc1_k.to_bf16(cpu),
                fc1_p: m.fc1_p.to_bf16(cpu),
                fc1_q: m.fc1_q.to_bf16(cpu),
                fc2: m.fc2.to_bf16(cpu),
                ..(**m).clone()
            })),
            Form::Bilinear(w) => Form::Bilinear(w.to_bf16(cpu)),
        };
        Self { form, ..*self }
    }

    /// The per-request part: `(Wk − Wd)·k_t + b1` for `keys [l, A]`
    /// (nothing for the bilinear form).
    pub fn prepare_keys(&self, keys: &[f32], l: usize, ws: &mut AttWs) {
        if let Form::Mlp(m) = &self.form {
            grow(&mut ws.kp, l * F1);
            for t in 0..l {
                ws.kp[t * F1..(t + 1) * F1].copy_from_slice(&m.fc1_b);
            }
            m.fc1_k.gemm(l, keys, self.a, &mut ws.kp, F1, Accumulate::Yes, &mut ws.bf);
        }
    }

    /// Softmax weights `w [nc, l]` of candidates `e_a [nc, E]` over
    /// `keys [l, A]` (`l ≥ 1`; [`AttServe::prepare_keys`] ran on the same keys).
    pub fn weights(&self, keys: &[f32], l: usize, e_a: &[f32], nc: usize, ws: &mut AttWs, w: &mut [f32]) {
        let a = self.a;
        assert!(l >= 1, "attention over an empty history");
        assert!(keys.len() >= l * a && e_a.len() >= nc * self.e && w.len() >= nc * l, "attention: buffers too short");
        grow(&mut ws.q, nc * a);
        match &self.form {
            Form::Mlp(m) => {
                grow(&mut ws.cq, nc * F1);
                for c in 0..nc {
                    ws.q[c * a..(c + 1) * a].copy_from_slice(&m.q_b);
                }
                m.q_w.gemm(nc, e_a, self.e, &mut ws.q, a, Accumulate::Yes, &mut ws.bf);
                for (qv, &s) in ws.q[..nc * a].iter_mut().zip(m.prelu.iter().cycle()) {
                    if *qv <= 0.0 {
                        *qv *= s;
                    }
                }
                m.fc1_q.gemm(nc, &ws.q, a, &mut ws.cq, F1, Accumulate::No, &mut ws.bf);
                // Candidates per block: whole histories, about ROWS rows.
                let per = (ROWS / l).max(1);
                // Sized for the largest block any request can use (at most
                // max(ROWS, l) rows), so shorter histories never regrow them.
                let rows_max = ROWS.max(l);
                grow(&mut ws.x1, rows_max * a);
                grow(&mut ws.y1, rows_max * F1);
                grow(&mut ws.y2, rows_max * F2);
                let AttWs { kp, q, cq, x1, y1, y2, bf } = ws;
                let mut c0 = 0;
                while c0 < nc {
                    let m_c = per.min(nc - c0);
                    let rows = m_c * l;
                    for j in 0..m_c {
                        let c = c0 + j;
                        let (qc, cqc) = (&q[c * a..(c + 1) * a], &cq[c * F1..(c + 1) * F1]);
                        for t in 0..l {
                            let r = j * l + t;
                            let (k, x) = (&keys[t * a..(t + 1) * a], &mut x1[r * a..(r + 1) * a]);
                            for ((xv, &qv), &kv) in x.iter_mut().zip(qc).zip(k) {
                                *xv = qv * kv;
                            }
                            let y = &mut y1[r * F1..(r + 1) * F1];
                            for ((yv, &kv), &cv) in y.iter_mut().zip(&kp[t * F1..(t + 1) * F1]).zip(cqc) {
                                *yv = kv + cv;
                            }
                        }
                    }
                    m.fc1_p.gemm(rows, x1, a, y1, F1, Accumulate::Yes, bf);
                    sigmoid_inplace(&mut y1[..rows * F1]);
                    for r in 0..rows {
                        y2[r * F2..(r + 1) * F2].copy_from_slice(&m.fc2_b);
                    }
                    m.fc2.gemm(rows, y1, F1, y2, F2, Accumulate::Yes, bf);
                    sigmoid_inplace(&mut y2[..rows * F2]);
                    for r in 0..rows {
                        w[c0 * l + r] = dot(&y2[r * F2..(r + 1) * F2], &m.fc3_w) + m.fc3_b;
                    }
                    c0 += m_c;
                }
            }
            Form::Bilinear(bil) => {
                // s_t = k_t · (att.w · e_a)
                bil.gemm(nc, e_a, self.e, &mut ws.q, a, Accumulate::No, &mut ws.bf);
                for c in 0..nc {
                    let v = &ws.q[c * a..(c + 1) * a];
                    for t in 0..l {
                        w[c * l + t] = dot(&keys[t * a..(t + 1) * a], v);
                    }
                }
            }
        }
        // Softmax per candidate, max subtracted (every step is valid).
        for row in w[..nc * l].chunks_exact_mut(l) {
            let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut z = 0.0;
            for v in row.iter_mut() {
                *v = (*v - m).exp();
                z += *v;
            }
            let inv = 1.0 / z;
            for v in row.iter_mut() {
                *v *= inv;
            }
        }
    }
}
