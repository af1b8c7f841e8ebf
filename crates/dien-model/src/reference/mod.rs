//! The double-precision reference path of the whole model (docs/MODEL.md, from #inputs to #models).
//!
//! Plain, per-sample, per-step `f64` code written for clarity: it defines
//! what the fast path must compute and is the analytic side of the
//! whole-model gradient check ([`crate::gradcheck`]). The recurrent cells are
//! the engine's scalar reference ([`dien_engine::cell::reference`]).
//!
//! - [`forward`]: logits, losses and (training mode) the batch statistics of
//!   every normalising layer; [`Mode::Eval`](crate::Mode::Eval) uses the
//!   running statistics stored in the parameters.
//! - [`forward_backward`]: training-mode forward plus the gradient of the
//!   objective `L_target + α_aux·L_aux` w.r.t. every tensor (dense, also for
//!   the embedding tables; zero for running-statistics buffers).
//! - [`forward_traced`], [`forward_backward_traced`]: the same with the
//!   intermediate values ([`RefTrace`]) for stage-by-stage comparisons.
//!
//! Padded history positions are never read, so their ids do not matter and
//! extra padding columns change nothing, bit for bit.

pub mod layers;

/// The reference attention (kept here for existing paths; it lives with
/// its layer).
pub use crate::layers::attention::reference as attention;
/// The reference auxiliary loss (kept here for existing paths; it lives
/// with its layer).
pub use crate::layers::extractor::aux_reference as aux;
pub(crate) mod model;

pub use model::{RefOutput, RefTrace, forward, forward_backward, forward_backward_traced, forward_traced};
