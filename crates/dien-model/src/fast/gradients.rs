//! Gradients of one training step: dense per-tensor buffers addressed by
//! [`TensorId`], and sparse rows for the embedding tables.

use crate::config::ModelConfig;
use crate::error::ModelError;
use crate::params::{ParamStore, TensorId, TensorKind, tensor_specs};
use dien_engine::simd::prefetch;
use rayon::prelude::*;

/// Gradient rows of one embedding table: only the rows looked up by the
/// batch (at non-padded positions, negatives included), duplicates summed,
/// sorted by row index.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SparseRows {
    /// Row width (`d`).
    pub width: usize,
    /// Touched row indices, ascending.
    pub rows: Vec<u32>,
    /// `rows.len() × width` gradient values, row `i` for `rows[i]`.
    pub values: Vec<f32>,
    /// Slot in `scratch` of each table row, `NONE` if untouched: a direct
    /// index (one entry per table row) instead of a hash map, since every
    /// looked-up row goes through [`SparseRows::add`].
    slot: Vec<u32>,
    /// Rows with a slot, in the order they were first touched.
    touched: Vec<u32>,
    scratch: Vec<f32>,
    order: Vec<(u32, u32)>,
}

/// An untouched row's slot.
const NONE: u32 = u32::MAX;

impl SparseRows {
    /// Gradient rows of a table of `rows` rows of `width`.
    fn new(width: usize, rows: usize) -> Self {
        Self { width, slot: vec![NONE; rows], ..Default::default() }
    }
    pub(crate) fn clear(&mut self) {
        for &r in &self.touched {
            self.slot[r as usize] = NONE;
        }
        self.touched.clear();
        self.scratch.clear();
    }
    pub(crate) fn add(&mut self, row: u32, g: &[f32]) {
        let w = self.width;
        let s = self.slot_of(row);
        if s == self.scratch.len() / w {
            self.scratch.extend_from_slice(g);
        } else {
            for (x, &y) in self.scratch[s * w..(s + 1) * w].iter_mut().zip(g) {
                *x += y;
            }
        }
    }
    /// [`SparseRows::add`] of `g + h` (elementwise), without a buffer for
    /// the sum: the same bits as adding the rows first.
    pub(crate) fn add_sum(&mut self, row: u32, g: &[f32], h: &[f32]) {
        let w = self.width;
        let s = self.slot_of(row);
        if s == self.scratch.len() / w {
            self.scratch.extend(g.iter().zip(h).map(|(&a, &b)| a + b));
        } else {
            for ((x, &a), &b) in self.scratch[s * w..(s + 1) * w].iter_mut().zip(g).zip(h) {
                *x += a + b;
            }
        }
    }
    /// The scratch slot of `row`, given one if the step had not touched it.
    fn slot_of(&mut self, row: u32) -> usize {
        let r = row as usize;
        if r >= self.slot.len() {
            // Rows are checked against the table sizes before a step runs;
            // this only grows a table built smaller than its rows.
            self.slot.resize(r + 1, NONE);
        }
        if self.slot[r] == NONE {
            self.slot[r] = self.touched.len() as u32;
            self.touched.push(row);
        }
        self.slot[r] as usize
    }
    /// Asks the cache for `row`'s entry of the direct index ahead of an
    /// [`SparseRows::add`] of it: rows come in the batch's random order,
    /// over an index larger than the caches.
    #[inline]
    pub(crate) fn prefetch(&self, row: u32) {
        prefetch(&self.slot, row as usize, 1);
    }
    pub(crate) fn finish(&mut self) {
        let w = self.width;
        self.rows.clear();
        self.values.clear();
        // Ascending rows: a sweep of the direct index when the batch touched
        // a good part of the table (cheaper than sorting), a sort otherwise.
        // Both give the same order, so the same values.
        self.order.clear();
        if self.touched.len().saturating_mul(usize::BITS as usize) >= self.slot.len() {
            let touched = self.slot.iter().enumerate().filter(|&(_, &s)| s != NONE);
            self.order.extend(touched.map(|(r, &s)| (r as u32, s)));
        } else {
            self.order.extend(self.touched.iter().map(|&r| (r, self.slot[r as usize])));
            self.order.sort_unstable();
        }
        for &(r, s) in &self.order {
            self.rows.push(r);
            self.values.extend_from_slice(&self.scratch[s as usize * w..(s as usize + 1) * w]);
        }
    }
    /// Sets these rows to the sum of `parts`, each a list of rows in the
    /// form of this type (`rows` ascending and distinct, `values` holding
    /// `rows.len() × width` values): a row touched by several parts gets
    /// the sum of their values, added in the order of `parts` (so that
    /// replicas merging the same parts get the same bits). Used to merge the
    /// sparse gradients of the replicas of a data-parallel step.
    pub fn set_sum<'a>(&mut self, parts: impl IntoIterator<Item = (&'a [u32], &'a [f32])>) -> Result<(), ModelError> {
        self.clear();
        let w = self.width;
        for (i, (rows, values)) in parts.into_iter().enumerate() {
            if values.len() != rows.len() * w {
                self.clear();
                return Err(ModelError::Batch(format!(
                    "gradient rows of part {i}: {} rows of width {w} need {} values, got {}",
                    rows.len(),
                    rows.len() * w,
                    values.len()
                )));
            }
            for (&r, g) in rows.iter().zip(values.chunks_exact(w.max(1))) {
                self.add(r, g);
            }
        }
        self.finish();
        Ok(())
    }
    /// The gradient of row `row`, if the batch touched it.
    pub fn row(&self, row: u32) -> Option<&[f32]> {
        let i = self.rows.binary_search(&row).ok()?;
        Some(&self.values[i * self.width..(i + 1) * self.width])
    }
    /// Writes the rows into a dense `[n_rows, width]` gradient (others zero).
    pub fn to_dense(&self, n_rows: usize) -> Vec<f32> {
        let mut out = vec![0.0; n_rows * self.width];
        for (i, &r) in self.rows.iter().enumerate() {
            out[r as usize * self.width..(r as usize + 1) * self.width]
                .copy_from_slice(&self.values[i * self.width..(i + 1) * self.width]);
        }
        out
    }
}

/// Gradients of one training step, addressed by [`TensorId`].
#[derive(Clone, Debug)]
pub struct Gradients {
    names: Vec<String>,
    /// Dense gradient per tensor of [`tensor_specs`] order; empty for
    /// embeddings (see `emb`) and running-statistic buffers.
    dense: Vec<Vec<f32>>,
    /// Ids of the tensors with a dense gradient, ascending.
    dense_ids: Vec<TensorId>,
    /// Whether each dense gradient holds this step's sum yet: the first
    /// contribution is stored, later ones added, and what no layer wrote is
    /// zeroed at the end of the step ([`Gradients::complete`]), so the
    /// buffers are not cleared before every step.
    written: Vec<bool>,
    /// Sparse gradients of `emb.uid`, `emb.mid`, `emb.cat`.
    pub emb: [SparseRows; 3],
}

/// Embedding table names, in the order of [`Gradients::emb`].
pub const EMB_TABLES: [&str; 3] = ["emb.uid", "emb.mid", "emb.cat"];

impl Gradients {
    pub(crate) fn new(cfg: &ModelConfig) -> Self {
        let specs = tensor_specs(cfg);
        let dense: Vec<Vec<f32>> = specs
            .iter()
            .map(|s| {
                if s.kind == TensorKind::Param && !EMB_TABLES.contains(&s.name.as_str()) {
                    vec![0.0; s.numel()]
                } else {
                    Vec::new()
                }
            })
            .collect();
        let d = cfg.d;
        let dense_ids = (0..specs.len()).filter(|&i| !dense[i].is_empty()).map(TensorId::from_index).collect();
        Self {
            names: specs.into_iter().map(|s| s.name).collect(),
            written: vec![true; dense.len()],
            dense,
            dense_ids,
            emb: [SparseRows::new(d, cfg.n_uid), SparseRows::new(d, cfg.n_mid), SparseRows::new(d, cfg.n_cat)],
        }
    }
    /// The dense gradient of tensor `id` (`None` for embeddings and buffers).
    pub fn dense_at(&self, id: TensorId) -> Option<&[f32]> {
        let g = &self.dense[id.index()];
        (!g.is_empty()).then_some(g.as_slice())
    }
    /// Iterates over `(id, dense gradient)` of the non-embedding parameters,
    /// in [`tensor_specs`] order: what an optimiser step walks (no lookup,
    /// no allocation).
    pub fn dense_by_id(&self) -> impl Iterator<Item = (TensorId, &[f32])> {
        self.dense_ids.iter().map(|&id| (id, self.dense[id.index()].as_slice()))
    }
    /// Number of values of all dense gradients together (the length of
    /// what [`Gradients::write_dense`] appends).
    pub fn dense_len(&self) -> usize {
        self.dense_ids.iter().map(|&id| self.dense[id.index()].len()).sum()
    }
    /// Appends every dense gradient to `out`, one after another in
    /// [`tensor_specs`] order (as [`Gradients::dense_by_id`] walks them).
    pub fn write_dense(&self, out: &mut Vec<f32>) {
        for &id in &self.dense_ids {
            out.extend_from_slice(&self.dense[id.index()]);
        }
    }
    /// Overwrites every dense gradient from `src`, laid out as
    /// [`Gradients::write_dense`] writes them.
    pub fn read_dense(&mut self, src: &[f32]) -> Result<(), ModelError> {
        let n = self.dense_len();
        if src.len() != n {
            return Err(ModelError::Batch(format!("dense gradients: expected {n} values, got {}", src.len())));
        }
        let mut at = 0;
        for &id in &self.dense_ids {
            let g = &mut self.dense[id.index()];
            let len = g.len();
            g.copy_from_slice(&src[at..at + len]);
            at += len;
        }
        Ok(())
    }
    /// The canonical name of tensor `id` (for messages).
    pub fn name(&self, id: TensorId) -> &str {
        &self.names[id.index()]
    }
    /// The dense gradient of a non-embedding parameter (`None` for
    /// embeddings, buffers and unknown names).
    pub fn dense(&self, name: &str) -> Option<&[f32]> {
        let i = self.names.iter().position(|n| n == name)?;
        let g = &self.dense[i];
        (!g.is_empty()).then_some(g.as_slice())
    }
    /// The sparse gradient of an embedding table (`emb.uid`, `emb.mid`, `emb.cat`).
    pub fn embedding(&self, name: &str) -> Option<&SparseRows> {
        EMB_TABLES.iter().position(|&t| t == name).map(|i| &self.emb[i])
    }
    /// Iterates over `(name, dense gradient)` of the non-embedding parameters.
    pub fn dense_iter(&self) -> impl Iterator<Item = (&str, &[f32])> {
        self.names.iter().zip(&self.dense).filter(|(_, g)| !g.is_empty()).map(|(n, g)| (n.as_str(), g.as_slice()))
    }
    /// The gradient of every parameter as a dense `ParamStore` (zero for
    /// buffers; embeddings densified). Allocates: meant for tools and tests.
    pub fn to_dense_store(&self, cfg: &ModelConfig) -> ParamStore<f32> {
        let mut out = ParamStore::<f32>::zeros(cfg);
        for (i, name) in self.names.iter().enumerate() {
            if let Some(t) = EMB_TABLES.iter().position(|t| t == name) {
                let n = out.get(name).len() / cfg.d;
                out.get_mut(name).copy_from_slice(&self.emb[t].to_dense(n));
            } else if !self.dense[i].is_empty() {
                out.get_mut(name).copy_from_slice(&self.dense[i]);
            }
        }
        out
    }
    /// Starts a step's sums: every gradient is zero until a layer adds to
    /// it (the dense buffers are overwritten by their first contribution,
    /// or cleared by [`Gradients::complete`]).
    pub(crate) fn zero(&mut self) {
        self.written.fill(false);
        for e in &mut self.emb {
            e.clear();
        }
    }
    /// Ends a step's sums: the dense gradients no layer contributed to are
    /// zero.
    pub(crate) fn complete(&mut self) {
        for (g, w) in self.dense.iter_mut().zip(&mut self.written) {
            if !*w {
                g.fill(0.0);
                *w = true;
            }
        }
    }
    fn add(&mut self, id: TensorId, g: &[f32]) {
        let written = std::mem::replace(&mut self.written[id.index()], true);
        store_or_add(&mut self.dense[id.index()], g, written);
    }
    /// Adds the gradients of a layer's `nc` chunks (`parts(c)`: chunk `c`'s,
    /// as for [`Gradients::add_parts`]): every element is summed over the
    /// chunks in chunk order, as adding the chunks one after the other
    /// would, and the elements of large tensors are cut into blocks summed
    /// on all threads.
    pub(crate) fn add_chunks<'a, const N: usize>(
        &mut self,
        ids: &LayerIds<N>,
        nc: usize,
        parts: impl Fn(usize) -> [&'a [f32]; N] + Sync,
    ) {
        /// Elements per block: a few microseconds of additions.
        const BLOCK: usize = 2048;
        for (k, id) in ids.0.iter().enumerate() {
            let Some(id) = *id else { continue };
            if (0..nc).all(|c| parts(c)[k].is_empty()) {
                continue;
            }
            let written = std::mem::replace(&mut self.written[id.index()], true);
            let add = |lo: usize, dst: &mut [f32]| {
                let mut written = written;
                for c in 0..nc {
                    let g = parts(c)[k];
                    if g.is_empty() {
                        continue;
                    }
                    store_or_add(dst, &g[lo..lo + dst.len()], written);
                    written = true;
                }
            };
            let dst = &mut self.dense[id.index()];
            if dst.len() <= BLOCK {
                add(0, dst);
            } else {
                dst.par_chunks_mut(BLOCK).enumerate().for_each(|(j, d)| add(j * BLOCK, d));
            }
        }
    }

    /// Adds a layer's gradients, given in the order of its resolved `ids`
    /// (tensors the model lacks have no id and an empty gradient).
    pub(crate) fn add_parts<const N: usize>(&mut self, ids: &LayerIds<N>, parts: [&[f32]; N]) {
        for (id, g) in ids.0.iter().zip(parts) {
            if let Some(id) = *id
                && !g.is_empty()
            {
                self.add(id, g);
            }
        }
    }
}

/// `dst += src` when `dst` already holds a contribution (`written`), else
/// `dst = src`: the bits of adding to zero.
fn store_or_add(dst: &mut [f32], src: &[f32], written: bool) {
    if written {
        super::add_into(dst, src);
    } else {
        dst.copy_from_slice(src);
    }
}

/// The ids of a layer's gradient tensors, resolved once from their names.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LayerIds<const N: usize>([Option<TensorId>; N]);

impl<const N: usize> LayerIds<N> {
    pub(crate) fn resolve(p: &ParamStore<f32>, names: [&str; N]) -> Self {
        Self(names.map(|n| p.id(n)))
    }
}

#[cfg(test)]
mod tests {
    use super::SparseRows;

    /// Both ways of ordering the rows (the sort for few touched rows, the
    /// sweep of the index for many) give ascending rows with the sums of
    /// their additions, in the order they were added.
    #[test]
    fn finish_orders_rows_and_sums_for_few_and_many_touched_rows() {
        let (n, w) = (1000usize, 3usize);
        for touched in [5usize, 400] {
            let mut g = SparseRows::new(w, n);
            let mut dense = vec![0.0f32; n * w];
            let mut seen = vec![false; n];
            for k in 0..3 * touched {
                let r = (k * 7919 + 13) % n % (touched * 2);
                let v = [k as f32 * 0.5, -(k as f32), 1.0 / (k as f32 + 1.0)];
                g.add(r as u32, &v);
                seen[r] = true;
                for j in 0..w {
                    dense[r * w + j] += v[j];
                }
            }
            g.finish();
            let want: Vec<u32> = (0..n as u32).filter(|&r| seen[r as usize]).collect();
            assert_eq!(g.rows, want, "{touched} rows");
            for (i, &r) in g.rows.iter().enumerate() {
                let r = r as usize;
                assert_eq!(&g.values[i * w..(i + 1) * w], &dense[r * w..(r + 1) * w], "row {r}");
            }
            g.clear();
            g.finish();
            assert!(g.rows.is_empty() && g.values.is_empty());
        }
    }
}
