//! Checkpoint sets: a checkpoint and the files that belong to it (its
//! vocabularies; in training also the optimiser state), published as a unit.
//!
//! The checkpoint is the set's manifest. For each part it names the file
//! (beside the checkpoint) and the checksum of the file's bytes, in the
//! metadata entry `set.<role>` = `"<file name> fnv1a64:<16 hex digits>"`.
//! A writer writes the parts first, each atomically, then the checkpoint,
//! atomically: the rename of the checkpoint publishes the whole set. A
//! crash or a full disk before that rename leaves the previous checkpoint
//! naming the previous parts, which a writer keeps until the new set is
//! published ([`write_part`] to a fresh name, then remove the old ones).
//!
//! A reader ([`read_part`]) takes the file the checkpoint names and refuses
//! it when its bytes are not the ones the checkpoint was published with (a
//! part left by another save, or a damaged one). Checkpoints without set
//! entries (written by other tools) read the conventional sidecar, if any.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use super::{CHECKSUM_ALGO, Fnv1a, sidecar_path, write_atomic};
use crate::error::ModelError;

/// Prefix of the metadata keys naming a set's parts.
pub const SET_KEY_PREFIX: &str = "set.";

/// Role of the vocabulary part (`set.vocab`).
pub const VOCAB_ROLE: &str = "vocab";

/// Role of the optimiser-state part of a training checkpoint (`set.optim`).
pub const OPTIM_ROLE: &str = "optim";

/// The checksum of a part's bytes, as recorded in its set entry.
pub fn bytes_checksum(bytes: &[u8]) -> String {
    let mut h = Fnv1a::new();
    h.update(bytes);
    format!("{CHECKSUM_ALGO}{:016x}", h.0)
}

/// The metadata entry `(set.<role>, "<file name> <checksum>")` that makes the
/// file `path`, holding `bytes`, the part `role` of a checkpoint beside it.
pub fn entry(role: &str, path: &Path, bytes: &[u8]) -> Result<(String, String), ModelError> {
    entry_with_checksum(role, path, &bytes_checksum(bytes))
}

/// [`entry`] with the checksum of the part's bytes already computed
/// ([`bytes_checksum`]): a large part is not hashed twice.
pub fn entry_with_checksum(role: &str, path: &Path, checksum: &str) -> Result<(String, String), ModelError> {
    let name = path.file_name().and_then(|n| n.to_str()).ok_or_else(|| {
        ModelError::Checkpoint(path.display().to_string(), "a set part needs a UTF-8 file name".into())
    })?;
    if name.contains(' ') {
        return Err(ModelError::Checkpoint(path.display().to_string(), "a set part's file name has no spaces".into()));
    }
    Ok((format!("{SET_KEY_PREFIX}{role}"), format!("{name} {checksum}")))
}

/// Splits the value of a `set.<role>` entry into the part's file name and its
/// recorded checksum, refusing a name that is not a plain file name beside
/// the checkpoint (no separator, not `.` or `..`); the error says what is wrong.
pub fn parse_entry(value: &str) -> Result<(&str, &str), &'static str> {
    let (name, sum) = value.split_once(' ').ok_or("expected `<file name> <checksum>`")?;
    if name.is_empty() || name.contains('/') || name.contains('\\') || name == "." || name == ".." {
        return Err("not a file name beside the checkpoint");
    }
    Ok((name, sum))
}

/// Writes a part atomically, or leaves the file alone when it already holds
/// exactly `bytes` (parts that do not change between saves, such as the
/// vocabularies of a run, are then never rewritten).
pub fn write_part(path: &Path, bytes: &[u8]) -> Result<(), ModelError> {
    if fs::metadata(path).is_ok_and(|m| m.len() == bytes.len() as u64) && fs::read(path).is_ok_and(|old| old == bytes) {
        return Ok(());
    }
    write_atomic(path, bytes)
}

/// Reads the part `role` of the checkpoint at `ckpt` whose metadata is
/// `meta`: the file its `set.<role>` entry names, checked against the
/// recorded checksum; for a checkpoint without that entry, the sidecar
/// `legacy_suffix` ([`sidecar_path`]) when it exists. `None` when the
/// checkpoint has no such part.
pub fn read_part(
    ckpt: &Path,
    meta: &BTreeMap<String, String>,
    role: &str,
    legacy_suffix: &str,
) -> Result<Option<(PathBuf, Vec<u8>)>, ModelError> {
    let key = format!("{SET_KEY_PREFIX}{role}");
    let Some(value) = meta.get(&key) else {
        let legacy = sidecar_path(ckpt, legacy_suffix);
        if !legacy.is_file() {
            return Ok(None);
        }
        let bytes = fs::read(&legacy).map_err(|e| ModelError::Io(legacy.display().to_string(), e))?;
        return Ok(Some((legacy, bytes)));
    };
    let (name, sum) = parse_entry(value)
        .map_err(|msg| ModelError::Checkpoint(ckpt.display().to_string(), format!("metadata key `{key}`: {msg}")))?;
    let path = ckpt.with_file_name(name);
    let bytes = fs::read(&path)
        .map_err(|e| ModelError::Io(format!("{} (the {role} of checkpoint {})", path.display(), ckpt.display()), e))?;
    let actual = bytes_checksum(&bytes);
    if actual != sum {
        return Err(ModelError::Checkpoint(
            path.display().to_string(),
            format!(
                "does not belong to checkpoint {}: its content ({actual}) is not the {role} the checkpoint was \
                 saved with ({sum}); it was written by another save or damaged",
                ckpt.display()
            ),
        ));
    }
    Ok(Some((path, bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("dien-set-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_part_reads_back_only_with_the_bytes_it_was_published_with() {
        let d = dir("part");
        let ckpt = d.join("m.safetensors");
        let part = d.join("m.vocab.json");
        write_part(&part, b"one").unwrap();
        let meta: BTreeMap<_, _> = [entry("vocab", &part, b"one").unwrap()].into();
        let (p, bytes) = read_part(&ckpt, &meta, "vocab", "vocab.json").unwrap().unwrap();
        assert_eq!((p, bytes), (part.clone(), b"one".to_vec()));

        // Another save's part under the same name is refused, naming both.
        write_part(&part, b"two").unwrap();
        let err = read_part(&ckpt, &meta, "vocab", "vocab.json").unwrap_err().to_string();
        assert!(err.contains("m.vocab.json") && err.contains("does not belong to checkpoint"), "{err}");
        assert!(err.contains("m.safetensors"), "{err}");

        // A missing part is an error naming it and its checkpoint.
        fs::remove_file(&part).unwrap();
        let err = read_part(&ckpt, &meta, "vocab", "vocab.json").unwrap_err().to_string();
        assert!(err.contains("m.vocab.json") && err.contains("the vocab of checkpoint"), "{err}");
    }

    #[test]
    fn entries_name_only_files_beside_the_checkpoint() {
        let d = dir("names");
        let ckpt = d.join("m.safetensors");
        for bad in ["../x fnv1a64:0000000000000000", "a/b fnv1a64:0", "nochecksum", " fnv1a64:0"] {
            let meta: BTreeMap<_, _> = [("set.optim".to_string(), bad.to_string())].into();
            let err = read_part(&ckpt, &meta, "optim", "optim.safetensors").unwrap_err().to_string();
            assert!(err.contains("set.optim"), "{bad}: {err}");
        }
    }

    #[test]
    fn checkpoints_without_entries_read_the_conventional_sidecar() {
        let d = dir("legacy");
        let ckpt = d.join("m.safetensors");
        assert!(read_part(&ckpt, &BTreeMap::new(), "vocab", "vocab.json").unwrap().is_none());
        fs::write(d.join("m.vocab.json"), b"{}").unwrap();
        let (p, b) = read_part(&ckpt, &BTreeMap::new(), "vocab", "vocab.json").unwrap().unwrap();
        assert_eq!((p, b), (d.join("m.vocab.json"), b"{}".to_vec()));
    }

    #[test]
    fn unchanged_parts_are_not_rewritten() {
        let d = dir("same");
        let part = d.join("p");
        write_part(&part, b"abc").unwrap();
        let before = fs::metadata(&part).unwrap().modified().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        write_part(&part, b"abc").unwrap();
        assert_eq!(fs::metadata(&part).unwrap().modified().unwrap(), before);
        write_part(&part, b"abcd").unwrap();
        assert_eq!(fs::read(&part).unwrap(), b"abcd");
    }
}
