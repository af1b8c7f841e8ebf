//! Statistics shared by the replicas of a data-parallel training step.
//!
//! In synchronous data-parallel training every replica (process, rank)
//! runs the same model on its own share of a global batch. Most of a step
//! is per sample, so each replica computes its share's gradients and the
//! trainer sums them afterwards. A few quantities couple the samples of a
//! batch, and for the replicas together to compute the model of one
//! process on the whole batch, those must be sums over the *global* batch:
//!
//! - the batch statistics of BatchNorm and Dice in training mode
//!   (synchronised batch normalisation: the column sums, then the sums of
//!   squared deviations from the global mean, and in the backward pass the
//!   two column sums the normalisation's gradient needs), exchanged by the
//!   head (`layers/head`);
//! - the normalisers of the losses: the number of samples (with the
//!   BatchNorm sums) and the number of auxiliary-loss terms (by the
//!   extractor's auxiliary loss, `layers/extractor`);
//! - the loss values themselves, so that every replica reports the global
//!   loss.
//!
//! The model hands each such vector to a [`StatSync`], which replaces it
//! by its sum over the replicas. A single process passes [`NoSync`], which
//! does nothing: the single-process path computes exactly what it computes
//! without a hook (the same operations in the same order).
//!
//! Every replica must make the same sequence of calls with vectors of the
//! same lengths, so that the calls pair up across replicas: the model
//! guarantees it for any batch sizes, including a replica whose share of a
//! global batch is empty (it takes part in every exchange with zeros).

use crate::config::ModelConfig;
use crate::error::ModelError;
use crate::layers::head::train::{H1, H2};

/// Sums vectors over the replicas of a data-parallel step (see the
/// [module docs](self)). A step may call it from any thread of its pool
/// (always one call at a time, in the same order on every replica).
pub trait StatSync: Send {
    /// Number of replicas taking part (1 for a single process).
    fn replicas(&self) -> usize;

    /// Replaces every element of `values` by the sum of that element over
    /// all replicas. The sum must be formed in an order that does not
    /// depend on timing (e.g. replica order), so that every replica gets
    /// the same bits. Every replica calls this with the same length.
    fn sum(&mut self, values: &mut [f64]) -> Result<(), ModelError>;
}

/// The single-process [`StatSync`]: one replica, sums are the values.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoSync;

impl StatSync for NoSync {
    #[inline]
    fn replicas(&self) -> usize {
        1
    }

    #[inline]
    fn sum(&mut self, _values: &mut [f64]) -> Result<(), ModelError> {
        Ok(())
    }
}

/// The lengths of the vectors one training step (forward and backward)
/// of `cfg` hands to [`StatSync::sum`], in order: the number of
/// auxiliary-loss terms (models with an auxiliary head, batches with
/// negatives); for BatchNorm (head width `D`), Dice 1 (200) and Dice 2 (80)
/// in turn the column sums with the row count (`width + 1`) and the sums
/// of squared deviations (`width`); backward, the two column sums of
/// Dice 2, Dice 1 and BatchNorm (`2 × width` each); then the two loss parts
/// (the auxiliary loss runs beside the head, so its value is known last).
/// What a data-parallel step exchanges besides the gradients.
pub fn step_exchanges(cfg: &ModelConfig) -> Vec<usize> {
    let d = cfg.head_in();
    let mut v = Vec::with_capacity(11);
    if cfg.has_aux() {
        v.push(1);
    }
    for w in [d, H1, H2] {
        v.extend([w + 1, w]);
    }
    v.extend([2 * H2, 2 * H1, 2 * d]);
    v.push(2);
    v
}
