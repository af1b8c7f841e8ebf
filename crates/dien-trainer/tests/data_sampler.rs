//! Negative sampler: popularity-proportional draws, never the positive,
//! categories from item-info, deterministic from the seed.

use dien_trainer::data::{ItemCategories, ItemCounts, NegativeSampler};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn sampler(counts: Vec<u64>) -> NegativeSampler {
    // Category of item m is m % 3 + 1 (any known map will do).
    let cat_of = (0..counts.len() as u32).map(|m| m % 3 + 1).collect();
    NegativeSampler::new(&ItemCounts { counts }, ItemCategories { cat_of }).unwrap()
}

/// Pearson chi-square of observed counts against expected probabilities.
fn chi_square(observed: &[u64], probs: &[f64]) -> f64 {
    let n: u64 = observed.iter().sum();
    observed
        .iter()
        .zip(probs)
        .filter(|&(_, &p)| p > 0.0)
        .map(|(&o, &p)| {
            let e = p * n as f64;
            (o as f64 - e).powi(2) / e
        })
        .sum()
}

#[test]
fn draws_are_proportional_to_counts_and_never_the_positive() {
    // Item 0 (unknown) has weight too, as in the reference corpus; item 3 none.
    let counts = vec![2u64, 10, 1, 0, 30, 5, 7, 45];
    let s = sampler(counts.clone());
    assert_eq!(s.total(), 100);
    assert_eq!(s.distinct_items(), 7);
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let draws = 200_000u64;
    for positive in [4u32, 3, 7] {
        let mut seen = vec![0u64; counts.len()];
        for _ in 0..draws {
            let (m, c) = s.sample(&mut rng, positive);
            assert_ne!(m, positive, "a negative equal to the positive");
            assert_eq!(c, m % 3 + 1, "category from the item → category map");
            seen[m as usize] += 1;
        }
        // Expected: counts with the positive removed, renormalised.
        let rest: u64 = counts.iter().enumerate().filter(|&(i, _)| i as u32 != positive).map(|(_, c)| c).sum();
        let probs: Vec<f64> = counts
            .iter()
            .enumerate()
            .map(|(i, &c)| if i as u32 == positive { 0.0 } else { c as f64 / rest as f64 })
            .collect();
        assert_eq!(seen[3], 0, "item with zero count drawn");
        let dof = probs.iter().filter(|&&p| p > 0.0).count() - 1;
        let chi = chi_square(&seen, &probs);
        // Mean = dof, sd = sqrt(2 dof); 5 dof → 99.99th percentile ≈ 25.7.
        assert!(chi < 30.0, "positive {positive}: chi-square {chi:.1} with {dof} dof; seen {seen:?}");
        // And it is sensitive: the unconditional distribution must be rejected
        // whenever the positive has weight.
        if counts[positive as usize] > 0 {
            let all: Vec<f64> = counts.iter().map(|&c| c as f64 / 100.0).collect();
            assert!(chi_square(&seen, &all) > 1000.0);
        }
    }
}

#[test]
fn single_item_corpus_falls_back_to_unknown() {
    let s = sampler(vec![0, 0, 9]);
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    // The only item is the positive: nothing else to draw.
    assert_eq!(s.sample(&mut rng, 2), (0, 0));
    // Any other positive gets the only item.
    for _ in 0..100 {
        assert_eq!(s.sample(&mut rng, 1), (2, 3));
    }
    let empty = NegativeSampler::new(&ItemCounts { counts: vec![0, 0] }, ItemCategories { cat_of: vec![0, 0] });
    assert!(empty.unwrap_err().to_string().contains("no event"));
}

#[test]
fn same_seed_same_draws_different_seed_different() {
    let s = sampler((0..500u64).map(|i| 1 + i % 17).collect());
    let positives: Vec<u32> = (0..1000u32).map(|i| i % 500).collect();
    let run = |seed: u64| {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let (mut m, mut c) = (vec![0u32; 1000], vec![0u32; 1000]);
        s.fill(&mut rng, &positives, &mut m, &mut c);
        (m, c)
    };
    assert_eq!(run(5), run(5));
    let (a, b) = (run(5).0, run(6).0);
    let same = a.iter().zip(&b).filter(|(x, y)| x == y).count();
    assert!(same < 50, "{same} of 1000 equal across seeds");
    for (i, (&p, &n)) in positives.iter().zip(&a).enumerate() {
        assert_ne!(p, n, "step {i}");
    }
}
