//! Batching as the reference code does it (docs/MODEL.md#batching), made
//! deterministic and resumable.
//!
//! - The file is read in *groups* of `batch_size × group_batches` raw lines
//!   (default 128 × 20), in file order. Blank lines and skipped bad lines
//!   count as lines, so group boundaries depend on the file alone.
//! - A group's samples are sorted stably by their **untruncated** history
//!   length, longest first (equal lengths keep file order), and cut into
//!   batches of `batch_size` from the longest end. The last group of the
//!   file may be short; its last batch then holds fewer than `batch_size`
//!   samples and is kept, as the reference keeps it. With
//!   `sort_by_length = false` samples stay in file order (for prediction).
//! - Histories keep their last `max_len` steps; `T` of a batch is its longest
//!   kept history. One negative is drawn per kept history step.
//! - The negatives of batch `k` of group `g` in epoch `e` come from a
//!   `ChaCha8Rng` seeded by [`batch_seed`]`(seed, e, g, k)`, so they do not
//!   depend on threads, on read-ahead, or on where a run was resumed.
//! - With a [`UserFilter`] only the lines of the users on one side of a
//!   validation split are kept: the others are read and counted as lines
//!   of their group but never become samples, so a group's batches hold
//!   fewer samples (its last one short) and nothing else changes.
//!
//! A [`DataPosition`] (group start line + batches of that group already
//! produced) identifies the next batch; [`Batcher::open_at`] resumes there
//! and produces exactly the batches an uninterrupted run would have.
//!
//! With a [`Shard`] (data-parallel training, docs/DISTRIBUTED.md) every
//! batch is cut into `ranks` parts in its sample order and the batcher
//! builds only part `rank`, with the negatives the whole batch would have
//! given those samples. The lines are still read, parsed and checked in
//! full by every rank: the sort by length needs every sample of a group,
//! and a skipped bad line changes which samples form the batches, so the
//! batches depend on every line. Positions are those of the whole batches,
//! the same for any number of ranks.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, sync_channel};
use std::thread::JoinHandle;

use dien_model::Batch;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::data::DataSet;
use crate::data::line::{BadLines, LineReader, MappedHead, TableSizes, map_fields, split_fields_with};
use crate::data::split::UserFilter;
use crate::error::TrainError;

/// Options of a [`Batcher`].
#[derive(Clone, Debug, PartialEq)]
pub struct BatcherConfig {
    /// Samples per batch (default 128).
    pub batch_size: usize,
    /// Longest kept history; longer ones keep their last `max_len` steps
    /// (default 100).
    pub max_len: usize,
    /// Batches' worth of lines read and sorted together (default 20).
    pub group_batches: usize,
    /// Sort each group by history length (default true); false keeps file
    /// order.
    pub sort_by_length: bool,
    /// Draw negatives (default true; needs a sampler in the [`DataSet`]).
    pub negatives: bool,
    /// Seed of the negative sampling.
    pub seed: u64,
    /// Skip malformed lines (counting them) instead of failing.
    pub skip_bad_lines: bool,
    /// Keep each sample's raw uid string (for GAUC).
    pub keep_raw_uid: bool,
    /// Table sizes indices must fit; `None`: the vocabulary sizes.
    pub tables: Option<TableSizes>,
    /// Accept lines without the label column (scoring; label taken as 0).
    pub label_optional: bool,
    /// Build only this part of every batch (`None`: whole batches).
    pub shard: Option<Shard>,
    /// Keep only the lines of the users on one side of a validation split
    /// (`None`: every line). The lines left out still count as lines of
    /// their group, so group boundaries, positions and negatives stay those
    /// of the file.
    pub users: Option<UserFilter>,
}

/// One of `ranks` equal parts of every batch: a batch of `b` samples (in
/// its sorted order) is cut at `r·b/ranks`, so part `rank` holds samples
/// `[rank·b/ranks, (rank+1)·b/ranks)`. The parts are equal when `ranks`
/// divides `b`; a short batch (the end of a group) gives parts that differ
/// by at most one sample, some of them empty when `b < ranks`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    /// This part, `0 ≤ rank < ranks`.
    pub rank: usize,
    /// Number of parts.
    pub ranks: usize,
}

impl Shard {
    /// The samples of part `rank` of a batch of `b`.
    pub fn range(&self, b: usize) -> std::ops::Range<usize> {
        self.rank * b / self.ranks..(self.rank + 1) * b / self.ranks
    }
}

impl Default for BatcherConfig {
    fn default() -> Self {
        Self {
            batch_size: 128,
            max_len: 100,
            group_batches: 20,
            sort_by_length: true,
            negatives: true,
            seed: 0,
            skip_bad_lines: false,
            keep_raw_uid: false,
            tables: None,
            label_optional: false,
            shard: None,
            users: None,
        }
    }
}

impl BatcherConfig {
    /// Raw lines per group.
    pub fn group_lines(&self) -> u64 {
        (self.batch_size * self.group_batches) as u64
    }
}

/// Where the next batch comes from: the first line of its group and how many
/// batches of that group were already produced. Store it in a checkpoint and
/// pass it to [`Batcher::open_at`] (with the same file, configuration and
/// epoch) to resume.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataPosition {
    /// Lines of the file before the group of the next batch.
    pub line: u64,
    /// Batches of that group already produced.
    pub batch: u64,
}

/// A batch with its bookkeeping.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadedBatch {
    /// The model's input (with a [`Shard`], this part of the batch).
    pub batch: Batch,
    /// Samples of the whole batch (`batch.batch` without a shard).
    pub global_batch: usize,
    /// 1-based file line of each sample.
    pub lines: Vec<u64>,
    /// Raw uid string of each sample (empty unless `keep_raw_uid`).
    pub raw_uid: Vec<String>,
    /// Position of the batch after this one.
    pub next: DataPosition,
    /// Lines read from the file when this batch was produced (read-ahead of
    /// its group included).
    pub lines_consumed: u64,
    /// Bytes read from the file when this batch was produced (read-ahead of
    /// its group included).
    pub bytes_consumed: u64,
}

/// SplitMix64 finaliser: a bijective mix of 64 bits.
pub(crate) fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The RNG seed of batch `batch` of group `group` in epoch `epoch`.
pub fn batch_seed(seed: u64, epoch: u64, group: u64, batch: u64) -> u64 {
    let mut h = splitmix64(seed);
    for x in [epoch, group, batch] {
        h = splitmix64(h ^ x);
    }
    h
}

/// One group of parsed samples, histories untruncated, stored flat.
#[derive(Default)]
struct Group {
    heads: Vec<MappedHead>,
    /// (start in `hist_*`, untruncated length) per sample.
    spans: Vec<(usize, usize)>,
    lines: Vec<u64>,
    raw_uid: Vec<String>,
    hist_mid: Vec<u32>,
    hist_cat: Vec<u32>,
    /// Sample order after sorting.
    order: Vec<usize>,
}

impl Group {
    fn clear(&mut self) {
        self.heads.clear();
        self.spans.clear();
        self.lines.clear();
        self.raw_uid.clear();
        self.hist_mid.clear();
        self.hist_cat.clear();
        self.order.clear();
    }
}

/// Reads a data file and produces [`LoadedBatch`]es (an iterator of
/// `Result`s; after the first error it ends).
pub struct Batcher {
    reader: LineReader,
    data: Arc<DataSet>,
    cfg: BatcherConfig,
    tables: TableSizes,
    epoch: u64,
    group: Group,
    group_start: u64,
    group_lines_read: u64,
    next_batch: usize,
    n_batches: usize,
    bad: BadLines,
    done: bool,
}

impl Batcher {
    /// Opens `path` for epoch `epoch`, positioned at its start.
    pub fn open(
        path: &std::path::Path,
        data: Arc<DataSet>,
        cfg: BatcherConfig,
        epoch: u64,
    ) -> Result<Self, TrainError> {
        Self::open_at(path, data, cfg, epoch, DataPosition::default())
    }

    /// Opens `path` for epoch `epoch` at `pos` (from [`LoadedBatch::next`] or
    /// [`Batcher::data_position`] of a run with the same file and configuration).
    pub fn open_at(
        path: &std::path::Path,
        data: Arc<DataSet>,
        cfg: BatcherConfig,
        epoch: u64,
        pos: DataPosition,
    ) -> Result<Self, TrainError> {
        if cfg.batch_size == 0 || cfg.group_batches == 0 || cfg.max_len == 0 {
            return Err(TrainError::Config(format!(
                "batch_size ({}), group_batches ({}) and max_len ({}) must be at least 1",
                cfg.batch_size, cfg.group_batches, cfg.max_len
            )));
        }
        if let Some(sh) = cfg.shard
            && sh.rank >= sh.ranks
        {
            return Err(TrainError::Config(format!("shard {} of {}: no such part", sh.rank, sh.ranks)));
        }
        let tables = cfg.tables.unwrap_or_else(|| data.vocabs.table_sizes());
        if cfg.negatives {
            let Some(s) = &data.sampler else {
                return Err(TrainError::Config(
                    "negative sampling needs item-info and reviews-info beside the data".into(),
                ));
            };
            if s.max_item() as usize >= tables.mid || s.max_category() as usize >= tables.cat {
                return Err(TrainError::Config(format!(
                    "the negative-sampling corpus holds item index {} / category index {}, but the tables have {} \
                     items / {} categories",
                    s.max_item(),
                    s.max_category(),
                    tables.mid,
                    tables.cat
                )));
            }
        }
        let mut reader = LineReader::open(path)?;
        let skipped = reader.skip_lines(pos.line)?;
        if skipped < pos.line {
            return Err(TrainError::Config(format!(
                "resume position line {} is beyond the end of {} ({skipped} lines)",
                pos.line,
                path.display()
            )));
        }
        if !pos.line.is_multiple_of(cfg.group_lines()) && !reader.at_eof()? {
            return Err(TrainError::Config(format!(
                "resume position line {} is not a group boundary ({} lines per group)",
                pos.line,
                cfg.group_lines()
            )));
        }
        let mut b = Self {
            reader,
            data,
            cfg,
            tables,
            epoch,
            group: Group::default(),
            group_start: pos.line,
            group_lines_read: 0,
            next_batch: 0,
            n_batches: 0,
            bad: BadLines::default(),
            done: false,
        };
        if pos.batch > 0 {
            b.read_group()?;
            if pos.batch > b.n_batches as u64 {
                return Err(TrainError::Config(format!(
                    "resume position batch {} is beyond the {} batches of the group at line {}",
                    pos.batch, b.n_batches, pos.line
                )));
            }
            b.next_batch = pos.batch as usize;
        }
        Ok(b)
    }

    /// The configuration.
    pub fn config(&self) -> &BatcherConfig {
        &self.cfg
    }

    /// The position of the next batch.
    pub fn data_position(&self) -> DataPosition {
        if self.next_batch < self.n_batches {
            DataPosition { line: self.group_start, batch: self.next_batch as u64 }
        } else {
            DataPosition { line: self.group_start + self.group_lines_read, batch: 0 }
        }
    }

    /// Lines read from the file so far.
    pub fn lines_consumed(&self) -> u64 {
        self.reader.lines_consumed()
    }

    /// Malformed lines skipped so far (`skip_bad_lines` mode).
    pub fn bad_lines(&self) -> &BadLines {
        &self.bad
    }

    /// Reads the next group of lines, parses, maps and sorts it.
    fn read_group(&mut self) -> Result<(), TrainError> {
        let g = &mut self.group;
        g.clear();
        self.group_start = self.reader.lines_consumed();
        let vocabs = &self.data.vocabs;
        let mut read = 0u64;
        while read < self.cfg.group_lines() {
            let lno = self.reader.lines_consumed() + 1;
            let Some(line) = self.reader.next_line()? else { break };
            read += 1;
            if line.is_empty() {
                continue;
            }
            let users = self.cfg.users;
            let parsed = split_fields_with(line, self.cfg.label_optional).and_then(|f| {
                if users.is_some_and(|u| !u.keeps(f.uid)) {
                    return Ok(None);
                }
                let head = map_fields(&f, vocabs, &self.tables, &mut g.hist_mid, &mut g.hist_cat)?;
                Ok(Some((head, f.hist_len(), f.uid)))
            });
            match parsed {
                Ok(None) => {}
                Ok(Some((head, len, uid))) => {
                    g.heads.push(head);
                    g.spans.push((g.hist_mid.len() - len, len));
                    g.lines.push(lno);
                    if self.cfg.keep_raw_uid {
                        g.raw_uid.push(uid.to_string());
                    }
                }
                Err(fault) => {
                    let err = fault.at(self.reader.path(), lno);
                    if !self.cfg.skip_bad_lines {
                        return Err(err);
                    }
                    self.bad.record(&err);
                }
            }
        }
        self.group_lines_read = read;
        g.order.extend(0..g.heads.len());
        if self.cfg.sort_by_length {
            let spans = &g.spans;
            // Stable: equal lengths keep file order.
            g.order.sort_by_key(|&i| std::cmp::Reverse(spans[i].1));
        }
        self.n_batches = g.heads.len().div_ceil(self.cfg.batch_size);
        self.next_batch = 0;
        Ok(())
    }

    /// Builds batch `k` of the current group (this shard's part of it).
    fn build(&self, k: usize) -> LoadedBatch {
        let g = &self.group;
        let bs = self.cfg.batch_size;
        let whole = &g.order[k * bs..((k + 1) * bs).min(g.order.len())];
        let part = self.cfg.shard.map_or(0..whole.len(), |sh| sh.range(whole.len()));
        let idx = &whole[part.clone()];
        let kept = |i: usize| g.spans[i].1.min(self.cfg.max_len);
        let steps = idx.iter().map(|&i| kept(i)).max().unwrap_or(0);
        let mut out = Batch::zeros(idx.len(), steps, self.cfg.negatives);
        let mut rng = self.cfg.negatives.then(|| {
            let group_index = self.group_start / self.cfg.group_lines();
            ChaCha8Rng::seed_from_u64(batch_seed(self.cfg.seed, self.epoch, group_index, k as u64))
        });
        // The negatives of the samples before this part are drawn (and
        // dropped) so that this part's come from the same point of the
        // batch's stream as in the whole batch.
        if let (Some(rng), Some(s)) = (rng.as_mut(), self.data.sampler.as_ref())
            && part.start > 0
        {
            let (mut nm, mut nc) = (vec![0; self.cfg.max_len], vec![0; self.cfg.max_len]);
            for &i in &whole[..part.start] {
                let (start, len) = g.spans[i];
                let l = kept(i);
                s.fill(rng, &g.hist_mid[start + len - l..start + len], &mut nm[..l], &mut nc[..l]);
            }
        }
        for (b, &i) in idx.iter().enumerate() {
            let h = g.heads[i];
            out.uid[b] = h.uid;
            out.mid[b] = h.mid;
            out.cat[b] = h.cat;
            out.label[b] = h.label;
            let (start, len) = g.spans[i];
            let l = kept(i);
            let src = start + len - l..start + len;
            let dst = b * steps..b * steps + l;
            out.lengths[b] = l;
            out.hist_mid[dst.clone()].copy_from_slice(&g.hist_mid[src.clone()]);
            out.hist_cat[dst.clone()].copy_from_slice(&g.hist_cat[src]);
            if let (Some(rng), Some(nm), Some(nc), Some(s)) =
                (rng.as_mut(), out.neg_mid.as_mut(), out.neg_cat.as_mut(), self.data.sampler.as_ref())
            {
                s.fill(rng, &out.hist_mid[dst.clone()], &mut nm[dst.clone()], &mut nc[dst]);
            }
        }
        LoadedBatch {
            lines: idx.iter().map(|&i| g.lines[i]).collect(),
            raw_uid: if self.cfg.keep_raw_uid {
                idx.iter().map(|&i| g.raw_uid[i].clone()).collect()
            } else {
                Vec::new()
            },
            batch: out,
            global_batch: whole.len(),
            next: DataPosition::default(),
            lines_consumed: self.reader.lines_consumed(),
            bytes_consumed: self.reader.bytes_consumed(),
        }
    }

    /// Runs the batcher on a background thread, `ahead` batches ahead.
    pub fn spawn(self, ahead: usize) -> BatchStream {
        BatchStream::spawn(self, ahead)
    }
}

impl Iterator for Batcher {
    type Item = Result<LoadedBatch, TrainError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.done {
                return None;
            }
            if self.next_batch < self.n_batches {
                let mut lb = self.build(self.next_batch);
                self.next_batch += 1;
                lb.next = self.data_position();
                return Some(Ok(lb));
            }
            // Current group exhausted: the next one starts after it.
            self.group_start += self.group_lines_read;
            self.group_lines_read = 0;
            self.n_batches = 0;
            self.next_batch = 0;
            if let Err(e) = self.read_group() {
                self.done = true;
                return Some(Err(e));
            }
            if self.group_lines_read == 0 {
                self.done = true;
            }
        }
    }
}

type Item = Result<LoadedBatch, TrainError>;

/// A [`Batcher`] running on a background thread, a bounded number of batches
/// ahead of the consumer, so that reading and sampling overlap compute. It
/// yields exactly what the batcher would yield in the foreground; an error
/// ends the stream.
pub struct BatchStream {
    rx: Option<Receiver<Item>>,
    handle: Option<JoinHandle<Batcher>>,
    finished: Option<Batcher>,
    done: bool,
}

impl BatchStream {
    /// Starts the background thread; it keeps at most `ahead` (≥ 1) finished
    /// batches waiting.
    pub fn spawn(mut batcher: Batcher, ahead: usize) -> Self {
        let (tx, rx) = sync_channel::<Item>(ahead.max(1));
        let handle = std::thread::Builder::new()
            .name("dien-batcher".into())
            .spawn(move || {
                for item in batcher.by_ref() {
                    let stop = item.is_err();
                    // A send error means the consumer went away: stop reading.
                    if tx.send(item).is_err() || stop {
                        break;
                    }
                }
                batcher
            })
            .expect("spawning the batch loader thread");
        Self { rx: Some(rx), handle: Some(handle), finished: None, done: false }
    }

    /// Joins the thread; a panic becomes a [`TrainError::Loader`].
    fn join(&mut self) -> Result<(), TrainError> {
        self.rx = None;
        if let Some(h) = self.handle.take() {
            match h.join() {
                Ok(b) => self.finished = Some(b),
                Err(p) => {
                    let msg = p
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| p.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "unknown panic".into());
                    return Err(TrainError::Loader(format!("the loader thread panicked: {msg}")));
                }
            }
        }
        Ok(())
    }

    /// Stops the thread (if still running) and returns the malformed lines
    /// it skipped.
    pub fn finish(mut self) -> Result<BadLines, TrainError> {
        self.join()?;
        Ok(self.finished.as_ref().map(|b| b.bad_lines().clone()).unwrap_or_default())
    }
}

impl Iterator for BatchStream {
    type Item = Item;

    fn next(&mut self) -> Option<Item> {
        if self.done {
            return None;
        }
        match self.rx.as_ref().map(Receiver::recv) {
            Some(Ok(item)) => {
                if item.is_err() {
                    self.done = true;
                }
                Some(item)
            }
            _ => {
                self.done = true;
                self.join().err().map(Err)
            }
        }
    }
}

impl Drop for BatchStream {
    fn drop(&mut self) {
        // Dropping the receiver makes a blocked `send` fail, so the thread
        // ends after at most the batch it is building.
        self.rx = None;
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
