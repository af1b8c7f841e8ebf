//! Training versus evaluation behaviour of the normalising layers.

/// Which statistics BatchNorm and Dice use (docs/MODEL.md#prediction-head).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Batch mean and biased batch variance; gradients flow through them.
    #[default]
    Train,
    /// The running statistics stored in the model (evaluation and inference),
    /// so a sample scores the same alone as inside any batch.
    Eval,
}
