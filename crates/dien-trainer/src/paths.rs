//! Outputs never overwrite inputs. A command lists the files it reads and
//! the files it writes, and [`check_outputs`] refuses, before any work, an
//! output that is one of the inputs (compared as files: the same path
//! spelled differently, a symbolic link or a hard link to it all count) or
//! that another output of the same command also names.

use std::path::{Path, PathBuf};

use crate::data::{ITEM_INFO_FILE, REVIEWS_INFO_FILE, TEST_FILE, TRAIN_FILE};
use crate::error::TrainError;

/// A file a command reads or writes, with what it is for (named in errors:
/// `--out`, `the training file`, ...).
#[derive(Clone, Debug)]
pub struct Role {
    /// What the file is to the command.
    pub what: String,
    /// Its path as given.
    pub path: PathBuf,
}

impl Role {
    /// A file `path` that is `what` to the command.
    pub fn new(what: impl Into<String>, path: impl Into<PathBuf>) -> Self {
        Self { what: what.into(), path: path.into() }
    }
}

/// The files of a data directory that commands read: the training and test
/// files, `item-info`, `reviews-info` and the vocabulary files (those that
/// exist).
pub fn data_dir_inputs(dir: &Path) -> Vec<Role> {
    let mut names = vec![TRAIN_FILE, TEST_FILE, ITEM_INFO_FILE, REVIEWS_INFO_FILE];
    let vocab_files = ["uid_voc.pkl", "mid_voc.pkl", "cat_voc.pkl", "uid_voc.json", "mid_voc.json", "cat_voc.json"];
    names.extend(vocab_files);
    names.into_iter().map(|n| dir.join(n)).filter(|p| p.exists()).map(|p| Role::new("a data file", p)).collect()
}

/// `path` with its folder resolved (the file itself need not exist), for
/// comparing outputs that do not exist yet.
fn resolved(path: &Path) -> PathBuf {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    match (parent.canonicalize(), path.file_name()) {
        (Ok(dir), Some(name)) => dir.join(name),
        _ => path.to_path_buf(),
    }
}

/// Whether `a` and `b` are the same file: the same existing file (by device
/// and inode, so links count), or the same resolved path.
fn same(a: &Path, b: &Path) -> bool {
    same_file::is_same_file(a, b).unwrap_or(false) || resolved(a) == resolved(b)
}

/// Refuses an output that is an input, or that two outputs share.
pub fn check_outputs(inputs: &[Role], outputs: &[Role]) -> Result<(), TrainError> {
    for (i, out) in outputs.iter().enumerate() {
        if let Some(input) = inputs.iter().find(|input| same(&out.path, &input.path)) {
            return Err(TrainError::Config(format!(
                "{} {} is {} {}: refusing to overwrite an input",
                out.what,
                out.path.display(),
                input.what,
                input.path.display()
            )));
        }
        if let Some(other) = outputs[..i].iter().find(|o| same(&out.path, &o.path)) {
            return Err(TrainError::Config(format!(
                "{} {} and {} {} are the same file",
                other.what,
                other.path.display(),
                out.what,
                out.path.display()
            )));
        }
        if out.path.is_dir() {
            return Err(TrainError::Config(format!("{} {} is a directory, not a file", out.what, out.path.display())));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("dien-paths-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("sub")).unwrap();
        d
    }

    #[test]
    fn an_input_is_recognised_however_it_is_named() {
        let d = dir();
        let input = d.join("data.txt");
        std::fs::write(&input, "x").unwrap();
        std::fs::hard_link(&input, d.join("hard")).unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(&input, d.join("soft")).unwrap();
        let inputs = [Role::new("the data file", &input)];
        let mut names = vec![d.join("sub/../data.txt"), d.join("hard")];
        if cfg!(unix) {
            names.push(d.join("soft"));
        }
        for name in names {
            let err = check_outputs(&inputs, &[Role::new("--out", &name)]).unwrap_err().to_string();
            assert!(err.contains("refusing to overwrite an input") && err.contains("--out"), "{err}");
        }
        check_outputs(&inputs, &[Role::new("--out", d.join("new.txt"))]).unwrap();
        // Two outputs on one new file.
        let err =
            check_outputs(&inputs, &[Role::new("--plot", d.join("a")), Role::new("--metrics-log", d.join("sub/../a"))])
                .unwrap_err()
                .to_string();
        assert!(err.contains("--plot") && err.contains("--metrics-log") && err.contains("the same file"), "{err}");
        let err = check_outputs(&inputs, &[Role::new("--out", d.join("sub"))]).unwrap_err().to_string();
        assert!(err.contains("is a directory"), "{err}");
    }
}
