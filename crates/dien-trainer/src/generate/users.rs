//! The generative process of the synthetic data set: the catalogue of
//! items and categories, each user's evolving interests, behaviours and
//! (negative, positive) pair (see the parent module and `docs/DATA.md`).

use rand::Rng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use super::GenerateConfig;

/// Draws indices with probability proportional to fixed weights, by binary
/// search in the cumulative sums.
struct Cumulative {
    cum: Vec<f64>,
}

impl Cumulative {
    fn new(weights: impl IntoIterator<Item = f64>) -> Self {
        let mut total = 0.0;
        let cum = weights
            .into_iter()
            .map(|w| {
                total += w;
                total
            })
            .collect();
        Self { cum }
    }

    fn sample(&self, rng: &mut ChaCha8Rng) -> usize {
        let total = *self.cum.last().expect("non-empty sampler");
        let u = rng.random::<f64>() * total;
        // `min` guards against `u` rounding up to `total`.
        self.cum.partition_point(|&c| c <= u).min(self.cum.len() - 1)
    }
}

/// Draws an index from unnormalised `weights` (small, per-user tables).
fn sample_weights(weights: &[f64], rng: &mut ChaCha8Rng) -> usize {
    let total: f64 = weights.iter().sum();
    let mut u = rng.random::<f64>() * total;
    for (i, &w) in weights.iter().enumerate() {
        if u < w {
            return i;
        }
        u -= w;
    }
    // Rounding left `u` just above the last weight: take the last non-zero one.
    weights.iter().rposition(|&w| w > 0.0).expect("a positive weight")
}

/// A standard normal deviate (Box–Muller).
fn normal(rng: &mut ChaCha8Rng) -> f64 {
    let u1 = 1.0 - rng.random::<f64>(); // (0, 1]: ln is finite
    let u2 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

fn zipf(n: usize, exponent: f64) -> impl Iterator<Item = f64> {
    (0..n).map(move |r| 1.0 / ((r + 1) as f64).powf(exponent))
}

/// Items, their categories and the popularity samplers.
pub(super) struct Catalogue {
    /// Category of each item.
    pub(super) item_cat: Vec<u32>,
    cat_items: Vec<Vec<u32>>,
    cat_popularity: Vec<f64>,
    cat_sampler: Cumulative,
    item_samplers: Vec<Cumulative>,
}

impl Catalogue {
    /// Draws the catalogue of `cfg`.
    pub(super) fn new(cfg: &GenerateConfig, rng: &mut ChaCha8Rng) -> Self {
        let cat_popularity: Vec<f64> = zipf(cfg.categories, cfg.category_zipf).collect();
        let cat_sampler = Cumulative::new(cat_popularity.iter().copied());
        // The first `categories` items seed one category each, so none is
        // empty; the rest follow category popularity.
        let item_cat: Vec<u32> = (0..cfg.items)
            .map(|i| if i < cfg.categories { i as u32 } else { cat_sampler.sample(rng) as u32 })
            .collect();
        let mut cat_items = vec![Vec::new(); cfg.categories];
        for (i, &c) in item_cat.iter().enumerate() {
            cat_items[c as usize].push(i as u32);
        }
        // Popularity rank inside a category is random, not the id order.
        for items in &mut cat_items {
            items.shuffle(rng);
        }
        let item_samplers = cat_items.iter().map(|items| Cumulative::new(zipf(items.len(), cfg.item_zipf))).collect();
        Self { item_cat, cat_items, cat_popularity, cat_sampler, item_samplers }
    }

    fn item_in(&self, cat: usize, rng: &mut ChaCha8Rng) -> u32 {
        self.cat_items[cat][self.item_samplers[cat].sample(rng)]
    }

    fn popular_item(&self, rng: &mut ChaCha8Rng) -> u32 {
        let cat = self.cat_sampler.sample(rng);
        self.item_in(cat, rng)
    }
}

/// The three kinds of (negative, positive) pairs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum PairKind {
    Trend,
    Random,
    Presence,
}

/// One user's behaviours and pair.
pub(super) struct UserRecord {
    /// Behaviours, oldest first.
    pub(super) history: Vec<u32>,
    /// The positive item.
    pub(super) positive: u32,
    /// The negative item.
    pub(super) negative: u32,
    /// The kind of pair.
    pub(super) kind: PairKind,
}

/// Per-user scratch, reused across users.
#[derive(Default)]
pub(super) struct Scratch {
    interests: Vec<usize>,
    slope: Vec<f64>,
    level: Vec<f64>,
    walk: Vec<f64>,
    weights: Vec<f64>,
    after: Vec<f64>,
    pick: Vec<f64>,
    /// Per category: occurs in the history or is an interest.
    taken: Vec<bool>,
    /// Positions planted in a presence pair.
    planted: Vec<usize>,
}

/// The mixture weights `softmax_k(a_k(j))` at point `j` of the user's
/// timeline into `out` (`j = 0` is one step before the history, `j = len + 1`
/// one step after it).
fn mixture_at(s: &Scratch, len: usize, j: usize, out: &mut [f64]) {
    let k = s.interests.len();
    let tau = (j as f64 - 0.5) / len as f64;
    let mut max = f64::NEG_INFINITY;
    for (i, o) in out[..k].iter_mut().enumerate() {
        *o = s.level[i] + s.slope[i] * (tau - 0.5) + s.walk[i * (len + 2) + j];
        max = max.max(*o);
    }
    let mut sum = 0.0;
    for w in &mut out[..k] {
        *w = (*w - max).exp();
        sum += *w;
    }
    for w in &mut out[..k] {
        *w /= sum;
    }
}

pub(super) fn generate_user(
    cfg: &GenerateConfig,
    cat: &Catalogue,
    s: &mut Scratch,
    rng: &mut ChaCha8Rng,
) -> UserRecord {
    let len = rng.random_range(cfg.min_len..=cfg.max_len);
    let k = rng.random_range(cfg.interests_min..=cfg.interests_max);

    // Interest categories: k distinct, drawn by category popularity.
    s.pick.clear();
    s.pick.extend_from_slice(&cat.cat_popularity);
    s.interests.clear();
    for _ in 0..k {
        let c = sample_weights(&s.pick, rng);
        s.pick[c] = 0.0;
        s.interests.push(c);
    }

    // Balanced signs (one extra random one when k is odd), so that reversing
    // time maps the distribution of slopes onto itself.
    s.slope.clear();
    for i in 0..k {
        let sign = if i + 1 < k || k % 2 == 0 {
            if i % 2 == 0 { 1.0 } else { -1.0 }
        } else if rng.random::<bool>() {
            1.0
        } else {
            -1.0
        };
        s.slope.push(sign);
    }
    s.slope.shuffle(rng);
    for sl in &mut s.slope {
        *sl *= cfg.trend * rng.random_range(0.5..1.5);
    }
    s.level.clear();
    for _ in 0..k {
        s.level.push(cfg.level_sd * normal(rng));
    }

    // Random walks on the points j = 0..=len+1, centred on the middle of the
    // timeline and stepping outwards both ways, with a step size that gives
    // standard deviation ≈ drift_sd at both ends whatever the length. The
    // centre is 0 (odd number of points) or a mirrored pair ∓x (even), so the
    // walk's law is unchanged by reversing time.
    let points = len + 2;
    let (lo, hi) = ((points - 1) / 2, points / 2);
    let step = cfg.drift_sd * (2.0 / len as f64).sqrt();
    s.walk.clear();
    s.walk.resize(k * points, 0.0);
    for i in 0..k {
        let w = &mut s.walk[i * points..(i + 1) * points];
        if lo != hi {
            let x = 0.5 * step * normal(rng);
            w[lo] = -x;
            w[hi] = x;
        }
        for j in hi + 1..points {
            w[j] = w[j - 1] + step * normal(rng);
        }
        for j in (0..lo).rev() {
            w[j] = w[j + 1] + step * normal(rng);
        }
    }

    let mut weights = std::mem::take(&mut s.weights);
    weights.resize(k, 0.0);
    let mut history = Vec::with_capacity(len);
    for t in 0..len {
        let item = if rng.random::<f64>() < cfg.explore {
            cat.popular_item(rng)
        } else {
            mixture_at(s, len, t + 1, &mut weights);
            cat.item_in(s.interests[sample_weights(&weights, rng)], rng)
        };
        history.push(item);
    }

    let kind = rng.random::<f64>();
    if kind < cfg.presence {
        s.weights = weights;
        if let Some((positive, negative)) = presence_pair(cfg.presence_count, cat, s, &mut history, rng) {
            return UserRecord { history, positive, negative, kind: PairKind::Presence };
        }
        // Fewer than two new categories: a trend pair instead.
        weights = std::mem::take(&mut s.weights);
    }

    // (k⁺, k⁻) jointly ∝ w_after(k⁺) · w_before(k⁻), k⁺ ≠ k⁻.
    let mut after = std::mem::take(&mut s.after);
    after.resize(k, 0.0);
    mixture_at(s, len, len + 1, &mut after);
    mixture_at(s, len, 0, &mut weights);
    s.pick.clear();
    for &wa in &after {
        s.pick.extend(weights.iter().map(|&wb| wa * wb));
    }
    for i in 0..k {
        s.pick[i * k + i] = 0.0;
    }
    let pair = sample_weights(&s.pick, rng);
    let (kp, kn) = (pair / k, pair % k);
    s.weights = weights;
    s.after = after;

    let positive = cat.item_in(s.interests[kp], rng);
    if (cfg.presence..cfg.presence + cfg.random_negative).contains(&kind) {
        let negative = loop {
            let item = cat.popular_item(rng);
            if item != positive {
                break item;
            }
        };
        UserRecord { history, positive, negative, kind: PairKind::Random }
    } else {
        let negative = cat.item_in(s.interests[kn], rng);
        UserRecord { history, positive, negative, kind: PairKind::Trend }
    }
}

/// Draws two distinct categories `c⁺`, `c⁻` that are neither interests of
/// the user nor in the history (each by popularity), plants items of `c⁺` at
/// `min(count, len)` distinct uniform positions of the history and returns
/// (positive of `c⁺`, negative of `c⁻`); `None`, history untouched, when
/// fewer than two categories are new to the user.
fn presence_pair(
    count: usize,
    cat: &Catalogue,
    s: &mut Scratch,
    history: &mut [u32],
    rng: &mut ChaCha8Rng,
) -> Option<(u32, u32)> {
    s.taken.clear();
    s.taken.resize(cat.cat_popularity.len(), false);
    for &c in &s.interests {
        s.taken[c] = true;
    }
    for &h in history.iter() {
        s.taken[cat.item_cat[h as usize] as usize] = true;
    }
    s.pick.clear();
    s.pick.extend(cat.cat_popularity.iter().zip(&s.taken).map(|(&p, &t)| if t { 0.0 } else { p }));
    if s.pick.iter().filter(|&&w| w > 0.0).count() < 2 {
        return None;
    }
    let cp = sample_weights(&s.pick, rng);
    s.pick[cp] = 0.0;
    let cn = sample_weights(&s.pick, rng);
    // Distinct positions by a partial Fisher–Yates shuffle of 0..len.
    s.planted.clear();
    s.planted.extend(0..history.len());
    for i in 0..count.min(history.len()) {
        let j = rng.random_range(i..history.len());
        s.planted.swap(i, j);
        history[s.planted[i]] = cat.item_in(cp, rng);
    }
    Some((cat.item_in(cp, rng), cat.item_in(cn, rng)))
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn cumulative_sampler_follows_weights() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let s = Cumulative::new([1.0, 0.0, 3.0]);
        let mut hits = [0usize; 3];
        for _ in 0..40_000 {
            hits[s.sample(&mut rng)] += 1;
        }
        assert_eq!(hits[1], 0, "zero weight drawn");
        let frac = hits[2] as f64 / 40_000.0;
        assert!((frac - 0.75).abs() < 0.01, "{frac}");
    }

    #[test]
    fn sample_weights_skips_zeros_and_follows_weights() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let w = [0.0, 2.0, 0.0, 6.0, 0.0];
        let mut hits = [0usize; 5];
        for _ in 0..40_000 {
            hits[sample_weights(&w, &mut rng)] += 1;
        }
        assert_eq!(hits[0] + hits[2] + hits[4], 0);
        let frac = hits[3] as f64 / 40_000.0;
        assert!((frac - 0.75).abs() < 0.01, "{frac}");
    }

    #[test]
    fn normal_has_unit_moments() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let n = 100_000;
        let xs: Vec<f64> = (0..n).map(|_| normal(&mut rng)).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        assert!(mean.abs() < 0.02 && (var - 1.0).abs() < 0.02, "mean {mean} var {var}");
    }

    #[test]
    fn mixture_rises_and_fades_with_slopes() {
        // Two interests without noise: slope +4 and −4 over a history of 10.
        let s = Scratch {
            interests: vec![0, 1],
            slope: vec![4.0, -4.0],
            level: vec![0.0, 0.0],
            walk: vec![0.0; 2 * 12],
            ..Scratch::default()
        };
        let mut before = [0.0; 2];
        let mut after = [0.0; 2];
        mixture_at(&s, 10, 0, &mut before);
        mixture_at(&s, 10, 11, &mut after);
        // τ = −0.05 and 1.05: logits ∓2.2 and ±2.2, weight σ(4.4) either way.
        let w = 1.0 / (1.0 + (-4.4f64).exp());
        assert!((after[0] - w).abs() < 1e-12 && (before[1] - w).abs() < 1e-12, "{before:?} {after:?}");
        assert!((before[0] + before[1] - 1.0).abs() < 1e-12);
    }

    #[test]
    fn presence_pair_plants_distinct_positions_of_a_new_category() {
        let cfg = GenerateConfig { items: 60, categories: 6, ..GenerateConfig::default() };
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let cat = Catalogue::new(&cfg, &mut rng);
        let of = |c: usize| cat.cat_items[c][0];
        let mut s = Scratch { interests: vec![0, 1], ..Scratch::default() };
        for (len, count) in [(8, 3), (2, 3)] {
            for _ in 0..50 {
                // History from categories 0, 1, 2 (2 only when len > 2).
                let mut history: Vec<u32> = (0..len).map(|t| of(t % 3)).collect();
                let first_new = len.min(3) as u32;
                let (pos, neg) = presence_pair(count, &cat, &mut s, &mut history, &mut rng).unwrap();
                let (cp, cn) = (cat.item_cat[pos as usize], cat.item_cat[neg as usize]);
                assert!(cp >= first_new && cn >= first_new && cp != cn, "{cp} {cn}");
                let planted = history.iter().filter(|&&h| cat.item_cat[h as usize] == cp).count();
                assert_eq!(planted, count.min(len));
                assert!(history.iter().all(|&h| cat.item_cat[h as usize] != cn));
            }
        }
        // One new category only: no pair, history untouched.
        s.interests = vec![0, 1, 2, 3, 4];
        let mut history = vec![of(0), of(1)];
        assert!(presence_pair(3, &cat, &mut s, &mut history, &mut rng).is_none());
        assert_eq!(history, [of(0), of(1)]);
    }
}
