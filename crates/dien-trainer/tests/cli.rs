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
    assert!(j.get("stages_ms_per_step").is_none(), "stages only when asked");
    // Per-stage timing: every stage and the optimiser, no more than a step.
    let args =
        ["bench", "--mode", "train", "--batch", "8", "--seqlen", "5", "--threads", "1", "--steps", "3", "--stages"];
    let (out, err) = dien(&[&args[..], &["--dim", "4", "--hidden", "8"]].concat());
    let j = last_json(&out);
    let st = j["stages_ms_per_step"].as_object().expect("stages_ms_per_step");
    for k in ["input", "extractor", "aux loss", "interest", "head", "head backward", "optimizer", "other"] {
        assert!(st[k].as_f64().is_some_and(|v| v >= 0.0), "stage {k}: {j}");
    }
    let sum: f64 = st.values().map(|v| v.as_f64().unwrap()).sum();
    let step_mean = j["ms_per_step"].as_f64().unwrap();
    assert!(sum > 0.0 && sum < 3.0 * step_mean + 1.0, "stage times add up to about a step: {sum} vs {step_mean}");
    assert!(err.contains("aux loss"), "the table goes to stderr: {err}");
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

/// `dien gradcheck --path f64|f32|both`: which checks run, the per-tensor
/// JSON of the f32 check (loss, logits and every trainable tensor, for every
/// model), and a non-zero exit status when a tensor fails.
#[test]
fn gradcheck_compares_the_f32_path_per_tensor() {
    use dien_model::{ModelConfig, ModelKind, TensorKind, tensor_specs};
    for model in ModelKind::ALL {
        let (out, _) = dien(&["gradcheck", "--model", model.name(), "--path", "f32"]);
        assert!(out.contains("f32 fast path against the f64 reference") && out.contains("f32 check: passed"), "{out}");
        let j = last_json(&out);
        assert_eq!((&j["path"], &j["passed"]), (&"f32".into(), &true.into()), "{j}");
        assert!(j.get("f64").is_none(), "{j}");
        let f32 = &j["f32"];
        assert_eq!(f32["passed"], true);
        assert_eq!(f32["tol"], dien_model::gradcheck::F32_TOL);
        let tensors = f32["tensors"].as_array().unwrap();
        let names: Vec<&str> = tensors.iter().map(|t| t["name"].as_str().unwrap()).collect();
        let cfg = ModelConfig::new(*model, 6, 10, 5);
        let mut want = vec!["loss".to_string()];
        if cfg.has_aux() {
            want.push("loss_aux".into());
        }
        want.push("logits".into());
        want.extend(tensor_specs(&cfg).into_iter().filter(|s| s.kind == TensorKind::Param).map(|s| s.name));
        assert_eq!(names, want, "{model}");
        for t in tensors {
            for k in ["shape", "norm", "rel_err", "max_abs", "passed"] {
                assert!(t.get(k).is_some(), "{model}: {t} lacks {k}");
            }
            assert!(t["rel_err"].as_f64().unwrap() <= dien_model::gradcheck::F32_TOL, "{model}: {t}");
        }
        let emb = tensors.iter().find(|t| t["name"] == "emb.mid").unwrap();
        assert_eq!((&emb["table_rows"], &emb["shape"][1]), (&10.into(), &2.into()), "{emb}");
    }

    // Both checks by default, each with its own per-tensor list.
    let (out, _) = dien(&["gradcheck", "--model", "din", "--max-entries", "20"]);
    let j = last_json(&out);
    assert_eq!((&j["path"], &j["passed"]), (&"both".into(), &true.into()), "{j}");
    for path in ["f64", "f32"] {
        assert_eq!(j[path]["passed"], true, "{j}");
        assert!(j[path]["tensors"].as_array().is_some_and(|t| t.iter().any(|t| t["name"] == "att.fc1.w")), "{j}");
    }
    let (out, _) = dien(&["gradcheck", "--model", "base", "--path", "f64", "--max-entries", "20"]);
    let j = last_json(&out);
    assert!(j.get("f32").is_none() && j["f64"]["passed"] == true, "{j}");

    // A tolerance no f32 computation meets: every tensor fails, and so does
    // the command, after printing its report.
    let out = Command::new(env!("CARGO_BIN_EXE_dien"))
        .args(["gradcheck", "--model", "base", "--path", "f32", "--tol-f32", "1e-12"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let j = last_json(&stdout);
    assert_eq!((&j["passed"], &j["f32"]["passed"]), (&false.into(), &false.into()), "{j}");
    assert!(j["f32"]["tensors"].as_array().unwrap().iter().any(|t| t["passed"] == false), "{j}");
    assert!(stdout.contains("FAIL") && stderr.contains("f32 head.fc1.w"), "{stdout}\n{stderr}");

    // Bad values are refused before any work, naming the accepted ones.
    for (args, says) in
        [(["--path", "f16"], "f64"), (["--tol-f32", "0"], "--tol-f32"), (["--tol-f32", "NaN"], "--tol-f32")]
    {
        let out = Command::new(env!("CARGO_BIN_EXE_dien")).arg("gradcheck").args(args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(says), "{args:?}: {err}");
    }
    let err = String::from_utf8_lossy(
        &Command::new(env!("CARGO_BIN_EXE_dien")).args(["gradcheck", "--path", "f16"]).output().unwrap().stderr,
    )
    .into_owned();
    assert!(err.contains("f32") && err.contains("both"), "{err}");
}
