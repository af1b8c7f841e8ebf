//! Recurrent cells of DIEN over a batch of variable-length sequences.
//!
//! All cells use the "reset before matmul" GRU of docs/MODEL.md#gru with weight row
//! blocks ordered `r, u, c`:
//!
//! ```text
//! r_t = σ(W_r x_t + U_r h_{t-1} + b_r)
//! u_t = σ(W_u x_t + U_u h_{t-1} + b_u)
//! c_t = tanh(W_c x_t + U_c (r_t ∘ h_{t-1}) + b_c)
//! ```
//!
//! and differ in the state update ([`CellKind`]). Layout conventions shared
//! by the reference ([`reference`](mod@reference)) and the fast path:
//!
//! - inputs `x` are batch-major `[B, T, input]`, row-major;
//! - `lengths[b] ≤ T`; steps `t ≥ lengths[b]` are padding: they leave the
//!   state unchanged, never influence any output, and get zero gradient;
//! - attention scores `att` are `[B, T]` (only for kinds that use them);
//! - the optional initial state `h0` is `[B, H]` (zero when absent);
//! - outputs: `states [B, T, H]` with zeros at padded steps, and
//!   `last [B, H]`, the state at `t = L−1` (`h0` when `L = 0`).

pub mod fast;
pub mod reference;

/// The state update of a cell (docs/MODEL.md#interest-evolving-layer).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CellKind {
    /// Plain GRU: `h = (1 − u)∘h_prev + u∘c`.
    Gru,
    /// DIEN's AUGRU: `ũ = a·u`, `h = (1 − ũ)∘h_prev + ũ∘c`.
    Augru,
    /// The reference code's AUGRU: `k = (1 − a)(1 − u)`, `h = k∘h_prev + (1 − k)∘c`.
    AugruRef,
    /// AGRU: `h = (1 − a)·h_prev + a·c` (update gate unused).
    Agru,
    /// AIGRU: a plain GRU whose input is `a·x`.
    Aigru,
}

impl CellKind {
    /// All kinds, for tests and benches.
    pub const ALL: [CellKind; 5] =
        [CellKind::Gru, CellKind::Augru, CellKind::AugruRef, CellKind::Agru, CellKind::Aigru];

    /// Whether the cell takes attention scores.
    pub fn uses_attention(self) -> bool {
        !matches!(self, CellKind::Gru)
    }

    /// Lower-case name as used in configs (`gru`, `augru`, `augru-ref`, `agru`, `aigru`).
    pub fn name(self) -> &'static str {
        match self {
            CellKind::Gru => "gru",
            CellKind::Augru => "augru",
            CellKind::AugruRef => "augru-ref",
            CellKind::Agru => "agru",
            CellKind::Aigru => "aigru",
        }
    }
}

/// Borrowed GRU parameters: `w_ih [3H, input]`, `w_hh [3H, H]`, `b [3H]`,
/// row-major, row blocks `r, u, c`.
#[derive(Clone, Copy, Debug)]
pub struct GruParams<'a, T> {
    /// Input weights `[3H, input]`.
    pub w_ih: &'a [T],
    /// Recurrent weights `[3H, H]`.
    pub w_hh: &'a [T],
    /// Bias `[3H]`.
    pub b: &'a [T],
    /// Input width.
    pub input: usize,
    /// Hidden width `H`.
    pub hidden: usize,
}

impl<T> GruParams<'_, T> {
    /// Asserts the slice lengths match the declared widths.
    pub fn check(&self) {
        let h3 = 3 * self.hidden;
        assert_eq!(self.w_ih.len(), h3 * self.input, "w_ih must be [3H, input]");
        assert_eq!(self.w_hh.len(), h3 * self.hidden, "w_hh must be [3H, H]");
        assert_eq!(self.b.len(), h3, "b must be [3H]");
    }
}

/// A batch of sequences fed to a cell (see the module docs for layouts).
#[derive(Clone, Copy, Debug)]
pub struct SeqInput<'a, T> {
    /// Inputs `[B, T, input]`.
    pub x: &'a [T],
    /// True lengths `[B]`, each `≤ steps`.
    pub lengths: &'a [usize],
    /// Attention scores `[B, T]`; required iff the kind uses attention.
    pub att: Option<&'a [T]>,
    /// Initial state `[B, H]`; zero when `None`.
    pub h0: Option<&'a [T]>,
    /// Batch size `B`.
    pub batch: usize,
    /// Padded length `T`.
    pub steps: usize,
}

impl<T> SeqInput<'_, T> {
    /// Asserts the input is consistent with `kind` and `p`.
    pub fn check<P>(&self, kind: CellKind, p: &GruParams<'_, P>) {
        assert_eq!(self.x.len(), self.batch * self.steps * p.input, "x must be [B, T, input]");
        assert_eq!(self.lengths.len(), self.batch, "lengths must be [B]");
        assert!(self.lengths.iter().all(|&l| l <= self.steps), "a length exceeds T");
        match (kind.uses_attention(), self.att) {
            (true, Some(a)) => assert_eq!(a.len(), self.batch * self.steps, "att must be [B, T]"),
            (true, None) => panic!("{} needs attention scores", kind.name()),
            (false, _) => {}
        }
        if let Some(h0) = self.h0 {
            assert_eq!(h0.len(), self.batch * p.hidden, "h0 must be [B, H]");
        }
    }
}

/// Gradients w.r.t. the cell parameters, same layouts as [`GruParams`].
/// Backward passes *accumulate* into these.
#[derive(Clone, Debug, PartialEq)]
pub struct GruGrads<T> {
    /// `∂L/∂w_ih [3H, input]`.
    pub w_ih: Vec<T>,
    /// `∂L/∂w_hh [3H, H]`.
    pub w_hh: Vec<T>,
    /// `∂L/∂b [3H]`.
    pub b: Vec<T>,
}

impl<T: Copy + Default> GruGrads<T> {
    /// Zero gradients for a cell of the given widths.
    pub fn zeros(input: usize, hidden: usize) -> Self {
        let h3 = 3 * hidden;
        Self { w_ih: vec![T::default(); h3 * input], w_hh: vec![T::default(); h3 * hidden], b: vec![T::default(); h3] }
    }
}
