//! Synthetic data in the SPEC §12 layout (`dien generate`), built so that
//! the label depends on how a user's interests *evolve* (which only an
//! order-aware model can see) and on whether a minor category is *present*
//! among heavier ones (which candidate-aware attention sees and sum pooling
//! blurs), besides plain counts.
//!
//! The generative process (documented with its math in `docs/DATA.md`,
//! section "Synthetic generator"):
//!
//! - Categories have Zipf popularity; items belong to one category each and
//!   have Zipf popularity inside it.
//! - Each user has a few interest categories whose logits move linearly over
//!   the history (half rise, half fade, with random slopes) plus a random walk
//!   started from the middle of the history; behaviours are drawn from the
//!   softmax mixture at their time (with a little exploration noise).
//! - Each user gives one (negative, positive) pair of one of three kinds:
//!   - *trend pair*: the categories are drawn jointly
//!     ∝ `w_after(k⁺) · w_before(k⁻)`, `k⁺ ≠ k⁻`, where `w_after` is the
//!     mixture one step *after* the history and `w_before` one step *before*
//!     it. The process is symmetric under time reversal, so the candidate
//!     category's count in the history has the same distribution for both
//!     labels; only where in the history it occurs (its trend) tells them
//!     apart;
//!   - *random pair*: the positive as in a trend pair, the negative a random
//!     popular item (the reference data's sampling), which counts recognise;
//!   - *presence pair*: two categories new to the user are drawn; the first
//!     is planted a few times at uniform positions of the history and gives
//!     the positive, the other gives the negative. Order carries nothing;
//!     the planted category is a small share of a history dominated by the
//!     user's interests.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Serialize, Serializer};

use crate::error::TrainError;

/// Sizes and knobs of the synthetic data set. Every field is used; see
/// `docs/DATA.md` for the role of each in the generative process.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GenerateConfig {
    /// Number of users; each gives one (negative, positive) pair of lines.
    pub users: usize,
    /// Number of items in the catalogue (`item-info` lines).
    pub items: usize,
    /// Number of categories (each gets at least one item).
    pub categories: usize,
    /// Shortest history.
    pub min_len: usize,
    /// Longest history (lengths are uniform in `min_len..=max_len`).
    pub max_len: usize,
    /// Fraction of users whose pair goes to the test file (rounded).
    pub test_fraction: f64,
    /// Seed of the `ChaCha8Rng` that drives everything.
    pub seed: u64,
    /// Fewest interest categories per user (at least 2).
    pub interests_min: usize,
    /// Most interest categories per user.
    pub interests_max: usize,
    /// Typical change of an interest's logit from the first to the last
    /// behaviour; each interest's slope is `±trend · U(0.5, 1.5)`.
    pub trend: f64,
    /// Standard deviation of an interest's constant logit offset.
    pub level_sd: f64,
    /// Standard deviation of the random walk at either end of the history
    /// (the walk starts at 0 in the middle).
    pub drift_sd: f64,
    /// Probability that a behaviour is a random popular item instead of one
    /// drawn from the user's interests.
    pub explore: f64,
    /// Probability that a user's pair is a *random pair*: the negative is a
    /// random popular item instead of one from a category the user is
    /// leaving.
    pub random_negative: f64,
    /// Probability that a user's pair is a *presence pair*: a category new to
    /// the user is planted in the history and gives the positive; another new
    /// category gives the negative. The remaining pairs are trend pairs.
    pub presence: f64,
    /// Times the positive's category is planted in a presence pair, at
    /// distinct uniform positions (all of them when the history is shorter).
    pub presence_count: usize,
    /// Zipf exponent of item popularity inside a category.
    pub item_zipf: f64,
    /// Zipf exponent of category popularity.
    pub category_zipf: f64,
}

impl Default for GenerateConfig {
    /// 270,000 training and 30,000 test samples with histories of 10–60
    /// behaviours: the `dien demo` data set.
    fn default() -> Self {
        Self {
            users: 150_000,
            items: 4_000,
            categories: 40,
            min_len: 10,
            max_len: 60,
            test_fraction: 0.1,
            seed: 2024,
            interests_min: 2,
            interests_max: 4,
            trend: 2.0,
            level_sd: 0.5,
            drift_sd: 0.5,
            explore: 0.1,
            random_negative: 0.35,
            presence: 0.25,
            presence_count: 3,
            item_zipf: 1.0,
            category_zipf: 0.8,
        }
    }
}

impl GenerateConfig {
    /// Number of users that go to the test file.
    pub fn test_users(&self) -> usize {
        (self.users as f64 * self.test_fraction).round() as usize
    }

    /// Checks every field; the error names the first invalid one.
    pub fn validate(&self) -> Result<(), TrainError> {
        let bad = |field: &str, why: String| Err(TrainError::Config(format!("generate: {field} {why}")));
        if self.users == 0 {
            return bad("users", "must be at least 1".into());
        }
        if self.interests_min < 2 {
            return bad("interests_min", format!("= {} must be at least 2", self.interests_min));
        }
        if self.interests_max < self.interests_min {
            return bad(
                "interests_max",
                format!("= {} is below interests_min = {}", self.interests_max, self.interests_min),
            );
        }
        if self.categories < self.interests_max {
            return bad("categories", format!("= {} is below interests_max = {}", self.categories, self.interests_max));
        }
        if self.items < self.categories {
            return bad("items", format!("= {} is below categories = {}", self.items, self.categories));
        }
        if self.min_len == 0 {
            return bad("min_len", "must be at least 1".into());
        }
        if self.max_len < self.min_len {
            return bad("max_len", format!("= {} is below min_len = {}", self.max_len, self.min_len));
        }
        if !(0.0..1.0).contains(&self.test_fraction) {
            return bad("test_fraction", format!("= {} is outside [0, 1)", self.test_fraction));
        }
        if self.test_users() >= self.users {
            return bad("test_fraction", format!("= {} leaves no training user", self.test_fraction));
        }
        for (field, p) in
            [("explore", self.explore), ("random_negative", self.random_negative), ("presence", self.presence)]
        {
            if !(0.0..=1.0).contains(&p) {
                return bad(field, format!("= {p} is not a probability"));
            }
        }
        if self.presence + self.random_negative > 1.0 {
            return bad("presence", format!("+ random_negative = {} exceeds 1", self.presence + self.random_negative));
        }
        if self.presence_count == 0 {
            return bad("presence_count", "must be at least 1".into());
        }
        for (field, v) in [
            ("trend", self.trend),
            ("level_sd", self.level_sd),
            ("drift_sd", self.drift_sd),
            ("item_zipf", self.item_zipf),
            ("category_zipf", self.category_zipf),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return bad(field, format!("= {v} must be finite and ≥ 0"));
            }
        }
        Ok(())
    }
}

/// What [`generate`] wrote.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GenerateSummary {
    /// Lines of `local_train_splitByUser` (two per training user).
    pub train_samples: usize,
    /// Lines of `local_test_splitByUser` (two per test user).
    pub test_samples: usize,
    /// Users in the training file.
    pub train_users: usize,
    /// Users in the test file.
    pub test_users: usize,
    /// Lines of `item-info`.
    pub items: usize,
    /// Number of categories in the catalogue.
    pub categories: usize,
    /// Lines of `reviews-info` (every behaviour plus every positive).
    pub events: usize,
    /// Mean history length over all users.
    pub mean_history_len: f64,
    /// Users whose pair is a trend pair (train and test).
    pub trend_pairs: usize,
    /// Users whose pair is a random pair.
    pub random_pairs: usize,
    /// Users whose pair is a presence pair.
    pub presence_pairs: usize,
    /// Entries of `uid_voc.pkl`, including the unknown entry at index 0.
    pub uid_vocab: usize,
    /// Entries of `mid_voc.pkl`, including the unknown entry at index 0.
    pub mid_vocab: usize,
    /// Entries of `cat_voc.pkl`, including the unknown entry at index 0.
    pub cat_vocab: usize,
}

/// Key at index 0 of each vocabulary (the reference's names for the item
/// and category ones; the user one follows the same pattern).
pub const UNKNOWN_KEYS: [&str; 3] = ["default_uid", "default_mid", "default_cat"];

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
struct Catalogue {
    item_cat: Vec<u32>,
    cat_items: Vec<Vec<u32>>,
    cat_popularity: Vec<f64>,
    cat_sampler: Cumulative,
    item_samplers: Vec<Cumulative>,
}

impl Catalogue {
    fn new(cfg: &GenerateConfig, rng: &mut ChaCha8Rng) -> Self {
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
enum PairKind {
    Trend,
    Random,
    Presence,
}

/// One user's behaviours and pair.
struct UserRecord {
    history: Vec<u32>,
    positive: u32,
    negative: u32,
    kind: PairKind,
}

/// Per-user scratch, reused across users.
#[derive(Default)]
struct Scratch {
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

fn generate_user(cfg: &GenerateConfig, cat: &Catalogue, s: &mut Scratch, rng: &mut ChaCha8Rng) -> UserRecord {
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

/// A vocabulary as `(key, index)` in index order, serialised as a map in
/// that order (a Python dict keeps insertion order; output is deterministic).
struct IndexOrdered<'a>(&'a [(String, u32)]);

impl Serialize for IndexOrdered<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

/// Builds a vocabulary from occurrence counts: the unknown key at 0, then
/// ids by decreasing count, ties by id string.
fn vocabulary(unknown: &str, counts: &[u64], name: impl Fn(usize) -> String) -> Vec<(String, u32)> {
    let mut ids: Vec<(u64, String)> =
        counts.iter().enumerate().filter(|&(_, &c)| c > 0).map(|(i, &c)| (c, name(i))).collect();
    ids.sort_unstable_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    std::iter::once(unknown.to_owned()).chain(ids.into_iter().map(|(_, k)| k)).zip(0u32..).collect()
}

fn create(path: &Path) -> Result<BufWriter<File>, TrainError> {
    File::create(path).map(BufWriter::new).map_err(|e| TrainError::io(path, e))
}

fn finish(mut w: BufWriter<File>, path: &Path) -> Result<(), TrainError> {
    w.flush().map_err(|e| TrainError::io(path, e))
}

fn write_pickle(path: &Path, voc: &[(String, u32)]) -> Result<(), TrainError> {
    let mut w = create(path)?;
    serde_pickle::to_writer(&mut w, &IndexOrdered(voc), serde_pickle::SerOptions::new())
        .map_err(|e| TrainError::Vocab { path: path.to_owned(), msg: e.to_string() })?;
    finish(w, path)
}

/// Writes one (negative, positive) pair of sample lines for a user.
fn write_pair(
    w: &mut impl Write,
    user: usize,
    rec: &UserRecord,
    item_cat: &[u32],
    line: &mut String,
) -> std::io::Result<()> {
    use std::fmt::Write as _;
    for (label, item) in [(0, rec.negative), (1, rec.positive)] {
        line.clear();
        let _ = write!(line, "{label}\tu{user}\ti{item}\tc{}\t", item_cat[item as usize]);
        for (t, &h) in rec.history.iter().enumerate() {
            let sep = if t == 0 { "" } else { "\u{2}" };
            let _ = write!(line, "{sep}i{h}");
        }
        line.push('\t');
        for (t, &h) in rec.history.iter().enumerate() {
            let sep = if t == 0 { "" } else { "\u{2}" };
            let _ = write!(line, "{sep}c{}", item_cat[h as usize]);
        }
        line.push('\n');
        w.write_all(line.as_bytes())?;
    }
    Ok(())
}

/// Generates the data set described by `cfg` into `dir` (created if needed),
/// in exactly the SPEC §12 layout: `local_train_splitByUser`,
/// `local_test_splitByUser`, `uid_voc.pkl`, `mid_voc.pkl`, `cat_voc.pkl`,
/// `item-info` and `reviews-info`. Ids are strings `u<n>`, `i<n>`, `c<n>`.
/// The output is a pure function of `cfg` (byte for byte).
pub fn generate(dir: &Path, cfg: &GenerateConfig) -> Result<GenerateSummary, TrainError> {
    cfg.validate()?;
    std::fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let catalogue = Catalogue::new(cfg, &mut rng);

    let mut scratch = Scratch::default();
    let records: Vec<UserRecord> =
        (0..cfg.users).map(|_| generate_user(cfg, &catalogue, &mut scratch, &mut rng)).collect();

    let mut order: Vec<usize> = (0..cfg.users).collect();
    order.shuffle(&mut rng);
    let mut is_test = vec![false; cfg.users];
    for &u in &order[..cfg.test_users()] {
        is_test[u] = true;
    }

    // Vocabularies count every field of every training line, as the
    // reference's vocabulary script does.
    let mut uid_count = vec![0u64; cfg.users];
    let mut mid_count = vec![0u64; cfg.items];
    let mut cat_count = vec![0u64; cfg.categories];
    for (u, rec) in records.iter().enumerate().filter(|&(u, _)| !is_test[u]) {
        uid_count[u] += 2;
        for item in rec.history.iter().map(|&h| (h, 2)).chain([(rec.positive, 1), (rec.negative, 1)]) {
            mid_count[item.0 as usize] += item.1;
            cat_count[catalogue.item_cat[item.0 as usize] as usize] += item.1;
        }
    }
    let uid_voc = vocabulary(UNKNOWN_KEYS[0], &uid_count, |u| format!("u{u}"));
    let mid_voc = vocabulary(UNKNOWN_KEYS[1], &mid_count, |i| format!("i{i}"));
    let cat_voc = vocabulary(UNKNOWN_KEYS[2], &cat_count, |c| format!("c{c}"));

    let path = |name: &str| -> PathBuf { dir.join(name) };
    let mut line = String::new();
    for (name, test) in [("local_train_splitByUser", false), ("local_test_splitByUser", true)] {
        let p = path(name);
        let mut w = create(&p)?;
        for (u, rec) in records.iter().enumerate().filter(|&(u, _)| is_test[u] == test) {
            write_pair(&mut w, u, rec, &catalogue.item_cat, &mut line).map_err(|e| TrainError::io(&p, e))?;
        }
        finish(w, &p)?;
    }

    write_pickle(&path("uid_voc.pkl"), &uid_voc)?;
    write_pickle(&path("mid_voc.pkl"), &mid_voc)?;
    write_pickle(&path("cat_voc.pkl"), &cat_voc)?;

    let p = path("item-info");
    let mut w = create(&p)?;
    for (i, c) in catalogue.item_cat.iter().enumerate() {
        writeln!(w, "i{i}\tc{c}").map_err(|e| TrainError::io(&p, e))?;
    }
    finish(w, &p)?;

    // Every behaviour and every positive, one day apart, in time order.
    let p = path("reviews-info");
    let mut w = create(&p)?;
    let mut events = 0;
    for (u, rec) in records.iter().enumerate() {
        for (t, item) in rec.history.iter().chain([&rec.positive]).enumerate() {
            let time = 1_400_000_000 + 86_400 * t as u64 + u as u64;
            writeln!(w, "u{u}\ti{item}\t5.0\t{time}").map_err(|e| TrainError::io(&p, e))?;
            events += 1;
        }
    }
    finish(w, &p)?;

    let test_users = cfg.test_users();
    let train_users = cfg.users - test_users;
    let kinds = |k: PairKind| records.iter().filter(|r| r.kind == k).count();
    Ok(GenerateSummary {
        train_samples: 2 * train_users,
        test_samples: 2 * test_users,
        train_users,
        test_users,
        items: cfg.items,
        categories: cfg.categories,
        events,
        mean_history_len: records.iter().map(|r| r.history.len()).sum::<usize>() as f64 / cfg.users as f64,
        trend_pairs: kinds(PairKind::Trend),
        random_pairs: kinds(PairKind::Random),
        presence_pairs: kinds(PairKind::Presence),
        uid_vocab: uid_voc.len(),
        mid_vocab: mid_voc.len(),
        cat_vocab: cat_voc.len(),
    })
}

#[cfg(test)]
mod tests {
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

    #[test]
    fn vocabulary_orders_by_count_then_id() {
        let v = vocabulary("default_x", &[3, 0, 5, 3], |i| format!("x{i}"));
        let keys: Vec<&str> = v.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["default_x", "x2", "x0", "x3"]);
        assert!(v.iter().enumerate().all(|(i, &(_, idx))| idx as usize == i));
    }
}
