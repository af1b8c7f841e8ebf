//! `mpirun -np N dien train --distributed` (feature `mpi`,
//! docs/DISTRIBUTED.md): N ranks train the model one process trains with
//! the same global batch, resume from each other's checkpoints with any
//! number of ranks, refuse a batch they cannot share, and a failing rank
//! ends the job with a message naming it instead of leaving the others
//! waiting.
//!
//! The tests launch `mpirun` on the built `dien`
//! (`--allow-run-as-root --oversubscribe`, so that they run in containers
//! and on machines with fewer cores than ranks) and are skipped, with a
//! message, where `mpirun` is not installed. The failure tests use the
//! `DIEN_RANK_FAULT` and `DIEN_FAULT` hooks of debug builds.
//!
//! The bar (docs/DISTRIBUTED.md#equivalence): a tiny model (`--dim 4
//! --hidden 8`) on `dien generate --users 3000 --max-history 20`, 200 steps
//! of a global batch of 12: the loss of every step within 1e-5 relative of
//! the single process's, the final parameters within 1e-4 relative (all
//! tensors together, but `att.fc3.b`, whose gradient is zero in exact
//! arithmetic), the validation and test AUC within 1e-4.

#![cfg(feature = "mpi")]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use dien_model::{ParamStore, checkpoint};
use dien_trainer::dist::scaling::step_volume;
use serde_json::Value;

const DIEN: &str = env!("CARGO_BIN_EXE_dien");

/// The longest a job may take before the test calls it hung.
const TIMEOUT: Duration = Duration::from_secs(180);

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("dien-distributed-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `None` (after saying why) when there is no `mpirun` to test with.
fn mpirun() -> Option<&'static str> {
    static FOUND: OnceLock<bool> = OnceLock::new();
    let found = *FOUND.get_or_init(|| {
        let ok = Command::new("mpirun").arg("--version").output().is_ok_and(|o| o.status.success());
        if !ok {
            eprintln!("skipping the distributed tests: `mpirun` is not installed (apt-get install openmpi-bin)");
        }
        ok
    });
    found.then_some("mpirun")
}

/// Runs `cmd`, killing it (and failing the test) after [`TIMEOUT`].
fn run_bounded(mut cmd: Command, what: &str) -> Output {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let start = Instant::now();
    // Read the pipes on threads so that a chatty job cannot block on them.
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let out_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut so, &mut v).unwrap();
        v
    });
    let err_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut se, &mut v).unwrap();
        v
    });
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: still running after {TIMEOUT:?}: the job hangs");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Output { status, stdout: out_t.join().unwrap(), stderr: err_t.join().unwrap() }
}

/// `dien train` with the tiny model's settings and `args`, alone
/// (`ranks = None`) or as `mpirun -np ranks ... --distributed`.
fn train(ranks: Option<usize>, data: &Path, out: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let base = [
        "train",
        "--data",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--dim",
        "4",
        "--hidden",
        "8",
        "--threads",
        "1",
        "--log-every",
        "1",
        "--recal-samples",
        "2000",
        "--quiet",
    ];
    let mut cmd = match ranks {
        None => Command::new(DIEN),
        Some(n) => {
            let mut c = Command::new(mpirun().expect("mpirun"));
            c.args(["--allow-run-as-root", "--oversubscribe", "-np", &n.to_string()]);
            // Shared-memory transfers without ptrace rights (containers).
            c.args(["--mca", "btl_vader_single_copy_mechanism", "none"]);
            for (k, _) in env {
                c.args(["-x", k]);
            }
            c.arg(DIEN);
            c
        }
    };
    cmd.args(base).args(args);
    if ranks.is_some() {
        cmd.arg("--distributed");
    }
    cmd.envs(env.iter().copied());
    let what = format!("{} ranks, {args:?}", ranks.unwrap_or(1));
    let start = Instant::now();
    let o = run_bounded(cmd, &what);
    eprintln!("{what}: {:.1} s", start.elapsed().as_secs_f64());
    o
}

fn ok(o: Output) -> Value {
    let (so, se) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "failed: {se}\n{so}");
    serde_json::from_str(so.lines().last().unwrap_or_default()).unwrap_or_else(|_| panic!("no summary: {so}"))
}

/// The data set of `dien generate --users <users> --max-history 20`.
fn generate(dir: &Path, users: usize) -> PathBuf {
    let data = dir.join("data");
    let o = Command::new(DIEN)
        .args(["generate", "--out", data.to_str().unwrap(), "--users", &users.to_string(), "--max-history", "20"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    data
}

/// The loss of every step in a metrics log.
fn losses(log: &Path) -> Vec<(u64, f64)> {
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r["kind"] == "train")
        .map(|r| (r["step"].as_u64().unwrap(), r["train_loss"].as_f64().unwrap()))
        .collect()
}

fn params(path: &Path) -> ParamStore<f32> {
    checkpoint::load(path).unwrap().1
}

/// `‖a − b‖ / ‖a‖` over every tensor but `att.fc3.b` (a constant added to
/// every attention score: the softmax removes it, so its gradient is zero
/// in exact arithmetic and its trajectory is Adam following rounding
/// noise; it changes no output). Prints the per-tensor figures.
fn rel_diff(a: &ParamStore<f32>, b: &ParamStore<f32>, what: &str) -> f64 {
    let (mut num, mut den) = (0.0f64, 0.0f64);
    eprintln!("{what}: ‖a − b‖ / ‖a‖ per tensor:");
    for ((spec, x), (_, y)) in a.iter().zip(b.iter()) {
        let d: f64 = x.iter().zip(y).map(|(p, q)| (f64::from(*p) - f64::from(*q)).powi(2)).sum();
        let n: f64 = x.iter().map(|p| f64::from(*p).powi(2)).sum();
        eprintln!("  {:<24} {:.2e}", spec.name, (d / n.max(1e-30)).sqrt());
        if spec.name != "att.fc3.b" {
            num += d;
            den += n;
        }
    }
    (num / den).sqrt()
}

fn assert_same_losses(got: &[(u64, f64)], want: &[(u64, f64)], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: steps logged");
    let mut worst = 0.0f64;
    for ((s, g), (t, w)) in got.iter().zip(want) {
        assert_eq!(s, t, "{what}: steps");
        let r = (g - w).abs() / w.abs();
        worst = worst.max(r);
        assert!(r <= 1e-5, "{what}: step {s}: loss {g} vs {w} ({r:.2e} relative)");
    }
    eprintln!("{what}: {} step losses, largest relative difference {worst:.2e}", got.len());
}

#[test]
fn two_and_three_ranks_train_the_model_of_one_process() {
    if mpirun().is_none() {
        return;
    }
    let dir = tmp("equal");
    let data = generate(&dir, 3000);
    let steps = ["--batch", "12", "--max-steps", "200"];
    let one = ok(train(None, &data, &dir.join("one/m.safetensors"), &steps, &[]));
    let want = losses(&dir.join("one/m.metrics.jsonl"));
    assert_eq!(want.len(), 200);
    let want_params = params(&dir.join("one/m.safetensors"));
    for n in [1usize, 2, 3] {
        let out = dir.join(format!("np{n}/m.safetensors"));
        let s = ok(train(Some(n), &data, &out, &steps, &[]));
        let what = format!("-np {n}");
        assert_same_losses(&losses(&dir.join(format!("np{n}/m.metrics.jsonl"))), &want, &what);
        let got = params(&out);
        if n == 1 {
            // One rank computes exactly what one process computes.
            let bits =
                |p: &ParamStore<f32>| p.iter().flat_map(|(_, v)| v.iter().map(|x| x.to_bits())).collect::<Vec<_>>();
            assert!(bits(&got) == bits(&want_params), "-np 1: parameters differ from the single process's");
        }
        let rel = rel_diff(&want_params, &got, &what);
        eprintln!("{what}: parameters differ by {rel:.2e} relative");
        assert!(rel <= 1e-4, "{what}: parameters differ by {rel:.2e} relative");
        let (auc, want_auc) = (s["auc"].as_f64().unwrap(), one["auc"].as_f64().unwrap());
        eprintln!("{what}: test AUC {auc} against {want_auc}");
        assert!((auc - want_auc).abs() <= 1e-4, "{what}: test AUC {auc} vs {want_auc}");
        assert_eq!(s["train_samples"], one["train_samples"]);
        // The same validation split on every rank, scored together, and the
        // same best model.
        assert_eq!(s["split"], one["split"], "{what}");
        let (v, want_v) = (s["valid"]["auc"].as_f64().unwrap(), one["valid"]["auc"].as_f64().unwrap());
        assert!((v - want_v).abs() <= 1e-4, "{what}: validation AUC {v} vs {want_v}");
        assert_eq!(s["best"]["step"], one["best"]["step"], "{what}");
        // The summary counts the exchanges: rank 0 printed it once.
        let d = &s["distributed"];
        assert_eq!(d["ranks"].as_u64(), Some(n as u64), "{s}");
        assert!(d["transport"].as_str().unwrap().starts_with("MPI"), "{d}");
        let bytes = d["bytes_sent_per_step"].as_f64().unwrap();
        if n > 1 {
            let parts = ["dense_bytes_per_step", "sparse_bytes_per_step", "stat_bytes_per_step"]
                .map(|k| d[k].as_f64().unwrap());
            assert!(parts.iter().all(|&p| p > 0.0), "{d}");
            assert!(parts.iter().sum::<f64>() <= bytes * 1.0001, "{d}");
            // What MPI moved is what the scaling model says.
            let v = step_volume(&tiny_config(), 12, 20, n);
            assert_eq!(parts[0], n as f64 * v.dense_bytes, "{d}");
            assert_eq!(parts[2], n as f64 * v.stat_bytes, "{d}");
            assert!(parts[1] <= n as f64 * v.sparse_bytes_max, "{d}");
            let share = d["comm_share"].as_f64().unwrap();
            assert!((0.0..1.0).contains(&share), "{d}");
        } else {
            assert_eq!(bytes, 0.0, "{d}");
        }
        eprintln!("{what}: {d}");
        // The checkpoint's run record names the ranks.
        let (meta, _) = checkpoint::load_tensors(&out).unwrap();
        let run: Value = serde_json::from_str(&meta["run"]).unwrap();
        if n > 1 {
            assert_eq!(run["ranks"].as_u64(), Some(n as u64), "{run}");
        }
    }
    // The same job again gives the same bits.
    let again = dir.join("again/m.safetensors");
    ok(train(Some(2), &data, &again, &steps, &[]));
    let (a, b) = (params(&again), params(&dir.join("np2/m.safetensors")));
    assert!(a.iter().zip(b.iter()).all(|((_, x), (_, y))| x.iter().zip(y).all(|(p, q)| p.to_bits() == q.to_bits())));
    let _ = std::fs::remove_dir_all(&dir);
}

/// The model the tests train, for the scaling model (table sizes unset:
/// every row counts as distinct).
fn tiny_config() -> dien_model::ModelConfig {
    let mut c = dien_model::ModelConfig::new(dien_model::ModelKind::Dien, 0, 0, 0);
    (c.d, c.hidden) = (4, 8);
    c
}

#[test]
fn a_run_resumes_with_another_number_of_ranks() {
    if mpirun().is_none() {
        return;
    }
    let dir = tmp("resume");
    let data = generate(&dir, 3000);
    let steps = ["--batch", "12", "--max-steps", "200"];
    let one = ok(train(None, &data, &dir.join("one/m.safetensors"), &steps, &[]));
    let want = losses(&dir.join("one/m.metrics.jsonl"));
    // Two ranks for 100 steps, then three ranks to step 200: the data
    // position in the checkpoint is the global one.
    let out = dir.join("mixed/m.safetensors");
    ok(train(Some(2), &data, &out, &["--batch", "12", "--max-steps", "100", "--save-every", "50"], &[]));
    let s = ok(train(Some(3), &data, &out, &["--resume", "--max-steps", "200"], &[]));
    assert_eq!(s["steps"].as_u64(), Some(200));
    assert_same_losses(&losses(&dir.join("mixed/m.metrics.jsonl")), &want, "2 then 3 ranks");
    let rel = rel_diff(&params(&dir.join("one/m.safetensors")), &params(&out), "2 then 3 ranks");
    eprintln!("2 then 3 ranks: parameters differ by {rel:.2e} relative");
    assert!(rel <= 1e-4, "2 then 3 ranks: parameters differ by {rel:.2e} relative");
    let (auc, want_auc) = (s["auc"].as_f64().unwrap(), one["auc"].as_f64().unwrap());
    eprintln!("2 then 3 ranks: test AUC {auc} against {want_auc}");
    assert!((auc - want_auc).abs() <= 1e-4, "test AUC {auc} vs {want_auc}");
    // And one process goes on from the distributed run's checkpoint.
    let more = ok(train(None, &data, &out, &["--resume", "--max-steps", "220"], &[]));
    assert_eq!(more["steps"].as_u64(), Some(220));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn short_batches_epochs_and_an_empty_share() {
    if mpirun().is_none() {
        return;
    }
    let dir = tmp("short");
    // 632 training lines: the last group of each epoch (20 batches of 6)
    // holds 32 lines, whose last batch has 2 samples, so that rank 0's
    // share of it is empty with 3 ranks; two epochs (the learning rate
    // halves between them). No validation split, which would take lines
    // out of every group.
    let data = generate(&dir, 351);
    let run = ["--batch", "6", "--epochs", "2", "--valid-frac", "0", "--select", "test"];
    let one = ok(train(None, &data, &dir.join("one/m.safetensors"), &run, &[]));
    let s = ok(train(Some(3), &data, &dir.join("np3/m.safetensors"), &run, &[]));
    assert_eq!((s["steps"].as_u64(), s["train_samples"].as_u64()), (one["steps"].as_u64(), Some(2 * 632)));
    // Batches of 6 samples over two passes of 632 lines amplify rounding
    // more than the bar's setting: any two orders of summation (2 ranks
    // against 3, 1 against 2) differ by up to 5e-5 in a step's loss and
    // 2e-4 in the parameters here, so the bounds are looser.
    let (got, want) = (losses(&dir.join("np3/m.metrics.jsonl")), losses(&dir.join("one/m.metrics.jsonl")));
    assert_eq!(got.len(), want.len());
    for ((step, g), (_, w)) in got.iter().zip(&want) {
        assert!((g - w).abs() <= 1e-3 * w.abs(), "step {step}: loss {g} vs {w}");
    }
    let rel = rel_diff(&params(&dir.join("one/m.safetensors")), &params(&dir.join("np3/m.safetensors")), "short");
    assert!(rel <= 1e-2, "parameters differ by {rel:.2e} relative");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_batch_the_ranks_cannot_share_is_refused() {
    if mpirun().is_none() {
        return;
    }
    let dir = tmp("share");
    let data = generate(&dir, 200);
    let out = dir.join("m.safetensors");
    let o = train(Some(3), &data, &out, &["--batch", "10"], &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    let says = "--batch 10 cannot be cut into 3 equal parts";
    assert!(err.contains(says) && err.contains("--batch 12"), "{err}");
    // Every rank knows; rank 0 alone says it.
    assert_eq!(err.matches(says).count(), 1, "{err}");
    assert!(!out.exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_failing_rank_ends_the_job_and_is_named() {
    if mpirun().is_none() {
        return;
    }
    let dir = tmp("fail");
    let data = generate(&dir, 600);
    let args = ["--batch", "12", "--max-steps", "60", "--save-every", "10"];
    // (ranks, environment, what stderr must say: ours, not mpirun's banner,
    // which Open MPI does not always manage to print)
    let cases: [(usize, (&str, &str), &[&str]); 3] = [
        // A rank returns an error: it prints it and aborts the job.
        (2, ("DIEN_RANK_FAULT", "1:5:error"), &["rank 1 of 2", "injected by DIEN_RANK_FAULT", "ending the job"]),
        // A rank dies: mpirun names it and ends the others.
        (3, ("DIEN_RANK_FAULT", "2:5:abort"), &["rank 2", "signal 6"]),
        // Rank 0 fails to write a checkpoint part (a full disk).
        (2, ("DIEN_FAULT", "fail:optim:1"), &["rank 0 of 2", "no space left on device", "ending the job"]),
    ];
    for (i, (n, env, says)) in cases.into_iter().enumerate() {
        let start = Instant::now();
        let o = train(Some(n), &data, &dir.join(format!("f{i}/m.safetensors")), &args, &[env]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{env:?}: the job succeeded");
        for s in says {
            assert!(err.contains(s), "{env:?}: stderr does not say `{s}`:\n{err}");
        }
        assert!(start.elapsed() < Duration::from_secs(60), "{env:?}: took {:?}", start.elapsed());
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn diverged_replicas_stop_the_run() {
    if mpirun().is_none() {
        return;
    }
    let dir = tmp("diverge");
    let data = generate(&dir, 600);
    let args = ["--batch", "12", "--max-steps", "60", "--replica-check-every", "5"];
    let o = train(Some(2), &data, &dir.join("m.safetensors"), &args, &[("DIEN_RANK_FAULT", "1:3:perturb")]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    let says = "the replicas diverged: after step 5 the parameters of rank 1 differ from rank 0's";
    assert!(err.contains(says), "{err}");
    assert_eq!(err.matches("replicas diverged").count(), 1, "{err}");
    assert!(!dir.join("m.safetensors").exists());
    let _ = std::fs::remove_dir_all(&dir);
}
