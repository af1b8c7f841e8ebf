//! `dien train --export-batches`: the exported run replays exactly. The
//! batches of `steps.jsonl`, run through the fast model and the optimiser
//! from `init.safetensors`, reproduce the recorded losses and the parameters
//! after every epoch bit for bit; recalibrating on `recal.jsonl` and scoring
//! `test.jsonl` reproduce the evaluated model and its metrics. Also: what an
//! export refuses, and the command line.

mod common;

use std::fs;
use std::path::Path;

use common::cli::{last_json, ok, refused, s, small_data, tmp};
use dien_model::fast::Model;
use dien_model::{Batch, Mode, ModelKind, ParamStore, checkpoint};
use dien_trainer::dist::threads::ThreadGroup;
use dien_trainer::generate::{GenerateConfig, generate};
use dien_trainer::metrics::MetricsAccumulator;
use dien_trainer::optim::Optimizer;
use dien_trainer::train::{TrainConfig, train, train_distributed};
use serde_json::Value;

fn lines(path: &Path) -> Vec<Value> {
    fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// The number written as `"key": <number>` in the JSON text `line`, read by
/// the standard library's correctly rounded parser (serde_json's default
/// parser may be one unit in the last place off, which would hide or fake
/// a difference).
fn number(line: &str, key: &str) -> f64 {
    let at = line.find(&format!("\"{key}\":")).unwrap_or_else(|| panic!("no `{key}` in {line}")) + key.len() + 3;
    let rest = &line[at..];
    let end = rest.find([',', '}']).unwrap();
    rest[..end].trim().parse().unwrap()
}

fn params(path: &Path) -> ParamStore<f32> {
    checkpoint::load(path).unwrap().1
}

/// Every tensor of `got` equals `want`'s bit for bit.
fn assert_same(got: &ParamStore<f32>, want: &ParamStore<f32>, what: &str) {
    for ((sg, g), (sw, w)) in got.iter().zip(want.iter()) {
        assert_eq!(sg.name, sw.name);
        let differ = g.iter().zip(w).filter(|(a, b)| a.to_bits() != b.to_bits()).count();
        assert_eq!(differ, 0, "{what}: `{}` differs in {differ} of {} values", sg.name, g.len());
    }
}

/// A batch line read back as the batch it records, checking the recorded lengths.
fn batch_of(line: &Value) -> Batch {
    let b = Batch::from_json_str(&line.to_string()).unwrap();
    let lengths: Vec<usize> = serde_json::from_value(line["lengths"].clone()).unwrap();
    assert_eq!(b.lengths, lengths);
    b
}

fn config(data: &Path, dir: &Path, model: ModelKind) -> TrainConfig {
    let mut c = TrainConfig::new(data, dir.join("m.safetensors"), model);
    c.model.d = 3;
    c.model.hidden = 5;
    // Shorter than the longest histories: the export holds them as trained.
    c.model.max_len = 10;
    c.batch_size = 32;
    c.epochs = 2;
    c.threads = Some(2);
    // Fewer than the training samples: recalibration draws a sample.
    c.recal_samples = 150;
    c.eval_every = Some(7);
    c.export_batches = Some(dir.join("export"));
    c
}

/// Trains `model` with an export, then replays the export.
fn replay(name: &str, model: ModelKind, dense: bool) {
    let dir = tmp("export", name);
    let data = dir.join("data");
    let g = GenerateConfig { users: 300, max_len: 16, seed: 3, ..GenerateConfig::default() };
    generate(&data, &g).unwrap();
    let mut c = config(&data, &dir, model);
    c.optim.lazy_embeddings = !dense;
    let summary = train(&c, &mut |_| {}).unwrap();
    let x = dir.join("export");

    let manifest: Value = serde_json::from_str(&fs::read_to_string(x.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["model"]["model"], model.name());
    assert_eq!(manifest["optimizer"]["lazy_embeddings"], !dense);
    let (cfg, init) = checkpoint::load(&x.join("init.safetensors")).unwrap();
    let mut m = Model::new(cfg, init).unwrap();
    let mut opt = Optimizer::new(c.optim.clone(), m.params()).unwrap();
    let events_text = fs::read_to_string(x.join("events.jsonl")).unwrap();
    let events: Vec<(Value, &str)> =
        events_text.lines().map(|l| (serde_json::from_str::<Value>(l).unwrap(), l)).collect();
    let count = |kind: &str| events.iter().filter(|(e, _)| e["kind"] == kind).count();
    assert_eq!(count("epoch_end"), 2);
    assert!(count("evaluation") >= 2, "{} evaluations", count("evaluation"));

    let text = fs::read_to_string(x.join("steps.jsonl")).unwrap();
    let steps = lines(&x.join("steps.jsonl"));
    assert_eq!(steps.len() as u64, summary.steps);
    let mut next = events.iter().peekable();
    for (i, (line, raw)) in steps.iter().zip(text.lines()).enumerate() {
        assert_eq!(line["step"], i + 1);
        let b = batch_of(line);
        assert_eq!(b.has_negatives(), model == ModelKind::Dien);
        opt.set_lr(line["lr"].as_f64().unwrap() as f32).unwrap();
        let l = m.forward_backward(&b).unwrap();
        for (k, v) in [("loss", l.loss), ("loss_target", l.loss_target), ("loss_aux", l.loss_aux)] {
            assert_eq!(number(raw, k).to_bits(), v.to_bits(), "step {}: {k}", i + 1);
        }
        let (p, gr) = m.params_and_gradients();
        opt.step(p, gr).unwrap();
        m.update_running_stats();
        while let Some((e, raw)) = next.next_if(|(e, _)| e["step"] == i + 1) {
            match e["kind"].as_str().unwrap() {
                "epoch_end" => {
                    let want = params(&x.join(e["params"].as_str().unwrap()));
                    assert_same(m.params(), &want, &format!("after epoch {}", e["epoch"]));
                }
                _ => evaluate(&mut m, &x, e, raw),
            }
        }
    }
    assert!(next.next().is_none());
    let _ = fs::remove_dir_all(&dir);
}

/// Recalibrates `m` on the exported training batches (as the run did:
/// training goes on from the recalibrated statistics) and scores the
/// exported test batches: the same statistics and metrics as the run's.
fn evaluate(m: &mut Model, x: &Path, e: &Value, raw: &str) {
    let mut xs = Vec::new();
    let mut n = 0;
    for line in lines(&x.join(e["recal"].as_str().unwrap())) {
        let b = batch_of(&line);
        assert!(!b.has_negatives());
        m.forward(&b, Mode::Eval).unwrap();
        xs.extend_from_slice(m.head_input());
        n += b.batch;
    }
    assert_eq!(e["recal_samples"], n);
    m.recalibrate(&xs).unwrap();
    assert_same(m.params(), &params(&x.join(e["params"].as_str().unwrap())), "recalibrated");
    let mut acc = MetricsAccumulator::new();
    for line in lines(&x.join(e["test"].as_str().unwrap())) {
        let b = batch_of(&line);
        let users: Vec<String> = serde_json::from_value(line["users"].clone()).unwrap();
        m.forward(&b, Mode::Eval).unwrap();
        acc.push_batch(&users, m.logits(), &b.label);
    }
    let got = acc.finish();
    assert_eq!(e["metrics"]["samples"], got.samples);
    for (k, v) in [("auc", got.auc), ("gauc", got.gauc), ("logloss", got.logloss), ("accuracy", got.accuracy)] {
        assert_eq!(number(raw, k).to_bits(), v.unwrap().to_bits(), "step {}: {k}", e["step"]);
    }
}

#[test]
fn dien_replays_bit_for_bit() {
    replay("dien", ModelKind::Dien, false);
}

#[test]
fn din_and_base_replay_bit_for_bit() {
    replay("din", ModelKind::Din, false);
    replay("base", ModelKind::Base, false);
}

#[test]
fn dense_embedding_updates_replay_bit_for_bit() {
    replay("dense", ModelKind::Dien, true);
}

#[test]
fn an_export_refuses_to_overwrite_or_mislead() {
    let dir = tmp("export", "refuse");
    let data = small_data(&dir);
    let out = dir.join("m.safetensors");
    let x = dir.join("x");
    let train = |extra: &[&str]| {
        let mut a = vec!["train", "--data", s(&data), "--out", s(&out), "--dim", "2", "--hidden", "4"];
        a.extend_from_slice(&["--max-steps", "2", "--quiet"]);
        a.extend_from_slice(extra);
        a.iter().map(|x| x.to_string()).collect::<Vec<_>>()
    };
    let run = |extra: &[&str]| {
        let a = train(extra);
        refused(&a.iter().map(String::as_str).collect::<Vec<_>>())
    };
    // A directory with files in it, the data directory among them.
    let err = run(&["--export-batches", s(&data)]);
    assert!(err.contains("is not empty"), "{err}");
    // A file.
    fs::write(dir.join("f"), "x").unwrap();
    let err = run(&["--export-batches", s(&dir.join("f"))]);
    assert!(err.contains("not a directory"), "{err}");
    // The checkpoint on one of the export's files.
    let mut a = train(&["--export-batches", s(&x)]);
    let at = a.iter().position(|v| v == s(&out)).unwrap();
    a[at] = x.join("steps.jsonl").display().to_string();
    let err = refused(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(err.contains("the same file"), "{err}");
    // A resumed run: its replay would need the optimiser state.
    let a = train(&[]);
    ok(&a.iter().map(String::as_str).collect::<Vec<_>>());
    let err = run(&["--resume", "--max-steps", "3", "--export-batches", s(&x)]);
    assert!(err.contains("resumed run"), "{err}");
    let _ = fs::remove_dir_all(&dir);
}

/// Every rank of a data-parallel run refuses an export (each sees only its
/// share of a batch), before any exchange.
#[test]
fn a_data_parallel_run_is_not_exported() {
    let dir = tmp("export", "ranks");
    let data = dir.join("data");
    generate(&data, &GenerateConfig { users: 60, max_len: 12, seed: 3, ..GenerateConfig::default() }).unwrap();
    let c = &config(&data, &dir, ModelKind::Dien);
    let errors: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = ThreadGroup::new(2)
            .into_iter()
            .map(|mut comm| s.spawn(move || train_distributed(c, &mut comm, &mut |_| {}).unwrap_err().to_string()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for e in errors {
        assert!(e.contains("data-parallel run cannot be exported"), "{e}");
    }
    assert!(!dir.join("export").exists());
    let _ = fs::remove_dir_all(&dir);
}

/// A line of `steps.jsonl` is a batch file: `dien grads` on the initial
/// parameters and the first step's batch computes the recorded loss.
#[test]
fn a_step_line_is_a_batch_file() {
    let dir = tmp("export", "cli");
    let data = small_data(&dir);
    let (out, x) = (dir.join("m.safetensors"), dir.join("x"));
    ok(&["train", "--data", s(&data), "--out", s(&out), "--dim", "2", "--hidden", "4", "--max-steps", "3"]
        .into_iter()
        .chain(["--quiet", "--export-batches", s(&x)])
        .collect::<Vec<_>>());
    let steps = lines(&x.join("steps.jsonl"));
    assert_eq!(steps.len(), 3);
    let batch = dir.join("b.json");
    fs::write(&batch, steps[0].to_string()).unwrap();
    let g = dir.join("g.safetensors");
    let (so, _) =
        ok(&["grads", "--checkpoint", s(&x.join("init.safetensors")), "--batch-file", s(&batch), "--out", s(&g)]);
    let got = last_json(&so)["loss"].as_f64().unwrap();
    assert_eq!(got, steps[0]["loss"].as_f64().unwrap());
    // Three steps stopped inside the first epoch: the run's last evaluation
    // (which scores the test file too: its batches are exported), then one
    // epoch line, not complete.
    let e = lines(&x.join("events.jsonl"));
    let kinds: Vec<_> = e.iter().map(|v| v["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["evaluation", "epoch_end"]);
    assert_eq!((e[0]["set"].as_str(), e[0]["step"].as_u64()), (Some("test"), Some(3)));
    assert!(x.join(e[0]["test"].as_str().unwrap()).is_file());
    assert_eq!(e[1]["complete"].as_bool(), Some(false));
    let _ = fs::remove_dir_all(&dir);
}
