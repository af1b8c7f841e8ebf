//! The `dien` command's stable forms (docs/MODEL.md#commands), run as a user would.
//!
//! The chain generate → train → eval → predict → grads, with the same
//! checkpoints scored through the C ABI and `Predictor`, is the workspace's
//! end-to-end test, `tests/e2e.rs` at the root.

use std::process::Command;

fn dien(args: &[&str]) -> (String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_dien")).args(args).output().expect("run dien");
    let (so, se) =
        (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
    assert!(out.status.success(), "dien {args:?} failed:\n{se}");
    (so, se)
}

fn last_json(stdout: &str) -> serde_json::Value {
    serde_json::from_str(stdout.lines().last().expect("output")).expect("last line is JSON")
}

#[test]
fn bench_and_gradcheck_print_json() {
    let (out, _) = dien(&[
        "bench",
        "--model",
        "dien",
        "--mode",
        "train",
        "--batch",
        "8",
        "--seqlen",
        "5",
        "--threads",
        "1",
        "--steps",
        "2",
        "--dim",
        "4",
        "--hidden",
        "8",
    ]);
    let j = last_json(&out);
    for k in ["impl", "mode", "model", "batch", "T", "threads", "samples_per_s", "ms_per_step"] {
        assert!(j.get(k).is_some(), "bench output lacks {k}: {j}");
    }
    assert_eq!(j["impl"], "dien-rs");
    assert_eq!(j["T"], 5);
    let (out, _) = dien(&["gradcheck", "--model", "base", "--max-entries", "40"]);
    assert!(out.contains("head.fc1.w"));
    assert_eq!(last_json(&out)["passed"], true);
}

#[test]
fn bad_input_is_a_clear_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_dien"))
        .args(["eval", "--checkpoint", "/nonexistent/m.safetensors", "--data", "/nonexistent"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/m.safetensors"), "{err}");
}

#[test]
fn help_lists_every_model_variant_and_form() {
    use dien_model::{AttForm, AuxForm, ModelKind, Variant};
    for cmd in ["train", "gradcheck", "bench"] {
        let (help, _) = dien(&[cmd, "--help"]);
        let names = ModelKind::ALL.iter().map(|v| v.name());
        let names = names.chain(Variant::ALL.iter().map(|v| v.name()));
        let names = names.chain(AttForm::ALL.iter().map(|v| v.name()));
        for name in names.chain(AuxForm::ALL.iter().map(|v| v.name())) {
            assert!(help.contains(name), "`dien {cmd} --help` does not list `{name}`:\n{help}");
        }
    }
    // An unknown value is refused before any work, with the accepted values.
    let out = Command::new(env!("CARGO_BIN_EXE_dien")).args(["bench", "--variant", "gru2"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("gru2") && err.contains("augru-ref"), "{err}");
}
