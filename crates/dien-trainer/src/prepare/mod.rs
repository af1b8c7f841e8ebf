//! `dien prepare`: builds a data directory in the reference layout
//! (docs/DATA.md) from a log of `(user, item, category, time[, behaviour])`
//! events, as the reference pipeline derives its data (docs/DATA.md, "From
//! an event log: dien prepare"):
//!
//! - `item-info` (item, category) and `reviews-info` (one line per event);
//! - each user's events in time order (ties in input order); the last event
//!   is the positive target, all earlier events its history (oldest first,
//!   cut to the last `max_len`); a user with an empty history gives none;
//! - one negative per positive, drawn from the event log in proportion to
//!   item frequency, never the positive item, with its own category; the
//!   negative line is written first;
//! - users split at random between the training and test files;
//! - `uid_voc`, `mid_voc`, `cat_voc` as JSON dicts counted on the training
//!   file, by decreasing count.
//!
//! The log is streamed: events are read in chunks, each chunk sorted by
//! (user, time, input order) and spilled to a run file, and the runs merged,
//! so only one chunk, one user's events and the item table are held in
//! memory. Modules: `format` (one input line), `pyliteral` (Python-literal
//! metadata lines), `catalogue` (items and categories), `read` (the input
//! files), `sort` (the external sort), `write` (samples and vocabularies),
//! `files` (paths, the temporary folder, final renames).

mod catalogue;
mod files;
mod format;
mod pyliteral;
mod read;
mod sort;
mod write;

use std::path::PathBuf;
use std::str::FromStr;

use serde::Serialize;

use crate::data::line::BadLines;
use crate::error::TrainError;

/// Default number of events sorted in memory at a time.
pub const DEFAULT_CHUNK_EVENTS: usize = 2_000_000;
/// Default share of users whose sample goes to the test file.
pub const DEFAULT_TEST_FRAC: f64 = 0.1;

/// The input format of the event log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventFormat {
    /// Comma-separated values with a header naming the columns `user`,
    /// `item`, `category`, `timestamp` and optionally `behavior`, `rating`
    /// (quoted fields as in RFC 4180).
    Csv,
    /// Tab-separated values with the same header (no quoting).
    Tsv,
    /// Taobao `UserBehavior.csv`: no header, `user,item,category,behavior,timestamp`.
    Taobao,
    /// Amazon reviews, one JSON object per line (`reviewerID`, `asin`,
    /// `overall`, `unixReviewTime`); categories from the metadata file
    /// (`asin`, `categories` or `category`).
    AmazonJson,
    /// MovieLens `ratings.csv` (`userId,movieId,rating,timestamp` with a
    /// header); categories (first genre) from `movies.csv`.
    Movielens,
}

impl EventFormat {
    /// Every format, in the order `--help` lists them.
    pub const ALL: [Self; 5] = [Self::Csv, Self::Tsv, Self::Taobao, Self::AmazonJson, Self::Movielens];

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Csv => "csv",
            Self::Tsv => "tsv",
            Self::Taobao => "taobao",
            Self::AmazonJson => "amazon-json",
            Self::Movielens => "movielens",
        }
    }

    /// Whether the format takes item categories from a separate item file
    /// (`--items`), which it then requires.
    pub fn needs_items(self) -> bool {
        matches!(self, Self::AmazonJson | Self::Movielens)
    }
}

impl std::fmt::Display for EventFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for EventFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL.into_iter().find(|f| f.name() == s).ok_or_else(|| {
            let names: Vec<&str> = Self::ALL.iter().map(|f| f.name()).collect();
            format!("unknown format `{s}` (one of {})", names.join(", "))
        })
    }
}

/// Which behaviours are kept as events.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum BehaviorFilter {
    /// The format's default: Taobao keeps `pv` (clicks), as the reference
    /// data does; every other format keeps all events.
    #[default]
    FormatDefault,
    /// Every event, whatever its behaviour.
    All,
    /// Only events whose behaviour is one of these (needs a behaviour column).
    Only(Vec<String>),
}

impl FromStr for BehaviorFilter {
    type Err = String;

    /// `all`, or a comma-separated list of behaviours (`pv,buy`).
    fn from_str(s: &str) -> Result<Self, String> {
        if s.trim() == "all" {
            return Ok(Self::All);
        }
        let list: Vec<String> = s.split(',').map(str::trim).filter(|b| !b.is_empty()).map(str::to_owned).collect();
        if list.is_empty() {
            return Err(format!("`{s}` names no behaviour (give a list like pv,buy or `all`)"));
        }
        Ok(Self::Only(list))
    }
}

/// Everything [`prepare`] needs.
#[derive(Clone, Debug, PartialEq)]
pub struct PrepareConfig {
    /// The event log.
    pub events: PathBuf,
    /// Its format.
    pub format: EventFormat,
    /// The item file: Amazon metadata (JSON lines) or MovieLens `movies.csv`;
    /// required by those formats, refused by the others.
    pub items: Option<PathBuf>,
    /// Output directory (created if needed; must not hold an input file).
    pub out: PathBuf,
    /// Drop items with fewer than this many events (after the behaviour
    /// filter): their events are removed from the log and they are not listed
    /// in `item-info`. `None`: no item is dropped.
    pub min_count: Option<u64>,
    /// Keep only the last this many events of a history.
    pub max_len: Option<usize>,
    /// Probability that a user's sample goes to the test file, in `[0, 1)`.
    pub test_frac: f64,
    /// Seed of the negatives (the split uses `seed + 1`).
    pub seed: u64,
    /// Which behaviours are events.
    pub behaviors: BehaviorFilter,
    /// Events sorted in memory at a time (at least 1); a log with more is
    /// sorted in runs spilled to disk and merged.
    pub chunk_events: usize,
    /// Count and skip malformed lines instead of failing on the first.
    pub skip_bad_lines: bool,
}

impl PrepareConfig {
    /// The defaults for `events` in `format`, writing `out`.
    pub fn new(events: impl Into<PathBuf>, format: EventFormat, out: impl Into<PathBuf>) -> Self {
        Self {
            events: events.into(),
            format,
            items: None,
            out: out.into(),
            min_count: None,
            max_len: None,
            test_frac: DEFAULT_TEST_FRAC,
            seed: crate::DEFAULT_SEED,
            behaviors: BehaviorFilter::FormatDefault,
            chunk_events: DEFAULT_CHUNK_EVENTS,
            skip_bad_lines: false,
        }
    }

    /// Checks the options against each other; the error names the option.
    pub fn validate(&self) -> Result<(), TrainError> {
        let bad = |msg: String| Err(TrainError::Config(format!("prepare: {msg}")));
        if !(self.test_frac.is_finite() && (0.0..1.0).contains(&self.test_frac)) {
            return bad(format!("--test-frac {} is outside [0, 1)", self.test_frac));
        }
        if self.chunk_events == 0 {
            return bad("--chunk-events must be at least 1".into());
        }
        if self.max_len == Some(0) {
            return bad("--max-len must be at least 1".into());
        }
        match (self.format.needs_items(), &self.items) {
            (true, None) => {
                let what = if self.format == EventFormat::Movielens { "movies.csv" } else { "the metadata JSON lines" };
                return bad(format!("format {} needs --items ({what}) for the item categories", self.format));
            }
            (false, Some(p)) => {
                return bad(format!(
                    "format {} takes categories from the events; --items {} is not used",
                    self.format,
                    p.display()
                ));
            }
            _ => {}
        }
        let has_behavior = matches!(self.format, EventFormat::Csv | EventFormat::Tsv | EventFormat::Taobao);
        if matches!(self.behaviors, BehaviorFilter::Only(_)) && !has_behavior {
            return bad(format!("format {} has no behaviour column to filter with --behavior", self.format));
        }
        Ok(())
    }

    /// The behaviours kept (`None`: all).
    fn kept_behaviors(&self) -> Option<Vec<String>> {
        kept_behaviors(&self.behaviors, self.format)
    }
}

/// The behaviours `filter` keeps in `format` (`None`: all).
fn kept_behaviors(filter: &BehaviorFilter, format: EventFormat) -> Option<Vec<String>> {
    match (filter, format) {
        (BehaviorFilter::Only(list), _) => Some(list.clone()),
        (BehaviorFilter::FormatDefault, EventFormat::Taobao) => Some(vec!["pv".to_owned()]),
        _ => None,
    }
}

/// Input lines left out of the log, by reason.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct DroppedLines {
    /// Malformed lines skipped (`skip_bad_lines`), in the event log and the
    /// item file.
    pub malformed: u64,
    /// Events whose behaviour the filter does not keep.
    pub behavior: u64,
    /// Events of items dropped by `min_count`.
    pub min_count: u64,
}

/// Users of the log who give no sample, by reason.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct DroppedUsers {
    /// One event: the target would have an empty history.
    pub one_event: u64,
    /// Every event was of an item dropped by `min_count`.
    pub no_event_left: u64,
    /// The only item of the whole log is the user's target: no negative can
    /// be drawn.
    pub no_negative: u64,
}

/// What [`prepare`] read and wrote (the last line of `dien prepare`).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct PrepareSummary {
    /// Lines of the event log (header and empty lines included).
    pub input_lines: u64,
    /// Events kept: lines of `reviews-info`.
    pub events: u64,
    /// Distinct users with at least one kept event.
    pub users: u64,
    /// Users in the training file (two lines each).
    pub train_users: u64,
    /// Users in the test file (two lines each).
    pub test_users: u64,
    /// Lines of `local_train_splitByUser`.
    pub train_samples: u64,
    /// Lines of `local_test_splitByUser`.
    pub test_samples: u64,
    /// Lines of `item-info`.
    pub items: u64,
    /// Distinct items with at least one kept event.
    pub event_items: u64,
    /// Distinct categories of the items in `item-info`.
    pub categories: u64,
    /// Entries of `uid_voc.json` (training users; no unknown entry, as the reference's).
    pub uid_vocab: u64,
    /// Entries of `mid_voc.json`, `default_mid` at index 0 included.
    pub mid_vocab: u64,
    /// Entries of `cat_voc.json`, `default_cat` at index 0 included.
    pub cat_vocab: u64,
    /// Mean history length of the samples (after `max_len`).
    pub mean_history_len: f64,
    /// Samples whose history `max_len` cut.
    pub truncated_histories: u64,
    /// Items of the log (with at least one event) dropped by `min_count`.
    pub dropped_items: u64,
    /// Events whose category differs from the first one seen for their item
    /// (the first is kept, as the reference does).
    pub category_conflicts: u64,
    /// Sorted runs spilled to disk (0: the log was sorted in memory).
    pub runs: u64,
    /// Input lines left out, by reason.
    pub dropped_lines: DroppedLines,
    /// Users without a sample, by reason.
    pub dropped_users: DroppedUsers,
    /// The skipped malformed lines with their first messages (`skip_bad_lines`).
    #[serde(skip)]
    pub bad_lines: BadLines,
}

/// Builds the data directory `cfg.out` from the event log; see the module
/// docs. Outputs are written to a temporary folder inside `cfg.out` and
/// renamed into place when all are complete; the temporary folder is removed
/// whether or not this succeeds.
pub fn prepare(cfg: &PrepareConfig) -> Result<PrepareSummary, TrainError> {
    cfg.validate()?;
    let scratch = files::Scratch::create(cfg)?;
    let mut summary = PrepareSummary::default();
    let mut items = catalogue::Items::default();
    if let Some(path) = &cfg.items {
        let bad = read::read_catalogue(path, cfg.format, cfg.skip_bad_lines, &mut items)?;
        summary.bad_lines.merge(&bad);
    }
    let mut sorter = sort::Sorter::new(scratch.path(), cfg.chunk_events);
    read::read_events(cfg, &mut items, &mut sorter, &mut summary)?;
    summary.dropped_lines.malformed = summary.bad_lines.count;

    let kept = items.kept(cfg.min_count);
    summary.dropped_items = kept.iter().zip(&items.counts).filter(|&(&k, &c)| !k && c > 0).count() as u64;
    let (listed, categories) = write::write_item_info(&scratch.file(files::ITEM_INFO), &items, &kept)?;
    (summary.items, summary.categories) = (listed, categories);

    let stream = sorter.finish()?;
    summary.runs = stream.runs() as u64;
    write::write_samples(cfg, &scratch, &items, &kept, stream, &mut summary)?;
    scratch.commit()?;
    Ok(summary)
}

/// One event as the readers of [`prepare`] take it from the log.
#[derive(Clone, Debug, PartialEq)]
pub struct ParsedEvent {
    /// The user id.
    pub user: String,
    /// The item id.
    pub item: String,
    /// The item's category: the first one the log gives the item, or the
    /// item file's; `default_cat` when unknown.
    pub category: String,
    /// The timestamp as written (trimmed).
    pub time_text: String,
    /// The timestamp as a number.
    pub time: f64,
    /// The rating written to `reviews-info`.
    pub rating: String,
}

/// What the readers of [`prepare`] take from an event log.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ParsedLog {
    /// The kept events, in input order.
    pub events: Vec<ParsedEvent>,
    /// Lines of the event log (header and empty lines included).
    pub input_lines: u64,
    /// Events whose behaviour the filter does not keep.
    pub dropped_behavior: u64,
    /// Events whose category differs from the first one seen for their item.
    pub category_conflicts: u64,
    /// Malformed lines skipped (`skip_bad_lines`), in the log and the item file.
    pub bad_lines: BadLines,
}

/// Reads an event log held in memory, and the item file of the formats that
/// take categories from one (Amazon metadata, MovieLens `movies.csv`), with
/// the readers of [`prepare`], writing nothing: the events, the counts, or
/// the error naming the line and field (the files are named `<events>` and
/// `<items>` in errors). A log without events is an error, as for `prepare`.
pub fn parse_event_log(
    format: EventFormat,
    events: &[u8],
    item_file: Option<&[u8]>,
    behaviors: &BehaviorFilter,
    skip_bad_lines: bool,
) -> Result<ParsedLog, TrainError> {
    use crate::data::line::LineReader;

    let mut items = catalogue::Items::default();
    let mut summary = PrepareSummary::default();
    if let Some(bytes) = item_file {
        let bad = read::scan_catalogue(LineReader::from_reader("<items>", bytes), format, skip_bad_lines, &mut items)?;
        summary.bad_lines.merge(&bad);
    }
    let src = read::EventSource { format, keep: kept_behaviors(behaviors, format), skip_bad_lines };
    let mut kept = Vec::new();
    read::scan_events(LineReader::from_reader("<events>", events), &src, &mut items, &mut summary, |e| {
        kept.push(e);
        Ok(())
    })?;
    let events = kept
        .into_iter()
        .map(|e| ParsedEvent {
            user: e.user().to_owned(),
            item: items.name(e.item).to_owned(),
            category: items.item_cat_name(e.item).to_owned(),
            time_text: e.time_text().to_owned(),
            time: e.time,
            rating: e.rating().to_owned(),
        })
        .collect();
    Ok(ParsedLog {
        events,
        input_lines: summary.input_lines,
        dropped_behavior: summary.dropped_lines.behavior,
        category_conflicts: summary.category_conflicts,
        bad_lines: summary.bad_lines,
    })
}
