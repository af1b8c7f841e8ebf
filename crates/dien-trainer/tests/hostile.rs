//! Inputs and flags a hostile or careless user gives: each is refused with
//! a message naming what and where, or handled, and never crashes, hangs,
//! allocates without bound or finishes silently having done nothing.

use std::time::{Duration, Instant};

mod common;
use common::cli::{refused, run, s, small_checkpoint};

fn tmp(name: &str) -> std::path::PathBuf {
    common::cli::tmp("hostile", name)
}

#[test]
fn numeric_flags_out_of_range_are_refused() {
    for (args, says) in [
        (vec!["train", "--data", ".", "--out", "x", "--batch", "9223372036854775808"], "--batch"),
        (vec!["train", "--data", ".", "--out", "x", "--batch", "922337203685477581"], "--batch"),
        (vec!["train", "--data", ".", "--out", "x", "--threads", "100000"], "--threads"),
        (vec!["train", "--data", ".", "--out", "x", "--hidden", "65536"], "--hidden"),
        (vec!["bench", "--batch", "1000000000"], "--batch"),
        (vec!["gradcheck", "--eps", "0"], "--eps"),
        (vec!["gradcheck", "--eps", "NaN"], "--eps"),
        (vec!["gradcheck", "--tol", "NaN"], "--tol"),
    ] {
        let err = refused(&args);
        assert!(err.contains(says), "dien {args:?}: {err}");
    }
}

#[test]
fn a_training_file_without_samples_is_an_error() {
    let dir = tmp("empty");
    let (data, _) = small_checkpoint(&dir);
    for content in ["", "\n\n\n"] {
        std::fs::write(data.join("local_train_splitByUser"), content).unwrap();
        let out = dir.join("e.safetensors");
        let err = refused(&["train", "--data", s(&data), "--out", s(&out), "--dim", "2", "--hidden", "4", "--quiet"]);
        assert!(err.contains("no training samples"), "{err}");
        assert!(!out.exists(), "a checkpoint of an untrained model was written");
    }
}

#[test]
fn a_file_without_line_breaks_is_refused_without_reading_it_whole() {
    let dir = tmp("zero");
    let (_, ck) = small_checkpoint(&dir);
    // An endless line: the reader gives up after its maximum line length.
    let t = Instant::now();
    let err = refused(&["predict", "--checkpoint", s(&ck), "--data", "/dev/zero", "--out", s(&dir.join("p.txt"))]);
    assert!(err.contains("/dev/zero:1") && err.contains("longer than"), "{err}");
    assert!(t.elapsed() < Duration::from_secs(30));
}

#[test]
fn a_byte_order_mark_is_not_part_of_the_first_label() {
    let dir = tmp("bom");
    let (data, ck) = small_checkpoint(&dir);
    let test = data.join("local_test_splitByUser");
    let mut bytes = b"\xEF\xBB\xBF".to_vec();
    bytes.extend(std::fs::read(&test).unwrap());
    let with_bom = dir.join("bom.txt");
    std::fs::write(&with_bom, bytes).unwrap();
    let plain = run(&["eval", "--checkpoint", s(&ck), "--data", s(&test)]);
    let bom = run(&["eval", "--checkpoint", s(&ck), "--data", s(&with_bom)]);
    assert!(bom.status.success(), "{}", String::from_utf8_lossy(&bom.stderr));
    assert_eq!(plain.stdout, bom.stdout);
}

#[test]
fn a_vocabulary_index_in_the_billions_is_refused_before_allocating() {
    let dir = tmp("hugevocab");
    let (data, _) = small_checkpoint(&dir);
    for ext in ["pkl", "json"] {
        let _ = std::fs::remove_file(data.join(format!("mid_voc.{ext}")));
    }
    std::fs::write(data.join("mid_voc.json"), r#"{"default_mid": 0, "m1": 4000000000}"#).unwrap();
    let out = dir.join("v.safetensors");
    let t = Instant::now();
    let err = refused(&["train", "--data", s(&data), "--out", s(&out), "--quiet"]);
    assert!(err.contains("4000000001 rows") && err.contains("mid_voc.json"), "{err}");
    assert!(t.elapsed() < Duration::from_secs(30));
}

#[test]
fn json_batches_are_bounded_and_cut_to_the_models_history() {
    let dir = tmp("batch");
    let (_, ck) = small_checkpoint(&dir);
    // 70,000 samples: more than a batch may hold.
    let n = 70_000;
    let ids = vec!["0"; n].join(",");
    let hist = vec!["[]"; n].join(",");
    let big = format!(
        r#"{{"uid":[{ids}],"mid":[{ids}],"cat":[{ids}],"hist_mid":[{hist}],"hist_cat":[{hist}],"label":[{ids}]}}"#
    );
    let file = dir.join("big.json");
    std::fs::write(&file, big).unwrap();
    let err = refused(&["grads", "--checkpoint", s(&ck), "--batch-file", s(&file), "--out", s(&dir.join("g1"))]);
    assert!(err.contains("at most 65536"), "{err}");

    // A history longer than the model keeps (100) is cut to its latest 100.
    let long: Vec<String> = (0..150).map(|i| (1 + i % 5).to_string()).collect();
    let recent = &long[50..];
    let batch = |h: &[String]| {
        let h = h.join(",");
        format!(
            r#"{{"uid":[0],"mid":[1],"cat":[1],"hist_mid":[[{h}]],"hist_cat":[[{h}]],"neg_mid":[[{h}]],"neg_cat":[[{h}]],"label":[1]}}"#
        )
    };
    let (a, b) = (dir.join("long.json"), dir.join("recent.json"));
    std::fs::write(&a, batch(&long)).unwrap();
    std::fs::write(&b, batch(recent)).unwrap();
    let (ga, gb) = (dir.join("ga.safetensors"), dir.join("gb.safetensors"));
    for (input, out) in [(&a, &ga), (&b, &gb)] {
        let o = run(&["grads", "--checkpoint", s(&ck), "--batch-file", s(input), "--out", s(out)]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let (_, ta) = dien_model::checkpoint::load_tensors(&ga).unwrap();
    let (_, tb) = dien_model::checkpoint::load_tensors(&gb).unwrap();
    assert_eq!(ta, tb);
}

#[test]
fn divergence_is_reported_as_such() {
    let dir = tmp("diverge");
    let (data, _) = small_checkpoint(&dir);
    let out = dir.join("d.safetensors");
    let err = refused(&[
        "train",
        "--data",
        s(&data),
        "--out",
        s(&out),
        "--optimizer",
        "sgd",
        "--lr",
        "1e30",
        "--dim",
        "2",
        "--hidden",
        "4",
        "--quiet",
    ]);
    assert!(err.contains("training diverged at step") && !err.contains("config:"), "{err}");
    assert!(err.contains("--lr") && !err.contains("last good checkpoint is kept"), "{err}");
}
