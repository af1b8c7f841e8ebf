//! Helpers shared by the tests: a tiny DIEN with its batches and
//! gradients, bit views of parameters and state, sparse-row builders, a
//! reference Adam in f64, temporary directories, and (`cli`) running the
//! `dien` binary.

// Each test crate uses only some of these.
#![allow(dead_code)]

use std::path::PathBuf;

pub mod cli;

use dien_model::cost::synthetic_batch;
use dien_model::fast::{Gradients, Model, SparseRows};
use dien_model::{Batch, ModelConfig, ModelKind, ParamStore};
use dien_trainer::optim::Optimizer;

pub const B: usize = 4;
pub const T: usize = 5;

/// A tiny DIEN: `d = 2`, `H = 4`; vocabularies large enough that a batch
/// leaves most embedding rows untouched.
pub fn tiny_cfg() -> ModelConfig {
    let mut c = ModelConfig::new(ModelKind::Dien, 30, 80, 25);
    c.d = 2;
    c.hidden = 4;
    c
}

pub fn tiny_model(seed: u64) -> Model {
    Model::init(tiny_cfg(), seed).unwrap()
}

/// A synthetic batch whose histories have lengths 1..=T, so padded
/// positions exist.
pub fn batch(seed: u64) -> Batch {
    let mut b = synthetic_batch(&tiny_cfg(), B, T, seed);
    for (s, len) in b.lengths.iter_mut().enumerate() {
        *len = 1 + (s + seed as usize) % T;
    }
    b
}

/// Gradients of `model` on `batch(seed)`, owned (the optimiser needs the
/// parameters mutably at the same time).
pub fn grads(model: &mut Model, seed: u64) -> Gradients {
    model.forward_backward(&batch(seed)).unwrap();
    model.gradients().clone()
}

pub fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

pub fn params_bits(p: &ParamStore<f32>) -> Vec<(String, Vec<u32>)> {
    p.iter().map(|(s, v)| (s.name.clone(), bits(v))).collect()
}

pub fn state_bits(o: &Optimizer) -> Vec<(String, Vec<usize>, Vec<u32>)> {
    o.state_tensors().into_iter().map(|(n, s, v)| (n, s, bits(&v))).collect()
}

pub fn state_of<'a>(state: &'a [(String, Vec<usize>, Vec<f32>)], name: &str) -> &'a [f32] {
    &state.iter().find(|(n, _, _)| n == name).unwrap_or_else(|| panic!("no state {name}")).2
}

/// Three empty embedding gradients of width `d`.
pub fn no_rows(d: usize) -> [SparseRows; 3] {
    std::array::from_fn(|_| {
        let mut s = SparseRows::default();
        s.width = d;
        s
    })
}

pub fn rows(d: usize, rows: Vec<u32>, values: Vec<f32>) -> SparseRows {
    let mut s = SparseRows::default();
    s.width = d;
    s.rows = rows;
    s.values = values;
    s
}

/// Standard Adam (Kingma & Ba, Algorithm 1) on one element in f64.
pub struct RefAdam {
    pub m: f64,
    pub v: f64,
}

impl RefAdam {
    pub fn step(&mut self, p: f64, g: f64, lr: f64, t: i32) -> f64 {
        let (b1, b2, eps) = (0.9f32 as f64, 0.999f32 as f64, 1e-8f32 as f64);
        self.m = b1 * self.m + (1.0 - b1) * g;
        self.v = b2 * self.v + (1.0 - b2) * g * g;
        let m_hat = self.m / (1.0 - b1.powi(t));
        let v_hat = self.v / (1.0 - b2.powi(t));
        p - lr * m_hat / (v_hat.sqrt() + eps)
    }
}

pub fn assert_close(got: f32, want: f64, what: &str) {
    let tol = 2e-7 + 2e-6 * want.abs();
    assert!((f64::from(got) - want).abs() <= tol, "{what}: got {got}, want {want}");
}

pub fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("dien-optim-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
