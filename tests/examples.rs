//! Runs the examples (`examples/score.rs`, `examples/train.rs`,
//! `examples/precision.rs`) with tiny sizes and checks what they return: the examples are compiled into this
//! test as modules and their `run` functions called.

mod common;

// The examples' `main` is not called here.
#[allow(dead_code)]
#[path = "../examples/precision.rs"]
mod precision;
#[allow(dead_code)]
#[path = "../examples/score.rs"]
mod score;
#[allow(dead_code)]
#[path = "../examples/train.rs"]
mod train;

use common::scratch_dir;
use dien_model::serve::{Items, Precision, Predictor, Scratch};

/// `score` equals `Predictor` called directly on the same request.
fn assert_matches_predictor(s: &score::Scored) {
    assert!(!s.probabilities.is_empty());
    assert_eq!(s.probabilities.len(), s.cand_mid.len());
    assert_eq!(s.candidates.len(), s.cand_mid.len());
    assert!(s.probabilities.iter().all(|&p| p.is_finite() && p > 0.0 && p < 1.0), "{:?}", s.probabilities);
    let predictor = Predictor::load(&s.checkpoint).unwrap();
    let mut scratch = Scratch::new();
    let direct = predictor
        .score(&mut scratch, s.uid, Items::new(&s.hist_mid, &s.hist_cat), Items::new(&s.cand_mid, &s.cand_cat))
        .unwrap();
    assert_eq!(direct, &s.probabilities[..], "the example's probabilities are Predictor's");
}

#[test]
fn score_example_trains_a_tiny_model_and_scores_a_user() {
    let dir = scratch_dir("example-score");
    // No checkpoint: a tiny model is trained first; the first user of its
    // test file is scored by string id.
    let s = score::run(None, None, &dir).unwrap();
    assert_eq!(s.checkpoint, dir.join("m.safetensors"));
    assert!(!s.user.starts_with('#'), "a user of the data file: {}", s.user);
    assert!(!s.hist_mid.is_empty());
    assert_eq!(s.cand_mid.len(), 2, "the generated data has two candidates per user");
    assert_matches_predictor(&s);

    // The same checkpoint named explicitly, with the data directory.
    let again = score::run(Some(&s.checkpoint), Some(&dir.join("data")), &dir).unwrap();
    assert_eq!(again, s);

    // A checkpoint alone: a request by index.
    let by_index = score::run(Some(&s.checkpoint), None, &dir).unwrap();
    assert_eq!(by_index.user, "#1");
    assert_eq!(by_index.cand_mid, vec![9, 10, 11, 12]);
    assert_matches_predictor(&by_index);

    // A missing checkpoint is an error naming it.
    let missing = dir.join("none.safetensors");
    let err = score::run(Some(&missing), None, &dir).unwrap_err().to_string();
    assert!(err.contains("none.safetensors"), "{err}");
}

#[test]
fn train_example_reports_finite_metrics() {
    let dir = scratch_dir("example-train");
    let opts = train::Options {
        users: 300,
        max_steps: Some(3),
        dim: Some(4),
        hidden: Some(8),
        threads: Some(2),
        ..train::Options::default()
    };
    let s = train::run(&dir, &opts).unwrap();
    assert_eq!(s.model, "dien");
    assert_eq!(s.steps, 3);
    assert!(s.samples > 0);
    let m = &s.last;
    assert!(m.samples > 0);
    for (name, v) in [("auc", m.auc), ("gauc", m.gauc), ("logloss", m.logloss), ("accuracy", m.accuracy)] {
        let v = v.unwrap_or_else(|| panic!("no {name}"));
        assert!(v.is_finite(), "{name} = {v}");
    }
    assert!((0.0..=1.0).contains(&m.auc.unwrap()));
    assert!(m.logloss.unwrap() > 0.0);
    assert!(dir.join("m.safetensors").is_file());
    assert!(dir.join("m.best.safetensors").is_file());
}

#[test]
fn precision_example_compares_bf16_with_f32_or_reports_the_cpu() {
    let dir = scratch_dir("example-precision");
    let (ck, data) = score::train_tiny(&dir).unwrap();
    let r = precision::run(&ck, &data, 1, 3);
    if !Precision::Bf16.supported() {
        let e = r.unwrap_err().to_string();
        assert!(e.contains("AVX512_BF16"), "{e}");
        println!("skipped: this CPU lacks AVX512_BF16 (checked the example's error)");
        return;
    }
    let r = r.unwrap();
    assert!(r.samples > 0 && r.requests > 0 && r.requests <= r.samples);
    assert_eq!(r.long_requests, 3);
    for v in [r.max_abs_logit, r.long_max_abs_logit, r.max_abs_prob] {
        assert!(v.is_finite() && v < 0.05, "{r:?}");
    }
    assert!(r.mean_abs_logit <= r.max_abs_logit && r.long_mean_abs_logit <= r.long_max_abs_logit);
    assert!(r.auc.iter().all(|a| (0.0..=1.0).contains(a)) && (r.auc[0] - r.auc[1]).abs() < 0.01, "{r:?}");
    assert!(r.seconds.iter().all(|&s| s > 0.0));
    assert!((0.0..=1.0).contains(&r.long_top1_changed) && (0.0..=1.0).contains(&r.long_pairs_swapped));
}
