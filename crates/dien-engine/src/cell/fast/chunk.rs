//! One batch chunk of the fast cells: its length-sorted, time-major compact
//! layout, the forward time loop, and backward through time.
//!
//! Compact layout: the chunk's samples are ordered by length, longest first
//! (`perm`), so at step `t` the active samples are the prefix `0..n_t`. Row
//! `off[t] + i` of every per-step matrix belongs to sample `perm[i]` at step
//! `t`; the blocks of consecutive steps are contiguous, `N = Σ_b L_b` rows
//! in all, so padded steps cost neither time nor memory.

use crate::simd::V;

use super::step::{CEpi, RuEpi, gate_stride, update_grad};
use super::{GruCell, INFER_STEPS};
use crate::cell::{CellKind, SeqInput};
use crate::gemm::tile::{Accumulate, gemm_ep, gemm_long_k};
use crate::simd::{LANES, grow, load, load_n, prefetch, store, store_n};

/// Slack (in `f32`s) after matrices that the kernels read as whole 8-lane
/// vectors past the last column of their last row.
const SLACK: usize = LANES;

/// Scratch and forward cache of one chunk.
#[derive(Debug, Default)]
pub(crate) struct Chunk {
    /// Samples in the chunk.
    nb: usize,
    /// Padded length `T` of the call that filled the cache.
    steps: usize,
    /// Whether the buffers hold a `Mode::Train` forward not yet consumed.
    pub(crate) cached: bool,
    /// Local sample of each sorted slot, longest first.
    perm: Vec<usize>,
    /// Sorted lengths.
    lens: Vec<usize>,
    /// `n_t`: active samples at step `t`, for `t ≤ T` (`n_T = 0`).
    active: Vec<usize>,
    /// Row offset of step `t`'s block, for `t ≤ T` (`off[T] = N`).
    off: Vec<usize>,
    /// Inputs (`a·x` for AIGRU) `[N, in]`.
    x: Vec<f32>,
    /// Gates `[N, 3H]`: input projection + bias, then `r | u | c` after
    /// the forward, then `dG` (pre-activation gradients) after the backward.
    /// In inference only one block of steps, rows padded to whole vectors
    /// ([`gate_stride`]).
    g: Vec<f32>,
    /// Previous states `[N + CHUNK, Hp]` in training (row `off[t] + i` is
    /// the state before step `t`), `[CHUNK, Hp]` updated in place otherwise.
    hprev: Vec<f32>,
    /// `r ∘ h_prev`, `[N, Hp]` in training, `[CHUNK, Hp]` otherwise.
    rh: Vec<f32>,
    /// Attention scores `[N]` (zero for kinds without attention).
    att: Vec<f32>,
    /// State gradient carried through time `[CHUNK, Hp]`.
    dh: Vec<f32>,
    /// `∂L/∂(c pre-activation)` of the current step, padded `[CHUNK, Hp]`.
    dgc: Vec<f32>,
    /// `∂L/∂a` per row `[N]`.
    da: Vec<f32>,
    /// This chunk's `∂L/∂w_ihᵀ [in, 3H]`.
    pub(crate) gw_ih_t: Vec<f32>,
    /// This chunk's `∂L/∂w_hhᵀ [H, 3H]`.
    pub(crate) gw_hh_t: Vec<f32>,
    /// This chunk's `∂L/∂b [3H]`.
    pub(crate) gb: Vec<f32>,
}

impl Chunk {
    /// Sorts the chunk's samples by length and sizes every buffer for a
    /// chunk of `nb` samples of `steps` steps (any lengths).
    fn layout(&mut self, cell: &GruCell, lengths: &[usize], steps: usize, train: bool) {
        let nb = lengths.len();
        let (h, hp, n_in) = (cell.hidden, cell.hp, cell.input);
        self.nb = nb;
        self.steps = steps;
        grow(&mut self.perm, nb);
        grow(&mut self.lens, nb);
        grow(&mut self.active, steps + 1);
        grow(&mut self.off, steps + 1);
        let perm = &mut self.perm[..nb];
        for (i, p) in perm.iter_mut().enumerate() {
            *p = i;
        }
        // Ties by index keep the order deterministic (and this sort does
        // not allocate).
        perm.sort_unstable_by(|&a, &b| lengths[b].cmp(&lengths[a]).then(a.cmp(&b)));
        for (l, &p) in self.lens[..nb].iter_mut().zip(perm.iter()) {
            *l = lengths[p];
        }
        let mut n = nb;
        let mut off = 0;
        for t in 0..=steps {
            while n > 0 && self.lens[n - 1] <= t {
                n -= 1;
            }
            self.active[t] = n;
            self.off[t] = off;
            off += n;
        }
        // Capacity for the longest possible chunk of this shape, so calls
        // of the same or smaller size never allocate whatever the lengths.
        let cap = nb * steps;
        let state_rows = if train { cap + nb } else { nb };
        grow(&mut self.x, cap * n_in + SLACK);
        let g_rows = if train { cap } else { nb * steps.min(INFER_STEPS) };
        grow(&mut self.g, g_rows * gate_stride(h, train) + SLACK);
        grow(&mut self.hprev, state_rows * hp);
        grow(&mut self.rh, if train { cap * hp } else { nb * hp });
        grow(&mut self.att, cap);
        grow(&mut self.da, cap);
        grow(&mut self.dh, nb * hp);
        grow(&mut self.dgc, nb * hp);
        grow(&mut self.gw_ih_t, n_in * 3 * h);
        grow(&mut self.gw_hh_t, h * 3 * h);
        grow(&mut self.gb, 3 * h);
    }

    /// Forward over samples `b0 .. b0 + last.len() / H` of `inp`, writing
    /// their `states [nb, T, H]` (unless `states` is empty: an inference
    /// that needs only the last states) and `last [nb, H]`.
    pub(crate) fn forward(
        &mut self,
        cell: &GruCell,
        inp: &SeqInput<'_, f32>,
        b0: usize,
        train: bool,
        states: &mut [f32],
        last: &mut [f32],
    ) {
        // One copy of the loop per kind, so the update is resolved at
        // compile time inside the epilogues.
        match cell.kind {
            CellKind::Gru => self.forward_kind(CellKind::Gru, cell, inp, b0, train, states, last),
            CellKind::Augru => self.forward_kind(CellKind::Augru, cell, inp, b0, train, states, last),
            CellKind::AugruRef => self.forward_kind(CellKind::AugruRef, cell, inp, b0, train, states, last),
            CellKind::Agru => self.forward_kind(CellKind::Agru, cell, inp, b0, train, states, last),
            CellKind::Aigru => self.forward_kind(CellKind::Aigru, cell, inp, b0, train, states, last),
        }
    }

    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn forward_kind(
        &mut self,
        kind: CellKind,
        cell: &GruCell,
        inp: &SeqInput<'_, f32>,
        b0: usize,
        train: bool,
        states: &mut [f32],
        last: &mut [f32],
    ) {
        let (h, hp, n_in, steps) = (cell.hidden, cell.hp, cell.input, inp.steps);
        let nb = last.len() / h;
        self.layout(cell, &inp.lengths[b0..b0 + nb], steps, train);
        self.cached = false;
        // Inference pads the gate rows to whole vectors: whole stores, no
        // masked ones.
        let gs = gate_stride(h, train);
        let nvh = hp / LANES;
        let Chunk { perm, lens, active, off, x, g, hprev, rh, att, .. } = self;
        let (perm, lens) = (&perm[..nb], &lens[..nb]);

        // Padded steps of the outputs are zero.
        for (s, st) in states.chunks_exact_mut(steps * h).enumerate() {
            st[inp.lengths[b0 + s] * h..].fill(0.0);
        }

        // Gather the active rows into the compact layout in its own order,
        // step by step, so the writes are sequential: a sample at a time
        // (sequential reads) wrote rows a step's block apart, 12 % slower
        // for the GRU forward at B = 128, T = 100 on AVX-512. Inference
        // needs the compact inputs only for AIGRU (`a·x`); otherwise the
        // projection below reads `x` in place.
        let gather_x = train || kind == CellKind::Aigru;
        let tmax = lens.first().copied().unwrap_or(0);
        for t in 0..tmax {
            let o = off[t];
            for (i, &p) in perm[..active[t]].iter().enumerate() {
                let row = o + i;
                let bt = (b0 + p) * steps + t;
                let a = inp.att.map_or(0.0, |a| a[bt]);
                att[row] = a;
                if !gather_x {
                    continue;
                }
                let src = &inp.x[bt * n_in..(bt + 1) * n_in];
                let dst = &mut x[row * n_in..(row + 1) * n_in];
                if kind == CellKind::Aigru {
                    for (d, s) in dst.iter_mut().zip(src) {
                        *d = a * s;
                    }
                } else {
                    dst.copy_from_slice(src);
                }
            }
        }

        // Initial states (padding lanes zero); samples of length 0 end here.
        for (i, &p) in perm.iter().enumerate() {
            let b = b0 + p;
            if i < active[0] {
                let dst = &mut hprev[i * hp..(i + 1) * hp];
                dst.fill(0.0);
                if let Some(h0) = inp.h0 {
                    dst[..h].copy_from_slice(&h0[b * h..(b + 1) * h]);
                }
            } else {
                let dst = &mut last[p * h..(p + 1) * h];
                match inp.h0 {
                    Some(h0) => dst.copy_from_slice(&h0[b * h..(b + 1) * h]),
                    None => dst.fill(0.0),
                }
            }
        }

        // Steps run in blocks: the input projection of a block's rows,
        // G = X · W_ihᵀ + b, is hoisted out of its time loop as products
        // over all its compact rows. Training keeps G of every step (one
        // block); inference needs G only until its step has run, so its
        // blocks of INFER_STEPS steps keep G in L2 whatever T is.
        let block = if train { tmax.max(1) } else { INFER_STEPS };
        let (wih, uru, uc) = (&cell.wih_t, &cell.uru_t, &cell.uc_t);
        let (nv3, nvru) = (wih.nvec(), uru.nvec());
        let mut t0 = 0;
        while t0 < tmax {
            let t1 = (t0 + block).min(tmax);
            let base = off[t0];
            if !gather_x {
                // One product per sample over its own rows of `x`
                // (consecutive steps), each result row stored at its
                // compact position.
                for (i, (&p, &len)) in perm.iter().zip(lens).enumerate() {
                    let m = len.min(t1).saturating_sub(t0);
                    if m == 0 {
                        break;
                    }
                    let mut epi = |tl: usize, v: usize, acc: V| {
                        let w = (gs - v * LANES).min(LANES);
                        store_n(g, (off[t0 + tl] + i - base) * gs + v * LANES, w, acc + load(&cell.b, v * LANES));
                    };
                    let x0 = ((b0 + p) * steps + t0) * n_in;
                    gemm_ep::<4, 3, _>(m, n_in, nv3, &inp.x[x0..], n_in, 1, wih.data(), wih.ld(), &mut epi);
                }
            } else {
                // In blocks of 64 rows so each block of X stays in L1.
                let mut r0 = base;
                while r0 < off[t1] {
                    let m = 64.min(off[t1] - r0);
                    let mut epi = |i: usize, v: usize, acc: V| {
                        let w = (gs - v * LANES).min(LANES);
                        store_n(g, (r0 - base + i) * gs + v * LANES, w, acc + load(&cell.b, v * LANES));
                    };
                    gemm_ep::<4, 3, _>(m, n_in, nv3, &x[r0 * n_in..], n_in, 1, wih.data(), wih.ld(), &mut epi);
                    r0 += m;
                }
            }
            let att = &att[base..];
            for t in t0..t1 {
                let n = active[t];
                let row0 = off[t] - base;
                let (hp_off, hn_off) = if train { (off[t], off[t + 1]) } else { (0, 0) };
                let rh_off = if train { off[t] } else { 0 };

                // Pass 1: [r | u] = σ(G_ru + h_{t−1} · U_ruᵀ), and r ∘ h_{t−1}.
                // It must finish before pass 2, whose product reads r ∘ h_{t−1}
                // of every row ("reset before matmul").
                let mut epi = RuEpi { g, rh, hprev, h, hp, gs, row0, hp_off, rh_off };
                gemm_ep::<4, 3, _>(n, h, nvru, &hprev[hp_off * hp..], hp, 1, uru.data(), uru.ld(), &mut epi);

                // The output rows two steps ahead.
                if t + 2 < tmax && !states.is_empty() {
                    for &p in &perm[..active[t + 2]] {
                        prefetch(states, (p * steps + t + 2) * h, h);
                    }
                }
                // Pass 2: c = tanh(G_c + (r ∘ h_{t−1}) · U_cᵀ) and the state update.
                let mut epi = CEpi {
                    kind,
                    g,
                    hprev,
                    states,
                    att,
                    perm,
                    masks: &cell.masks,
                    h,
                    hp,
                    gs,
                    keep_c: train,
                    row0,
                    hp_off,
                    hn_off,
                    steps,
                    t,
                };
                gemm_ep::<4, 3, _>(n, h, nvh, &rh[rh_off * hp..], hp, 1, uc.data(), uc.ld(), &mut epi);

                // Samples whose last step this was.
                for i in active[t + 1]..n {
                    let p = perm[i];
                    last[p * h..(p + 1) * h].copy_from_slice(&hprev[(hn_off + i) * hp..(hn_off + i) * hp + h]);
                }
            }
            t0 = t1;
        }
        self.cached = train;
    }

    /// Backward through the cached forward of the same samples: writes
    /// (or, with `dx_acc`, adds to) `dx [nb, T, in]`, writes `d_att [nb,
    /// T]`, `dh0 [nb, H]` of the chunk and
    /// overwrites the chunk's parameter gradients (`gw_*`, `gb`).
    /// Consumes the cache (the gate buffer now holds gradients).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn backward(
        &mut self,
        cell: &GruCell,
        inp: &SeqInput<'_, f32>,
        b0: usize,
        d_states: Option<&[f32]>,
        d_last: Option<&[f32]>,
        dx: &mut [f32],
        dx_acc: Accumulate,
        d_att: &mut [f32],
        dh0: &mut [f32],
    ) {
        let k = cell.kind;
        match k {
            CellKind::Gru => self.backward_kind(CellKind::Gru, cell, inp, b0, d_states, d_last, dx, dx_acc, d_att, dh0),
            CellKind::Augru => {
                self.backward_kind(CellKind::Augru, cell, inp, b0, d_states, d_last, dx, dx_acc, d_att, dh0)
            }
            CellKind::AugruRef => {
                self.backward_kind(CellKind::AugruRef, cell, inp, b0, d_states, d_last, dx, dx_acc, d_att, dh0)
            }
            CellKind::Agru => {
                self.backward_kind(CellKind::Agru, cell, inp, b0, d_states, d_last, dx, dx_acc, d_att, dh0)
            }
            CellKind::Aigru => {
                self.backward_kind(CellKind::Aigru, cell, inp, b0, d_states, d_last, dx, dx_acc, d_att, dh0)
            }
        }
    }

    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn backward_kind(
        &mut self,
        kind: CellKind,
        cell: &GruCell,
        inp: &SeqInput<'_, f32>,
        b0: usize,
        d_states: Option<&[f32]>,
        d_last: Option<&[f32]>,
        dx: &mut [f32],
        dx_acc: Accumulate,
        d_att: &mut [f32],
        dh0: &mut [f32],
    ) {
        let (h, hp, n_in, steps) = (cell.hidden, cell.hp, cell.input, inp.steps);
        let nb = self.nb;
        assert!(self.cached, "backward needs the cache of a Mode::Train forward (consumed by one backward)");
        assert_eq!(self.steps, steps, "backward: T differs from the cached forward");
        assert_eq!(dh0.len(), nb * h, "backward: batch differs from the cached forward");
        for (i, &p) in self.perm[..nb].iter().enumerate() {
            assert_eq!(self.lens[i], inp.lengths[b0 + p], "backward: lengths differ from the cached forward");
        }
        self.cached = false;
        let h3 = 3 * h;
        let nvh = hp / LANES;
        let uses_att = kind.uses_attention();
        let Chunk { perm, lens, active, off, x, g, hprev, rh, att, dh, dgc, da, gw_ih_t, gw_hh_t, gb, .. } = self;
        let (perm, lens) = (&perm[..nb], &lens[..nb]);
        let rows = off[steps];

        // Padded steps get zero gradient (nothing, when adding).
        if dx_acc == Accumulate::No {
            for (s, d) in dx.chunks_exact_mut(steps * n_in).enumerate() {
                d[inp.lengths[b0 + s] * n_in..].fill(0.0);
            }
        }
        for (s, d) in d_att.chunks_exact_mut(steps).enumerate() {
            d[if uses_att { inp.lengths[b0 + s] } else { 0 }..].fill(0.0);
        }
        // Samples of length 0 pass d_last straight to h0.
        for &p in &perm[active[0]..] {
            let dst = &mut dh0[p * h..(p + 1) * h];
            match d_last {
                Some(dl) => dst.copy_from_slice(&dl[(b0 + p) * h..(b0 + p + 1) * h]),
                None => dst.fill(0.0),
            }
        }

        let tmax = lens.first().copied().unwrap_or(0);
        for t in (0..tmax).rev() {
            let n = active[t];
            let row0 = off[t];
            // Samples whose last step is t start from d_last.
            for i in active[t + 1]..n {
                let dst = &mut dh[i * hp..(i + 1) * hp];
                dst.fill(0.0);
                if let Some(dl) = d_last {
                    let b = b0 + perm[i];
                    dst[..h].copy_from_slice(&dl[b * h..(b + 1) * h]);
                }
            }

            // The cache rows of the next step are fetched a row at a time
            // during pass A (a burst would stall on the fill buffers): the
            // forward of the other chunks ran in between, so they come from
            // far caches, in an order (blocks in reverse) the hardware
            // prefetchers miss. `x` and `r ∘ h` too, which only the weight
            // gradients after the loop read: there they would come from
            // far caches again (all of them fit in L2).
            let next = t.checked_sub(1).map_or(0..0, |t1| off[t1]..off[t]);
            // The output gradient rows two steps ahead.
            if let (Some(ds), Some(t2)) = (d_states, t.checked_sub(2)) {
                for &p in &perm[..active[t2]] {
                    prefetch(ds, ((b0 + p) * steps + t2) * h, h);
                }
            }

            // Pass A: through the state update to dG_u, dG_c (in place of
            // u, c), the direct part of dh_{t−1}, and ∂L/∂a.
            for (i, &p) in perm[..n].iter().enumerate() {
                let row = row0 + i;
                if next.start + i < next.end {
                    prefetch(g, (next.start + i) * h3, h3);
                    prefetch(hprev, (next.start + i) * hp, hp);
                    prefetch(x, (next.start + i) * n_in, n_in);
                    prefetch(rh, (next.start + i) * hp, hp);
                }
                let a = V::splat(att[row]);
                let mut da_acc = V::ZERO;
                // Last vector first: its full-width load of u reaches into
                // the first c lanes, which this loop overwrites with dG_c;
                // loading them before that store avoids a failed store
                // forwarding (the extra lanes are padding, never used).
                for v in (0..nvh).rev() {
                    let w = (h - v * LANES).min(LANES);
                    let mut d = load(dh, i * hp + v * LANES);
                    if let Some(ds) = d_states {
                        d += load_n(ds, ((b0 + p) * steps + t) * h + v * LANES, w);
                    }
                    let ou = row * h3 + h + v * LANES;
                    let oc = ou + h;
                    let (u, c) = (load(g, ou), load(g, oc));
                    let hv = load(hprev, row * hp + v * LANES);
                    let [dhp, du, dc, dat] = update_grad(kind, d, hv, u, c, a);
                    let dgcv = dc * c.mul_neg_add(c, V::ONE);
                    let dguv = du * u * (V::ONE - u);
                    store_n(g, ou, w, dguv);
                    store_n(g, oc, w, dgcv);
                    store(dgc, i * hp + v * LANES, dgcv & cell.masks[v]);
                    store(dh, i * hp + v * LANES, dhp & cell.masks[v]);
                    da_acc += dat & cell.masks[v];
                }
                da[row] = if kind == CellKind::Aigru { 0.0 } else { da_acc.reduce_add() };
            }
            for r in next.start + n..next.end {
                prefetch(g, r * h3, h3);
                prefetch(hprev, r * hp, hp);
                prefetch(x, r * n_in, n_in);
                prefetch(rh, r * hp, hp);
            }

            // Pass B: dq = dG_c · U_c is ∂L/∂(r ∘ h_{t−1}); it gives dG_r
            // and the reset path of dh_{t−1}.
            {
                let hprev: &[f32] = hprev;
                let mut epi = |i: usize, v: usize, dq: V| {
                    let row = row0 + i;
                    let o = row * h3 + v * LANES;
                    let r = load(g, o);
                    let hv = load(hprev, row * hp + v * LANES);
                    let dgr = dq * hv * r * (V::ONE - r);
                    store_n(g, o, (h - v * LANES).min(LANES), dgr);
                    let od = i * hp + v * LANES;
                    let cur = load(dh, od);
                    store(dh, od, dq.mul_add(r, cur));
                };
                gemm_ep::<4, 3, _>(n, h, nvh, dgc, hp, 1, cell.uc.data(), cell.uc.ld(), &mut epi);
            }

            // Pass C: dh_{t−1} += [dG_r | dG_u] · U_ru.
            {
                let mut epi = |i: usize, v: usize, acc: V| {
                    let od = i * hp + v * LANES;
                    let cur = load(dh, od);
                    store(dh, od, acc + cur);
                };
                gemm_ep::<4, 3, _>(n, 2 * h, nvh, &g[row0 * h3..], h3, 1, cell.uru.data(), cell.uru.ld(), &mut epi);
            }
        }
        for (i, &p) in perm[..active[0]].iter().enumerate() {
            dh0[p * h..(p + 1) * h].copy_from_slice(&dh[i * hp..i * hp + h]);
        }

        // dX = dG · W_ih for all rows at once (blocked by step to map rows
        // back to samples), then scaled by a for AIGRU.
        let nvin = cell.wih.nvec();
        for t in 0..tmax {
            let row0 = off[t];
            if t + 2 < tmax {
                for &p in &perm[..active[t + 2]] {
                    prefetch(dx, (p * steps + t + 2) * n_in, n_in);
                }
            }
            let mut epi = |i: usize, v: usize, acc: V| {
                let w = (n_in - v * LANES).min(LANES);
                let bt = perm[i] * steps + t;
                let o = bt * n_in + v * LANES;
                let g = if kind == CellKind::Aigru {
                    let row = row0 + i;
                    let xo = load_n(inp.x, b0 * steps * n_in + o, w);
                    da[row] += (acc * xo).reduce_add();
                    acc * V::splat(att[row])
                } else {
                    acc
                };
                match dx_acc {
                    Accumulate::No => store_n(dx, o, w, g),
                    Accumulate::Yes => store_n(dx, o, w, load_n(dx, o, w) + g),
                }
            };
            gemm_ep::<4, 3, _>(active[t], h3, nvin, &g[row0 * h3..], h3, 1, cell.wih.data(), cell.wih.ld(), &mut epi);
        }
        if uses_att {
            for t in 0..tmax {
                for (i, &p) in perm[..active[t]].iter().enumerate() {
                    d_att[p * steps + t] = da[off[t] + i];
                }
            }
        }

        // Parameter gradients of this chunk, as products over all rows.
        // Each product overwrites its columns (zeros when there are no rows).
        let no = Accumulate::No;
        gemm_long_k(n_in, rows, h3, x, 1, n_in, g, h3, gw_ih_t, h3, no);
        gemm_long_k(h, rows, 2 * h, hprev, 1, hp, g, h3, gw_hh_t, h3, no);
        gemm_long_k(h, rows, h, rh, 1, hp, &g[2 * h..], h3, &mut gw_hh_t[2 * h..], h3, no);
        // Bias: column sums of dG, 8 vectors at a time.
        let nv3 = h3.div_ceil(LANES);
        let mut v0 = 0;
        while v0 < nv3 {
            let nv = (nv3 - v0).min(8);
            let mut acc = [V::ZERO; 8];
            for r in 0..rows {
                for (j, s) in acc[..nv].iter_mut().enumerate() {
                    *s += load(g, r * h3 + (v0 + j) * LANES);
                }
            }
            for (j, s) in acc[..nv].iter().enumerate() {
                let c = (v0 + j) * LANES;
                store_n(gb, c, (h3 - c).min(LANES), *s);
            }
            v0 += nv;
        }
    }
}
