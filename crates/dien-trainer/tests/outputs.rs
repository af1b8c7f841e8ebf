//! No command overwrites what it reads: outputs that name an input (or a
//! link to one) are refused before any work, and the input is unchanged.

use std::path::{Path, PathBuf};

mod common;
use common::cli::{refused, s, small_checkpoint};

fn setup(name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let dir = common::cli::tmp("outputs", name);
    let (data, ck) = small_checkpoint(&dir);
    (dir, data, ck)
}

#[test]
fn outputs_that_are_inputs_are_refused_and_the_inputs_survive() {
    let (dir, data, ck) = setup("inputs");
    let snapshot = |p: &Path| std::fs::read(p).unwrap();
    let test = data.join("local_test_splitByUser");
    let train = data.join("local_train_splitByUser");
    let link = dir.join("link-to-checkpoint");
    std::os::unix::fs::symlink(&ck, &link).unwrap();
    let grads_batch = dir.join("b.json");
    std::fs::write(&grads_batch, "{}").unwrap();
    let protected = [ck.clone(), test.clone(), train.clone(), data.join("uid_voc.pkl"), data.join("reviews-info")];
    let before: Vec<Vec<u8>> = protected.iter().map(|p| snapshot(p)).collect();

    let other = dir.join("o.safetensors");
    let (uid_voc, reviews) = (data.join("uid_voc.pkl"), data.join("reviews-info"));
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["predict", "--checkpoint", s(&ck), "--data", s(&test), "--out", s(&ck)], "the checkpoint"),
        (vec!["predict", "--checkpoint", s(&ck), "--data", s(&test), "--out", s(&link)], "the checkpoint"),
        (vec!["predict", "--checkpoint", s(&ck), "--data", s(&test), "--out", s(&test)], "the data file"),
        (vec!["predict", "--checkpoint", s(&ck), "--data", s(&data), "--out", s(&test)], "the data file"),
        (vec!["grads", "--checkpoint", s(&ck), "--batch-file", s(&grads_batch), "--out", s(&ck)], "the checkpoint"),
        (vec!["train", "--data", s(&data), "--out", s(&other), "--metrics-log", s(&train)], "the metrics log"),
        (vec!["train", "--data", s(&data), "--out", s(&test)], "the checkpoint"),
        (vec!["train", "--data", s(&data), "--out", s(&uid_voc)], "the checkpoint"),
        (vec!["train", "--data", s(&data), "--out", s(&other), "--plot", s(&reviews)], "the plot"),
        (vec!["train", "--data", s(&data), "--out", s(&other), "--plot", s(&other)], "the same file"),
    ];
    for (args, says) in cases {
        let err = refused(&args);
        assert!(
            err.contains(says) && (err.contains("refusing to overwrite") || err.contains("same file")),
            "{args:?}: {err}"
        );
    }
    for (p, b) in protected.iter().zip(&before) {
        assert_eq!(&snapshot(p), b, "{} changed", p.display());
    }
    assert!(!other.exists());
}

#[test]
fn an_output_in_a_missing_folder_is_named_as_given() {
    let (dir, data, ck) = setup("missing");
    let out = dir.join("no/such/folder/p.txt");
    let err = refused(&["predict", "--checkpoint", s(&ck), "--data", s(&data), "--out", s(&out)]);
    assert!(err.contains(s(&out)) && !err.contains(".tmp-"), "{err}");
}
