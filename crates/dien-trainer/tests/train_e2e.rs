//! End-to-end training on generated data: a tiny model learns (test AUC
//! clearly above 0.5), and resuming from a checkpoint continues exactly.

use std::path::Path;

use dien_model::{ModelKind, TensorKind, checkpoint};
use dien_trainer::generate::{GenerateConfig, generate};
use dien_trainer::train::{TrainConfig, load_checkpoint, train};

fn tmp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("dien-e2e-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn small_config(data: &Path, out: &Path, model: ModelKind) -> TrainConfig {
    let mut c = TrainConfig::new(data, out, model);
    c.model.d = 6;
    c.model.hidden = 12;
    c.model.max_len = 40;
    c.batch_size = 64;
    c.threads = Some(2);
    c.recal_samples = 2_000;
    c.log_every = 1_000;
    c
}

#[test]
fn tiny_dien_learns() {
    let dir = tmp("learn");
    let g = GenerateConfig { users: 4000, seed: 5, ..GenerateConfig::default() };
    generate(&dir.join("data"), &g).unwrap();
    let mut c = small_config(&dir.join("data"), &dir.join("ck/m.safetensors"), ModelKind::Dien);
    c.epochs = 3;
    c.optim.lr = 0.004;
    let s = train(&c, &mut |_| {}).unwrap();
    let auc = s.last.auc.unwrap();
    eprintln!("tiny dien: test AUC {auc:.4} after {} steps ({:.1} s)", s.steps, s.seconds);
    // 800 test samples: AUC under the null has a standard deviation of about
    // 0.02, so 0.56 is three of them above chance.
    assert!(auc > 0.56, "test AUC {auc}");
    assert!(dir.join("ck/m.best.safetensors").is_file());
    assert!(dir.join("ck/m.vocab.json").is_file());
    // The best model has its own vocabulary sidecar, the same as the final one's,
    // so it can be evaluated and served on its own.
    let best_vocab = std::fs::read(dir.join("ck/m.best.vocab.json")).unwrap();
    assert_eq!(best_vocab, std::fs::read(dir.join("ck/m.vocab.json")).unwrap());
    load_checkpoint(&dir.join("ck/m.best.safetensors")).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

fn trainable(path: &Path) -> Vec<(String, Vec<u32>)> {
    let (_, p) = checkpoint::load(path).unwrap();
    p.iter()
        .filter(|(s, _)| s.kind == TensorKind::Param)
        .map(|(s, v)| (s.name.clone(), v.iter().map(|x| x.to_bits()).collect()))
        .collect()
}

#[test]
fn resume_continues_exactly() {
    let dir = tmp("resume");
    // 240 users → 432 training lines → 7 batches of 64 per epoch: the run
    // below crosses an epoch boundary (and its learning-rate halving).
    let g = GenerateConfig { users: 240, seed: 9, ..GenerateConfig::default() };
    generate(&dir.join("data"), &g).unwrap();
    let data = dir.join("data");
    let (n, k) = (11, 5);

    let mut full = small_config(&data, &dir.join("full/m.safetensors"), ModelKind::Dien);
    full.epochs = 3;
    full.max_steps = Some(n);
    let s_full = train(&full, &mut |_| {}).unwrap();
    assert_eq!(s_full.steps, n);

    let mut part = small_config(&data, &dir.join("part/m.safetensors"), ModelKind::Dien);
    part.epochs = 3;
    part.max_steps = Some(k);
    train(&part, &mut |_| {}).unwrap();
    part.max_steps = Some(n);
    part.resume = true;
    let s_part = train(&part, &mut |_| {}).unwrap();
    assert_eq!(s_part.steps, n);
    assert_eq!(s_part.samples, s_full.samples);

    let a = trainable(&dir.join("full/m.safetensors"));
    let b = trainable(&dir.join("part/m.safetensors"));
    assert_eq!(a.len(), b.len());
    for ((na, va), (nb, vb)) in a.iter().zip(&b) {
        assert_eq!(na, nb);
        assert!(va == vb, "{na} differs after resume");
    }
    // A different seed really gives different weights (the comparison is not vacuous).
    let mut other = small_config(&data, &dir.join("other/m.safetensors"), ModelKind::Dien);
    other.epochs = 3;
    other.max_steps = Some(n);
    other.seed = 77;
    train(&other, &mut |_| {}).unwrap();
    assert_ne!(trainable(&dir.join("other/m.safetensors")), a);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn skipped_bad_lines_are_counted_once_and_otherwise_named() {
    let dir = tmp("bad");
    let g = GenerateConfig { users: 240, seed: 9, ..GenerateConfig::default() };
    generate(&dir.join("data"), &g).unwrap();
    let train_file = dir.join("data/local_train_splitByUser");
    let mut lines: Vec<String> = std::fs::read_to_string(&train_file).unwrap().lines().map(String::from).collect();
    // Three malformed lines: a bad label (line 11), too few fields (line
    // 101) and histories of different lengths (the last line).
    lines.insert(10, "2\tu1\tm1\tc1\t\t".to_string());
    lines.insert(100, "1\tu1\tm1".to_string());
    lines.push("1\tu1\tm1\tc1\tm2\u{2}m3\tc2".to_string());
    std::fs::write(&train_file, lines.join("\n") + "\n").unwrap();

    let mut c = small_config(&dir.join("data"), &dir.join("ck/m.safetensors"), ModelKind::Dien);
    c.epochs = 2;
    c.skip_bad_lines = true;
    let mut infos = Vec::new();
    let s = train(&c, &mut |e| {
        if let dien_trainer::train::Event::Info(m) = e {
            infos.push(m);
        }
    })
    .unwrap();
    assert_eq!(s.bad_lines.count, 3, "each malformed line once, over two epochs");
    assert!(s.bad_lines.first[0].contains("local_train_splitByUser:11: field `label`"), "{:?}", s.bad_lines);
    assert!(infos.iter().any(|m| m.contains("3 malformed line(s) skipped")), "{infos:?}");

    c.skip_bad_lines = false;
    let e = train(&c, &mut |_| {}).unwrap_err().to_string();
    assert!(e.contains("local_train_splitByUser:11: field `label`"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}
