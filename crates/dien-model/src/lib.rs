//! # dien-model
//!
//! DIEN and its baselines (DIN, Embedding&MLP) built on `dien-engine`, as
//! specified by the project's model specification: whole-model forward and
//! backward, a double-precision reference path for verification, and
//! safetensors checkpoints.

pub mod batch;
pub mod error;

pub use batch::Batch;
pub use error::ModelError;
