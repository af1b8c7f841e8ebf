//! `item-info` (item → category) and `reviews-info` (the corpus negative
//! sampling draws from), docs/MODEL.md#data-layout.

use std::path::Path;

use dien_model::vocab::{Vocab, Vocabs};

use crate::data::line::{BadLines, LineReader};
use crate::error::TrainError;

/// The first `N` tab-separated fields of a line, as UTF-8 (further fields
/// are ignored); `names` names them in errors. A line with fewer fields is
/// refused for that before any field is read.
fn fields<'a, const N: usize>(
    line: &'a [u8],
    names: &[&'static str; N],
) -> Result<[&'a str; N], (&'static str, String)> {
    let mut parts: [&[u8]; N] = [&[]; N];
    let mut found = 0;
    for (i, part) in line.split(|&c| c == b'\t').enumerate() {
        if i < N {
            parts[i] = part;
        }
        found = i + 1;
    }
    if found < N {
        return Err(("line", format!("expected at least {N} tab-separated fields, found {found}")));
    }
    let mut out = [""; N];
    for (i, (o, p)) in out.iter_mut().zip(parts).enumerate() {
        *o = std::str::from_utf8(p)
            .map_err(|e| (names[i], format!("invalid UTF-8 at byte {} of the field", e.valid_up_to())))?;
    }
    Ok(out)
}

/// Reads every non-empty line of `path`, handing its first `N` fields to
/// `each`; malformed lines are errors, or skipped and counted.
fn for_each_record<const N: usize>(
    path: &Path,
    names: &[&'static str; N],
    skip_bad_lines: bool,
    mut each: impl FnMut(&[&str; N]),
) -> Result<BadLines, TrainError> {
    let mut reader = LineReader::open(path)?;
    let mut bad = BadLines::default();
    while let Some(line) = reader.next_line()? {
        if line.is_empty() {
            continue;
        }
        match fields(line, names) {
            Ok(f) => each(&f),
            Err((field, msg)) => {
                let err = TrainError::Line { path: path.to_path_buf(), line: reader.lines_consumed(), field, msg };
                if !skip_bad_lines {
                    return Err(err);
                }
                bad.record(&err);
            }
        }
    }
    Ok(bad)
}

/// The item → category map, indexed by item index (`cat_of[mid]`).
///
/// Built from `item-info` through the vocabularies: items not in the item
/// vocabulary are ignored, categories not in the category vocabulary map to
/// 0, an item listed twice keeps its first category (as the reference code),
/// and items that `item-info` does not list have category 0.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ItemCategories {
    /// Category index of every item index; length = the item table size.
    pub cat_of: Vec<u32>,
}

impl ItemCategories {
    /// Reads `item-info` (`mid \t cat` per line; further fields are ignored).
    pub fn load(path: &Path, vocabs: &Vocabs, skip_bad_lines: bool) -> Result<(Self, BadLines), TrainError> {
        let mut cat_of = vec![0u32; vocabs.mid.size];
        let mut seen = vec![false; vocabs.mid.size];
        let bad = for_each_record(path, &["mid", "cat"], skip_bad_lines, |f| {
            if let Some(&m) = vocabs.mid.map.get(f[0]) {
                let m = m as usize;
                if !seen[m] {
                    seen[m] = true;
                    cat_of[m] = vocabs.cat.get(f[1]);
                }
            }
        })?;
        Ok((Self { cat_of }, bad))
    }

    /// The category of item index `mid` (0 beyond the table).
    #[inline]
    pub fn get(&self, mid: u32) -> u32 {
        self.cat_of.get(mid as usize).copied().unwrap_or(0)
    }
}

/// Occurrence counts per item index of the negative-sampling corpus.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ItemCounts {
    /// `counts[mid]` = number of corpus events of item index `mid`; length =
    /// the item table size.
    pub counts: Vec<u64>,
}

impl ItemCounts {
    /// Reads `reviews-info` (`uid \t mid \t rating \t time`; only the first
    /// two fields are required). As in the reference code, every event counts
    /// once and items missing from the vocabulary count for index 0 (unknown).
    pub fn load_reviews(path: &Path, mid_vocab: &Vocab, skip_bad_lines: bool) -> Result<(Self, BadLines), TrainError> {
        let mut counts = vec![0u64; mid_vocab.size];
        let bad = for_each_record(path, &["uid", "mid"], skip_bad_lines, |f| {
            counts[mid_vocab.get(f[1]) as usize] += 1;
        })?;
        Ok((Self { counts }, bad))
    }

    /// Total number of events.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }
}
