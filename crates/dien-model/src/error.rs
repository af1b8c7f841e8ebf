//! Errors of the model crate.

use thiserror::Error;

/// Everything that can go wrong building, running, loading or saving a model
/// from user-supplied configuration, batches or files.
#[derive(Debug, Error)]
pub enum ModelError {
    /// A configuration value is invalid (names the field).
    #[error("config: {0}")]
    Config(String),
    /// A batch is malformed (names the field and sample).
    #[error("batch: {0}")]
    Batch(String),
    /// A checkpoint is missing a tensor, has a wrong shape, an unknown
    /// tensor, bad metadata or is corrupted (names the tensor or key).
    #[error("checkpoint {0}: {1}")]
    Checkpoint(String, String),
    /// A loss or gradient became non-finite.
    #[error("non-finite value: {0}")]
    NonFinite(String),
    /// Exchanging statistics with the other replicas of a data-parallel
    /// step failed (see [`crate::sync`]).
    #[error("replicas: {0}")]
    Sync(String),
    /// An I/O error on the named path.
    #[error("{0}: {1}")]
    Io(String, #[source] std::io::Error),
}
