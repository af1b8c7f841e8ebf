//! End-to-end training on generated data: a tiny model learns (test AUC
//! clearly above 0.5), and resuming from a checkpoint continues exactly.

use std::path::Path;

use dien_model::{ModelKind, TensorKind, checkpoint};
use dien_trainer::generate::{GenerateConfig, generate};
use dien_trainer::train::{TrainConfig, train};

fn tmp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("dien-e2e-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn small_config(data: &Path, out: &Path, model: ModelKind) -> TrainConfig {
    let mut c = TrainConfig::new(data, out, model);
    c.d = 6;
    c.hidden = 12;
    c.max_len = 40;
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
