//! The cost model of docs/MODEL.md#cost and synthetic inputs for benchmarks.
//!
//! FLOPs are counted for the model as docs/MODEL.md writes it (two per
//! multiply-add, backward = 2 × forward), not for what an implementation
//! saves through algebra, so rates compare across implementations.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::batch::Batch;
use crate::config::{AttForm, AuxForm, ModelConfig, ModelKind};

/// Multiply-adds of one sample's forward pass with a history of `t` steps
/// (all valid). `with_aux` adds the auxiliary head (training).
pub fn forward_macs(cfg: &ModelConfig, t: usize, with_aux: bool) -> f64 {
    let (e, h) = (cfg.e() as f64, cfg.hidden as f64);
    let t = t as f64;
    let gru = |inp: f64| t * (3.0 * h * inp + 3.0 * h * h);
    let att = |a: f64| match cfg.att {
        AttForm::Mlp => a * e + t * (4.0 * a * 80.0 + 80.0 * 40.0 + 40.0),
        AttForm::Bilinear => a * e + t * a,
    };
    let mut macs = 0.0;
    if cfg.has_gru() {
        macs += gru(e) + gru(h) + att(h);
        if with_aux && cfg.has_aux() {
            let terms = (t - 1.0).max(0.0);
            macs += 2.0
                * terms
                * match cfg.aux {
                    AuxForm::Mlp => (h + e) * 100.0 + 100.0 * 50.0 + 50.0,
                    AuxForm::Dot => h,
                };
        }
    } else if cfg.model == ModelKind::Din {
        macs += att(e);
    }
    let d_in = cfg.head_in() as f64;
    macs + d_in * 200.0 + 200.0 * 80.0 + 80.0
}

/// FLOPs of one sample: inference (`train = false`, no auxiliary head) or a
/// training step (forward with the auxiliary head, backward counted as twice
/// the forward).
pub fn flops_per_sample(cfg: &ModelConfig, t: usize, train: bool) -> f64 {
    if train { 3.0 * 2.0 * forward_macs(cfg, t, true) } else { 2.0 * forward_macs(cfg, t, false) }
}

/// A random batch of `b` samples whose histories all have length `t`, with
/// negatives and balanced random labels, deterministic in `seed`.
pub fn synthetic_batch(cfg: &ModelConfig, b: usize, t: usize, seed: u64) -> Batch {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut batch = Batch::zeros(b, t, true);
    let (nu, nm, nc) = (cfg.n_uid as u32, cfg.n_mid as u32, cfg.n_cat as u32);
    for s in 0..b {
        batch.uid[s] = rng.random_range(0..nu);
        batch.mid[s] = rng.random_range(0..nm);
        batch.cat[s] = rng.random_range(0..nc);
        batch.lengths[s] = t;
        batch.label[s] = if rng.random::<bool>() { 1.0 } else { 0.0 };
    }
    for i in 0..b * t {
        batch.hist_mid[i] = rng.random_range(0..nm);
        batch.hist_cat[i] = rng.random_range(0..nc);
        batch.neg_mid.as_mut().expect("negatives")[i] = rng.random_range(0..nm);
        batch.neg_cat.as_mut().expect("negatives")[i] = rng.random_range(0..nc);
    }
    batch
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_dien_costs_match_spec_13() {
        let cfg = ModelConfig::new(ModelKind::Dien, 10, 10, 10);
        // docs/MODEL.md#cost: about 11 MFLOP forward with the auxiliary head, 6.2 for
        // inference and 33 for a training step at T = 100.
        let fwd = 2.0 * forward_macs(&cfg, 100, true) / 1e6;
        assert!((fwd - 11.0).abs() < 0.1, "{fwd}");
        assert!((flops_per_sample(&cfg, 100, false) / 1e6 - 6.2).abs() < 0.1);
        assert!((flops_per_sample(&cfg, 100, true) / 1e6 - 33.0).abs() < 0.2);
    }

    #[test]
    fn synthetic_batches_are_valid_and_deterministic() {
        let cfg = ModelConfig::new(ModelKind::Dien, 5, 50, 7);
        let a = synthetic_batch(&cfg, 4, 9, 1);
        a.validate(5, 50, 7).unwrap();
        assert_eq!(a, synthetic_batch(&cfg, 4, 9, 1));
        assert_ne!(a, synthetic_batch(&cfg, 4, 9, 2));
    }
}
