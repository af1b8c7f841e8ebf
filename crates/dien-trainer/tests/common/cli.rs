//! Running the `dien` binary as a user would: outcomes, temporary folders
//! and a small data set with a trained checkpoint.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Runs `dien` with `args` (no standard input).
pub fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dien")).args(args).stdin(Stdio::null()).output().expect("run dien")
}

/// Runs `dien`, expecting success; its standard output and error.
pub fn ok(args: &[&str]) -> (String, String) {
    let o = run(args);
    let (so, se) = (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned());
    assert!(o.status.success(), "dien {args:?} failed:\n{se}");
    (so, se)
}

/// Runs `dien`, expecting a clean refusal (exit 1 or 2, no panic); its
/// standard error.
pub fn refused(args: &[&str]) -> String {
    let o = run(args);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(matches!(o.status.code(), Some(1 | 2)), "dien {args:?}: status {:?}\n{err}", o.status);
    assert!(!err.contains("panicked") && !err.contains("RUST_BACKTRACE"), "dien {args:?} panicked:\n{err}");
    err
}

/// The JSON object on the last line of a command's output.
pub fn last_json(stdout: &str) -> serde_json::Value {
    serde_json::from_str(stdout.lines().last().expect("output")).expect("last line is JSON")
}

/// A fresh, empty folder for one test (`what` names the test file, `name`
/// the test).
pub fn tmp(what: &str, name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("dien-{what}-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A path as a command-line argument.
pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A small generated data set in `dir/data` (200 users).
pub fn small_data(dir: &Path) -> PathBuf {
    let data = dir.join("data");
    ok(&["generate", "--out", s(&data), "--users", "200", "--max-history", "12"]);
    data
}

/// [`small_data`] and a tiny model trained on it for two steps
/// (`dir/m.safetensors`).
pub fn small_checkpoint(dir: &Path) -> (PathBuf, PathBuf) {
    let data = small_data(dir);
    let ck = dir.join("m.safetensors");
    ok(&["train", "--data", s(&data), "--out", s(&ck), "--dim", "2", "--hidden", "4", "--max-steps", "2", "--quiet"]);
    (data, ck)
}
