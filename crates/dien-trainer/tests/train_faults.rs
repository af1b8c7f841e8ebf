//! Faults during a real `dien train`: killed with SIGKILL at spread-out
//! moments, crashed between the files of a checkpoint set, and a full disk
//! at each file of a set. Each is followed by what a user does next
//! (`--resume`, or a fresh start when nothing was saved yet), and the final
//! checkpoint must equal the uninterrupted run's, tensor for tensor and bit
//! for bit; a run that cannot resume must say so. The crash and full-disk
//! faults use the `DIEN_FAULT` hook of debug builds (see
//! `dien_model::checkpoint`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use dien_model::checkpoint;

mod common;
use common::cli::s;

fn tmp(name: &str) -> PathBuf {
    common::cli::tmp("faults", name)
}

/// A small data set: 540 training lines, 17 batches of 32 per epoch.
fn data(dir: &Path) -> PathBuf {
    let d = dir.join("data");
    let st = Command::new(env!("CARGO_BIN_EXE_dien"))
        .args(["generate", "--out", s(&d), "--users", "300", "--max-history", "15", "--seed", "3"])
        .output()
        .unwrap();
    assert!(st.status.success());
    d
}

const STEPS: &str = "24";

/// `dien train` writing `out`: every step saved, crossing an epoch.
fn train_cmd(data: &Path, out: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_dien"));
    c.args(["train", "--data", s(data), "--out", s(out), "--model", "dien", "--dim", "4", "--hidden", "8"]);
    c.args(["--max-len", "15", "--batch", "32", "--threads", "1", "--max-steps", STEPS, "--save-every", "1"]);
    c.args(["--eval-every", "10", "--recal-samples", "100", "--quiet"]);
    c.stdout(Stdio::null()).stderr(Stdio::piped());
    c
}

/// `dien train --resume` as a user types it: the other settings come from
/// the checkpoint's run record.
fn resume_cmd(out: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_dien"));
    c.args(["train", "--resume", "--out", s(out)]);
    c.stdout(Stdio::null()).stderr(Stdio::piped());
    c
}

/// Every tensor of a checkpoint as bits.
fn tensors(path: &Path) -> Vec<(String, Vec<u32>)> {
    let (_, p) = checkpoint::load(path).unwrap();
    p.iter().map(|(spec, v)| (spec.name.clone(), v.iter().map(|x| x.to_bits()).collect())).collect()
}

/// Runs to completion after a fault: resumes when a checkpoint exists,
/// starts afresh otherwise.
fn finish(data: &Path, out: &Path) {
    let o = if out.exists() { resume_cmd(out).output() } else { train_cmd(data, out).output() }.unwrap();
    assert!(o.status.success(), "could not continue after the fault:\n{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn sigkill_at_any_moment_then_resume_gives_the_uninterrupted_checkpoint() {
    let dir = tmp("kill");
    let data = data(&dir);
    let full = dir.join("full/m.safetensors");
    let t0 = Instant::now();
    assert!(train_cmd(&data, &full).output().unwrap().status.success());
    let span = t0.elapsed();
    let want = tensors(&full);

    // Kill at twelve moments spread over the run's duration.
    let mut mid_run = 0;
    for i in 0..12u32 {
        let out = dir.join(format!("k{i}/m.safetensors"));
        let mut child = train_cmd(&data, &out).spawn().unwrap();
        std::thread::sleep(span.mul_f64(f64::from(i) / 12.0 + 0.02));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        mid_run += usize::from(out.exists());
        finish(&data, &out);
        assert!(tensors(&out) == want, "kill {i}: the resumed run differs from the uninterrupted one");
    }
    assert!(mid_run >= 6, "only {mid_run} of 12 kills came after a checkpoint was saved");
}

#[test]
fn a_crash_or_a_full_disk_at_any_file_of_a_set_loses_nothing() {
    let dir = tmp("sets");
    let data = data(&dir);
    let full = dir.join("full/m.safetensors");
    assert!(train_cmd(&data, &full).output().unwrap().status.success());
    let want = tensors(&full);

    // Each file of the set (the vocabularies are written once, at the first
    // save), at the first save and at a later one.
    let faults = [
        ("fail", "m.vocab.json", 1),
        ("fail", "m.optim.", 1),
        ("fail", "m.optim.", 5),
        ("fail", "m.safetensors", 1),
        ("fail", "m.safetensors", 7),
        ("fail", "m.best.vocab.json", 1),
        ("fail", "m.best.safetensors", 1),
        ("abort", "m.vocab.json", 1),
        ("abort", "m.optim.", 1),
        ("abort", "m.optim.", 6),
        ("abort", "m.safetensors", 4),
        ("abort", "m.best.safetensors", 1),
    ];
    for (i, (action, part, n)) in faults.into_iter().enumerate() {
        let out = dir.join(format!("f{i}/m.safetensors"));
        let o = train_cmd(&data, &out).env("DIEN_FAULT", format!("{action}:{part}:{n}")).output().unwrap();
        assert!(!o.status.success(), "{action} {part} #{n}: the fault did not happen");
        let err = String::from_utf8_lossy(&o.stderr);
        if action == "fail" {
            // The message names the file asked for, not a temporary one.
            assert!(err.contains("no space left") && err.contains(part) && !err.contains(".tmp-"), "{err}");
        }
        finish(&data, &out);
        assert!(tensors(&out) == want, "{action} {part} #{n}: the final checkpoint differs");
        let best = out.with_file_name("m.best.safetensors");
        assert!(dien_model::serve::Predictor::load(&best).is_ok(), "{action} {part} #{n}: best set unusable");
    }
}

#[test]
fn resume_without_a_checkpoint_says_so() {
    let dir = tmp("none");
    let o = resume_cmd(&dir.join("m.safetensors")).output().unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("m.safetensors") && err.contains("no checkpoint"), "{err}");
}
