//! Model selection on a validation split of the training users: the split
//! is deterministic, disjoint by user and close to its fraction; held-out
//! users are never trained on; the best checkpoint is the one with the best
//! validation AUC (or test AUC with `Select::Test`); early stopping stops
//! after exactly N evaluations without a new best, also across a resume;
//! bad settings are refused with messages naming them.

mod common;

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::cli::{refused, s};
use dien_model::{ModelKind, checkpoint};
use dien_trainer::data::{Batcher, BatcherConfig, DataSet, Side, UserFilter, UserSplit, count_split};
use dien_trainer::generate::{GenerateConfig, generate};
use dien_trainer::train::{Select, TrainConfig, TrainSummary, evaluate, evaluate_users, load_checkpoint, train};
use serde_json::Value;

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("dien-valid-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn data(dir: &Path, users: usize) -> PathBuf {
    let g = GenerateConfig { users, seed: 4, max_len: 15, ..GenerateConfig::default() };
    generate(&dir.join("data"), &g).unwrap();
    dir.join("data")
}

fn config(data: &Path, out: &Path) -> TrainConfig {
    let mut c = TrainConfig::new(data, out, ModelKind::Din);
    c.model.d = 4;
    c.model.hidden = 8;
    c.model.max_len = 15;
    c.batch_size = 32;
    c.threads = Some(1);
    c.recal_samples = 200;
    c.log_every = 1;
    c.metrics_log = Some(out.with_extension("jsonl"));
    c
}

/// The lines of the metrics log, parsed.
fn log(c: &TrainConfig) -> Vec<Value> {
    let text = std::fs::read_to_string(c.metrics_log.as_ref().unwrap()).unwrap();
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn auc(r: &Value, side: &str) -> Option<f64> {
    r[side]["auc"].as_f64()
}

/// `(step, AUC of side)` of every evaluation in the log.
fn evals(records: &[Value], side: &str) -> Vec<(u64, f64)> {
    records
        .iter()
        .filter(|r| r["kind"] == "eval")
        .map(|r| (r["step"].as_u64().unwrap(), auc(r, side).unwrap_or(f64::NAN)))
        .collect()
}

/// The step of the first evaluation with the largest AUC.
fn argmax(evals: &[(u64, f64)]) -> (u64, f64) {
    evals.iter().fold((0, f64::MIN), |(bs, ba), &(s, a)| if a > ba { (s, a) } else { (bs, ba) })
}

/// The raw uid of every sample a batcher over `file` yields, with its line.
fn lines_of(file: &Path, data: &Arc<DataSet>, users: Option<UserFilter>) -> Vec<(u64, String)> {
    let cfg = BatcherConfig {
        batch_size: 7,
        max_len: 15,
        negatives: false,
        keep_raw_uid: true,
        sort_by_length: false,
        users,
        ..BatcherConfig::default()
    };
    let mut out = Vec::new();
    for lb in Batcher::open(file, data.clone(), cfg, 0).unwrap() {
        let lb = lb.unwrap();
        out.extend(lb.lines.into_iter().zip(lb.raw_uid));
    }
    out
}

#[test]
fn the_split_is_deterministic_disjoint_by_user_and_close_to_its_fraction() {
    let uids: Vec<String> = (0..20_000).map(|i| format!("A{i:07}X")).collect();
    for frac in [0.1, 0.3] {
        let a = UserSplit::new(frac, 7).unwrap();
        let held: Vec<bool> = uids.iter().map(|u| a.is_held_out(u)).collect();
        // The same split every time it is asked.
        assert_eq!(held, uids.iter().map(|u| UserSplit::new(frac, 7).unwrap().is_held_out(u)).collect::<Vec<_>>());
        let share = held.iter().filter(|&&h| h).count() as f64 / uids.len() as f64;
        // Binomial sd at 20,000 users: at most 0.0033; five of them.
        assert!((share - frac).abs() < 0.017, "{frac}: held out {share}");
        // Another seed holds out other users (independent: overlap ≈ frac²).
        let b = UserSplit::new(frac, 8).unwrap();
        let both = uids.iter().filter(|u| a.is_held_out(u) && b.is_held_out(u)).count() as f64 / uids.len() as f64;
        assert!((both - frac * frac).abs() < 0.017, "{frac}: both seeds held out {both}");
    }

    // On a data file: each line falls on its user's side, every line on one.
    let dir = tmp("split");
    let data_dir = data(&dir, 400);
    let file = DataSet::train_file(&data_dir);
    let (set, _) = DataSet::open(&data_dir, None, false).unwrap();
    let set = Arc::new(set);
    let split = UserSplit::new(0.25, 11).unwrap();
    let all = lines_of(&file, &set, None);
    let train_side = lines_of(&file, &set, Some(UserFilter { split, side: Side::Train }));
    let valid_side = lines_of(&file, &set, Some(UserFilter { split, side: Side::Valid }));
    // Validation lines come in file order, and the two sides partition the file.
    assert!(valid_side.windows(2).all(|w| w[0].0 < w[1].0));
    let mut union: Vec<_> = train_side.iter().chain(&valid_side).cloned().collect();
    union.sort();
    assert_eq!(union, all);
    let train_users: HashSet<&str> = train_side.iter().map(|(_, u)| u.as_str()).collect();
    let valid_users: HashSet<&str> = valid_side.iter().map(|(_, u)| u.as_str()).collect();
    assert!(train_users.is_disjoint(&valid_users));
    assert!(valid_users.iter().all(|u| split.is_held_out(u)) && !train_users.iter().any(|u| split.is_held_out(u)));
    // The counts a run reports are those of the two sides.
    let counts = count_split(&file, &split, false).unwrap();
    assert_eq!(
        (counts.train_lines, counts.train_users, counts.valid_lines, counts.valid_users),
        (train_side.len() as u64, train_users.len() as u64, valid_side.len() as u64, valid_users.len() as u64)
    );
    let share = valid_users.len() as f64 / (train_users.len() + valid_users.len()) as f64;
    assert!((share - 0.25).abs() < 0.1, "{share} of {} users", train_users.len() + valid_users.len());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn held_out_users_are_never_trained_on() {
    let dir = tmp("untouched");
    let data_dir = data(&dir, 300);
    let out = dir.join("m.safetensors");
    let mut c = config(&data_dir, &out);
    c.valid_frac = 0.3;
    c.epochs = 2;
    let s = train(&c, &mut |_| {}).unwrap();
    assert!(s.split.valid_users > 0 && s.split.train_users > 0, "{:?}", s.split);
    assert_eq!(s.samples, 2 * s.split.train_lines, "two epochs over the training side only");

    // Lazy Adam moves only the embedding rows a batch touches: a user's row
    // still at its initial value was never in a training batch.
    let (model, vocabs) = load_checkpoint(&out).unwrap();
    let init = dien_model::fast::Model::init(model.config().clone(), c.seed).unwrap();
    let d = model.config().d;
    let row = |p: &[f32], i: u32| p[i as usize * d..(i as usize + 1) * d].to_vec();
    let (trained, initial) = (model.params().get("emb.uid"), init.params().get("emb.uid"));
    let split = c.split().unwrap();
    let (mut held, mut moved) = (0, 0);
    for (uid, &i) in &vocabs.uid.map {
        let same = row(trained, i) == row(initial, i);
        if split.is_held_out(uid) {
            assert!(same, "held-out user {uid} was trained on");
            held += 1;
        } else {
            moved += usize::from(!same);
        }
    }
    assert_eq!(held as u64, s.split.valid_users);
    // The comparison is not vacuous: the trained users' rows moved.
    assert_eq!(moved as u64, s.split.train_users);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Checks what every run selecting by `side` AUC must show: the best
/// checkpoint is the first evaluation with the largest AUC, its file says
/// so, scoring it again gives that AUC, and its test metrics in the
/// summary are the checkpoint's.
fn check_best(c: &TrainConfig, s: &TrainSummary, side: &str) {
    let records = log(c);
    let (step, best_auc) = argmax(&evals(&records, side));
    let best = s.best.as_ref().expect("a best model");
    assert_eq!((best.step, s.best_auc), (step, Some(best_auc)));
    let best_path = dien_trainer::train::best_path(&c.out);
    let meta = checkpoint::load_with_metadata(&best_path).unwrap().2;
    assert_eq!(meta["best.step"], step.to_string());
    assert_eq!(meta["best.select"], side);

    let (mut model, vocabs) = load_checkpoint(&best_path).unwrap();
    let set = Arc::new(DataSet { vocabs, sampler: None });
    let test = evaluate(&mut model, &set, &DataSet::test_file(&c.data_dir), c.batch_size, false).unwrap();
    assert_eq!(best.test, test);
    if side == "valid" {
        let users = Some(UserFilter { split: c.split().unwrap(), side: Side::Valid });
        let file = DataSet::train_file(&c.data_dir);
        let valid = evaluate_users(&mut model, &set, &file, c.batch_size, false, users).unwrap();
        assert_eq!((valid.auc, best.valid_auc), (Some(best_auc), Some(best_auc)));
    } else {
        assert_eq!(test.auc, Some(best_auc));
    }
    // The log's last line is the best model's, as the summary has it.
    let line = records.last().unwrap();
    assert_eq!((line["kind"].as_str(), line["step"].as_u64()), (Some("best"), Some(step)), "{line}");
    assert_eq!(line["test"]["auc"].as_f64(), best.test.auc);
}

#[test]
fn the_best_checkpoint_has_the_best_validation_auc_and_epochs_end_in_evaluations() {
    let dir = tmp("best");
    let data_dir = data(&dir, 300);
    let mut c = config(&data_dir, &dir.join("m.safetensors"));
    c.epochs = 3;
    c.eval_every = Some(3);
    c.optim.lr = 0.02;
    let s = train(&c, &mut |_| {}).unwrap();
    check_best(&c, &s, "valid");
    let records = log(&c);
    let evals = evals(&records, "valid");
    assert!(evals.len() >= 4, "{evals:?}");
    let steps: Vec<u64> = evals.iter().map(|e| e.0).collect();
    assert!(steps.windows(2).all(|w| w[0] < w[1]), "one evaluation per step: {steps:?}");

    // Every epoch ends in an evaluation: its last step (the last training
    // record of the epoch) has an eval record of that epoch.
    for epoch in 0..3u64 {
        let last = records
            .iter()
            .filter(|r| r["kind"] == "train" && r["epoch"] == epoch)
            .map(|r| r["step"].as_u64().unwrap())
            .max()
            .unwrap();
        assert!(
            records.iter().any(|r| r["kind"] == "eval" && r["step"] == last && r["epoch"] == epoch),
            "epoch {epoch} (step {last})"
        );
    }
    // The test file is scored at the end only: for the final model (the
    // last evaluation) and, in the best line, for the best one.
    let scored: Vec<u64> = records
        .iter()
        .filter(|r| r["kind"] == "eval" && !r["test"].is_null())
        .map(|r| r["step"].as_u64().unwrap())
        .collect();
    assert_eq!(scored, [s.steps]);
    let final_eval = records.iter().rev().find(|r| r["kind"] == "eval").unwrap();
    assert_eq!(final_eval["test"]["auc"].as_f64(), s.last.auc);
    assert_eq!(final_eval["valid"]["auc"].as_f64(), s.valid.as_ref().unwrap().auc);
    // The split line reports the counts of the summary.
    let split = records.iter().find(|r| r["kind"] == "split").unwrap();
    assert_eq!(split["valid_users"].as_u64(), Some(s.split.valid_users));
    assert_eq!(split["train_lines"].as_u64(), Some(s.split.train_lines));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn select_test_picks_the_best_test_auc() {
    let dir = tmp("select-test");
    let data_dir = data(&dir, 300);
    let mut c = config(&data_dir, &dir.join("m.safetensors"));
    c.epochs = 2;
    c.eval_every = Some(3);
    c.optim.lr = 0.02;
    c.select = Select::Test;
    let s = train(&c, &mut |_| {}).unwrap();
    check_best(&c, &s, "test");
    let records = log(&c);
    // Test and validation are scored at every evaluation.
    let evals: Vec<&Value> = records.iter().filter(|r| r["kind"] == "eval").collect();
    assert!(evals.len() >= 3 && evals.iter().all(|r| !r["test"].is_null() && !r["valid"].is_null()));

    // Without a validation split, selection by test is the only one.
    let mut c = config(&data_dir, &dir.join("n.safetensors"));
    c.valid_frac = 0.0;
    c.select = Select::Test;
    c.eval_every = Some(3);
    let s = train(&c, &mut |_| {}).unwrap();
    assert_eq!((s.split.valid_lines, s.valid.is_none()), (0, true));
    assert_eq!(s.split.train_lines, dien_trainer::train::count_lines(&DataSet::train_file(&data_dir)).unwrap());
    check_best(&c, &s, "test");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The evaluation at which early stopping after `n` evaluations without a
/// new best ends a run whose evaluations measured `aucs` (`None`: never).
fn expected_stop(aucs: &[f64], n: u64) -> Option<usize> {
    let (mut best, mut since) = (f64::MIN, 0);
    for (i, &a) in aucs.iter().enumerate() {
        if a > best {
            (best, since) = (a, 0);
        } else {
            since += 1;
            if since == n {
                return Some(i);
            }
        }
    }
    None
}

#[test]
fn early_stop_ends_after_exactly_n_evaluations_without_a_new_best_also_across_a_resume() {
    let dir = tmp("early");
    let data_dir = data(&dir, 300);
    for n in [1u64, 2] {
        let mut c = config(&data_dir, &dir.join(format!("full{n}.safetensors")));
        c.epochs = 30;
        c.eval_every = Some(1);
        c.optim.lr = 0.03;
        c.early_stop = Some(n);
        let s = train(&c, &mut |_| {}).unwrap();
        let evals = evals(&log(&c), "valid");
        let aucs: Vec<f64> = evals.iter().map(|e| e.1).collect();
        let stop = expected_stop(&aucs, n).expect("the run never stopped improving");
        assert!(s.stopped_early, "n = {n}");
        // The run ended at that evaluation: no evaluation after it, no step.
        assert_eq!(evals.len(), stop + 1, "n = {n}: {aucs:?}");
        assert_eq!(s.steps, evals[stop].0);

        // Interrupted one step before the stop (with n − 1 evaluations
        // already without a new best) and resumed, it stops at the same step
        // with the same model: the count and the split were kept.
        if stop == 0 || s.steps < 2 {
            continue;
        }
        let mut part = config(&data_dir, &dir.join(format!("part{n}.safetensors")));
        part.epochs = c.epochs;
        part.eval_every = c.eval_every;
        part.optim.lr = c.optim.lr;
        part.early_stop = c.early_stop;
        part.max_steps = Some(s.steps - 1);
        let first = train(&part, &mut |_| {}).unwrap();
        assert!(!first.stopped_early);
        part.max_steps = None;
        part.resume = true;
        let second = train(&part, &mut |_| {}).unwrap();
        assert!(second.stopped_early, "n = {n}");
        assert_eq!((second.steps, second.best_auc, &second.split), (s.steps, s.best_auc, &s.split));
        assert_eq!(second.best.as_ref().map(|b| b.step), s.best.as_ref().map(|b| b.step));
        let (a, b) = (checkpoint::load(&c.out).unwrap().1, checkpoint::load(&part.out).unwrap().1);
        let params = |p: &dien_model::ParamStore<f32>| -> Vec<(String, Vec<u32>)> {
            p.iter()
                .filter(|(s, _)| s.kind == dien_model::TensorKind::Param)
                .map(|(s, v)| (s.name.clone(), v.iter().map(|x| x.to_bits()).collect()))
                .collect()
        };
        assert!(params(&a) == params(&b), "n = {n}: the resumed run trained another model");

        // Resumed again, a run that stopped early trains nothing more.
        let third = train(&part, &mut |_| {}).unwrap();
        assert_eq!((third.steps, third.stopped_early), (s.steps, true));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_settings_are_refused_with_clear_messages() {
    let dir = tmp("refused");
    let data_dir = data(&dir, 60);
    let out = dir.join("m.safetensors");
    let fails = |edit: &dyn Fn(&mut TrainConfig)| {
        let mut c = config(&data_dir, &out);
        edit(&mut c);
        train(&c, &mut |_| {}).unwrap_err().to_string()
    };
    for f in [1.0, 1.5, -0.1, f64::NAN] {
        let e = fails(&|c| c.valid_frac = f);
        assert!(e.contains("--valid-frac") && e.contains("below 1"), "{f}: {e}");
    }
    let e = fails(&|c| c.valid_frac = 0.0);
    assert!(e.contains("--select valid") && e.contains("--valid-frac 0") && e.contains("--select test"), "{e}");
    let e = fails(&|c| c.early_stop = Some(0));
    assert!(e.contains("early_stop") && e.contains("at least 1"), "{e}");
    let e = fails(&|c| {
        c.early_stop = Some(2);
        c.eval_each_epoch = false;
    });
    assert!(e.contains("--early-stop") && e.contains("--eval-every"), "{e}");
    // A fraction that holds out none of the users, or all of them.
    let e = fails(&|c| c.valid_frac = 1e-9);
    assert!(e.contains("held out none of the") && e.contains("no validation set"), "{e}");
    let e = fails(&|c| c.valid_frac = 1.0 - 1e-12);
    assert!(e.contains("held out every one of the") && e.contains("nothing is left to train on"), "{e}");
    assert!(!out.exists());

    // The command line refuses the same, before reading anything.
    let d = s(&data_dir);
    let o = s(&out);
    let e = refused(&["train", "--data", d, "--out", o, "--valid-frac", "1"]);
    assert!(e.contains("--valid-frac") && e.contains("below 1"), "{e}");
    let e = refused(&["train", "--data", d, "--out", o, "--select", "best"]);
    assert!(e.contains("--select") && e.contains("valid") && e.contains("test"), "{e}");
    let e = refused(&["train", "--data", d, "--out", o, "--early-stop", "0"]);
    assert!(e.contains("--early-stop"), "{e}");
    let e = refused(&["train", "--data", d, "--out", o, "--valid-frac", "0", "--quiet"]);
    assert!(e.contains("--select valid") && e.contains("--select test"), "{e}");
    assert!(!out.exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_command_reports_the_split_and_both_test_metrics() {
    let dir = tmp("cli");
    let data_dir = data(&dir, 200);
    let out = dir.join("m.safetensors");
    let (so, se) = common::cli::ok(&[
        "train",
        "--data",
        s(&data_dir),
        "--out",
        s(&out),
        "--model",
        "din",
        "--dim",
        "2",
        "--hidden",
        "4",
        "--epochs",
        "2",
        "--valid-frac",
        "0.2",
        "--quiet",
    ]);
    let j = common::cli::last_json(&so);
    assert!(se.contains("validation split: training on"), "{se}");
    assert_eq!(j["select"], "valid");
    let split = &j["split"];
    assert_eq!(split["valid_frac"].as_f64(), Some(0.2));
    assert!(split["valid_users"].as_u64().unwrap() > 0 && split["train_users"].as_u64().unwrap() > 0, "{j}");
    assert!(j["valid"]["auc"].is_f64() && j["auc"].is_f64(), "{j}");
    let best = &j["best"];
    assert_eq!(best["valid_auc"], j["best_auc"]);
    assert!(best["test"]["auc"].is_f64() && best["epoch"].is_u64(), "{j}");
    assert_eq!(best["checkpoint"].as_str(), Some(s(&dien_trainer::train::best_path(&out))));
    assert_eq!(j["stopped_early"], false);
    // Both epochs ended in an evaluation.
    let epochs: BTreeSet<u64> = std::fs::read_to_string(dir.join("m.metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r["kind"] == "eval")
        .map(|r| r["epoch"].as_u64().unwrap())
        .collect();
    assert_eq!(epochs, BTreeSet::from([0, 1]));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_run_recorded_before_validation_splits_resumes_as_it_was() {
    let dir = tmp("legacy");
    let data_dir = data(&dir, 300);
    let out = dir.join("m.safetensors");
    let (d, o) = (s(&data_dir), s(&out));
    let tiny = ["--model", "din", "--dim", "4", "--hidden", "8", "--batch", "32", "--quiet"];
    let train = |args: &[&'static str]| [&["train", "--data", d, "--out", o][..], &tiny, args].concat();
    // A run as older versions trained: on every user, best by test AUC, no
    // evaluation at an epoch's end...
    common::cli::ok(&train(&["--max-steps", "3", "--valid-frac", "0", "--select", "test", "--no-epoch-eval"]));
    // ...recorded without those settings, which older versions did not have.
    let (cfg, params, mut meta) = checkpoint::load_with_metadata(&out).unwrap();
    let mut run: Value = serde_json::from_str(&meta["run"]).unwrap();
    for key in ["valid_frac", "select", "no_epoch_eval", "early_stop"] {
        run["config"].as_object_mut().unwrap().remove(key);
    }
    meta.insert("run".into(), run.to_string());
    for key in cfg.metadata().keys() {
        meta.remove(key);
    }
    checkpoint::save_with(&out, &cfg, &params, &meta).unwrap();

    // `--resume` continues it as the run it was, changing nothing else.
    let (so, se) = common::cli::ok(&["train", "--resume", "--out", o, "--max-steps", "5", "--quiet"]);
    let j = common::cli::last_json(&so);
    assert_eq!((j["steps"].as_u64(), j["select"].as_str()), (Some(5), Some("test")), "{j}");
    assert_eq!(j["split"]["valid_lines"].as_u64(), Some(0), "{j}");
    let changes: Vec<&str> = se.lines().filter(|l| l.starts_with("resume changes")).collect();
    assert_eq!(changes, ["resume changes max_steps: 3 → 5"], "{se}");
    // A split it never had is refused.
    let e = refused(&train(&["--resume", "--max-steps", "6", "--valid-frac", "0.1", "--select", "valid"]));
    assert!(e.contains("valid_frac: the checkpoint's run used 0") && e.contains("this run asks for 0.1"), "{e}");
    assert!(e.contains("select: the checkpoint's run used test"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}
