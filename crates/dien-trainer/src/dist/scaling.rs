//! The scaling model of docs/DISTRIBUTED.md#scaling: what one training
//! step of a data-parallel run sends and computes per rank, from the
//! model's tensor list (`dien_model::tensor_specs`), its cost model
//! (`dien_model::cost`) and the statistics it exchanges
//! (`dien_model::sync::step_exchanges`). The summary of a run measures the
//! same quantities (`DistSummary`); the tests check that the two agree.

use dien_model::cost::flops_per_sample;
use dien_model::fast::EMB_TABLES;
use dien_model::sync::step_exchanges;
use dien_model::{ModelConfig, TensorKind, tensor_specs};

/// One training step of one rank, by the model. Bytes are payload sent by
/// the rank, counted as [`super::CommCounters`] counts them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepVolume {
    /// Number of ranks.
    pub ranks: usize,
    /// Samples of the rank's share of the global batch.
    pub samples: f64,
    /// FLOPs of the rank's share (forward with the auxiliary head and
    /// backward, as `dien_model::cost` counts them).
    pub flops: f64,
    /// Values of the dense gradients (every trainable tensor but the
    /// embedding tables).
    pub dense_values: usize,
    /// Bytes of the dense gradients: the reduce-scatter and the all-gather
    /// each send `(N − 1)/N` of them.
    pub dense_bytes: f64,
    /// Bytes of the sparse embedding rows at most: every looked-up row
    /// distinct (the user, the target and each of `T` history and `T`
    /// negative items and categories of every sample, a row being its index
    /// and `d` values), sent to the `N − 1` other ranks.
    pub sparse_bytes_max: f64,
    /// Bytes of the statistics (f64 sums) sent to the `N − 1` other ranks.
    pub stat_bytes: f64,
    /// Collective operations: the statistics' exchanges and two for the
    /// gradients.
    pub exchanges: usize,
}

impl StepVolume {
    /// Every byte the rank sends.
    pub fn bytes(&self) -> f64 {
        self.dense_bytes + self.sparse_bytes_max + self.stat_bytes
    }
}

/// The model of one step of `cfg` with global batch `batch`, histories of
/// `seqlen` steps and `ranks` ranks. Table sizes of `cfg` bound the
/// embedding rows when they are not 0.
pub fn step_volume(cfg: &ModelConfig, batch: usize, seqlen: usize, ranks: usize) -> StepVolume {
    let n = ranks.max(1) as f64;
    let samples = batch as f64 / n;
    let dense_values: usize = tensor_specs(cfg)
        .iter()
        .filter(|s| s.kind == TensorKind::Param && !EMB_TABLES.contains(&s.name.as_str()))
        .map(|s| s.numel())
        .sum();
    let per_item = samples * (2 * seqlen + 1) as f64;
    let bound = |rows: f64, table: usize| if table > 0 { rows.min(table as f64) } else { rows };
    let rows = bound(samples, cfg.n_uid) + bound(per_item, cfg.n_mid) + bound(per_item, cfg.n_cat);
    let sparse_list = rows * (4 + 4 * cfg.d) as f64 + 12.0;
    let stats: usize = step_exchanges(cfg).iter().sum();
    StepVolume {
        ranks,
        samples,
        flops: samples * flops_per_sample(cfg, seqlen, true),
        dense_values,
        dense_bytes: 2.0 * (n - 1.0) / n * 4.0 * dense_values as f64,
        sparse_bytes_max: if ranks > 1 { (n - 1.0) * sparse_list } else { 0.0 },
        stat_bytes: (n - 1.0) * 8.0 * stats as f64,
        exchanges: step_exchanges(cfg).len() + 2,
    }
}

/// The table of docs/DISTRIBUTED.md#scaling (Markdown): for each rank
/// count, the rank's share, its compute time at `samples_per_s` samples a
/// second per rank, the bytes it sends per step by part, and the network
/// bandwidth at which sending them takes as long as computing (above it,
/// adding ranks still pays; see the docs for the step-time model).
pub fn scaling_table(cfg: &ModelConfig, batch: usize, seqlen: usize, samples_per_s: f64, ranks: &[usize]) -> String {
    let mut t = String::from(
        "| ranks | samples / rank | compute / rank (ms) | dense (MB) | sparse, at most (MB) | statistics (KB) | \
         sent / rank (MB) | bandwidth for comm = compute (Gbit/s) |\n|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for &n in ranks {
        let v = step_volume(cfg, batch, seqlen, n);
        let compute = v.samples / samples_per_s;
        let gbit = if n > 1 { format!("{:.1}", v.bytes() * 8.0 / compute / 1e9) } else { "—".into() };
        t.push_str(&format!(
            "| {n} | {:.0} | {:.1} | {:.2} | {:.1} | {:.0} | {:.1} | {gbit} |\n",
            v.samples,
            compute * 1e3,
            v.dense_bytes / 1e6,
            v.sparse_bytes_max / 1e6,
            v.stat_bytes / 1e3,
            v.bytes() / 1e6,
        ));
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use dien_model::ModelKind;

    #[test]
    fn one_rank_sends_nothing_and_the_parts_add_up() {
        let cfg = ModelConfig::new(ModelKind::Dien, 0, 0, 0);
        let v = step_volume(&cfg, 1024, 100, 1);
        assert_eq!(v.bytes(), 0.0);
        assert!((v.flops / 1024.0 / 1e6 - 33.0).abs() < 0.5, "{}", v.flops);
        let v = step_volume(&cfg, 1024, 100, 4);
        assert_eq!(v.samples, 256.0);
        assert_eq!(v.dense_bytes, 1.5 * 4.0 * v.dense_values as f64);
        // Eleven exchanges of statistics (dien has an auxiliary loss) and two
        // for the gradients.
        assert_eq!(v.exchanges, 13);
    }
}
