//! Trainer crate: data, negative sampling, optimisers, metrics.

pub mod error;

pub use error::TrainError;
