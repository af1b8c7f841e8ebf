//! The vocabularies a checkpoint was trained with: the sidecar
//! `<checkpoint>.vocab.json` (SPEC §10), a JSON object
//! `{"uid": {"<id>": index, …}, "mid": {…}, "cat": {…}}`.
//!
//! Unknown string ids map to index 0 (SPEC §8), which is a real, trained
//! row of every table.

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;

use super::ServeError;
use crate::config::ModelConfig;

/// String id → index maps of users, items and categories.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Vocabs {
    uid: HashMap<String, u32>,
    mid: HashMap<String, u32>,
    cat: HashMap<String, u32>,
}

impl std::fmt::Debug for Vocabs {
    /// The sizes only (a vocabulary can hold millions of ids).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vocabs")
            .field("uid", &self.uid.len())
            .field("mid", &self.mid.len())
            .field("cat", &self.cat.len())
            .finish()
    }
}

#[derive(Deserialize)]
struct VocabsJson {
    uid: HashMap<String, u32>,
    mid: HashMap<String, u32>,
    cat: HashMap<String, u32>,
}

impl Vocabs {
    /// Vocabularies from three maps (users, items, categories).
    pub fn new(uid: HashMap<String, u32>, mid: HashMap<String, u32>, cat: HashMap<String, u32>) -> Self {
        Self { uid, mid, cat }
    }

    /// Parses the sidecar JSON (other keys are ignored).
    pub fn from_json_str(text: &str) -> Result<Self, ServeError> {
        let v: VocabsJson = serde_json::from_str(text).map_err(|e| {
            ServeError::Vocab(format!("not a vocabulary object {{\"uid\", \"mid\", \"cat\"}} of string → index: {e}"))
        })?;
        Ok(Self { uid: v.uid, mid: v.mid, cat: v.cat })
    }

    /// Reads the sidecar JSON file at `path`.
    pub fn from_json_file(path: &Path) -> Result<Self, ServeError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ServeError::Vocab(format!("{}: cannot read: {e}", path.display())))?;
        Self::from_json_str(&text).map_err(|e| match e {
            ServeError::Vocab(m) => ServeError::Vocab(format!("{}: {m}", path.display())),
            other => other,
        })
    }

    /// Index of user `id` (0 when unknown).
    pub fn uid(&self, id: &str) -> u32 {
        self.uid.get(id).copied().unwrap_or(0)
    }
    /// Index of item `id` (0 when unknown).
    pub fn mid(&self, id: &str) -> u32 {
        self.mid.get(id).copied().unwrap_or(0)
    }
    /// Index of category `id` (0 when unknown).
    pub fn cat(&self, id: &str) -> u32 {
        self.cat.get(id).copied().unwrap_or(0)
    }
    /// Number of `(users, items, categories)` string ids.
    pub fn sizes(&self) -> (usize, usize, usize) {
        (self.uid.len(), self.mid.len(), self.cat.len())
    }

    /// Checks that every index fits the model's tables; the error names the
    /// vocabulary, the id and the index.
    pub fn check(&self, cfg: &ModelConfig) -> Result<(), ServeError> {
        for (name, map, rows) in
            [("uid", &self.uid, cfg.n_uid), ("mid", &self.mid, cfg.n_mid), ("cat", &self.cat, cfg.n_cat)]
        {
            if let Some((id, &i)) = map.iter().filter(|&(_, &i)| i as usize >= rows).min_by_key(|&(_, &i)| i) {
                return Err(ServeError::Vocab(format!(
                    "`{name}` maps `{id}` to index {i}, but the checkpoint's table has {rows} rows"
                )));
            }
        }
        Ok(())
    }
}
