//! The paths of `dien prepare`: checks on the output directory, the
//! temporary folder inside it that every output (and every sorted run) is
//! written to, and the renames that put the outputs in place once all are
//! complete.

use std::path::{Path, PathBuf};

use super::PrepareConfig;
use crate::data::{ITEM_INFO_FILE, REVIEWS_INFO_FILE, TEST_FILE, TRAIN_FILE};
use crate::error::TrainError;

/// `item-info`.
pub(super) const ITEM_INFO: &str = ITEM_INFO_FILE;
/// `reviews-info`.
pub(super) const REVIEWS_INFO: &str = REVIEWS_INFO_FILE;
/// The training file.
pub(super) const TRAIN: &str = TRAIN_FILE;
/// The test file.
pub(super) const TEST: &str = TEST_FILE;
/// The user vocabulary.
pub(super) const UID_VOC: &str = "uid_voc.json";
/// The item vocabulary.
pub(super) const MID_VOC: &str = "mid_voc.json";
/// The category vocabulary.
pub(super) const CAT_VOC: &str = "cat_voc.json";

/// Every output, in the order they are renamed into place.
const OUTPUTS: [&str; 7] = [ITEM_INFO, REVIEWS_INFO, UID_VOC, MID_VOC, CAT_VOC, TEST, TRAIN];

/// The temporary folder inside the output directory; removed on drop.
pub(super) struct Scratch {
    out: PathBuf,
    dir: PathBuf,
}

impl Scratch {
    /// Checks the output directory against the inputs, creates it if needed
    /// and a fresh temporary folder inside it.
    pub(super) fn create(cfg: &PrepareConfig) -> Result<Self, TrainError> {
        check_out(cfg)?;
        let out = cfg.out.clone();
        std::fs::create_dir_all(&out).map_err(|e| TrainError::io(&out, e))?;
        let dir = out.join(format!(".dien-prepare-tmp-{}", std::process::id()));
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| TrainError::io(&dir, e))?;
        }
        std::fs::create_dir(&dir).map_err(|e| TrainError::io(&dir, e))?;
        Ok(Self { out, dir })
    }

    /// The temporary folder.
    pub(super) fn path(&self) -> &Path {
        &self.dir
    }

    /// Where the output `name` is written before it is renamed into place.
    pub(super) fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Renames every output into the output directory (replacing files of
    /// the same name) and removes the temporary folder.
    pub(super) fn commit(self) -> Result<(), TrainError> {
        for name in OUTPUTS {
            let (from, to) = (self.file(name), self.out.join(name));
            std::fs::rename(&from, &to).map_err(|e| TrainError::io(&to, e))?;
        }
        Ok(())
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // Best effort: an error here must not hide the run's own result.
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Refuses an output directory that is, or contains, an input file, that is
/// not a directory, or that holds vocabulary pickles the trainer would read
/// instead of the JSON vocabularies written here.
fn check_out(cfg: &PrepareConfig) -> Result<(), TrainError> {
    let out = &cfg.out;
    let bad = |msg: String| Err(TrainError::Config(format!("prepare: {msg}")));
    for input in std::iter::once(&cfg.events).chain(cfg.items.as_ref()) {
        let input_c = input.canonicalize().map_err(|e| TrainError::io(input, e))?;
        if out.exists() {
            let out_c = out.canonicalize().map_err(|e| TrainError::io(out, e))?;
            if input_c.starts_with(&out_c) {
                let how = if input_c == out_c { "is" } else { "contains" };
                return bad(format!(
                    "--out {} {how} the input {}; choose an output directory that holds no input file",
                    out.display(),
                    input.display()
                ));
            }
        }
    }
    if out.exists() && !out.is_dir() {
        return bad(format!("--out {} exists and is not a directory", out.display()));
    }
    for name in ["uid_voc.pkl", "mid_voc.pkl", "cat_voc.pkl"] {
        let p = out.join(name);
        if p.exists() {
            return bad(format!(
                "{} exists; the trainer would read it instead of the .json vocabulary written here \
                 (remove it or choose another --out)",
                p.display()
            ));
        }
    }
    Ok(())
}
