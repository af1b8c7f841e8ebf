//! Trainer crate: data, negative sampling, optimisers, metrics.

pub mod data;
pub mod error;
pub mod generate;
pub mod metrics;

pub use error::TrainError;
