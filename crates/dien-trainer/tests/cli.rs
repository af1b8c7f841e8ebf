//! The `dien` command's stable forms (docs/MODEL.md#commands), run as a user would.

use std::path::{Path, PathBuf};
use std::process::Command;

use dien_model::checkpoint;

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

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("dien-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn generate_train_eval_predict_grads() {
    let dir = tmp("flow");
    let data = dir.join("data");
    dien(&["generate", "--out", s(&data), "--seed", "3", "--users", "300"]);
    let ck = dir.join("ck/m.safetensors");
    let (out, _) = dien(&[
        "train",
        "--data",
        s(&data),
        "--model",
        "dien",
        "--out",
        s(&ck),
        "--epochs",
        "1",
        "--seed",
        "4",
        "--threads",
        "2",
        "--dim",
        "4",
        "--hidden",
        "8",
        "--max-steps",
        "3",
        "--quiet",
    ]);
    let j = last_json(&out);
    for k in ["auc", "gauc", "logloss", "accuracy", "samples"] {
        assert!(j.get(k).is_some(), "train output lacks {k}: {j}");
    }
    let (out, _) = dien(&["eval", "--checkpoint", s(&ck), "--data", s(&data)]);
    let e = last_json(&out);
    assert_eq!(e["samples"], j["samples"]);
    assert_eq!(e["auc"], j["auc"], "eval of the saved checkpoint reproduces the training run's final metrics");
    // The test file itself, named directly, gives the same metrics.
    let (out, _) = dien(&["eval", "--checkpoint", s(&ck), "--data", s(&data.join("local_test_splitByUser"))]);
    assert_eq!(last_json(&out), e);

    // predict: one probability per input line, in input order.
    let test = data.join("local_test_splitByUser");
    let preds = dir.join("p.txt");
    dien(&["predict", "--checkpoint", s(&ck), "--data", s(&test), "--out", s(&preds)]);
    let n_lines = std::fs::read_to_string(&test).unwrap().lines().count();
    let p: Vec<f64> = std::fs::read_to_string(&preds).unwrap().lines().map(|l| l.parse().unwrap()).collect();
    assert_eq!(p.len(), n_lines);
    assert!(p.iter().all(|&x| x > 0.0 && x < 1.0));
    // Scoring a file holding only line 2 gives line 2's probability.
    let one = dir.join("one");
    std::fs::write(&one, format!("{}\n", std::fs::read_to_string(&test).unwrap().lines().nth(1).unwrap())).unwrap();
    let p1 = dir.join("p1.txt");
    dien(&["predict", "--checkpoint", s(&ck), "--data", s(&one), "--out", s(&p1)]);
    let v: f64 = std::fs::read_to_string(&p1).unwrap().trim().parse().unwrap();
    assert!((v - p[1]).abs() < 1e-6, "{v} vs {}", p[1]);
    // Lines without the label column (data to be scored) give the same
    // probabilities as the labelled lines.
    let unlabelled = dir.join("unlabelled");
    let text: String = std::fs::read_to_string(&test)
        .unwrap()
        .lines()
        .map(|l| format!("{}\n", l.split_once('\t').unwrap().1))
        .collect();
    std::fs::write(&unlabelled, text).unwrap();
    let pu = dir.join("pu.txt");
    dien(&["predict", "--checkpoint", s(&ck), "--data", s(&unlabelled), "--out", s(&pu)]);
    assert_eq!(std::fs::read_to_string(&pu).unwrap(), std::fs::read_to_string(&preds).unwrap());

    // grads: logits, losses and grad.<name> for every parameter, dense.
    let batch = dir.join("b.json");
    std::fs::write(
        &batch,
        r#"{"uid":[1,2,3],"mid":[1,2,3],"cat":[1,1,2],"hist_mid":[[1,2],[],[3,1,2]],"hist_cat":[[1,1],[],[2,1,1]],
            "neg_mid":[[2,3],[],[1,2,3]],"neg_cat":[[1,2],[],[1,1,2]],"label":[1,0,1]}"#,
    )
    .unwrap();
    let (cfg, params) = checkpoint::load(&ck).unwrap();
    for extra in [&[][..], &["--f64"][..]] {
        let g = dir.join("g.safetensors");
        let mut args = vec!["grads", "--checkpoint", s(&ck), "--batch", s(&batch), "--out", s(&g)];
        args.extend_from_slice(extra);
        dien(&args);
        let (_, tensors) = checkpoint::load_tensors(&g).unwrap();
        let get = |n: &str| tensors.iter().find(|t| t.0 == n).unwrap_or_else(|| panic!("{n} missing"));
        assert_eq!(get("logits").1, vec![3]);
        for n in ["loss", "loss_target", "loss_aux"] {
            assert_eq!(get(n).1, vec![1]);
        }
        assert!(get("loss_aux").2[0] > 0.0);
        for (spec, _) in params.iter() {
            if spec.kind == dien_model::TensorKind::Param {
                assert_eq!(get(&format!("grad.{}", spec.name)).1, spec.shape, "{}", spec.name);
            }
        }
        let (_, after) = checkpoint::load(&ck).unwrap();
        assert!(after.iter().zip(params.iter()).all(|(a, b)| a.1 == b.1), "grads must not change the checkpoint");
        assert_eq!(cfg.model, dien_model::ModelKind::Dien);
    }
    let _ = std::fs::remove_dir_all(&dir);
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
