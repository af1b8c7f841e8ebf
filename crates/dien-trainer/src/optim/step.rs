//! One optimiser step: a first pass that checks every gradient and
//! accumulates the global norm (refusing non-finite values), then the
//! clipped update by Adam or SGD.

use dien_model::ParamStore;
use dien_model::TensorId;
use dien_model::fast::{EMB_TABLES, Gradients, SparseRows};

use super::adam::{AdamStep, adam_rows_dense, adam_rows_lazy};
use super::sgd::sgd_update;
use super::{OptimKind, Optimizer};
use crate::error::TrainError;

/// Elements of one block of [`sum_sq`]: the unit of its fixed summation
/// order and of its parallel work.
pub const SUM_SQ_BLOCK: usize = 1 << 14;

/// The sum of squares of `g` in f64, in a fixed order that does not depend
/// on the threads: blocks of [`SUM_SQ_BLOCK`] elements, each summed in
/// eight interleaved accumulators (element `i` into accumulator `i mod 8`,
/// then `((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7))`); a run of
/// blocks is split in two at the block boundary nearest its middle, the two
/// halves summed (in parallel) and added, left + right.
pub fn sum_sq(g: &[f32]) -> f64 {
    let blocks = g.len().div_ceil(SUM_SQ_BLOCK);
    if blocks <= 1 {
        return block_sum_sq(g);
    }
    let (l, r) = g.split_at((blocks / 2) * SUM_SQ_BLOCK);
    let (a, b) = rayon::join(|| sum_sq(l), || sum_sq(r));
    a + b
}

/// One block of [`sum_sq`].
fn block_sum_sq(g: &[f32]) -> f64 {
    let mut acc = [0.0f64; 8];
    let mut chunks = g.chunks_exact(8);
    for c in &mut chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            let x = f64::from(x);
            *a += x * x;
        }
    }
    for (a, &x) in acc.iter_mut().zip(chunks.remainder()) {
        let x = f64::from(x);
        *a += x * x;
    }
    ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]))
}

impl Optimizer {
    /// One update of `params` with the gradients of the last
    /// [`dien_model::fast::Model::forward_backward`].
    ///
    /// A non-finite gradient returns [`TrainError::NonFiniteGradient`] and
    /// changes nothing (not even the step count).
    ///
    /// # Panics
    /// If `params` or `grads` do not belong to the model this optimiser was
    /// built for (a programming error).
    pub fn step(&mut self, params: &mut ParamStore<f32>, grads: &Gradients) -> Result<(), TrainError> {
        self.step_by_id(params, || grads.dense_by_id(), &grads.emb)
    }

    /// [`Optimizer::step`] with the gradients given by parts, addressed by
    /// tensor id: `dense` yields `(id, gradient)` of non-embedding
    /// parameters (it is called twice: once to check, once to update) and
    /// `emb` holds the sparse rows of [`EMB_TABLES`] in order. Each tensor
    /// is found by its index: no name or hash lookup.
    ///
    /// # Panics
    /// As [`Optimizer::step_with`].
    pub fn step_by_id<'g, I, F>(
        &mut self,
        params: &mut ParamStore<f32>,
        dense: F,
        emb: &[SparseRows; 3],
    ) -> Result<(), TrainError>
    where
        F: Fn() -> I,
        I: Iterator<Item = (TensorId, &'g [f32])>,
    {
        self.step_impl(params, dense, emb, |_, id: TensorId| id.index())
    }

    /// [`Optimizer::step`] with the gradients given by parts: `dense` yields
    /// `(name, gradient)` of non-embedding parameters (it is called twice:
    /// once to check, once to update) and `emb` holds the sparse rows of
    /// [`EMB_TABLES`] in order. Trainable tensors without a gradient are left
    /// as they are (moments included); the step count still advances.
    ///
    /// Each name is looked up in the parameter store (a convenience for
    /// tools and tests; the training loop uses [`Optimizer::step`]).
    ///
    /// # Panics
    /// On an unknown or repeated name, a buffer, an embedding table given
    /// densely, a length that does not match the tensor, or sparse rows that
    /// are not ascending, unique and in range.
    pub fn step_with<'g, I, F>(
        &mut self,
        params: &mut ParamStore<f32>,
        dense: F,
        emb: &[SparseRows; 3],
    ) -> Result<(), TrainError>
    where
        F: Fn() -> I,
        I: Iterator<Item = (&'g str, &'g [f32])>,
    {
        self.step_impl(params, dense, emb, |p, name: &str| {
            p.index_of(name).unwrap_or_else(|| panic!("gradient for unknown tensor `{name}`"))
        })
    }

    /// The step, with `index` mapping a gradient's key (name or id) to its
    /// position in the parameter store.
    fn step_impl<'g, K, I, F>(
        &mut self,
        params: &mut ParamStore<f32>,
        dense: F,
        emb: &[SparseRows; 3],
        index: impl Fn(&ParamStore<f32>, K) -> usize,
    ) -> Result<(), TrainError>
    where
        K: Copy,
        F: Fn() -> I,
        I: Iterator<Item = (K, &'g [f32])>,
    {
        assert_eq!(params.len(), self.by_param.len(), "parameter store of another model");
        self.calls += 1;
        let stamp = self.calls;
        let attempt = self.step + 1;

        // Pass 1: check everything and accumulate the squared norm.
        let mut ss = 0.0f64;
        for (key, g) in dense() {
            let slot = self.slot_of(params, index(params, key));
            let slot = &mut self.slots[slot];
            let name = &slot.name;
            assert!(slot.emb.is_none(), "embedding `{name}` must be given as sparse rows");
            assert_eq!(g.len(), slot.numel(), "gradient of `{name}` has the wrong length");
            assert_ne!(slot.seen, stamp, "two gradients for `{name}`");
            slot.seen = stamp;
            ss += sum_sq(g);
            if !ss.is_finite() {
                return Err(non_finite(name, g, |i| i, attempt));
            }
        }
        for (t, rows) in emb.iter().enumerate() {
            if rows.rows.is_empty() {
                assert!(rows.values.is_empty(), "`{}`: values without rows", EMB_TABLES[t]);
                continue;
            }
            let slot = self.emb_slot[t].unwrap_or_else(|| panic!("no trainable table `{}`", EMB_TABLES[t]));
            let slot = &self.slots[slot];
            assert_eq!(params.specs()[slot.param].name, slot.name, "parameter store of another model");
            let (n, w) = (slot.shape[0], slot.shape[1]);
            assert_eq!(rows.width, w, "`{}`: sparse row width", slot.name);
            assert_eq!(rows.values.len(), rows.rows.len() * w, "`{}`: sparse values length", slot.name);
            assert!(
                rows.rows.windows(2).all(|p| p[0] < p[1]) && (*rows.rows.last().unwrap() as usize) < n,
                "`{}`: sparse rows must be ascending, unique and below {n}",
                slot.name
            );
            ss += sum_sq(&rows.values);
            if !ss.is_finite() {
                let index = |i: usize| rows.rows[i / w] as usize * w + i % w;
                return Err(non_finite(&slot.name, &rows.values, index, attempt));
            }
        }
        let norm = ss.sqrt();
        let scale = match self.cfg.clip_norm {
            Some(c) if norm > f64::from(c) => (f64::from(c) / norm) as f32,
            _ => 1.0,
        };

        // Pass 2: update. Nothing below can fail.
        self.step = attempt;
        self.last_norm = norm;
        let lr = self.lr;
        match self.cfg.kind {
            OptimKind::Adam => {
                let k = AdamStep::new(&self.cfg, lr, self.step);
                let k_aux = AdamStep::new(&self.cfg, lr * self.cfg.aux_lr_scale, self.step);
                for (key, g) in dense() {
                    let slot = &mut self.slots[self.by_param[index(params, key)].expect("checked")];
                    let k = if slot.aux { &k_aux } else { &k };
                    k.update(params.data_mut(slot.param), &mut slot.m, &mut slot.v, g, scale);
                }
                for (t, rows) in emb.iter().enumerate() {
                    let Some(si) = self.emb_slot[t] else { continue };
                    let slot = &mut self.slots[si];
                    let p = params.data_mut(slot.param);
                    if self.cfg.lazy_embeddings {
                        adam_rows_lazy(&k, p, &mut slot.m, &mut slot.v, rows, scale);
                    } else {
                        adam_rows_dense(&k, p, &mut slot.m, &mut slot.v, rows, scale);
                    }
                }
            }
            OptimKind::Sgd => {
                for (key, g) in dense() {
                    let slot = &self.slots[self.by_param[index(params, key)].expect("checked")];
                    let lr = if slot.aux { lr * self.cfg.aux_lr_scale } else { lr };
                    sgd_update(params.data_mut(slot.param), g, lr, scale);
                }
                for (t, rows) in emb.iter().enumerate() {
                    let Some(si) = self.emb_slot[t] else { continue };
                    let p = params.data_mut(self.slots[si].param);
                    let w = rows.width;
                    for (&r, g) in rows.rows.iter().zip(rows.values.chunks_exact(w.max(1))) {
                        let r = r as usize;
                        sgd_update(&mut p[r * w..(r + 1) * w], g, lr, scale);
                    }
                }
            }
        }
        Ok(())
    }

    /// The slot of the dense gradient of parameter-store tensor `i`,
    /// checking it is a trainable tensor of this model.
    fn slot_of(&self, params: &ParamStore<f32>, i: usize) -> usize {
        self.by_param.get(i).copied().flatten().unwrap_or_else(|| {
            let name = params.specs().get(i).map_or("<out of range>", |s| s.name.as_str());
            panic!("gradient for non-trainable tensor `{name}`")
        })
    }
}

/// The error for the first non-finite element of gradient `g` of `tensor`;
/// `index` maps a position in `g` to the flat index in the full tensor.
fn non_finite(tensor: &str, g: &[f32], index: impl Fn(usize) -> usize, step: u64) -> TrainError {
    let i = g.iter().position(|x| !x.is_finite()).expect("a non-finite sum has a non-finite term");
    TrainError::NonFiniteGradient { tensor: tensor.to_string(), index: index(i), value: g[i], step }
}
