//! Negative sampling (docs/MODEL.md#negative-sampling): one non-clicked item per history step, drawn
//! from the corpus with probability proportional to its number of
//! occurrences, never equal to the positive item at that step.
//!
//! "Redraw while equal to the positive" is implemented exactly, without
//! retries: the draw is made from the cumulative count table with the
//! positive's interval cut out (a uniform integer in `[0, W − w_pos)`, shifted
//! past the positive's interval, then a binary search). That is the same
//! distribution as rejection, in a bounded number of steps.
//!
//! Fallback: when no item other than the positive has a non-zero count (a
//! corpus of a single distinct item), there is nothing to draw; the negative
//! is then item 0 (the unknown item) with category 0.

use rand::Rng;

use crate::data::iteminfo::{ItemCategories, ItemCounts};
use crate::error::TrainError;

/// Draws negatives from an item-count corpus. Immutable, so one sampler can
/// serve any number of threads; all randomness comes from the caller's RNG.
#[derive(Clone, Debug)]
pub struct NegativeSampler {
    /// Items with a non-zero count, ascending.
    items: Vec<u32>,
    /// `ends[i]` = sum of the counts of `items[..=i]` (slot `i` covers
    /// `[ends[i-1], ends[i])`).
    ends: Vec<u64>,
    /// Slot of each item index in `items`, `u32::MAX` when absent.
    slot_of: Vec<u32>,
    /// Item → category.
    cat_of: ItemCategories,
}

impl NegativeSampler {
    /// Builds the sampler; the corpus must hold at least one event.
    pub fn new(counts: &ItemCounts, cat_of: ItemCategories) -> Result<Self, TrainError> {
        let mut items = Vec::new();
        let mut ends = Vec::new();
        let mut slot_of = vec![u32::MAX; counts.counts.len()];
        let mut total = 0u64;
        for (m, &c) in counts.counts.iter().enumerate() {
            if c > 0 {
                total += c;
                slot_of[m] = items.len() as u32;
                items.push(m as u32);
                ends.push(total);
            }
        }
        if items.is_empty() {
            return Err(TrainError::Config("the negative-sampling corpus (reviews-info) holds no event".into()));
        }
        Ok(Self { items, ends, slot_of, cat_of })
    }

    /// Total weight `W` (number of corpus events).
    pub fn total(&self) -> u64 {
        *self.ends.last().expect("non-empty")
    }

    /// Number of distinct items that can be drawn.
    pub fn distinct_items(&self) -> usize {
        self.items.len()
    }

    /// Largest item index that can be drawn.
    pub fn max_item(&self) -> u32 {
        *self.items.last().expect("non-empty")
    }

    /// Largest category index a negative can get.
    pub fn max_category(&self) -> u32 {
        self.items.iter().map(|&m| self.cat_of.get(m)).max().unwrap_or(0)
    }

    /// The item → category map.
    pub fn categories(&self) -> &ItemCategories {
        &self.cat_of
    }

    /// Start and weight of item `m`'s interval (0, 0 when `m` is not drawable).
    fn interval(&self, m: u32) -> (u64, u64) {
        match self.slot_of.get(m as usize) {
            Some(&s) if s != u32::MAX => {
                let s = s as usize;
                let start = if s == 0 { 0 } else { self.ends[s - 1] };
                (start, self.ends[s] - start)
            }
            _ => (0, 0),
        }
    }

    /// Draws one negative `(item, category)` for the positive item `positive`.
    #[inline]
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R, positive: u32) -> (u32, u32) {
        let (start, w) = self.interval(positive);
        let avail = self.total() - w;
        if avail == 0 {
            return (0, 0);
        }
        let mut r = rng.random_range(0..avail);
        if r >= start {
            r += w;
        }
        // First slot whose end exceeds r.
        let slot = self.ends.partition_point(|&e| e <= r);
        let m = self.items[slot];
        (m, self.cat_of.get(m))
    }

    /// Fills `neg_mid[i], neg_cat[i]` with a negative for `positives[i]`, in order.
    pub fn fill<R: Rng + ?Sized>(&self, rng: &mut R, positives: &[u32], neg_mid: &mut [u32], neg_cat: &mut [u32]) {
        assert_eq!(positives.len(), neg_mid.len());
        assert_eq!(positives.len(), neg_cat.len());
        for ((&p, nm), nc) in positives.iter().zip(neg_mid.iter_mut()).zip(neg_cat.iter_mut()) {
            (*nm, *nc) = self.sample(rng, p);
        }
    }
}
