//! Errors of the trainer crate.

use std::path::PathBuf;

use dien_model::ModelError;
use dien_model::serve::ServeError;
use dien_model::vocab::VocabError;
use thiserror::Error;

/// Everything that can go wrong reading data, vocabularies or configuration,
/// or running the trainer, on user-supplied input.
#[derive(Debug, Error)]
pub enum TrainError {
    /// An I/O error on the named path.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory being read or written.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A malformed data line: names the file, the 1-based line number and the
    /// field (`label`, `uid`, `mid`, `cat`, `mid_hist`, `cat_hist`, `line`…).
    #[error("{}:{line}: field `{field}`: {msg}", path.display())]
    Line {
        /// The data file.
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        /// The offending field.
        field: &'static str,
        /// What is wrong with it.
        msg: String,
    },
    /// A vocabulary file cannot be read or holds an invalid entry.
    #[error("vocabulary {}: {msg}", path.display())]
    Vocab {
        /// The vocabulary file.
        path: PathBuf,
        /// What is wrong with it.
        msg: String,
    },
    /// An invalid option or a data set that cannot be used as configured
    /// (names the option or file).
    #[error("config: {0}")]
    Config(String),
    /// Training diverged: a forward pass produced NaN or an infinity.
    #[error("training diverged at step {step}: {msg}")]
    Diverged {
        /// The 1-based step whose forward pass failed.
        step: u64,
        /// What was not finite, and what to try.
        msg: String,
    },
    /// The training file holds no sample to train on.
    #[error("{}: no training samples (the file is empty, blank or every line was skipped)", path.display())]
    NoSamples {
        /// The training file.
        path: PathBuf,
    },
    /// The background batch loader stopped unexpectedly.
    #[error("batch loader: {0}")]
    Loader(String),
    /// A gradient holds NaN or an infinity. Names the tensor, the flat
    /// element index within it and the optimiser step that was refused; no
    /// parameter or optimiser state was changed.
    #[error("non-finite gradient {value} in `{tensor}` at element {index} (step {step}); nothing was updated")]
    NonFiniteGradient {
        /// The parameter whose gradient is non-finite (e.g. `emb.mid`).
        tensor: String,
        /// Flat element index in the full tensor (row-major).
        index: usize,
        /// The offending value.
        value: f32,
        /// The 1-based optimiser step that was refused.
        step: u64,
    },
    /// Communication between the ranks of a distributed run failed (names
    /// the rank and the operation).
    #[error("communication: {0}")]
    Comm(String),
    /// The ranks of a distributed run cannot go on together: a setting
    /// that does not fit the number of ranks, or replicas whose parameters
    /// diverged. Every rank reaches this error at the same point.
    #[error("distributed run: {0}")]
    Replicas(String),
    /// An error of the model crate.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// An error of the model crate's request path.
    #[error(transparent)]
    Serve(#[from] ServeError),
}

impl TrainError {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io { path: path.into(), source }
    }
}

/// Sidecar I/O errors keep their path; malformed sidecars become
/// [`TrainError::Vocab`]; an index outside a table is a configuration error.
impl From<VocabError> for TrainError {
    fn from(e: VocabError) -> Self {
        match e {
            VocabError::Io { path, source } => Self::Io { path, source },
            VocabError::Format { path: Some(path), msg } => Self::Vocab { path, msg },
            other => Self::Config(other.to_string()),
        }
    }
}
