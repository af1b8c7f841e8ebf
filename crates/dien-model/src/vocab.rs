//! Vocabularies: the string ids of users, items and categories and the
//! embedding rows they map to.
//!
//! A checkpoint keeps its vocabularies in the sidecar
//! `<checkpoint>.vocab.json`, one JSON object
//! `{"uid": {"<id>": index, …}, "mid": {…}, "cat": {…}}`. It is written
//! with the keys sorted, so the bytes depend on the vocabularies alone;
//! other keys are ignored when it is read.
//!
//! Unknown string ids map to index 0, which is a real, trained row of every
//! table. Reading vocabularies from other sources (the reference code's
//! pickles, per-table JSON files) or building them from data is the
//! trainer's business; it produces these types.

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::config::ModelConfig;

/// Why vocabularies could not be read, written or used.
#[derive(Debug, Error)]
pub enum VocabError {
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The text is not a vocabulary sidecar.
    #[error("{}{msg}", file_prefix(.path))]
    Format {
        /// The file it was read from, if any.
        path: Option<PathBuf>,
        /// What is wrong with it.
        msg: String,
    },
    /// An index does not fit the model's embedding table.
    #[error("`{table}` maps `{id}` to index {index}, but the checkpoint's table has {rows} rows")]
    OutOfRange {
        /// The vocabulary: `uid`, `mid` or `cat`.
        table: &'static str,
        /// The string id.
        id: String,
        /// Its index.
        index: u32,
        /// Rows of the table.
        rows: usize,
    },
}

fn file_prefix(path: &Option<PathBuf>) -> String {
    path.as_ref().map(|p| format!("{}: ", p.display())).unwrap_or_default()
}

/// The hasher of the vocabularies' maps: every id of every line read goes
/// through one, and ids are short strings, for which a fast hash (seeded
/// per process) costs a fraction of the standard library's.
pub type IdHasher = foldhash::fast::RandomState;

/// A string id → index map with the vocabularies' hasher.
pub type IdMap = HashMap<String, u32, IdHasher>;

/// One vocabulary: string id → index. Unknown ids map to 0.
#[derive(Clone, PartialEq, Eq)]
pub struct Vocab {
    /// The string → index map.
    pub map: IdMap,
    /// Table size: largest index + 1 (at least 1, so that the unknown index 0
    /// always has a row).
    pub size: usize,
}

impl Vocab {
    /// A vocabulary of `map`; its size is the largest index + 1 (at least 1).
    pub fn from_map(map: IdMap) -> Self {
        let size = map.values().map(|&i| i as usize + 1).max().unwrap_or(0).max(1);
        Self { map, size }
    }

    /// The index of `id`, 0 when unknown.
    #[inline]
    pub fn get(&self, id: &str) -> u32 {
        self.map.get(id).copied().unwrap_or(0)
    }

    /// Number of string ids.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the vocabulary holds no string id.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    fn sorted_view(&self) -> BTreeMap<&str, u32> {
        self.map.iter().map(|(k, &v)| (k.as_str(), v)).collect()
    }
}

impl Default for Vocab {
    /// No string id; one row, for unknown ids.
    fn default() -> Self {
        Self::from_map(IdMap::default())
    }
}

impl std::fmt::Debug for Vocab {
    /// The counts only (a vocabulary can hold millions of ids).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vocab").field("ids", &self.map.len()).field("size", &self.size).finish()
    }
}

/// Rows of the user, item and category tables that mapped indices must fit
/// (the vocabulary sizes, or a checkpoint's embedding table sizes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableSizes {
    /// Rows of the user table.
    pub uid: usize,
    /// Rows of the item table.
    pub mid: usize,
    /// Rows of the category table.
    pub cat: usize,
}

impl TableSizes {
    /// The embedding table sizes of a model configuration.
    pub fn of_config(cfg: &ModelConfig) -> Self {
        Self { uid: cfg.n_uid, mid: cfg.n_mid, cat: cfg.n_cat }
    }
}

/// The vocabularies of users, items and categories.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Vocabs {
    /// Users.
    pub uid: Vocab,
    /// Items.
    pub mid: Vocab,
    /// Categories.
    pub cat: Vocab,
}

/// The sidecar as written: the three maps, keys sorted.
#[derive(Serialize)]
struct SidecarOut<'a> {
    uid: BTreeMap<&'a str, u32>,
    mid: BTreeMap<&'a str, u32>,
    cat: BTreeMap<&'a str, u32>,
}

/// The sidecar as read (other keys are ignored).
#[derive(Deserialize)]
struct SidecarIn {
    uid: IdMap,
    mid: IdMap,
    cat: IdMap,
}

impl Vocabs {
    /// Vocabularies from three maps (users, items, categories) of any hasher.
    pub fn new<S: BuildHasher>(
        uid: HashMap<String, u32, S>,
        mid: HashMap<String, u32, S>,
        cat: HashMap<String, u32, S>,
    ) -> Self {
        let v = |m: HashMap<String, u32, S>| Vocab::from_map(m.into_iter().collect());
        Self { uid: v(uid), mid: v(mid), cat: v(cat) }
    }

    /// Index of user `id` (0 when unknown).
    #[inline]
    pub fn uid(&self, id: &str) -> u32 {
        self.uid.get(id)
    }

    /// Index of item `id` (0 when unknown).
    #[inline]
    pub fn mid(&self, id: &str) -> u32 {
        self.mid.get(id)
    }

    /// Index of category `id` (0 when unknown).
    #[inline]
    pub fn cat(&self, id: &str) -> u32 {
        self.cat.get(id)
    }

    /// Number of `(users, items, categories)` string ids.
    pub fn sizes(&self) -> (usize, usize, usize) {
        (self.uid.len(), self.mid.len(), self.cat.len())
    }

    /// The table sizes the three vocabularies need (largest index + 1 each).
    pub fn table_sizes(&self) -> TableSizes {
        TableSizes { uid: self.uid.size, mid: self.mid.size, cat: self.cat.size }
    }

    /// Checks that every index fits the model's tables; the error names the
    /// vocabulary, the id and the index.
    pub fn check(&self, cfg: &ModelConfig) -> Result<(), VocabError> {
        for (table, v, rows) in
            [("uid", &self.uid, cfg.n_uid), ("mid", &self.mid, cfg.n_mid), ("cat", &self.cat, cfg.n_cat)]
        {
            if let Some((id, &index)) = v.map.iter().filter(|&(_, &i)| i as usize >= rows).min_by_key(|&(_, &i)| i) {
                return Err(VocabError::OutOfRange { table, id: id.clone(), index, rows });
            }
        }
        Ok(())
    }

    /// Parses the sidecar JSON (other keys are ignored).
    pub fn from_json_str(text: &str) -> Result<Self, VocabError> {
        let v: SidecarIn = serde_json::from_str(text).map_err(|e| VocabError::Format {
            path: None,
            msg: format!("not a vocabulary object {{\"uid\", \"mid\", \"cat\"}} of string → index: {e}"),
        })?;
        Ok(Self { uid: Vocab::from_map(v.uid), mid: Vocab::from_map(v.mid), cat: Vocab::from_map(v.cat) })
    }

    /// Reads the sidecar JSON file at `path`.
    pub fn from_json_file(path: &Path) -> Result<Self, VocabError> {
        let bytes = std::fs::read(path).map_err(|source| VocabError::Io { path: path.into(), source })?;
        Self::from_json_bytes(&bytes, path)
    }

    /// Parses sidecar JSON bytes read from `path` (named in errors).
    pub fn from_json_bytes(bytes: &[u8], path: &Path) -> Result<Self, VocabError> {
        let text = std::str::from_utf8(bytes)
            .map_err(|e| VocabError::Format { path: Some(path.into()), msg: format!("not UTF-8: {e}") })?;
        Self::from_json_str(text).map_err(|e| match e {
            VocabError::Format { path: None, msg } => VocabError::Format { path: Some(path.into()), msg },
            other => other,
        })
    }

    /// The sidecar file's bytes ([`to_json_string`](Self::to_json_string) and
    /// a line break), as [`save_json`](Self::save_json) writes them.
    pub fn to_json_bytes(&self) -> Vec<u8> {
        let mut text = self.to_json_string();
        text.push('\n');
        text.into_bytes()
    }

    /// The sidecar JSON text, keys sorted, so the bytes are deterministic
    /// (without a final line break).
    pub fn to_json_string(&self) -> String {
        let out = SidecarOut { uid: self.uid.sorted_view(), mid: self.mid.sorted_view(), cat: self.cat.sorted_view() };
        serde_json::to_string(&out).expect("string maps serialise")
    }

    /// Writes the sidecar JSON file at `path` ([`to_json_string`](Self::to_json_string)
    /// and a line break) atomically: written to a temporary file beside it,
    /// synced, then renamed over `path`.
    pub fn save_json(&self, path: &Path) -> Result<(), VocabError> {
        // Atomic, like the checkpoint it belongs to: a crash leaves the old
        // sidecar or the new one, never a truncated file.
        crate::checkpoint::write_atomic(path, &self.to_json_bytes()).map_err(|e| match e {
            crate::error::ModelError::Io(_, source) => VocabError::Io { path: path.into(), source },
            other => VocabError::Io { path: path.into(), source: std::io::Error::other(other.to_string()) },
        })
    }
}
