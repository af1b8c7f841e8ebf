//! Trainer crate: data, negative sampling, optimisers, metrics.

pub mod data;
pub mod error;
pub mod generate;
pub mod metrics;
pub mod optim;
pub mod plot;
pub mod train;

pub use error::TrainError;
