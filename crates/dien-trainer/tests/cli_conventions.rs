//! Conventions every `dien` command shares (one default seed, all cores by
//! default, checked counts, enum values listed), run records and config
//! files, and the demo's clean-up.

use std::path::{Path, PathBuf};
use std::process::Command;

use dien_model::checkpoint;
use serde_json::Value;

mod common;
use common::cli::{last_json, ok, refused as fails, s};

fn tmp(name: &str) -> PathBuf {
    common::cli::tmp("conv", name)
}

/// A small generated data set.
fn data(dir: &Path) -> PathBuf {
    let d = dir.join("data");
    ok(&["generate", "--out", s(&d), "--users", "300", "--max-history", "12"]);
    d
}

#[test]
fn every_seed_defaults_to_one_value() {
    for cmd in ["demo", "generate", "prepare", "train", "gradcheck"] {
        let (help, _) = ok(&[cmd, "--help"]);
        let line = help.lines().skip_while(|l| !l.contains("--seed")).take(5).collect::<String>();
        assert!(line.contains("[default: 2018]"), "{cmd} --seed: {line}");
    }
}

#[test]
fn counts_and_threads_are_checked_before_work() {
    for (args, says) in [
        (vec!["bench", "--threads", "0"], "at least 1"),
        (vec!["train", "--data", ".", "--out", "x.safetensors", "--threads", "100000"], "eight per core"),
        (vec!["train", "--data", ".", "--out", "x.safetensors", "--epochs", "0"], "--epochs"),
        (vec!["eval", "--checkpoint", "x", "--data", ".", "--batch", "0"], "--batch"),
        (vec!["bench", "--batch", "1000000000"], "--batch"),
        (vec!["bench", "--steps", "0"], "--steps"),
        (vec!["train", "--data", ".", "--out", "x.safetensors", "--max-len", "0"], "--max-len"),
        (vec!["train", "--data", ".", "--out", "x.safetensors", "--max-steps", "0"], "--max-steps"),
        (vec!["train", "--data", ".", "--out", "x.safetensors", "--eval-every", "0"], "--eval-every"),
    ] {
        let err = fails(&args);
        assert!(err.contains(says), "dien {args:?}: {err}");
        assert!(!err.contains("inf%") && !err.contains("panicked"), "{err}");
    }
}

#[test]
fn enum_flags_list_their_values() {
    let err = fails(&["bench", "--mode", "foo"]);
    for v in ["train", "infer", "score"] {
        assert!(err.contains(v), "{err}");
    }
    let err = fails(&["train", "--data", ".", "--out", "x", "--optimizer", "adamw"]);
    assert!(err.contains("adam") && err.contains("sgd"), "{err}");
    let (help, _) = ok(&["bench", "--help"]);
    assert!(help.contains("possible values") && help.contains("score"), "{help}");
    let err = fails(&["bench", "--mode", "score", "--precision", "fp16"]);
    assert!(err.contains("f32") && err.contains("bf16"), "{err}");
}

#[test]
fn bench_score_reports_its_precision_or_the_missing_cpu_feature() {
    let base = ["bench", "--mode", "score", "--candidates", "3", "--seqlen", "5", "--steps", "1", "--threads", "1"];
    let (out, _) = ok(&base);
    assert_eq!(last_json(&out)["precision"], "f32");
    let args: Vec<&str> = base.iter().copied().chain(["--precision", "bf16"]).collect();
    if dien_model::serve::Precision::Bf16.supported() {
        let (out, _) = ok(&args);
        assert_eq!(last_json(&out)["precision"], "bf16");
    } else {
        assert!(fails(&args).contains("AVX512_BF16"));
    }
}

#[test]
fn flags_of_different_meaning_have_different_names() {
    let (gen_help, _) = ok(&["generate", "--help"]);
    assert!(gen_help.contains("--max-history") && !gen_help.contains("--max-len"), "{gen_help}");
    let (grads_help, _) = ok(&["grads", "--help"]);
    assert!(grads_help.contains("--batch-file"), "{grads_help}");
}

#[test]
fn bench_uses_every_core_by_default() {
    let (out, _) = ok(&[
        "bench", "--model", "base", "--batch", "4", "--seqlen", "3", "--steps", "1", "--dim", "2", "--hidden", "4",
    ]);
    let j = last_json(&out);
    let cores = std::thread::available_parallelism().unwrap().get() as u64;
    assert_eq!(j["threads"].as_u64(), Some(cores), "{j}");
    assert_eq!(j["mode"], "train");
}

#[test]
fn run_record_config_file_and_single_final_evaluation() {
    let dir = tmp("record");
    let data = data(&dir);
    let ck = dir.join("m.safetensors");
    let cfg = dir.join("run.toml");
    std::fs::write(
        &cfg,
        format!(
            "data = {:?}\nout = {:?}\nmodel = \"dien\"\ndim = 4\nhidden = 8\nseed = 5\nmax_steps = 4\neval_every = 2\nquiet = true\nrecal_samples = 50\n",
            s(&data),
            s(&ck)
        ),
    )
    .unwrap();
    // The command line overrides the file.
    let (_, err) = ok(&["train", "--config", s(&cfg), "--seed", "6", "--threads", "1"]);
    assert!(err.contains("vocabularies: uid read from ") && err.contains("uid_voc.pkl; mid read from"), "{err}");
    assert!(!err.contains("Built") && !err.contains("File("), "{err}");

    let log = std::fs::read_to_string(dir.join("m.metrics.jsonl")).unwrap();
    let records: Vec<Value> = log.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let record = &records[0];
    assert_eq!(record["kind"], "run", "{record}");
    assert!(record["version"].as_str().unwrap().starts_with(env!("CARGO_PKG_VERSION")));
    let c = &record["config"];
    assert_eq!((c["seed"].as_u64(), c["dim"].as_u64(), c["max_steps"].as_u64()), (Some(6), Some(4), Some(4)), "{c}");
    assert_eq!((c["model"].as_str(), c["lr"].as_f64(), c["threads"].as_u64()), (Some("dien"), Some(0.001), Some(1)));
    // Evaluated at step 2 and 4, and not again at the end.
    let evals: Vec<u64> = records.iter().filter(|r| r["kind"] == "eval").map(|r| r["step"].as_u64().unwrap()).collect();
    assert_eq!(evals, [2, 4]);
    // Every checkpoint of the run carries the same record.
    for path in [ck.clone(), dir.join("m.best.safetensors")] {
        let (meta, _) = checkpoint::load_tensors(&path).unwrap();
        let stored: Value = serde_json::from_str(&meta["run"]).unwrap();
        assert_eq!(&stored, record, "{}", path.display());
    }
    // The plot shows comparable losses, the auxiliary one apart, and the
    // validation and test AUC.
    let svg = std::fs::read_to_string(dir.join("m.curves.svg")).unwrap();
    assert!(svg.contains("target loss") && svg.contains("auxiliary loss") && svg.contains("AUC"));
    assert!(svg.contains("dien valid") && svg.contains("dien test"));

    // The record repeats the run: same settings, same checkpoint bytes.
    let again = dir.join("again.json");
    let mut rec = record.clone();
    rec["config"]["out"] = Value::from(s(&dir.join("m2.safetensors")));
    rec["config"].as_object_mut().unwrap().remove("metrics_log");
    rec["config"].as_object_mut().unwrap().remove("plot");
    std::fs::write(&again, rec.to_string()).unwrap();
    ok(&["train", "--config", s(&again), "--quiet"]);
    let (_, a) = checkpoint::load_tensors(&ck).unwrap();
    let (_, b) = checkpoint::load_tensors(&dir.join("m2.safetensors")).unwrap();
    assert_eq!(a, b, "the repeated run trained other parameters");

    // Unknown keys and wrongly typed values are errors naming the key.
    std::fs::write(&cfg, "lerning_rate = 0.1\n").unwrap();
    let err = fails(&["train", "--config", s(&cfg)]);
    assert!(err.contains("lerning_rate") && err.contains("max_len") && err.contains("run.toml"), "{err}");
    std::fs::write(&cfg, "quiet = 3\n").unwrap();
    let err = fails(&["train", "--config", s(&cfg)]);
    assert!(err.contains("key `quiet`"), "{err}");
}

#[test]
fn demo_removes_its_scratch_folder() {
    let dir = tmp("demo");
    let out = Command::new(env!("CARGO_BIN_EXE_dien"))
        .args(["demo", "--users", "200", "--quiet", "--threads", "2"])
        .env("TMPDIR", &dir)
        .output()
        .unwrap();
    let se = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{se}");
    let so = String::from_utf8_lossy(&out.stdout);
    assert_eq!(last_json(&so)["dir"], Value::Null, "{so}");
    let left: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn the_library_refuses_a_run_that_would_train_nothing() {
    use dien_model::ModelKind;
    use dien_trainer::train::{TrainConfig, train};
    let dir = tmp("nothing");
    let mut cfg = TrainConfig::new(dir.join("data"), dir.join("m.safetensors"), ModelKind::Base);
    for (set, says) in [
        (&(|c: &mut TrainConfig| c.epochs = 0) as &dyn Fn(&mut TrainConfig), "epochs"),
        (&|c: &mut TrainConfig| c.max_steps = Some(0), "max_steps"),
        (&|c: &mut TrainConfig| c.batch_size = 0, "batch size"),
    ] {
        let mut c = cfg.clone();
        set(&mut c);
        let err = train(&c, &mut |_| {}).unwrap_err().to_string();
        assert!(err.contains(says) && err.contains("at least 1"), "{err}");
    }
    cfg.threads = Some(0);
    assert!(train(&cfg, &mut |_| {}).is_err());
    assert!(!dir.join("m.safetensors").exists());
}
