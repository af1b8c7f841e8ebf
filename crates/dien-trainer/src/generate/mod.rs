//! Synthetic data in the layout of docs/MODEL.md#data-layout (`dien generate`), built so that
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

mod users;

use std::io::Write;
use std::path::{Path, PathBuf};

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use self::users::{Catalogue, PairKind, Scratch, UserRecord, generate_user};
use crate::data::writer::{RankedVocab, create, finish, push_sample_line, ranked_vocabulary, write_vocab_pickle};
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
            seed: crate::DEFAULT_SEED,
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

/// Builds a vocabulary from occurrence counts indexed by id number: the
/// unknown key at 0, then ids by decreasing count, ties by id string.
fn vocabulary(unknown: &str, counts: &[u64], name: impl Fn(usize) -> String) -> RankedVocab {
    ranked_vocabulary(Some(unknown), counts.iter().enumerate().filter(|&(_, &c)| c > 0).map(|(i, &c)| (name(i), c)))
}

/// An id written as a one-letter prefix and a number (`u12`, `i7`, `c3`).
struct Id(char, usize);

impl std::fmt::Display for Id {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}", self.0, self.1)
    }
}

/// Writes one (negative, positive) pair of sample lines for a user.
fn write_pair(
    w: &mut impl Write,
    user: usize,
    rec: &UserRecord,
    item_cat: &[u32],
    line: &mut String,
) -> std::io::Result<()> {
    let cat = |item: u32| Id('c', item_cat[item as usize] as usize);
    for (label, item) in [(0, rec.negative), (1, rec.positive)] {
        line.clear();
        let hist = rec.history.iter();
        push_sample_line(
            line,
            label,
            Id('u', user),
            Id('i', item as usize),
            cat(item),
            hist.clone().map(|&h| Id('i', h as usize)),
            hist.map(|&h| cat(h)),
        );
        w.write_all(line.as_bytes())?;
    }
    Ok(())
}

/// Generates the data set described by `cfg` into `dir` (created if needed),
/// in exactly the layout of docs/MODEL.md#data-layout: `local_train_splitByUser`,
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

    write_vocab_pickle(&path("uid_voc.pkl"), &uid_voc)?;
    write_vocab_pickle(&path("mid_voc.pkl"), &mid_voc)?;
    write_vocab_pickle(&path("cat_voc.pkl"), &cat_voc)?;

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
