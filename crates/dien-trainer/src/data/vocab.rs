//! Reading and building vocabularies (docs/DATA.md); the types are the model
//! crate's [`Vocab`] and [`Vocabs`], which also read and write the
//! checkpoint sidecar.
//!
//! Read from the reference code's Python pickles (`*_voc.pkl`, any protocol,
//! written by Python 2 or 3, `str` or `bytes` keys) or the equivalent JSON
//! dicts (`*_voc.json`), or built from the training file: most frequent
//! first, ties in order of first appearance, index 0 reserved for unknown ids
//! in every vocabulary (`default_uid`, `default_mid`, `default_cat`). A
//! loaded vocabulary is taken as it is: the reference `uid_voc` has no
//! unknown entry, so its index 0 is a real user whose row unknown users share.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use dien_model::vocab::{IdHasher, IdMap, Vocab, Vocabs};

use crate::data::line::{BadLines, LineReader, split_fields};
use crate::error::TrainError;

/// Reads a Python pickle of a dict from string (or bytes, decoded as UTF-8)
/// to non-negative int (see [`pickle`](crate::data::pickle) for what is
/// accepted).
pub fn load_pickle(path: &Path) -> Result<Vocab, TrainError> {
    let bytes = std::fs::read(path).map_err(|e| TrainError::io(path, e))?;
    parse_pickle_bytes(&bytes, path)
}

/// [`load_pickle`] of a pickle held in memory; `path` names it in errors.
pub fn parse_pickle_bytes(bytes: &[u8], path: &Path) -> Result<Vocab, TrainError> {
    let entries = crate::data::pickle::read_dict(bytes).map_err(|msg| vocab_err(path, msg))?;
    let mut map = IdMap::with_capacity_and_hasher(entries.len(), IdHasher::default());
    for (key, value) in entries {
        let idx = value.map_err(|what| vocab_err(path, format!("value of `{key}` is {what}, not a small integer")))?;
        let idx = checked_index(path, &key, idx)?;
        map.insert(key, idx);
    }
    Ok(Vocab::from_map(map))
}

/// Reads a JSON object from string id to non-negative integer (one
/// vocabulary, e.g. `mid_voc.json`).
pub fn load_json_dict(path: &Path) -> Result<Vocab, TrainError> {
    let file = File::open(path).map_err(|e| TrainError::io(path, e))?;
    json_dict_from_reader(BufReader::new(file), path)
}

/// [`load_json_dict`] of JSON held in memory; `path` names it in errors.
pub fn parse_json_dict_bytes(bytes: &[u8], path: &Path) -> Result<Vocab, TrainError> {
    json_dict_from_reader(bytes, path)
}

/// The one JSON parser of [`load_json_dict`] and [`parse_json_dict_bytes`].
fn json_dict_from_reader(reader: impl Read, path: &Path) -> Result<Vocab, TrainError> {
    let raw: HashMap<String, i64> = serde_json::from_reader(reader)
        .map_err(|e| vocab_err(path, format!("not a JSON object of string → integer: {e}")))?;
    let mut map = IdMap::with_capacity_and_hasher(raw.len(), IdHasher::default());
    for (k, i) in raw {
        let idx = checked_index(path, &k, i)?;
        map.insert(k, idx);
    }
    Ok(Vocab::from_map(map))
}

/// Reads one vocabulary, `.pkl` or `.json` by the file's extension (anything
/// else is tried as a pickle).
pub fn load_vocab(path: &Path) -> Result<Vocab, TrainError> {
    if path.extension().is_some_and(|e| e == "json") { load_json_dict(path) } else { load_pickle(path) }
}

/// Builds a vocabulary from `(id, count)` pairs given in order of first
/// appearance: index 0 is `unknown_key`, then most frequent first, ties in
/// order of first appearance.
pub fn vocab_from_counts(unknown_key: &str, counts: Vec<(String, u64)>) -> Vocab {
    let mut counts = counts;
    // Stable: equal counts keep first-appearance order.
    counts.sort_by_key(|c| std::cmp::Reverse(c.1));
    let mut map = IdMap::with_capacity_and_hasher(counts.len() + 1, IdHasher::default());
    map.insert(unknown_key.to_string(), 0);
    let mut next = 1u32;
    for (k, _) in counts {
        if let std::collections::hash_map::Entry::Vacant(e) = map.entry(k) {
            e.insert(next);
            next += 1;
        }
    }
    Vocab::from_map(map)
}

fn vocab_err(path: &Path, msg: impl Into<String>) -> TrainError {
    TrainError::Vocab { path: path.to_path_buf(), msg: msg.into() }
}

fn checked_index(path: &Path, key: &str, idx: i64) -> Result<u32, TrainError> {
    u32::try_from(idx).map_err(|_| vocab_err(path, format!("index {idx} of `{key}` is not in 0..2^32")))
}

/// Where a vocabulary came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VocabSource {
    /// Read from this file.
    File(PathBuf),
    /// Built from the training file.
    Built,
}

impl std::fmt::Display for VocabSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File(p) => write!(f, "read from {}", p.display()),
            Self::Built => f.write_str("built from the training file"),
        }
    }
}

/// Builds the three vocabularies from a training file, as the reference
/// vocabulary script counts: uid, target mid and cat once per line, plus
/// every history entry. Index 0 of each is the unknown id. Malformed
/// lines are errors, or skipped and counted when `skip_bad_lines`.
pub fn build_vocabs(path: &Path, skip_bad_lines: bool) -> Result<(Vocabs, BadLines), TrainError> {
    #[derive(Default)]
    struct Counter {
        index: HashMap<String, usize>,
        counts: Vec<(String, u64)>,
    }
    impl Counter {
        fn add(&mut self, id: &str) {
            match self.index.get(id) {
                Some(&i) => self.counts[i].1 += 1,
                None => {
                    self.index.insert(id.to_string(), self.counts.len());
                    self.counts.push((id.to_string(), 1));
                }
            }
        }
    }
    let (mut u, mut m, mut c) = (Counter::default(), Counter::default(), Counter::default());
    let mut bad = BadLines::default();
    let mut reader = LineReader::open(path)?;
    while let Some(line) = reader.next_line()? {
        if line.is_empty() {
            continue;
        }
        let f = match split_fields(line) {
            Ok(f) => f,
            Err(fault) => {
                let err = fault.at(path, reader.lines_consumed());
                if skip_bad_lines {
                    bad.record(&err);
                    continue;
                }
                return Err(err);
            }
        };
        u.add(f.uid);
        m.add(f.mid);
        c.add(f.cat);
        f.mid_tokens().for_each(|t| m.add(t));
        f.cat_tokens().for_each(|t| c.add(t));
    }
    let vocabs = Vocabs {
        uid: vocab_from_counts("default_uid", u.counts),
        mid: vocab_from_counts("default_mid", m.counts),
        cat: vocab_from_counts("default_cat", c.counts),
    };
    Ok((vocabs, bad))
}

/// Loads `uid_voc`, `mid_voc`, `cat_voc` from `dir` (`.pkl` preferred,
/// then `.json`); any that is missing is built from `train` (see
/// [`build_vocabs`]).
pub fn load_or_build_vocabs(
    dir: &Path,
    train: &Path,
    skip_bad_lines: bool,
) -> Result<(Vocabs, [VocabSource; 3], BadLines), TrainError> {
    let find =
        |name: &str| ["pkl", "json"].iter().map(|ext| dir.join(format!("{name}_voc.{ext}"))).find(|p| p.is_file());
    let files = [find("uid"), find("mid"), find("cat")];
    let mut bad = BadLines::default();
    let built = if files.iter().any(Option::is_none) {
        let (v, b) = build_vocabs(train, skip_bad_lines)?;
        bad = b;
        Some(v)
    } else {
        None
    };
    let pick = |file: &Option<PathBuf>, built: Option<&Vocab>| -> Result<(Vocab, VocabSource), TrainError> {
        match file {
            Some(p) => Ok((load_vocab(p)?, VocabSource::File(p.clone()))),
            None => Ok((built.expect("built when a file is missing").clone(), VocabSource::Built)),
        }
    };
    let (uid, su) = pick(&files[0], built.as_ref().map(|v| &v.uid))?;
    let (mid, sm) = pick(&files[1], built.as_ref().map(|v| &v.mid))?;
    let (cat, sc) = pick(&files[2], built.as_ref().map(|v| &v.cat))?;
    Ok((Vocabs { uid, mid, cat }, [su, sm, sc], bad))
}
