//! Evaluation metrics (docs/MODEL.md#evaluation-metrics): AUC with ties counted half, GAUC,
//! logloss from logits and accuracy, plus a streaming accumulator for one
//! evaluation pass.
//!
//! All sums are taken in `f64`; AUC counts are exact integers, so the result
//! does not depend on the order of the samples.

use std::collections::HashMap;
use std::hash::Hash;

use serde::Serialize;

/// A binary label: `0`/`1` (or `false`/`true`).
///
/// Numeric labels must be exactly 0 or 1; anything else is a caller bug
/// (batches are validated on load) and panics.
pub trait BinaryLabel: Copy {
    /// Whether the label is the positive class.
    fn is_positive(self) -> bool;
}

impl BinaryLabel for bool {
    fn is_positive(self) -> bool {
        self
    }
}

macro_rules! numeric_label {
    ($($t:ty => $zero:expr, $one:expr);* $(;)?) => {$(
        impl BinaryLabel for $t {
            fn is_positive(self) -> bool {
                assert!(self == $zero || self == $one, "label {} is not 0 or 1", self);
                self == $one
            }
        }
    )*};
}

numeric_label! {
    f32 => 0.0, 1.0;
    f64 => 0.0, 1.0;
    u8 => 0, 1;
    u32 => 0, 1;
    i32 => 0, 1;
    usize => 0, 1;
}

/// Exact pair counts of one AUC computation.
#[derive(Clone, Copy, Debug, Default)]
struct PairCounts {
    /// Twice the number of (positive, negative) pairs ordered correctly, ties
    /// counting one (i.e. half a pair, doubled).
    twice_correct: u128,
    positives: u64,
    negatives: u64,
}

impl PairCounts {
    fn auc(self) -> Option<f64> {
        if self.positives == 0 || self.negatives == 0 {
            return None;
        }
        let pairs = self.positives as u128 * self.negatives as u128;
        Some(self.twice_correct as f64 / (2.0 * pairs as f64))
    }

    fn samples(self) -> u64 {
        self.positives + self.negatives
    }
}

/// Counts correctly ordered pairs over `order`, a list of sample indices
/// sorted by ascending score. Samples with equal scores form one group; a
/// positive beats every negative of a lower group and ties half of those in
/// its own group.
fn count_sorted(order: &[usize], scores: &[f64], positive: &[bool]) -> PairCounts {
    let mut counts = PairCounts::default();
    let mut i = 0;
    while i < order.len() {
        let s = scores[order[i]];
        let (mut p, mut n) = (0u64, 0u64);
        while i < order.len() && scores[order[i]] == s {
            if positive[order[i]] {
                p += 1;
            } else {
                n += 1;
            }
            i += 1;
        }
        counts.twice_correct += 2 * p as u128 * counts.negatives as u128 + p as u128 * n as u128;
        counts.positives += p;
        counts.negatives += n;
    }
    counts
}

fn to_f64<S: Copy + Into<f64>>(scores: &[S]) -> Vec<f64> {
    scores.iter().map(|&s| s.into()).collect()
}

fn to_bool<L: BinaryLabel>(labels: &[L]) -> Vec<bool> {
    labels.iter().map(|&y| y.is_positive()).collect()
}

/// Area under the ROC curve: the probability that a random positive scores
/// higher than a random negative, ties counted half (equivalently, the
/// Mann–Whitney statistic with tied groups given their average rank).
///
/// Returns `None` when one class is absent or any score is NaN (the AUC is
/// undefined then). Panics if the slices differ in length.
pub fn auc<S: Copy + Into<f64>, L: BinaryLabel>(scores: &[S], labels: &[L]) -> Option<f64> {
    assert_eq!(scores.len(), labels.len(), "auc: {} scores but {} labels", scores.len(), labels.len());
    let scores = to_f64(scores);
    let positive = to_bool(labels);
    auc_prepared(&scores, &positive)
}

fn auc_prepared(scores: &[f64], positive: &[bool]) -> Option<f64> {
    if scores.iter().any(|s| s.is_nan()) {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_unstable_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    count_sorted(&order, scores, positive).auc()
}

/// Group AUC: the AUC of each user's samples, averaged with weights equal to
/// the user's number of samples (impressions). Users whose samples are all of
/// one class have no AUC and are skipped (neither numerator nor weight).
///
/// Users are grouped by equality of `users[i]`; pass the raw id strings (not
/// vocabulary indices, which may merge unknown users into one row).
/// Returns `None` when no user has both classes or any score is NaN. Panics
/// if the slices differ in length.
pub fn gauc<U: Hash + Eq, S: Copy + Into<f64>, L: BinaryLabel>(users: &[U], scores: &[S], labels: &[L]) -> Option<f64> {
    assert_eq!(users.len(), scores.len(), "gauc: {} users but {} scores", users.len(), scores.len());
    assert_eq!(scores.len(), labels.len(), "gauc: {} scores but {} labels", scores.len(), labels.len());
    let mut ids: HashMap<&U, u32> = HashMap::new();
    let groups: Vec<u32> = users
        .iter()
        .map(|u| {
            let next = ids.len() as u32;
            *ids.entry(u).or_insert(next)
        })
        .collect();
    gauc_prepared(&groups, &to_f64(scores), &to_bool(labels))
}

/// GAUC over dense group indices.
fn gauc_prepared(groups: &[u32], scores: &[f64], positive: &[bool]) -> Option<f64> {
    if scores.iter().any(|s| s.is_nan()) {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_unstable_by(|&a, &b| groups[a].cmp(&groups[b]).then(scores[a].total_cmp(&scores[b])));
    let (mut weighted, mut weight) = (0.0f64, 0u64);
    let mut start = 0;
    while start < order.len() {
        let g = groups[order[start]];
        let end = start + order[start..].partition_point(|&i| groups[i] == g);
        let counts = count_sorted(&order[start..end], scores, positive);
        if let Some(a) = counts.auc() {
            weighted += a * counts.samples() as f64;
            weight += counts.samples();
        }
        start = end;
    }
    (weight > 0).then(|| weighted / weight as f64)
}

/// `softplus(x) = ln(1 + eˣ)`, computed as `max(x, 0) + ln(1 + e^{−|x|})` so
/// that it neither overflows nor loses the linear part at large `|x|`.
fn softplus(x: f64) -> f64 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

/// Mean binary cross-entropy computed from logits `z` (not probabilities):
/// `softplus(−z)` for label 1 and `softplus(z)` for label 0, exactly as the
/// training loss (docs/MODEL.md#losses). Finite for any finite logit, however large.
///
/// Returns `None` for empty input. Panics if the slices differ in length.
pub fn logloss_from_logits<S: Copy + Into<f64>, L: BinaryLabel>(logits: &[S], labels: &[L]) -> Option<f64> {
    assert_eq!(logits.len(), labels.len(), "logloss: {} logits but {} labels", logits.len(), labels.len());
    if logits.is_empty() {
        return None;
    }
    let sum: f64 = logits
        .iter()
        .zip(labels)
        .map(|(&z, &y)| {
            let z: f64 = z.into();
            if y.is_positive() { softplus(-z) } else { softplus(z) }
        })
        .sum();
    Some(sum / logits.len() as f64)
}

/// Fraction of samples classified correctly, taking **logits**: a sample is
/// predicted positive iff `z > 0`, which is `p = σ(z) > 0.5` (p = 0.5 counts
/// as negative). A NaN logit is predicted negative.
///
/// Returns `None` for empty input. Panics if the slices differ in length.
pub fn accuracy_from_logits<S: Copy + Into<f64>, L: BinaryLabel>(logits: &[S], labels: &[L]) -> Option<f64> {
    assert_eq!(logits.len(), labels.len(), "accuracy: {} logits but {} labels", logits.len(), labels.len());
    if logits.is_empty() {
        return None;
    }
    let correct = logits.iter().zip(labels).filter(|&(&z, &y)| (z.into() > 0.0) == y.is_positive()).count();
    Some(correct as f64 / logits.len() as f64)
}

/// The metrics of one evaluation pass (docs/MODEL.md#evaluation-metrics), as printed by `dien train`
/// and `dien eval`. A metric that is undefined on the data (one class absent,
/// no samples, a NaN score) is `None` and serialises as `null`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EvalMetrics {
    /// AUC over all samples, ties counted half.
    pub auc: Option<f64>,
    /// Impression-weighted per-user AUC.
    pub gauc: Option<f64>,
    /// Mean cross-entropy from logits.
    pub logloss: Option<f64>,
    /// Fraction correct with `p > 0.5` counted positive.
    pub accuracy: Option<f64>,
    /// Number of samples evaluated.
    pub samples: usize,
}

/// Collects `(user, logit, label)` triples over an evaluation pass and
/// computes [`EvalMetrics`] at the end.
///
/// User ids are interned: each distinct raw id string is stored once, so
/// pushing a sample does not allocate except for a user seen for the first
/// time (and amortised vector growth).
#[derive(Clone, Debug, Default)]
pub struct MetricsAccumulator {
    user_index: HashMap<String, u32>,
    users: Vec<u32>,
    logits: Vec<f32>,
    positive: Vec<bool>,
}

impl MetricsAccumulator {
    /// An empty accumulator.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty accumulator with room for `samples` samples.
    pub fn with_capacity(samples: usize) -> Self {
        Self {
            user_index: HashMap::new(),
            users: Vec::with_capacity(samples),
            logits: Vec::with_capacity(samples),
            positive: Vec::with_capacity(samples),
        }
    }

    /// Records one sample: the user's raw id string, the model's logit and
    /// the label.
    pub fn push(&mut self, user: &str, logit: f32, label: impl BinaryLabel) {
        let id = match self.user_index.get(user) {
            Some(&id) => id,
            None => {
                let id = self.user_index.len() as u32;
                self.user_index.insert(user.to_owned(), id);
                id
            }
        };
        self.users.push(id);
        self.logits.push(logit);
        self.positive.push(label.is_positive());
    }

    /// Records a batch: `users[i]`, `logits[i]`, `labels[i]` for every `i`.
    /// Panics if the lengths differ.
    pub fn push_batch<U: AsRef<str>, L: BinaryLabel>(&mut self, users: &[U], logits: &[f32], labels: &[L]) {
        assert_eq!(users.len(), logits.len(), "push_batch: {} users but {} logits", users.len(), logits.len());
        assert_eq!(logits.len(), labels.len(), "push_batch: {} logits but {} labels", logits.len(), labels.len());
        for ((u, &z), &y) in users.iter().zip(logits).zip(labels) {
            self.push(u.as_ref(), z, y);
        }
    }

    /// Number of samples recorded.
    pub fn len(&self) -> usize {
        self.logits.len()
    }

    /// Whether no sample was recorded.
    pub fn is_empty(&self) -> bool {
        self.logits.is_empty()
    }

    /// Forgets every sample, keeping the allocations for the next pass.
    pub fn clear(&mut self) {
        self.user_index.clear();
        self.users.clear();
        self.logits.clear();
        self.positive.clear();
    }

    /// The metrics of everything recorded so far.
    pub fn finish(&self) -> EvalMetrics {
        let scores: Vec<f64> = self.logits.iter().map(|&z| z as f64).collect();
        EvalMetrics {
            auc: auc_prepared(&scores, &self.positive),
            gauc: gauc_prepared(&self.users, &scores, &self.positive),
            logloss: logloss_from_logits(&self.logits, &self.positive),
            accuracy: accuracy_from_logits(&self.logits, &self.positive),
            samples: self.len(),
        }
    }
}
