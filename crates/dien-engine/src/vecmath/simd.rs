//! Register forms of the vector math, for use inside fused kernels.
//!
//! Each function maps one `V` lane-wise and is `#[inline(always)]`, so a
//! fused kernel (e.g. a GRU gate) can apply it to a register it already holds.
//! Lanes are independent: a lane's result does not depend on the others.
//! Accuracy and special values are documented on each function.

pub use super::exp::exp_v;
pub use super::sigmoid::sigmoid_v;
pub use super::softplus::{log_sigmoid_v, softplus_v};
pub use super::tanh::tanh_v;
