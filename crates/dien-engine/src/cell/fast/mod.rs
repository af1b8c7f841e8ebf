//! Fast fused `f32` cells (GRU, AUGRU, AUGRU-ref, AGRU, AIGRU): forward and
//! hand-written backward through time, batch-parallel, allocation-free once
//! the workspace has grown.
//!
//! Same semantics and layouts as [`super::reference`] (see [`super`]): `x
//! [B, T, in]`, `states [B, T, H]` zero at padded steps, `last [B, H]`.
//!
//! # Design
//!
//! **Chunks.** The batch is cut into chunks of [`CHUNK`] consecutive
//! samples, a constant independent of the thread count. Chunks run in
//! parallel on the current rayon pool, each with its own scratch and its
//! own parameter-gradient buffer; those are added to the caller's gradients
//! in chunk order afterwards. Every chunk computes the same thing whichever
//! thread runs it, so results are bit-identical for any number of threads.
//! 16 samples: a chunk's training cache at `T = 100`, `H = 36` (≈ 1.4 MB)
//! then fits a 2 MB L2; chunks of 32 measured about 15 % slower for AUGRU
//! forward + backward at `B = 128`, and a chunk still holds ~10⁸ FLOP of
//! work at `T = 100`, far above rayon's per-task cost.
//!
//! **Length-sorted, time-major compact rows.** Within a chunk, samples are
//! ordered by length, longest first (the permutation is kept in the
//! workspace), so the samples active at step `t` are a prefix `0..n_t`.
//! Every per-step matrix stores step `t`'s rows as one contiguous block, so
//! step `t`'s products run on the `n_t` active rows only, inactive samples
//! keep their state untouched, and padded steps cost nothing.
//!
//! **Forward.** The input projection, `G = X · W_ihᵀ + b`, is hoisted out
//! of the time loop as one product over all compact rows (in inference,
//! over the rows of each block of [`INFER_STEPS`] steps, with `G`'s rows
//! padded to whole vectors so no store is masked). Each
//! step then runs two recurrent products with fused epilogues:
//! 1. `h_{t−1} · U_ruᵀ`; its epilogue adds `G_ru`, applies σ, stores `r, u`
//!    and `r ∘ h_{t−1}`;
//! 2. `(r ∘ h_{t−1}) · U_cᵀ`; its epilogue adds `G_c`, applies tanh and the
//!    kind's state update, and writes the new state (cache and output).
//!
//! It takes two products because the reset gate is applied *before* the
//! candidate's product (docs/MODEL.md#gru): product 2's left operand needs `r` for
//! every hidden unit, so product 1 must be complete first. In training the
//! cache keeps `r, u, c`, the previous states and `r ∘ h_{t−1}` of every
//! step (plus the gathered inputs and scores); in inference states are
//! updated in place and nothing is kept.
//!
//! **Backward.** Per step, in reverse: a fused pass through the state update
//! gives `∂L/∂` of the `u` and `c` pre-activations, the direct part of
//! `dh_{t−1}` and `∂L/∂a`; the product `dG_c · U_c` gives `∂L/∂(r∘h_{t−1})`,
//! whose epilogue forms `dG_r` and the reset path of `dh_{t−1}`; the product
//! `[dG_r | dG_u] · U_ru` completes `dh_{t−1}`. The pre-activation
//! gradients of every step are kept (in place of the gates), and after the
//! time loop the parameter and input gradients are products over all rows:
//! `dW_ih = dGᵀ·X`, `dW_hh(ru) = dG_ruᵀ·H_prev`, `dW_hh(c) = dG_cᵀ·(R∘H_prev)`,
//! `db` = column sums, `dX = dG · W_ih`.
//!
//! **Products.** All products use one register-tiled `V` kernel (4 rows
//! × 3 vectors) whose epilogue receives each finished accumulator
//! ([`crate::gemm::tile::gemm_ep`]). It reads weights packed once per [`GruCell::set_params`]
//! (`W_ihᵀ, U_ruᵀ, U_cᵀ` forward; `U_c, U_ru, W_ih` backward) and never
//! allocates. Measured on one chunk's shapes (one thread, best of 200, L2
//! resident): the hoisted projection `1600×36×108` with its bias epilogue
//! runs at 107 GFLOP/s, against 103 for the former separate small kernel and 140
//! for `gemm::gemm` (matrixmultiply picks its AVX-512 kernel at run time);
//! the weight gradient `36×1600×108` (`Xᵀ·dG`) at 104 against 101 for
//! `gemm::gemm`. `gemm::gemm` is still not used: it allocates its packing
//! buffer on every call, and these calls must not allocate.
//!
//! **Shared-input mode.** [`GruCell::project_shared`] and
//! [`GruCell::forward_shared`] run `K` rows over one input sequence (the
//! candidates of a scoring request), the input projection computed once;
//! same products, epilogue structure and state update as the forward above
//! (see [`SharedWorkspace`]).
//!
//! **Widths not a multiple of 8** (`H = 36`). Per-step state rows are
//! padded to `Hp = pad_lanes(H)` with zero padding lanes (kept zero by a lane
//! mask); the gate and input matrices are unpadded, and their last vector
//! per row is stored with a masked (partial) store. Loads may read past a
//! row's end into the next row or the buffers' slack; those lanes never
//! reach a stored or summed value.

mod chunk;
mod shared;
mod step;

use crate::simd::V;
use rayon::prelude::*;

use self::chunk::Chunk;
pub use self::shared::SharedWorkspace;
use super::{CellKind, GruGrads, GruParams, SeqInput};
use crate::gemm::tile::{Accumulate, Packed};
use crate::simd::{lane_masks, pad_lanes};

/// Samples per batch chunk: the unit of parallel work and of the fixed
/// gradient-reduction order.
pub const CHUNK: usize = 16;

/// Fewest gate rows a thread reduces in the backward's sum over chunks.
const REDUCE_ROWS: usize = 16;

/// Samples per chunk of an inference forward. Smaller than [`CHUNK`]: with
/// no cache to keep, small chunks spread a batch over more threads, and
/// with the input projection computed per block of [`INFER_STEPS`] steps,
/// chunks of 8, 16 and 32 measured within 3 % of each other at `B = 128`,
/// `T = 100`. A sample's result does not depend on the chunking (every row
/// is computed alone), so inference and training agree bit for bit.
pub const INFER_CHUNK: usize = 8;

/// Steps per block of an inference forward: the input projection of a
/// block's rows is computed just before its time loop reads it, so it is
/// still in L1/L2 whatever `T` is (13 % faster GRU forward at `B = 128`,
/// `T = 100` than one projection of all steps; 16 measured the same as 8).
pub const INFER_STEPS: usize = 8;

/// Whether a forward pass keeps what backward needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Keep the cache for one [`GruCell::backward`].
    Train,
    /// Keep nothing (states are updated in place).
    Infer,
}

/// A fast cell of a given kind and widths, with its packed weights.
#[derive(Clone, Debug)]
pub struct GruCell {
    kind: CellKind,
    input: usize,
    hidden: usize,
    /// `pad_lanes(hidden)`.
    hp: usize,
    /// `W_ihᵀ [in, 3H]` (forward input projection).
    wih_t: Packed,
    /// `U_ruᵀ [H, 2H]` (forward product 1).
    uru_t: Packed,
    /// `U_cᵀ [H, H]` (forward product 2).
    uc_t: Packed,
    /// `U_ruᵀ [H, 2Hp]` with gate blocks at `0` and `Hp` (the shared-input
    /// mode's product 1: aligned `r` and `u`).
    uru_sh: Packed,
    /// `U_c [H, H]` (backward, `dG_c · U_c`).
    uc: Packed,
    /// `U_ru [2H, H]` (backward, `[dG_r | dG_u] · U_ru`).
    uru: Packed,
    /// `W_ih [3H, in]` (backward, `dX = dG · W_ih`).
    wih: Packed,
    /// Bias `[3H]`, zero-padded to a multiple of 8.
    b: Vec<f32>,
    /// Lane masks of a width-`H` row.
    masks: Vec<V>,
    has_params: bool,
}

impl GruCell {
    /// A cell with no parameters yet (call [`GruCell::set_params`]).
    /// Panics if a width is zero.
    pub fn new(kind: CellKind, input: usize, hidden: usize) -> Self {
        assert!(input > 0 && hidden > 0, "GruCell: widths must be positive (input {input}, hidden {hidden})");
        Self {
            kind,
            input,
            hidden,
            hp: pad_lanes(hidden),
            wih_t: Packed::default(),
            uru_t: Packed::default(),
            uc_t: Packed::default(),
            uru_sh: Packed::default(),
            uc: Packed::default(),
            uru: Packed::default(),
            wih: Packed::default(),
            b: vec![0.0; pad_lanes(3 * hidden)],
            masks: lane_masks(hidden),
            has_params: false,
        }
    }

    /// The cell's kind.
    pub fn kind(&self) -> CellKind {
        self.kind
    }
    /// Input width.
    pub fn input(&self) -> usize {
        self.input
    }
    /// Hidden width `H`.
    pub fn hidden(&self) -> usize {
        self.hidden
    }

    /// Packs the parameters (after every optimiser step). Allocates only on
    /// the first call. Panics if their widths differ from the cell's.
    pub fn set_params(&mut self, p: &GruParams<'_, f32>) {
        p.check();
        assert!(p.input == self.input && p.hidden == self.hidden, "set_params: widths differ from the cell's");
        let (h, n) = (self.hidden, self.input);
        let (u_ru, u_c) = p.w_hh.split_at(2 * h * h);
        self.wih_t.fill_t(p.w_ih, 3 * h, n);
        self.uru_t.fill_t(u_ru, 2 * h, h);
        self.uc_t.fill_t(u_c, h, h);
        self.uru_sh.fill_t_blocks(u_ru, 2, h, h);
        self.uc.fill_n(u_c, h, h);
        self.uru.fill_n(u_ru, 2 * h, h);
        self.wih.fill_n(p.w_ih, 3 * h, n);
        self.b[..3 * h].copy_from_slice(p.b);
        self.has_params = true;
    }

    fn check_input(&self, input: &SeqInput<'_, f32>) {
        assert!(self.has_params, "GruCell: set_params was never called");
        let shape = GruParams::<f32> { w_ih: &[], w_hh: &[], b: &[], input: self.input, hidden: self.hidden };
        input.check(self.kind, &shape);
    }

    /// Runs the cell over the batch: writes `states [B, T, H]` (zero at
    /// padded steps) and `last [B, H]`. In [`Mode::Train`] the workspace
    /// keeps the cache for one [`GruCell::backward`] on the same input.
    pub fn forward(
        &self,
        input: &SeqInput<'_, f32>,
        ws: &mut CellWorkspace,
        mode: Mode,
        states: &mut [f32],
        last: &mut [f32],
    ) {
        self.check_input(input);
        let (b, t, h) = (input.batch, input.steps, self.hidden);
        assert_eq!(states.len(), b * t * h, "states must be [B, T, H]");
        assert_eq!(last.len(), b * h, "last must be [B, H]");
        let train = mode == Mode::Train;
        ws.tag = None;
        if t == 0 {
            no_steps(input, last);
        } else if b > 0 {
            let cs = if train { CHUNK } else { INFER_CHUNK };
            let nc = b.div_ceil(cs);
            ws.ensure_chunks(nc);
            ws.chunks[..nc]
                .par_iter_mut()
                .zip(states.par_chunks_mut(cs * t * h))
                .zip(last.par_chunks_mut(cs * h))
                // One task per chunk, so an idle thread can take any one.
                .with_max_len(1)
                .enumerate()
                .for_each(|(c, ((ch, st), la))| ch.forward(self, input, c * cs, train, st, la));
        }
        if train {
            ws.tag = Some(Tag { kind: self.kind, input: self.input, hidden: self.hidden, batch: b, steps: t });
        }
    }

    /// A [`Mode::Infer`] forward that writes only `last [B, H]` (the
    /// states of every step are neither stored nor returned): the evolving
    /// layer's interest when nothing reads the per-step states.
    pub fn forward_last(&self, input: &SeqInput<'_, f32>, ws: &mut CellWorkspace, last: &mut [f32]) {
        self.check_input(input);
        let (b, t, h) = (input.batch, input.steps, self.hidden);
        assert_eq!(last.len(), b * h, "last must be [B, H]");
        ws.tag = None;
        if t == 0 {
            no_steps(input, last);
        } else if b > 0 {
            let cs = INFER_CHUNK;
            let nc = b.div_ceil(cs);
            ws.ensure_chunks(nc);
            ws.chunks[..nc]
                .par_iter_mut()
                .zip(last.par_chunks_mut(cs * h))
                .enumerate()
                .for_each(|(c, (ch, la))| ch.forward(self, input, c * cs, false, &mut [], la));
        }
    }

    /// Backward through the [`Mode::Train`] forward cached in `ws` (same
    /// `input`). `d_states [B, T, H]` (padded entries ignored) and `d_last
    /// [B, H]` are the output gradients, `None` meaning zero. Parameter
    /// gradients are *accumulated* into `grads`; `dx [B, T, in]`, `d_att [B,
    /// T]` and `dh0 [B, H]` are overwritten (zero at padded steps; `d_att`
    /// all zero for [`CellKind::Gru`]). Consumes the cache.
    #[allow(clippy::too_many_arguments)]
    pub fn backward(
        &self,
        input: &SeqInput<'_, f32>,
        ws: &mut CellWorkspace,
        d_states: Option<&[f32]>,
        d_last: Option<&[f32]>,
        grads: &mut GruGrads<f32>,
        dx: &mut [f32],
        d_att: Option<&mut [f32]>,
        dh0: Option<&mut [f32]>,
    ) {
        self.backward_dx(input, ws, d_states, d_last, grads, dx, Accumulate::No, d_att, dh0);
    }

    /// [`GruCell::backward`] that, with [`Accumulate::Yes`], adds the input
    /// gradient to `dx` (its padded steps untouched) instead of
    /// overwriting it: for an input that other layers also feed
    /// gradients, without a buffer and a pass to add it. Each element gets
    /// `dx + g`, the bits of overwriting a buffer and adding it after.
    #[allow(clippy::too_many_arguments)]
    pub fn backward_dx(
        &self,
        input: &SeqInput<'_, f32>,
        ws: &mut CellWorkspace,
        d_states: Option<&[f32]>,
        d_last: Option<&[f32]>,
        grads: &mut GruGrads<f32>,
        dx: &mut [f32],
        dx_acc: Accumulate,
        d_att: Option<&mut [f32]>,
        dh0: Option<&mut [f32]>,
    ) {
        self.check_input(input);
        let (b, t, h, n) = (input.batch, input.steps, self.hidden, self.input);
        let tag = Tag { kind: self.kind, input: n, hidden: h, batch: b, steps: t };
        assert!(ws.tag == Some(tag), "backward needs the cache of a Mode::Train forward of this cell and input");
        ws.tag = None;
        if let Some(ds) = d_states {
            assert_eq!(ds.len(), b * t * h, "d_states must be [B, T, H]");
        }
        if let Some(dl) = d_last {
            assert_eq!(dl.len(), b * h, "d_last must be [B, H]");
        }
        assert_eq!(dx.len(), b * t * n, "dx must be [B, T, in]");
        assert_eq!(grads.w_ih.len(), 3 * h * n, "grads.w_ih must be [3H, in]");
        assert_eq!(grads.w_hh.len(), 3 * h * h, "grads.w_hh must be [3H, H]");
        assert_eq!(grads.b.len(), 3 * h, "grads.b must be [3H]");
        let CellWorkspace { chunks, att_sink, h0_sink, .. } = ws;
        let d_att: &mut [f32] = match d_att {
            Some(d) => {
                assert_eq!(d.len(), b * t, "d_att must be [B, T]");
                d
            }
            None => {
                chunk_grow(att_sink, b * t);
                &mut att_sink[..b * t]
            }
        };
        let dh0: &mut [f32] = match dh0 {
            Some(d) => {
                assert_eq!(d.len(), b * h, "dh0 must be [B, H]");
                d
            }
            None => {
                chunk_grow(h0_sink, b * h);
                &mut h0_sink[..b * h]
            }
        };
        if t == 0 {
            match d_last {
                Some(dl) => dh0.copy_from_slice(dl),
                None => dh0.fill(0.0),
            }
            return;
        }
        if b == 0 {
            return;
        }
        let nc = b.div_ceil(CHUNK);
        chunks[..nc]
            .par_iter_mut()
            .zip(dx.par_chunks_mut(CHUNK * t * n))
            .zip(d_att.par_chunks_mut(CHUNK * t))
            .zip(dh0.par_chunks_mut(CHUNK * h))
            // One task per chunk: rayon's default tasks of several chunks
            // leave the last ones to one thread when another thread joins
            // late (from work running beside this call).
            .with_max_len(1)
            .enumerate()
            .for_each(|(c, (((ch, dxc), dac), dhc))| {
                ch.backward(self, input, c * CHUNK, d_states, d_last, dxc, dx_acc, dac, dhc)
            });
        // Fixed reduction order: chunk 0, 1, 2, ... for every element; the
        // gate rows are cut into blocks summed on all threads.
        let h3 = 3 * h;
        let rows = h3.div_ceil(rayon::current_num_threads()).max(REDUCE_ROWS);
        let chunks = &chunks[..nc];
        grads.w_ih[..h3 * n]
            .par_chunks_mut(rows * n)
            .zip(grads.w_hh[..h3 * h].par_chunks_mut(rows * h))
            .zip(grads.b[..h3].par_chunks_mut(rows))
            .enumerate()
            .for_each(|(k, ((w_ih, w_hh), bias))| {
                for ch in chunks {
                    for (gl, bg) in bias.iter_mut().enumerate() {
                        let g = k * rows + gl;
                        for p in 0..n {
                            w_ih[gl * n + p] += ch.gw_ih_t[p * h3 + g];
                        }
                        for p in 0..h {
                            w_hh[gl * h + p] += ch.gw_hh_t[p * h3 + g];
                        }
                        *bg += ch.gb[g];
                    }
                }
            });
    }
}

/// A forward with `T = 0`: nothing runs, every sample's last state is its
/// initial state.
fn no_steps(input: &SeqInput<'_, f32>, last: &mut [f32]) {
    match input.h0 {
        Some(h0) => last.copy_from_slice(h0),
        None => last.fill(0.0),
    }
}

/// What the cached forward was run on (checked by backward).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Tag {
    kind: CellKind,
    input: usize,
    hidden: usize,
    batch: usize,
    steps: usize,
}

/// Scratch of [`GruCell`] and the cache backward needs. Grows on first use
/// and is reused: calls of the same or smaller size never allocate. One
/// workspace holds one cached forward at a time.
#[derive(Debug, Default)]
pub struct CellWorkspace {
    chunks: Vec<Chunk>,
    tag: Option<Tag>,
    att_sink: Vec<f32>,
    h0_sink: Vec<f32>,
}

impl CellWorkspace {
    /// An empty workspace.
    pub fn new() -> Self {
        Self::default()
    }

    fn ensure_chunks(&mut self, nc: usize) {
        if self.chunks.len() < nc {
            self.chunks.resize_with(nc, Chunk::default);
        }
    }
}

fn chunk_grow(v: &mut Vec<f32>, n: usize) {
    if v.len() < n {
        v.resize(n, 0.0);
    }
}
