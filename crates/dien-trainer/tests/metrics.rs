//! Metrics against hand-computed values and brute-force references.

use std::collections::HashMap;

use approx::assert_abs_diff_eq;
use dien_trainer::metrics::{EvalMetrics, MetricsAccumulator, accuracy_from_logits, auc, gauc, logloss_from_logits};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// O(n²) AUC straight from the definition: over all (positive, negative)
/// pairs, 1 if the positive scores higher, ½ on a tie.
fn brute_auc(scores: &[f64], labels: &[u8]) -> Option<f64> {
    let (mut num, mut pairs) = (0.0, 0u64);
    for (i, &si) in scores.iter().enumerate() {
        for (j, &sj) in scores.iter().enumerate() {
            if labels[i] == 1 && labels[j] == 0 {
                pairs += 1;
                num += if si > sj {
                    1.0
                } else if si == sj {
                    0.5
                } else {
                    0.0
                };
            }
        }
    }
    (pairs > 0).then(|| num / pairs as f64)
}

/// GAUC from the definition: filter each user's samples, brute-force AUC,
/// weight by the user's sample count.
fn brute_gauc(users: &[u32], scores: &[f64], labels: &[u8]) -> Option<f64> {
    let mut by_user: HashMap<u32, (Vec<f64>, Vec<u8>)> = HashMap::new();
    for ((&u, &s), &y) in users.iter().zip(scores).zip(labels) {
        let e = by_user.entry(u).or_default();
        e.0.push(s);
        e.1.push(y);
    }
    let (mut num, mut den) = (0.0, 0.0);
    for (s, y) in by_user.values() {
        if let Some(a) = brute_auc(s, y) {
            num += a * s.len() as f64;
            den += s.len() as f64;
        }
    }
    (den > 0.0).then(|| num / den)
}

#[test]
fn auc_hand_computed_without_ties() {
    // Positives 0.35 and 0.8, negatives 0.1 and 0.4: 0.35 beats 0.1 only,
    // 0.8 beats both → 3 of 4 pairs.
    let a = auc(&[0.1f32, 0.4, 0.35, 0.8], &[0u8, 0, 1, 1]).unwrap();
    assert_abs_diff_eq!(a, 0.75, epsilon = 1e-15);
}

#[test]
fn auc_hand_computed_with_ties() {
    // Positives {0.5, 0.9, 0.5}, negatives {0.5, 0.2}.
    // Pairs: 0.5 vs 0.5 tie (½), 0.5 vs 0.2 (1); 0.9 beats both (2);
    // second 0.5 again ½ + 1. Total 5 of 6 pairs.
    // Average ranks agree: sorted 0.2 | 0.5 0.5 0.5 | 0.9 → ranks 1 | 3 3 3 | 5,
    // positive rank sum 3+3+5 = 11, minus 3·4/2 = 6 → 5, over 3·2 = 6.
    let a = auc(&[0.5f64, 0.5, 0.2, 0.9, 0.5], &[1u8, 0, 0, 1, 1]).unwrap();
    assert_abs_diff_eq!(a, 5.0 / 6.0, epsilon = 1e-15);
}

#[test]
fn auc_all_scores_equal_is_one_half() {
    let labels: Vec<u8> = (0..101).map(|i| (i % 3 == 0) as u8).collect();
    let scores = vec![0.25f32; labels.len()];
    assert_eq!(auc(&scores, &labels), Some(0.5));
}

#[test]
fn auc_perfect_reversed_and_undefined() {
    assert_eq!(auc(&[1.0f32, 2.0, 3.0], &[0u8, 1, 1]), Some(1.0));
    assert_eq!(auc(&[3.0f32, 2.0, 1.0], &[0u8, 1, 1]), Some(0.0));
    assert_eq!(auc(&[1.0f32, 2.0], &[1u8, 1]), None, "no negative");
    assert_eq!(auc(&[1.0f32, 2.0], &[0u8, 0]), None, "no positive");
    assert_eq!(auc::<f32, u8>(&[], &[]), None, "empty");
    assert_eq!(auc(&[1.0f32, f32::NAN, 0.0], &[0u8, 1, 1]), None, "NaN score");
}

#[test]
fn auc_zero_signs_are_a_tie() {
    // −0.0 == +0.0 must be one tied group even though total_cmp orders them.
    assert_eq!(auc(&[-0.0f32, 0.0], &[1u8, 0]), Some(0.5));
    assert_eq!(auc(&[0.0f32, -0.0], &[1u8, 0]), Some(0.5));
}

#[test]
fn auc_label_types_agree() {
    let s = [0.3f32, -1.0, 2.0, 0.3, 0.0];
    let a = auc(&s, &[1u8, 0, 1, 0, 0]);
    assert_eq!(a, auc(&s, &[1.0f32, 0.0, 1.0, 0.0, 0.0]));
    assert_eq!(a, auc(&s, &[true, false, true, false, false]));
    assert_eq!(a, auc(&s, &[1i32, 0, 1, 0, 0]));
}

#[test]
#[should_panic(expected = "is not 0 or 1")]
fn auc_rejects_soft_labels() {
    auc(&[0.1f32, 0.2], &[0.5f32, 1.0]);
}

#[test]
fn auc_matches_brute_force_on_random_data_with_ties() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    for trial in 0..40 {
        let n = rng.random_range(2..300);
        // Few distinct score values → many ties; label correlated with score.
        let levels = rng.random_range(1..8);
        let scores: Vec<f64> = (0..n).map(|_| rng.random_range(0..levels) as f64 * 0.5 - 1.0).collect();
        let labels: Vec<u8> =
            scores.iter().map(|&s| (rng.random::<f64>() < 0.3 + 0.2 * s.clamp(-1.0, 1.0)) as u8).collect();
        let fast = auc(&scores, &labels);
        let slow = brute_auc(&scores, &labels);
        match (fast, slow) {
            (Some(f), Some(s)) => assert_abs_diff_eq!(f, s, epsilon = 1e-12),
            (None, None) => {}
            other => panic!("trial {trial}: fast/brute disagree on definedness: {other:?}"),
        }
        // Monotone transforms leave the AUC unchanged (ties included).
        let squashed: Vec<f64> = scores.iter().map(|&s| 1.0 / (1.0 + (-s).exp())).collect();
        assert_eq!(auc(&squashed, &labels), fast, "trial {trial}");
    }
}

#[test]
fn gauc_hand_computed_weights_and_skips() {
    // User A (3 samples): pos 0.3, negs 0.6 and 0.1 → AUC ½, weight 3.
    // User B (4 samples): pos {0.8, 0.4}, neg {0.2, 0.4}:
    //   0.8 beats both (2), 0.4 beats 0.2 (1) and ties 0.4 (½) → 3.5/4, weight 4.
    // User C: two positives → skipped. User D: one sample → skipped.
    // GAUC = (3·½ + 4·⅞) / 7 = 5/7.
    let users = ["A", "B", "C", "A", "B", "D", "B", "A", "C", "B"];
    let scores = [0.3f32, 0.8, 0.9, 0.6, 0.2, 0.5, 0.4, 0.1, 0.1, 0.4];
    let labels = [1u8, 1, 1, 0, 0, 0, 1, 0, 1, 0];
    let g = gauc(&users, &scores, &labels).unwrap();
    assert_abs_diff_eq!(g, 5.0 / 7.0, epsilon = 1e-12);

    // Same answer with owned strings and numeric ids.
    let owned: Vec<String> = users.iter().map(|s| s.to_string()).collect();
    assert_eq!(gauc(&owned, &scores, &labels), Some(g));
    let numeric: Vec<u64> = users.iter().map(|s| s.as_bytes()[0] as u64).collect();
    assert_eq!(gauc(&numeric, &scores, &labels), Some(g));

    // Treating everyone as one user gives the plain AUC instead.
    let one = ["x"; 10];
    assert_eq!(gauc(&one, &scores, &labels), auc(&scores, &labels));
}

#[test]
fn gauc_undefined_when_no_user_has_both_classes() {
    assert_eq!(gauc(&["a", "a", "b"], &[0.1f32, 0.2, 0.3], &[1u8, 1, 0]), None);
    assert_eq!(gauc::<&str, f32, u8>(&[], &[], &[]), None);
}

#[test]
fn gauc_matches_brute_force_on_random_data() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    for _ in 0..20 {
        let n = rng.random_range(1..400);
        let n_users = rng.random_range(1..40);
        let users: Vec<u32> = (0..n).map(|_| rng.random_range(0..n_users)).collect();
        let scores: Vec<f64> = (0..n).map(|_| rng.random_range(0..5) as f64).collect();
        let labels: Vec<u8> = (0..n).map(|_| rng.random_range(0..2)).collect();
        match (gauc(&users, &scores, &labels), brute_gauc(&users, &scores, &labels)) {
            (Some(f), Some(s)) => assert_abs_diff_eq!(f, s, epsilon = 1e-12),
            (None, None) => {}
            other => panic!("fast/brute disagree on definedness: {other:?}"),
        }
    }
}

#[test]
fn logloss_hand_computed() {
    // Two independent formulas: ln(1 + e^x) directly, and −ln p / −ln(1−p).
    let logits = [0.0f64, 2.0, -1.0, 0.5];
    let labels = [1u8, 0, 0, 1];
    let direct =
        (2f64.ln() + (1.0 + 2f64.exp()).ln() + (1.0 + (-1f64).exp()).ln() + (1.0 + (-0.5f64).exp()).ln()) / 4.0;
    let sig = |z: f64| 1.0 / (1.0 + (-z).exp());
    let ce = -(sig(0.0).ln() + (1.0 - sig(2.0)).ln() + (1.0 - sig(-1.0)).ln() + sig(0.5).ln()) / 4.0;
    let got = logloss_from_logits(&logits, &labels).unwrap();
    assert_abs_diff_eq!(got, direct, epsilon = 1e-14);
    assert_abs_diff_eq!(got, ce, epsilon = 1e-14);
    assert_eq!(logloss_from_logits::<f32, u8>(&[], &[]), None);
}

#[test]
fn logloss_is_finite_at_extreme_logits() {
    // Right with certainty costs ≈ 0; wrong with certainty costs |z|.
    let logits = [100.0f32, -100.0, 100.0, -100.0];
    let labels = [1u8, 1, 0, 0];
    let l = logloss_from_logits(&logits, &labels).unwrap();
    assert!(l.is_finite());
    assert_abs_diff_eq!(l, 50.0, epsilon = 1e-12);

    let right = logloss_from_logits(&[1000.0f32, -1000.0], &[1u8, 0]).unwrap();
    assert!(right.is_finite() && (0.0..1e-300).contains(&right), "{right}");
    let wrong = logloss_from_logits(&[f32::MAX], &[0u8]).unwrap();
    assert_eq!(wrong, f32::MAX as f64);
}

#[test]
fn accuracy_counts_positive_above_zero_logit() {
    // z = 0 is p = 0.5, which is not > 0.5: predicted negative.
    // 0.0→neg vs 0 ✓, 0.1→pos vs 1 ✓, −0.1→neg vs 1 ✗, 3→pos vs 0 ✗, −2→neg vs 0 ✓.
    let a = accuracy_from_logits(&[0.0f32, 0.1, -0.1, 3.0, -2.0], &[0u8, 1, 1, 0, 0]).unwrap();
    assert_abs_diff_eq!(a, 0.6, epsilon = 1e-15);
    assert_eq!(accuracy_from_logits(&[0.0f32], &[1u8]), Some(0.0));
    assert_eq!(accuracy_from_logits::<f32, u8>(&[], &[]), None);
}

#[test]
fn accumulator_matches_the_functions() {
    let users = ["A", "B", "C", "A", "B", "D", "B", "A", "C", "B"];
    let logits = [0.3f32, 0.8, 0.9, -0.6, 0.2, 0.5, -0.4, 0.1, 0.1, -0.4];
    let labels = [1.0f32, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0];

    let mut acc = MetricsAccumulator::with_capacity(4);
    assert!(acc.is_empty());
    for i in 0..users.len() {
        acc.push(users[i], logits[i], labels[i]);
    }
    let m = acc.finish();
    let expected = EvalMetrics {
        auc: auc(&logits, &labels),
        gauc: gauc(&users, &logits, &labels),
        logloss: logloss_from_logits(&logits, &labels),
        accuracy: accuracy_from_logits(&logits, &labels),
        samples: 10,
    };
    assert_eq!(m, expected);
    assert!(m.auc.is_some() && m.gauc.is_some());

    // Batched pushes in two parts give the same result.
    let mut batched = MetricsAccumulator::new();
    batched.push_batch(&users[..4], &logits[..4], &labels[..4]);
    batched.push_batch(&users[4..], &logits[4..], &labels[4..]);
    assert_eq!(batched.len(), 10);
    assert_eq!(batched.finish(), expected);

    // JSON carries the fields the command line promises.
    let json: serde_json::Value = serde_json::to_value(&m).unwrap();
    for key in ["auc", "gauc", "logloss", "accuracy", "samples"] {
        assert!(json.get(key).is_some(), "missing {key} in {json}");
    }
    assert_eq!(json["samples"], 10);

    // After clear, ids are re-interned from scratch and the old data is gone.
    acc.clear();
    assert!(acc.is_empty());
    acc.push("Z", 1.0, 1u8);
    let one = acc.finish();
    assert_eq!((one.auc, one.gauc, one.samples), (None, None, 1));
    assert_eq!(one.accuracy, Some(1.0));
}

#[test]
fn empty_accumulator_is_all_undefined() {
    let m = MetricsAccumulator::new().finish();
    assert_eq!(m, EvalMetrics { auc: None, gauc: None, logloss: None, accuracy: None, samples: 0 });
    let json = serde_json::to_string(&m).unwrap();
    assert_eq!(json, r#"{"auc":null,"gauc":null,"logloss":null,"accuracy":null,"samples":0}"#);
}
