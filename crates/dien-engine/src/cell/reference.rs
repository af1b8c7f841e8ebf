//! Plain scalar reference of every cell, generic over `f32`/`f64`, written
//! for clarity rather than speed. The fast path and the finite-difference
//! checks are measured against it.

use num_traits::Float;

use super::{CellKind, GruGrads, GruParams, SeqInput};

/// What the reference forward returns (and its backward consumes).
#[derive(Clone, Debug)]
pub struct RefForward<T> {
    /// All states `[B, T, H]`, zero at padded steps.
    pub states: Vec<T>,
    /// Final states `[B, H]` (state at `L−1`, or `h0` when `L = 0`).
    pub last: Vec<T>,
}

/// Gradients w.r.t. the inputs of a sequence batch.
#[derive(Clone, Debug)]
pub struct RefInputGrads<T> {
    /// `∂L/∂x [B, T, input]` (zero at padded steps).
    pub x: Vec<T>,
    /// `∂L/∂att [B, T]` (zero at padded steps; all zero for `Gru`).
    pub att: Vec<T>,
    /// `∂L/∂h0 [B, H]`.
    pub h0: Vec<T>,
}

/// Runs the cell over the batch.
pub fn forward<T: Float>(kind: CellKind, p: &GruParams<'_, T>, input: &SeqInput<'_, T>) -> RefForward<T> {
    let _ = (kind, p, input);
    unimplemented!("reference forward")
}

/// Backward through time. `d_states [B, T, H]` (entries at padded steps are
/// ignored) and `d_last [B, H]` are the output gradients (either may be
/// `None` for zero). Parameter gradients are accumulated into `grads`.
pub fn backward<T: Float>(
    kind: CellKind,
    p: &GruParams<'_, T>,
    input: &SeqInput<'_, T>,
    fwd: &RefForward<T>,
    d_states: Option<&[T]>,
    d_last: Option<&[T]>,
    grads: &mut GruGrads<T>,
) -> RefInputGrads<T> {
    let _ = (kind, p, input, fwd, d_states, d_last, grads);
    unimplemented!("reference backward")
}
