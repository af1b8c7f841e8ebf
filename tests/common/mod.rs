//! Helpers shared by the integration tests of the root package: running
//! the `dien` binary, scratch directories, and reading a data file as the
//! scoring requests it holds.

// Each test binary uses a part of these helpers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use dien_trainer::data::line::{split_fields_with, strip_line_end};

/// `target/<profile>`: integration-test binaries live in its `deps/`.
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("path of the test binary");
    let deps = exe.parent().expect("the test binary is in a directory");
    assert!(
        deps.file_name().is_some_and(|n| n == "deps"),
        "the test binary {} is not in target/<profile>/deps/: cannot locate the `dien` binary",
        exe.display()
    );
    deps.parent().expect("target/<profile>/deps").to_path_buf()
}

/// The cargo arguments that build with the profile whose outputs are in
/// `dir` (`target/<dir>`): `debug` holds the `test` profile's outputs when
/// the tests run (`cargo test` builds the binaries it needs with it),
/// `release` the release ones, any other name a custom profile's.
fn profile_args(dir: &Path) -> Vec<String> {
    match dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => vec!["--profile".into(), "test".into()],
        Some("release") => vec!["--release".into()],
        Some(name) => vec!["--profile".into(), name.into()],
        None => Vec::new(),
    }
}

/// The `dien` binary of this build, `target/<profile>/dien`.
///
/// The root package cannot name another package's binary at compile time,
/// so it is looked up beside the test binaries, where `cargo test
/// --workspace` leaves it. When it is missing (for example under `cargo
/// test --test e2e` alone) it is built with `$CARGO build -p dien-trainer
/// --bin dien` and the same profile. An existing binary is used as it is:
/// after changing the trainer, run the workspace tests (or that build) so
/// that it is rebuilt.
pub fn dien_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let dir = profile_dir();
        let bin = dir.join(format!("dien{}", std::env::consts::EXE_SUFFIX));
        if bin.is_file() {
            return bin;
        }
        let Some(cargo) = std::env::var_os("CARGO") else {
            panic!(
                "{} is missing and CARGO is not set (not run by cargo): build it with \
                 `cargo build -p dien-trainer --bin dien` using the tests' profile",
                bin.display()
            )
        };
        let args = profile_args(&dir);
        eprintln!("building the `dien` binary: cargo build -p dien-trainer --bin dien {}", args.join(" "));
        let status = Command::new(&cargo)
            .args(["build", "-p", "dien-trainer", "--bin", "dien"])
            .args(&args)
            .status()
            .unwrap_or_else(|e| panic!("running {} build: {e}", cargo.to_string_lossy()));
        assert!(status.success(), "`cargo build -p dien-trainer --bin dien {}` failed ({status})", args.join(" "));
        assert!(
            bin.is_file(),
            "`cargo build -p dien-trainer --bin dien {}` succeeded but {} is still missing (a different \
             target directory?)",
            args.join(" "),
            bin.display()
        );
        bin
    })
}

/// Runs `dien args…`, asserts success, returns stdout and stderr.
pub fn dien(args: &[&str]) -> (String, String) {
    let out = Command::new(dien_bin()).args(args).output().expect("run dien");
    let (so, se) =
        (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
    assert!(out.status.success(), "dien {args:?} failed:\n{se}");
    (so, se)
}

/// The last line of a command's output, parsed as JSON.
pub fn last_json(stdout: &str) -> serde_json::Value {
    serde_json::from_str(stdout.lines().last().expect("output")).expect("last line is JSON")
}

/// A fresh (emptied) directory `name` under cargo's scratch directory for
/// integration tests (`target/tmp`). It is left in place after the test,
/// for inspection; the next run empties it.
pub fn scratch_dir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap_or_else(|e| panic!("creating {}: {e}", d.display()));
    d
}

/// A path as `&str` (test paths are UTF-8).
pub fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

/// One scoring request: a user with a history and the candidates of the
/// consecutive lines of a data file that share that user and history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// The user id string.
    pub user: String,
    /// History item ids, oldest first.
    pub hist_items: Vec<String>,
    /// History category ids, one per item.
    pub hist_cats: Vec<String>,
    /// Candidate item ids.
    pub cand_items: Vec<String>,
    /// Candidate category ids, one per item.
    pub cand_cats: Vec<String>,
    /// Index of the first candidate's sample in the file (0-based, blank
    /// lines not counted): `dien predict` writes the candidates'
    /// probabilities on lines `first..first + cand_items.len()`.
    pub first: usize,
}

/// The requests of a data file (labelled or not), in file order: `dien
/// predict` scores each line as one sample, and consecutive lines of one
/// user with the same history are one request with several candidates.
pub fn requests(file: &Path) -> Vec<Request> {
    let text = std::fs::read(file).unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
    let mut out: Vec<Request> = Vec::new();
    let mut sample = 0;
    for line in text.split(|&c| c == b'\n') {
        let line = strip_line_end(line);
        if line.is_empty() {
            continue;
        }
        let f = split_fields_with(line, true).unwrap_or_else(|e| panic!("{}: {e:?}", file.display()));
        let hist_items: Vec<String> = f.mid_tokens().map(str::to_string).collect();
        let hist_cats: Vec<String> = f.cat_tokens().map(str::to_string).collect();
        match out.last_mut() {
            Some(r) if r.user == f.uid && r.hist_items == hist_items && r.hist_cats == hist_cats => {
                r.cand_items.push(f.mid.to_string());
                r.cand_cats.push(f.cat.to_string());
            }
            _ => out.push(Request {
                user: f.uid.to_string(),
                hist_items,
                hist_cats,
                cand_items: vec![f.mid.to_string()],
                cand_cats: vec![f.cat.to_string()],
                first: sample,
            }),
        }
        sample += 1;
    }
    out
}

/// The probabilities `dien predict` wrote, one per line.
pub fn read_probabilities(path: &Path) -> Vec<f32> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
        .lines()
        .map(|l| l.parse().unwrap_or_else(|e| panic!("{}: bad probability {l:?}: {e}", path.display())))
        .collect()
}
