//! Trainer crate: data, negative sampling, optimisers, metrics, the
//! training loop (in one process, or data-parallel over MPI: [`dist`]), and
//! the logic of the `dien` command's other tools (prediction, gradient
//! dumps, benchmarks, preparing a data set from an event log, sweeps over
//! models, settings and seeds).

pub mod bench;
pub mod data;
pub mod dist;
pub mod error;
pub mod generate;
pub mod grads;
pub mod metrics;
pub mod optim;
pub mod paths;
pub mod plot;
pub mod predict;
pub mod prepare;
pub mod record;
pub mod sweep;
pub mod train;

pub use error::TrainError;

/// The seed every command and configuration uses when none is given (the
/// seed of the reference training code).
pub const DEFAULT_SEED: u64 = 2018;
