//! Negative sampling (docs/MODEL.md#negative-sampling): one non-clicked item per history step, drawn
//! from the corpus with probability proportional to its number of
//! occurrences, never equal to the positive item at that step.
//!
//! "Redraw while equal to the positive" is implemented exactly, without
//! retries: the draw is made from the cumulative count table with the
//! positive's interval cut out (a uniform integer in `[0, W − w_pos)`, shifted
//! past the positive's interval, then a search for its slot). That is the
//! same distribution as rejection, in a bounded number of steps.
//!
//! A draw reads tables of the size of the item vocabulary while the
//! training threads keep the caches full of their own data, so each read
//! is likely a miss: a slot holds its end, item and category together (one
//! read), and the search starts from a guide table (the slot holding each
//! of `G` equal parts of `[0, W)`), so it reads about one slot instead of a
//! binary search's path. It finds the binary search's slot.
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
    /// Items with a non-zero count, ascending: slot `i` covers
    /// `[slots[i-1].end, slots[i].end)` of the cumulative counts.
    slots: Vec<Slot>,
    /// Slot of each item index in `slots`, `u32::MAX` when absent.
    slot_of: Vec<u32>,
    /// `guide[g]`: the slot holding `g · part` (the last slot for parts
    /// past the end), for `g ≤ slots.len()`.
    guide: Vec<u32>,
    /// Width of one part of the guide, `⌈W / slots.len()⌉`.
    part: u64,
    /// Item → category.
    cat_of: ItemCategories,
}

/// One drawable item: where its interval ends, the item and its category.
#[derive(Clone, Copy, Debug)]
struct Slot {
    end: u64,
    item: u32,
    cat: u32,
}

impl NegativeSampler {
    /// Builds the sampler; the corpus must hold at least one event.
    pub fn new(counts: &ItemCounts, cat_of: ItemCategories) -> Result<Self, TrainError> {
        let mut slots = Vec::new();
        let mut slot_of = vec![u32::MAX; counts.counts.len()];
        let mut total = 0u64;
        for (m, &c) in counts.counts.iter().enumerate() {
            if c > 0 {
                total += c;
                slot_of[m] = slots.len() as u32;
                slots.push(Slot { end: total, item: m as u32, cat: cat_of.get(m as u32) });
            }
        }
        if slots.is_empty() {
            return Err(TrainError::Config("the negative-sampling corpus (reviews-info) holds no event".into()));
        }
        let part = total.div_ceil(slots.len() as u64);
        let mut guide = Vec::with_capacity(slots.len() + 1);
        let mut slot = 0;
        for g in 0..=slots.len() as u64 {
            while slot + 1 < slots.len() && slots[slot].end <= g * part {
                slot += 1;
            }
            guide.push(slot as u32);
        }
        Ok(Self { slots, slot_of, guide, part, cat_of })
    }

    /// The slot covering `r < W`: the first whose end exceeds `r`. It lies
    /// between the guide's slots of `r`'s part and of the next part.
    #[inline]
    fn slot(&self, r: u64) -> usize {
        let g = (r / self.part) as usize;
        let (lo, hi) = (self.guide[g] as usize, self.guide[g + 1] as usize);
        lo + self.slots[lo..=hi].partition_point(|s| s.end <= r)
    }

    /// Total weight `W` (number of corpus events).
    pub fn total(&self) -> u64 {
        self.slots.last().expect("non-empty").end
    }

    /// Number of distinct items that can be drawn.
    pub fn distinct_items(&self) -> usize {
        self.slots.len()
    }

    /// Largest item index that can be drawn.
    pub fn max_item(&self) -> u32 {
        self.slots.last().expect("non-empty").item
    }

    /// Largest category index a negative can get.
    pub fn max_category(&self) -> u32 {
        self.slots.iter().map(|s| s.cat).max().unwrap_or(0)
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
                let start = if s == 0 { 0 } else { self.slots[s - 1].end };
                (start, self.slots[s].end - start)
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
        let s = self.slots[self.slot(r)];
        (s.item, s.cat)
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

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    fn sampler(counts: Vec<u64>) -> NegativeSampler {
        let cat_of = ItemCategories { cat_of: (0..counts.len() as u32).map(|m| m % 5).collect() };
        NegativeSampler::new(&ItemCounts { counts }, cat_of).unwrap()
    }

    /// The guided search finds the binary search's slot for every value:
    /// one item, equal counts, skewed counts, gaps (items of count 0).
    #[test]
    fn the_guide_finds_the_binary_searchs_slot() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let mut corpora = vec![vec![5], vec![1, 1], vec![0, 3, 0, 1, 0, 9], vec![1000, 1, 1, 1, 1, 1, 1, 1, 1, 1]];
        corpora.push((0..2000u64).map(|i| if i % 7 == 0 { 0 } else { i * i % 97 + 1 }).collect());
        corpora.push((0..500).map(|_| rng.random_range(0..50u64)).chain([1]).collect());
        for counts in corpora {
            let s = sampler(counts.clone());
            for r in 0..s.total() {
                let want = s.slots.partition_point(|x| x.end <= r);
                assert_eq!(s.slot(r), want, "r = {r} of {}", s.total());
                let m = s.slots[want].item as usize;
                assert!(counts[m] > 0 && s.slots[want].cat == m as u32 % 5);
            }
        }
    }
}
