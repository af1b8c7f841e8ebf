//! The outputs of `dien prepare`: `item-info`, and, one user at a time from
//! the sorted events, `reviews-info`, the user's (negative, positive) pair
//! of sample lines in the training or test file, and the vocabularies
//! counted on the training lines.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::path::PathBuf;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::catalogue::{DEFAULT_CAT, Items};
use super::files::{self, Scratch};
use super::sort::{Event, EventStream};
use super::{PrepareConfig, PrepareSummary};
use crate::data::iteminfo::{ItemCategories, ItemCounts};
use crate::data::sampler::NegativeSampler;
use crate::data::writer::{create, finish, push_sample_line, ranked_vocabulary, write_vocab_json};
use crate::error::TrainError;

/// Writes `item-info`: every listed item that `kept` keeps, with its
/// category, in the order items were first seen. Returns the number of
/// lines and of distinct categories (`default_cat` not counted).
pub(super) fn write_item_info(path: &std::path::Path, items: &Items, kept: &[bool]) -> Result<(u64, u64), TrainError> {
    let mut w = create(path)?;
    let mut cat_seen = vec![false; items.num_cats()];
    let mut lines = 0;
    for i in (0..items.len() as u32).filter(|&i| items.listed(i) && kept[i as usize]) {
        writeln!(w, "{}\t{}", items.name(i), items.item_cat_name(i)).map_err(|e| TrainError::io(path, e))?;
        cat_seen[items.cat_of(i) as usize] = true;
        lines += 1;
    }
    finish(w, path)?;
    let categories = cat_seen.iter().skip(1).filter(|&&s| s).count() as u64;
    Ok((lines, categories))
}

/// Writes every output but `item-info` from the sorted events, filling the
/// counts of `summary`.
pub(super) fn write_samples(
    cfg: &PrepareConfig,
    scratch: &Scratch,
    items: &Items,
    kept: &[bool],
    mut stream: EventStream,
    summary: &mut PrepareSummary,
) -> Result<(), TrainError> {
    let mut w = UserWriter::new(cfg, scratch, items, kept, summary)?;
    let mut events: Vec<Event> = Vec::new();
    while let Some(e) = stream.next()? {
        if events.first().is_some_and(|first| first.user() != e.user()) {
            w.user(&events)?;
            events.clear();
        }
        events.push(e);
    }
    if !events.is_empty() {
        w.user(&events)?;
    }
    w.finish(scratch)
}

/// One output file being written.
struct Out {
    path: PathBuf,
    w: BufWriter<File>,
}

impl Out {
    fn create(path: PathBuf) -> Result<Self, TrainError> {
        Ok(Self { w: create(&path)?, path })
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), TrainError> {
        self.w.write_all(bytes).map_err(|e| TrainError::io(&self.path, e))
    }

    fn finish(self) -> Result<(), TrainError> {
        finish(self.w, &self.path)
    }
}

/// Turns each user's sorted events into samples.
struct UserWriter<'a> {
    cfg: &'a PrepareConfig,
    items: &'a Items,
    kept: &'a [bool],
    summary: &'a mut PrepareSummary,
    /// Kept events of each item (the negative-sampling weights).
    counts: Vec<u64>,
    sampler: Option<NegativeSampler>,
    neg_rng: ChaCha8Rng,
    split_rng: ChaCha8Rng,
    reviews: Out,
    train: Out,
    test: Out,
    /// `uid_voc.json`, written as users come: every training user occurs on
    /// exactly two lines, so ranking by count and then id is the order of
    /// the sorted stream.
    uid_voc: Out,
    mid_counts: Vec<u64>,
    cat_counts: Vec<u64>,
    history_total: u64,
    line: String,
}

impl<'a> UserWriter<'a> {
    fn new(
        cfg: &'a PrepareConfig,
        scratch: &Scratch,
        items: &'a Items,
        kept: &'a [bool],
        summary: &'a mut PrepareSummary,
    ) -> Result<Self, TrainError> {
        let counts: Vec<u64> = items.counts.iter().zip(kept).map(|(&c, &k)| if k { c } else { 0 }).collect();
        let sampler = if counts.iter().any(|&c| c > 0) {
            let cats = ItemCategories { cat_of: (0..items.len() as u32).map(|i| items.cat_of(i)).collect() };
            Some(NegativeSampler::new(&ItemCounts { counts: counts.clone() }, cats)?)
        } else {
            None
        };
        Ok(Self {
            cfg,
            items,
            kept,
            summary,
            counts,
            sampler,
            neg_rng: ChaCha8Rng::seed_from_u64(cfg.seed),
            split_rng: ChaCha8Rng::seed_from_u64(cfg.seed.wrapping_add(1)),
            reviews: Out::create(scratch.file(files::REVIEWS_INFO))?,
            train: Out::create(scratch.file(files::TRAIN))?,
            test: Out::create(scratch.file(files::TEST))?,
            uid_voc: Out::create(scratch.file(files::UID_VOC))?,
            mid_counts: vec![0; items.len()],
            cat_counts: vec![0; items.num_cats()],
            history_total: 0,
            line: String::new(),
        })
    }

    /// One user's events, in time order.
    fn user(&mut self, events: &[Event]) -> Result<(), TrainError> {
        let kept: Vec<&Event> = events.iter().filter(|e| self.kept[e.item as usize]).collect();
        self.summary.dropped_lines.min_count += (events.len() - kept.len()) as u64;
        let Some((last, earlier)) = kept.split_last() else {
            self.summary.dropped_users.no_event_left += 1;
            return Ok(());
        };
        self.summary.users += 1;
        for e in &kept {
            self.line.clear();
            let (user, item) = (e.user(), self.items.name(e.item));
            // Writing to a String cannot fail.
            let _ = writeln!(self.line, "{user}\t{item}\t{}\t{}", e.rating(), e.time_text());
            self.reviews.write(self.line.as_bytes())?;
        }
        self.summary.events += kept.len() as u64;
        if earlier.is_empty() {
            self.summary.dropped_users.one_event += 1;
            return Ok(());
        }
        let positive = last.item;
        let sampler = self.sampler.as_ref().expect("a sampler when an event is kept");
        if sampler.total() == self.counts[positive as usize] {
            self.summary.dropped_users.no_negative += 1;
            return Ok(());
        }
        let (negative, _) = sampler.sample(&mut self.neg_rng, positive);
        let cut = self.cfg.max_len.map_or(0, |l| earlier.len().saturating_sub(l));
        self.summary.truncated_histories += u64::from(cut > 0);
        let history: Vec<u32> = earlier[cut..].iter().map(|e| e.item).collect();
        self.history_total += history.len() as u64;

        let test = self.split_rng.random::<f64>() < self.cfg.test_frac;
        let user = last.user();
        let items = self.items;
        self.line.clear();
        for (label, item) in [(0, negative), (1, positive)] {
            push_sample_line(
                &mut self.line,
                label,
                user,
                items.name(item),
                items.item_cat_name(item),
                history.iter().map(|&h| items.name(h)),
                history.iter().map(|&h| items.item_cat_name(h)),
            );
        }
        if test {
            self.test.write(self.line.as_bytes())?;
            self.summary.test_users += 1;
            return Ok(());
        }
        self.train.write(self.line.as_bytes())?;
        let sep = if self.summary.train_users == 0 { "{" } else { "," };
        let key = serde_json::to_string(user).expect("a string serialises");
        self.uid_voc.write(format!("{sep}{key}:{}", self.summary.train_users).as_bytes())?;
        self.summary.train_users += 1;
        // Counted as the reference counts the training file: the target of
        // each line once, every history entry once per line.
        for item in [negative, positive] {
            self.mid_counts[item as usize] += 1;
            self.cat_counts[items.cat_of(item) as usize] += 1;
        }
        for &h in &history {
            self.mid_counts[h as usize] += 2;
            self.cat_counts[items.cat_of(h) as usize] += 2;
        }
        Ok(())
    }

    /// Closes the files, writes the item and category vocabularies and
    /// completes the summary.
    fn finish(mut self, scratch: &Scratch) -> Result<(), TrainError> {
        let s = &mut *self.summary;
        if s.train_users == 0 {
            let why = if s.test_users > 0 { "every sample went to the test file" } else { "no user has two events" };
            return Err(TrainError::Config(format!("prepare: the training file would be empty: {why}")));
        }
        self.uid_voc.write(b"}")?;
        for out in [self.reviews, self.train, self.test, self.uid_voc] {
            out.finish()?;
        }
        let items = self.items;
        let mid_counts = self.mid_counts.iter().enumerate().filter(|&(_, &c)| c > 0);
        let mid =
            ranked_vocabulary(Some("default_mid"), mid_counts.map(|(i, &c)| (items.name(i as u32).to_owned(), c)));
        let cat_counts = self.cat_counts.iter().enumerate().filter(|&(_, &c)| c > 0);
        let cat =
            ranked_vocabulary(Some(DEFAULT_CAT), cat_counts.map(|(c, &n)| (items.cat_name(c as u32).to_owned(), n)));
        write_vocab_json(&scratch.file(files::MID_VOC), &mid)?;
        write_vocab_json(&scratch.file(files::CAT_VOC), &cat)?;

        s.train_samples = 2 * s.train_users;
        s.test_samples = 2 * s.test_users;
        s.uid_vocab = s.train_users;
        s.mid_vocab = mid.len() as u64;
        s.cat_vocab = cat.len() as u64;
        s.event_items = self.counts.iter().filter(|&&c| c > 0).count() as u64;
        let samples = s.train_users + s.test_users;
        s.mean_history_len = if samples == 0 { 0.0 } else { self.history_total as f64 / samples as f64 };
        Ok(())
    }
}
