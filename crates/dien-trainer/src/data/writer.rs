//! Writing the files of the data layout (docs/DATA.md): sample lines and
//! vocabularies ranked by frequency, as Python pickles or JSON dicts. Shared
//! by the synthetic generator ([`crate::generate`]) and `dien prepare`
//! ([`crate::prepare`]), so both write the same layout the same way.

use std::fmt::{Display, Write as _};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use serde::{Serialize, Serializer};

use crate::data::line::HIST_SEP;
use crate::error::TrainError;

/// A vocabulary as `(key, index)` pairs in index order (indices `0, 1, …`).
pub type RankedVocab = Vec<(String, u32)>;

/// Builds a vocabulary from `(id, count)` pairs, as the reference vocabulary
/// script does: `unknown` (when given) at index 0, then every id with a
/// non-zero count by decreasing count, ties by id string (byte order). An id
/// equal to `unknown` keeps index 0; an id given twice keeps its first entry.
pub fn ranked_vocabulary(unknown: Option<&str>, counts: impl IntoIterator<Item = (String, u64)>) -> RankedVocab {
    let mut ids: Vec<(String, u64)> = counts.into_iter().filter(|&(_, c)| c > 0).collect();
    ids.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let mut seen = std::collections::HashSet::with_capacity(ids.len() + 1);
    let keys = unknown.map(str::to_owned).into_iter().chain(ids.into_iter().map(|(k, _)| k));
    keys.filter(|k| seen.insert(k.clone())).zip(0u32..).collect()
}

/// A vocabulary serialised as a map in index order (a Python dict keeps
/// insertion order; the output is deterministic).
struct IndexOrdered<'a>(&'a [(String, u32)]);

impl Serialize for IndexOrdered<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

/// Creates (truncates) `path` for buffered writing.
pub fn create(path: &Path) -> Result<BufWriter<File>, TrainError> {
    File::create(path).map(BufWriter::new).map_err(|e| TrainError::io(path, e))
}

/// Flushes a writer made by [`create`], reporting errors against `path`.
pub fn finish(mut w: BufWriter<File>, path: &Path) -> Result<(), TrainError> {
    w.flush().map_err(|e| TrainError::io(path, e))
}

/// Writes a vocabulary as a Python pickle (protocol 3) of a `str → int`
/// dict, entries in index order (`*_voc.pkl`).
pub fn write_vocab_pickle(path: &Path, voc: &[(String, u32)]) -> Result<(), TrainError> {
    let mut w = create(path)?;
    serde_pickle::to_writer(&mut w, &IndexOrdered(voc), serde_pickle::SerOptions::new())
        .map_err(|e| TrainError::Vocab { path: path.to_owned(), msg: e.to_string() })?;
    finish(w, path)
}

/// Writes a vocabulary as a JSON object from string id to index, entries in
/// index order (`*_voc.json`).
pub fn write_vocab_json(path: &Path, voc: &[(String, u32)]) -> Result<(), TrainError> {
    let mut w = create(path)?;
    serde_json::to_writer(&mut w, &IndexOrdered(voc))
        .map_err(|e| TrainError::Vocab { path: path.to_owned(), msg: e.to_string() })?;
    finish(w, path)
}

/// Appends one sample line, `label \t uid \t mid \t cat \t mid_hist \t
/// cat_hist \n`, to `line`; the histories are joined by the byte 0x02,
/// oldest first. The caller guarantees that no id holds a tab, a line break
/// or 0x02.
pub fn push_sample_line<M: Display, C: Display>(
    line: &mut String,
    label: u8,
    uid: impl Display,
    mid: impl Display,
    cat: impl Display,
    hist_mid: impl IntoIterator<Item = M>,
    hist_cat: impl IntoIterator<Item = C>,
) {
    // Writing to a String cannot fail.
    let _ = write!(line, "{label}\t{uid}\t{mid}\t{cat}\t");
    for (t, m) in hist_mid.into_iter().enumerate() {
        if t > 0 {
            line.push(HIST_SEP as char);
        }
        let _ = write!(line, "{m}");
    }
    line.push('\t');
    for (t, c) in hist_cat.into_iter().enumerate() {
        if t > 0 {
            line.push(HIST_SEP as char);
        }
        let _ = write!(line, "{c}");
    }
    line.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vocabulary_orders_by_count_then_id() {
        let counts = [3, 0, 5, 3, 1].iter().enumerate().map(|(i, &c)| (format!("x{i}"), c));
        let v = ranked_vocabulary(Some("default_x"), counts);
        let keys: Vec<&str> = v.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["default_x", "x2", "x0", "x3", "x4"]);
        assert!(v.iter().enumerate().all(|(i, &(_, idx))| idx as usize == i));
    }

    #[test]
    fn vocabulary_merges_the_unknown_key_and_may_have_none() {
        let counts = [("b".to_string(), 2), ("default_x".to_string(), 9), ("a".to_string(), 2)];
        let keys: Vec<String> = ranked_vocabulary(Some("default_x"), counts.clone()).into_iter().map(|e| e.0).collect();
        assert_eq!(keys, ["default_x", "a", "b"]);
        let keys: Vec<String> = ranked_vocabulary(None, counts).into_iter().map(|e| e.0).collect();
        assert_eq!(keys, ["default_x", "a", "b"]);
    }

    #[test]
    fn sample_line_joins_histories() {
        let mut line = String::new();
        push_sample_line(&mut line, 1, "u", "m", "c", ["a", "b"], ["x", "y"]);
        push_sample_line(&mut line, 0, "u", "m", "c", Vec::<&str>::new(), Vec::<&str>::new());
        assert_eq!(line, "1\tu\tm\tc\ta\u{2}b\tx\u{2}y\n0\tu\tm\tc\t\t\n");
    }
}
