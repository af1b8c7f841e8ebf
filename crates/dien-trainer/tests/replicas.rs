//! Data-parallel training with the ranks as threads of this process
//! (`dist::threads::ThreadGroup`): the distributed training loop, without
//! MPI, against the single-process loop. The MPI transport runs the same
//! loop; `tests/distributed.rs` (feature `mpi`) runs it under `mpirun`.
//!
//! Tolerances (docs/DISTRIBUTED.md#equivalence): losses per step within
//! 1e-5 relative, parameters within 1e-4 relative (all tensors together,
//! but `att.fc3.b`), validation and test AUC within 1e-4.

use std::path::{Path, PathBuf};

use dien_model::{ModelKind, ParamStore, checkpoint};
use dien_trainer::dist::scaling::step_volume;
use dien_trainer::dist::threads::ThreadGroup;
use dien_trainer::generate::{GenerateConfig, generate};
use dien_trainer::train::{TrainConfig, TrainSummary, train, train_distributed};

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("dien-replicas-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn tiny(data: &Path, out: &Path, batch: usize) -> TrainConfig {
    let mut c = TrainConfig::new(data, out, ModelKind::Dien);
    c.model.d = 4;
    c.model.hidden = 8;
    c.model.max_len = 20;
    c.batch_size = batch;
    c.threads = Some(1);
    c.recal_samples = 2_000;
    c.log_every = 1;
    c
}

/// Runs `cfg` as `n` ranks on threads; returns every rank's summary.
fn run_threads(cfg: &TrainConfig, n: usize) -> Vec<Result<TrainSummary, String>> {
    std::thread::scope(|s| {
        let handles: Vec<_> = ThreadGroup::new(n)
            .into_iter()
            .map(|mut comm| s.spawn(move || train_distributed(cfg, &mut comm, &mut |_| {}).map_err(|e| e.to_string())))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

fn params(path: &Path) -> ParamStore<f32> {
    checkpoint::load(path).unwrap().1
}

/// `‖a − b‖ / ‖a‖` over every tensor but `att.fc3.b` (a constant added to
/// every attention score, which the softmax removes: its gradient is zero
/// in exact arithmetic and its trajectory is Adam following rounding noise;
/// it changes no output), and per tensor.
fn rel_diffs(a: &ParamStore<f32>, b: &ParamStore<f32>) -> (f64, Vec<(String, f64)>) {
    let (mut num, mut den) = (0.0f64, 0.0f64);
    let mut per = Vec::new();
    for ((spec, x), (_, y)) in a.iter().zip(b.iter()) {
        let d: f64 = x.iter().zip(y).map(|(p, q)| (f64::from(*p) - f64::from(*q)).powi(2)).sum();
        let n: f64 = x.iter().map(|p| f64::from(*p).powi(2)).sum();
        if spec.name != "att.fc3.b" {
            num += d;
            den += n;
        }
        per.push((spec.name.clone(), (d / n.max(1e-30)).sqrt()));
    }
    ((num / den).sqrt(), per)
}

fn step_losses(s: &TrainSummary) -> Vec<f64> {
    s.history.iter().filter(|r| r.kind == "train").map(|r| r.train_loss.unwrap()).collect()
}

#[test]
fn ranks_as_threads_train_the_single_process_model() {
    let dir = tmp("equal");
    let data = dir.join("data");
    // 270 training lines, about 240 of them trained on (the others are the
    // validation users'): groups of 20 batches of 12 lines hold fewer
    // training samples than 240, so every group ends in a short batch.
    generate(&data, &GenerateConfig { users: 150, seed: 3, max_len: 20, ..GenerateConfig::default() }).unwrap();
    let mut one_cfg = tiny(&data, &dir.join("one/m.safetensors"), 12);
    one_cfg.epochs = 2;
    let one = train(&one_cfg, &mut |_| {}).unwrap();
    let want = step_losses(&one);
    assert!(want.len() > 20, "{} steps", want.len());
    for n in [2usize, 3] {
        let mut cfg = one_cfg.clone();
        cfg.out = dir.join(format!("r{n}/m.safetensors"));
        cfg.replica_check_every = 7;
        let runs = run_threads(&cfg, n);
        let summaries: Vec<TrainSummary> = runs.into_iter().map(|r| r.unwrap()).collect();
        for s in &summaries {
            let got = step_losses(s);
            assert_eq!(got.len(), want.len());
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!((g - w).abs() <= 1e-5 * w.abs(), "{n} ranks, step {}: loss {g} vs {w}", i + 1);
            }
            let (auc, want_auc) = (s.last.auc.unwrap(), one.last.auc.unwrap());
            assert!((auc - want_auc).abs() <= 1e-4, "{n} ranks: AUC {auc} vs {want_auc}");
            // The same validation split, scored together by the ranks, and
            // the same evaluations choosing the same best model.
            assert_eq!(s.split, one.split);
            let valid = |s: &TrainSummary| s.valid.as_ref().and_then(|m| m.auc).unwrap();
            assert!(
                (valid(s) - valid(&one)).abs() <= 1e-4,
                "{n} ranks: validation AUC {} vs {}",
                valid(s),
                valid(&one)
            );
            let evals = |s: &TrainSummary| -> Vec<u64> {
                s.history.iter().filter(|r| r.kind == "eval").map(|r| r.step).collect()
            };
            assert_eq!(evals(s), evals(&one));
            let (b, want_b) = (s.best.as_ref().unwrap(), one.best.as_ref().unwrap());
            assert_eq!((b.step, b.epoch), (want_b.step, want_b.epoch));
            let (bt, want_bt) = (b.test.auc.unwrap(), want_b.test.auc.unwrap());
            assert!((bt - want_bt).abs() <= 1e-4, "{n} ranks: best model's test AUC {bt} vs {want_bt}");
            assert_eq!(s.samples, one.samples);
            // Every rank reports the same run.
            assert_eq!(step_losses(s), step_losses(&summaries[0]));
            let d = s.distributed.as_ref().unwrap();
            assert_eq!(d.ranks, n);
            // The measured bytes are the scaling model's (the sparse rows
            // at most its bound: the model counts every row as distinct).
            let v = step_volume(&cfg.model, cfg.batch_size, cfg.model.max_len, n);
            assert_eq!(d.dense_bytes_per_step, n as f64 * v.dense_bytes, "{d:?}");
            assert_eq!(d.stat_bytes_per_step, n as f64 * v.stat_bytes, "{d:?}");
            assert!(d.sparse_bytes_per_step > 0.0 && d.sparse_bytes_per_step <= n as f64 * v.sparse_bytes_max);
            assert_eq!(d.exchanges_per_step, v.exchanges as f64);
        }
        let (all, per) = rel_diffs(&params(&one_cfg.out), &params(&cfg.out));
        eprintln!("{n} ranks: parameters differ by {all:.2e} (relative, all together); per tensor:");
        for (name, d) in &per {
            eprintln!("  {name:<24} {d:.2e}");
        }
        assert!(all <= 1e-4, "{n} ranks: parameters differ by {all:.2e} relative");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn one_rank_trains_exactly_what_one_process_trains() {
    let dir = tmp("one");
    let data = dir.join("data");
    generate(&data, &GenerateConfig { users: 100, seed: 4, max_len: 12, ..GenerateConfig::default() }).unwrap();
    let a = tiny(&data, &dir.join("a/m.safetensors"), 8);
    let mut b = a.clone();
    b.out = dir.join("b/m.safetensors");
    train(&a, &mut |_| {}).unwrap();
    let s = run_threads(&b, 1).pop().unwrap().unwrap();
    assert_eq!(s.distributed.as_ref().unwrap().bytes_sent_per_step, 0.0);
    let bits = |p: &ParamStore<f32>| p.iter().flat_map(|(_, v)| v.iter().map(|x| x.to_bits())).collect::<Vec<_>>();
    assert_eq!(bits(&params(&a.out)), bits(&params(&b.out)));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_batch_the_ranks_cannot_share_is_refused_by_every_rank() {
    let dir = tmp("share");
    let cfg = tiny(&dir.join("data"), &dir.join("m.safetensors"), 10);
    for r in run_threads(&cfg, 3) {
        let err = r.unwrap_err();
        assert!(err.contains("--batch 10 cannot be cut into 3 equal parts") && err.contains("--batch 12"), "{err}");
    }
    assert!(!dir.join("m.safetensors").exists());
}

/// Without the `mpi` feature the flag is there and says how to get MPI.
#[cfg(not(feature = "mpi"))]
#[test]
fn without_mpi_the_flag_names_the_feature() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dien"))
        .args(["train", "--distributed", "--data", "nowhere", "--out", "nowhere.safetensors"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("built without MPI") && err.contains("--features mpi"), "{err}");
}

/// Samples a second of one training thread at B = 128, T = 100
/// (docs/PERFORMANCE.md, `dien bench --mode train --threads 1`): the
/// compute rate of one rank in the scaling table.
const SAMPLES_PER_S: f64 = 1775.0;

#[test]
fn the_scaling_table_of_the_docs_is_current() {
    use dien_model::ModelConfig;
    use dien_trainer::dist::scaling::scaling_table;
    let cfg = ModelConfig::new(ModelKind::Dien, 0, 0, 0);
    let table = scaling_table(&cfg, 1024, 100, SAMPLES_PER_S, &[1, 2, 4, 8, 16, 32, 64]);
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/DISTRIBUTED.md")).unwrap();
    assert!(doc.contains(&table), "docs/DISTRIBUTED.md#scaling should hold this table:\n{table}");
}
