//! # dien-py
//!
//! The native module `dien._dien` of the Python package `dien` (built by
//! maturin, see `pyproject.toml`; the user guide is `docs/PYTHON.md`):
//!
//! - [`predictor`]: `dien.Predictor`, the request path
//!   (`dien_model::serve::Predictor`) by string ids or by index arrays,
//!   one request or many, with the GIL released while it computes;
//! - [`model`]: `dien.Model`, forward passes, losses and gradients on the
//!   fast `f32` path and the `f64` reference path, parameters in and out as
//!   NumPy arrays;
//! - [`batch`]: `dien.Batch`, a batch from padded NumPy arrays through
//!   `dien_model::Batch::from_arrays` (the JSON batch file's rules and
//!   messages);
//! - [`training`]: `dien.train`, `dien.evaluate`, `dien.generate`, the work
//!   of the `dien` command's `train`, `eval` and `generate`.
//!
//! Errors become Python exceptions (`ValueError` for bad input, `OSError`
//! for files, `RuntimeError` for a caught internal error); no panic reaches
//! the interpreter ([`errors`]). The crate has no `unsafe` code.

#![forbid(unsafe_code)]

pub mod arrays;
pub mod batch;
pub mod config;
pub mod convert;
pub mod errors;
pub mod model;
pub mod predictor;
pub mod training;

use pyo3::prelude::*;

/// The package version (the workspace's).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The instruction set the engine was compiled for, e.g.
/// `"x86-64-v3 (AVX2+FMA)"` (the workspace's `.cargo/config.toml`) or
/// `"baseline (SSE2)"`.
#[pyfunction]
fn simd_target() -> &'static str {
    dien_engine::simd_target()
}

/// The native module `dien._dien`; the package `dien` re-exports it.
#[pymodule]
fn _dien(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", VERSION)?;
    m.add_function(wrap_pyfunction!(simd_target, m)?)?;
    m.add_class::<predictor::PyPredictor>()?;
    m.add_class::<model::PyModel>()?;
    m.add_class::<batch::PyBatch>()?;
    m.add_function(wrap_pyfunction!(training::train, m)?)?;
    m.add_function(wrap_pyfunction!(training::evaluate, m)?)?;
    m.add_function(wrap_pyfunction!(training::generate, m)?)?;
    Ok(())
}
