//! What a distributed run counts of its communication: per rank, and as
//! the run's summary reports it.

use serde::Serialize;

/// Communication counters of one rank. Bytes are payload, counted as if
/// every part went straight to every rank that receives it: an all-gather
/// of `n` bytes sends `n·(size − 1)`, an all-to-all sends what it
/// addresses to the other ranks. (An MPI library may route parts through
/// other ranks; the total over the ranks is the same for the usual ring
/// algorithms.)
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct CommCounters {
    /// Payload bytes sent.
    pub bytes_sent: u64,
    /// Payload bytes received.
    pub bytes_received: u64,
    /// Collective operations.
    pub exchanges: u64,
    /// Wall time inside the collective operations, waiting for slower
    /// ranks included.
    pub seconds: f64,
}

impl CommCounters {
    /// `self − earlier`, field by field.
    pub fn since(&self, earlier: &CommCounters) -> CommCounters {
        CommCounters {
            bytes_sent: self.bytes_sent - earlier.bytes_sent,
            bytes_received: self.bytes_received - earlier.bytes_received,
            exchanges: self.exchanges - earlier.exchanges,
            seconds: self.seconds - earlier.seconds,
        }
    }

    /// Adds `other` field by field.
    pub fn add(&mut self, other: &CommCounters) {
        self.bytes_sent += other.bytes_sent;
        self.bytes_received += other.bytes_received;
        self.exchanges += other.exchanges;
        self.seconds += other.seconds;
    }
}

/// The communication of a distributed run, as its summary reports it: the
/// training steps' exchanges (evaluation and checks apart), per step.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct DistSummary {
    /// Number of ranks.
    pub ranks: usize,
    /// The transport.
    pub transport: String,
    /// Training steps of this run.
    pub steps: u64,
    /// Payload bytes all ranks together sent per training step.
    pub bytes_sent_per_step: f64,
    /// Of which the dense gradients (reduce-scatter and all-gather).
    pub dense_bytes_per_step: f64,
    /// Of which the sparse embedding rows.
    pub sparse_bytes_per_step: f64,
    /// Of which the statistics of the forward and backward passes.
    pub stat_bytes_per_step: f64,
    /// The most payload bytes one rank sent per step.
    pub max_rank_bytes_sent_per_step: f64,
    /// Collective operations per step (each rank makes the same ones).
    pub exchanges_per_step: f64,
    /// Share of the step time spent in collective operations, averaged
    /// over the ranks (waiting for a slower rank counts as communication).
    pub comm_share: f64,
    /// The largest share of one rank.
    pub max_comm_share: f64,
    /// Mean wall time of a training step (forward, backward, exchanges,
    /// optimiser), seconds, averaged over the ranks.
    pub step_seconds: f64,
}
