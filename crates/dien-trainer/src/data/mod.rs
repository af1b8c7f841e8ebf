//! The data layer: the reference code's data layout (docs/MODEL.md#data-layout), its
//! vocabularies, negative sampling (#negative-sampling) and batching (#batching).
//!
//! - [`line`](mod@line): one sample line, the streaming line reader, malformed-line
//!   bookkeeping.
//! - [`pickle`](mod@pickle): the reader of vocabulary pickles, bounded by
//!   the size of the file.
//! - [`vocab`]: reading the reference vocabularies (pickle, JSON) or
//!   building them from the training file, as the model crate's [`Vocabs`].
//! - [`iteminfo`]: `item-info` (item → category) and `reviews-info` (the
//!   sampling corpus).
//! - [`sampler`]: popularity-weighted negative sampling.
//! - [`split`]: the validation split of the training users.
//! - [`batcher`]: grouping, sorting, truncation, negatives → `dien_model::Batch`,
//!   in the foreground or on a background thread, resumable.
//! - [`writer`]: writing the layout (sample lines, ranked vocabularies as
//!   pickles or JSON), for the synthetic generator and `dien prepare`.
//!
//! The layout is described for users in `docs/DATA.md`.

pub mod batcher;
pub mod iteminfo;
pub mod line;
pub mod pickle;
pub mod sampler;
pub mod split;
pub mod vocab;
pub mod writer;

use std::path::{Path, PathBuf};

pub use batcher::{BatchStream, Batcher, BatcherConfig, DataPosition, LoadedBatch, Shard, batch_seed};
pub use dien_model::vocab::{Vocab, Vocabs};
pub use iteminfo::{ItemCategories, ItemCounts};
pub use line::{BadLines, LineReader, TableSizes};
pub use sampler::NegativeSampler;
pub use split::{DEFAULT_VALID_FRAC, Side, SplitCounts, UserFilter, UserSplit, count_split};
pub use vocab::{VocabSource, build_vocabs, load_or_build_vocabs, load_vocab};

use crate::error::TrainError;

/// Training file name inside a data directory.
pub const TRAIN_FILE: &str = "local_train_splitByUser";
/// Test file name inside a data directory.
pub const TEST_FILE: &str = "local_test_splitByUser";
/// Item → category file name.
pub const ITEM_INFO_FILE: &str = "item-info";
/// Sampling-corpus file name.
pub const REVIEWS_INFO_FILE: &str = "reviews-info";

/// Everything batching needs besides the data file: vocabularies and, when
/// `item-info` and `reviews-info` exist, the negative sampler.
#[derive(Clone, Debug)]
pub struct DataSet {
    /// The three vocabularies.
    pub vocabs: Vocabs,
    /// The negative sampler (`None` without `item-info`/`reviews-info`).
    pub sampler: Option<NegativeSampler>,
}

/// What [`DataSet::open`] found.
#[derive(Clone, Debug, Default)]
pub struct DataSetReport {
    /// Where each of the uid, mid, cat vocabularies came from (`None` when
    /// they were given by the caller).
    pub vocab_sources: Option<[VocabSource; 3]>,
    /// Why there is no sampler, if there is none.
    pub no_sampler: Option<String>,
    /// Malformed lines skipped while building vocabularies or reading
    /// `item-info`/`reviews-info` (`skip_bad_lines` mode).
    pub bad_lines: BadLines,
}

/// The most rows a vocabulary's table may have: every model stores at least
/// one float a row, and at most [`MAX_PARAMS`](dien_model::config::MAX_PARAMS)
/// floats.
pub const MAX_TABLE_ROWS: usize = dien_model::config::MAX_PARAMS;

/// Refuses vocabularies whose largest index makes a table larger than any
/// model can have, before anything is sized by it (a one-line vocabulary
/// file with the index 4294967295 would otherwise size the item tables of
/// `item-info` and `reviews-info` at tens of gigabytes).
pub fn check_table_sizes(vocabs: &Vocabs) -> Result<(), TrainError> {
    for (name, v) in [("uid", &vocabs.uid), ("mid", &vocabs.mid), ("cat", &vocabs.cat)] {
        if v.size > MAX_TABLE_ROWS {
            let (id, idx) =
                v.map.iter().max_by_key(|&(k, &i)| (i, k)).map(|(k, &i)| (k.as_str(), i)).unwrap_or(("", 0));
            return Err(TrainError::Config(format!(
                "vocabulary `{name}` maps `{id}` to index {idx}: a table of {} rows is more than any model can have \
                 ({MAX_TABLE_ROWS}); is an index far larger than the number of entries ({})?",
                v.size,
                v.len()
            )));
        }
    }
    Ok(())
}

impl DataSet {
    /// Opens a data directory: takes `vocabs` if given (e.g. a checkpoint's
    /// sidecar), else loads or builds them (see [`load_or_build_vocabs`]);
    /// checks their table sizes ([`check_table_sizes`]); then reads
    /// `item-info` and `reviews-info` when both exist.
    pub fn open(dir: &Path, vocabs: Option<Vocabs>, skip_bad_lines: bool) -> Result<(Self, DataSetReport), TrainError> {
        let mut report = DataSetReport::default();
        let vocabs = match vocabs {
            Some(v) => v,
            None => {
                let (v, src, bad) = load_or_build_vocabs(dir, &dir.join(TRAIN_FILE), skip_bad_lines)?;
                report.vocab_sources = Some(src);
                report.bad_lines.merge(&bad);
                v
            }
        };
        // Tables are sized by the largest index: check before allocating any,
        // naming the files the vocabularies came from.
        check_table_sizes(&vocabs).map_err(|e| match (&report.vocab_sources, e) {
            (Some(src), TrainError::Config(m)) => {
                TrainError::Config(format!("{m} (vocabularies: uid {}; mid {}; cat {})", src[0], src[1], src[2]))
            }
            (_, e) => e,
        })?;
        let (item_info, reviews) = (dir.join(ITEM_INFO_FILE), dir.join(REVIEWS_INFO_FILE));
        let sampler = if item_info.is_file() && reviews.is_file() {
            let (cats, bad) = ItemCategories::load(&item_info, &vocabs, skip_bad_lines)?;
            report.bad_lines.merge(&bad);
            let (counts, bad) = ItemCounts::load_reviews(&reviews, &vocabs.mid, skip_bad_lines)?;
            report.bad_lines.merge(&bad);
            Some(NegativeSampler::new(&counts, cats)?)
        } else {
            let missing: Vec<String> =
                [&item_info, &reviews].iter().filter(|p| !p.is_file()).map(|p| p.display().to_string()).collect();
            report.no_sampler = Some(format!("missing {}", missing.join(" and ")));
            None
        };
        Ok((Self { vocabs, sampler }, report))
    }

    /// The training file of a data directory.
    pub fn train_file(dir: &Path) -> PathBuf {
        dir.join(TRAIN_FILE)
    }

    /// The test file of a data directory.
    pub fn test_file(dir: &Path) -> PathBuf {
        dir.join(TEST_FILE)
    }
}
