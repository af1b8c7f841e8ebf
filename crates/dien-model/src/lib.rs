//! # dien-model
//!
//! DIEN and its baselines (DIN, Embedding&MLP) built on `dien-engine`, as
//! specified in `docs/MODEL.md`: whole-model forward and
//! backward, a double-precision reference path for verification, and
//! safetensors checkpoints.

pub mod batch;
pub mod checkpoint;
pub mod config;
pub mod cost;
pub mod error;
pub mod fast;
pub mod gradcheck;
pub mod layers;
pub mod mode;
pub mod params;
pub mod plan;
pub mod reference;
pub mod serve;
pub mod sync;
pub mod vocab;

pub use batch::Batch;
pub use config::{AttForm, AuxForm, Evolution, ModelConfig, ModelKind, Variant};
pub use error::ModelError;
pub use mode::Mode;
/// The array types of [`Batch::from_arrays`] (the crate's `ndarray`, re-exported
/// so that callers use the same version).
pub use ndarray;
pub use params::{Init, ParamStore, TensorId, TensorKind, TensorSpec, tensor_specs};
pub use plan::{EvolvingPlan, Interest, Plan};
pub use sync::{NoSync, StatSync};
