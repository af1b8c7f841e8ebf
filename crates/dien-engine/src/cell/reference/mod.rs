//! Plain scalar reference of every cell, generic over `f32`/`f64`, written
//! for clarity rather than speed. The fast path and the finite-difference
//! checks are measured against it.
//!
//! One sample at a time, one step at a time, plain loops; the equations of
//! docs/MODEL.md#gru and #interest-evolving-layer appear as written. The backward pass recomputes the gate
//! values of each step from the stored states instead of caching them, so
//! [`RefForward`] holds only what the cell outputs.
//!
//! The single-step equations and the forward pass live in `forward`, the
//! backward pass through time in `backward`.

// Index loops mirror the subscripts of the equations; clarity is the point here.
#![allow(clippy::needless_range_loop)]

mod backward;
mod forward;
#[cfg(test)]
mod tests;

pub use backward::backward;
pub use forward::{cell_input, forward, gates, sigmoid, update};

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
    /// `∂L/∂h0 [B, H]` (the gradient w.r.t. the zero initial state when
    /// `h0` is absent).
    pub h0: Vec<T>,
}

/// Gate activations of one step of one sample (each of width `H`).
#[derive(Clone, Debug, PartialEq)]
pub struct Gates<T> {
    /// Reset gate `r = σ(W_r x + U_r h_prev + b_r)`.
    pub r: Vec<T>,
    /// Update gate `u = σ(W_u x + U_u h_prev + b_u)` (computed but unused by `Agru`).
    pub u: Vec<T>,
    /// Candidate `c = tanh(W_c x + U_c (r ∘ h_prev) + b_c)`.
    pub c: Vec<T>,
}
