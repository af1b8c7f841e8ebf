//! Honest resume and checkpoint sets, through the library: a resumed run
//! refuses settings that would make it another run and reports the ones it
//! changes; the best score survives a resume; a checkpoint names the exact
//! files of its set and refuses parts from another save.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use dien_model::ModelKind;
use dien_model::checkpoint::{self, set};
use dien_model::serve::Predictor;
use dien_trainer::generate::{GenerateConfig, generate};
use dien_trainer::train::{Event, Select, TrainConfig, load_checkpoint, train};

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("dien-resume-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn data(dir: &Path) -> PathBuf {
    let g = GenerateConfig { users: 300, seed: 4, max_len: 15, ..GenerateConfig::default() };
    generate(&dir.join("data"), &g).unwrap();
    dir.join("data")
}

fn config(data: &Path, out: &Path) -> TrainConfig {
    let mut c = TrainConfig::new(data, out, ModelKind::Dien);
    c.model.d = 4;
    c.model.hidden = 8;
    c.model.max_len = 15;
    c.batch_size = 32;
    c.threads = Some(1);
    c.recal_samples = 100;
    c.max_steps = Some(4);
    c.metrics_log = Some(out.with_file_name("m.metrics.jsonl"));
    c
}

/// Trains, collecting the informational messages and the validation AUCs
/// of the evaluations (what chooses the best model).
fn run(c: &TrainConfig) -> Result<(Vec<String>, Vec<f64>), String> {
    let mut info = Vec::new();
    let mut aucs = Vec::new();
    train(c, &mut |e| match e {
        Event::Info(s) => info.push(s),
        Event::Record(r) => aucs.extend(r.valid.as_ref().and_then(|t| t.auc)),
        Event::Saved(_) => {}
    })
    .map_err(|e| e.to_string())?;
    Ok((info, aucs))
}

fn meta(path: &Path) -> BTreeMap<String, String> {
    checkpoint::load_with_metadata(path).unwrap().2
}

#[test]
fn resume_refuses_another_run_and_applies_changeable_settings() {
    let dir = tmp("honest");
    let data = data(&dir);
    let out = dir.join("m.safetensors");
    run(&config(&data, &out)).unwrap();
    let published = std::fs::read(&out).unwrap();

    type Edit = fn(&mut TrainConfig);
    let conflicts: [(Edit, &str); 8] = [
        (|c| c.model.d = 6, "dim: the checkpoint has 4, this run asks for 6"),
        (|c| c.model.hidden = 12, "hidden"),
        (|c| c.model.max_len = 5, "max_len"),
        (|c| c.batch_size = 16, "batch: the checkpoint's run used 32, this run asks for 16"),
        (|c| c.seed = 9, "seed"),
        (|c| c.optim.lazy_embeddings = false, "dense_embedding_updates"),
        (|c| c.valid_frac = 0.2, "valid_frac: the checkpoint's run used 0.1, this run asks for 0.2"),
        (|c| c.select = Select::Test, "select: the checkpoint's run used valid, this run asks for test"),
    ];
    for (edit, says) in conflicts {
        let mut c = config(&data, &out);
        c.resume = true;
        c.max_steps = Some(6);
        edit(&mut c);
        let err = run(&c).unwrap_err();
        assert!(err.contains(says) && err.contains("cannot resume"), "{says}: {err}");
    }
    // The refused runs changed nothing.
    assert_eq!(std::fs::read(&out).unwrap(), published);

    // The learning rate may change: applied and reported.
    let mut c = config(&data, &out);
    c.resume = true;
    c.max_steps = Some(6);
    c.optim.lr = 0.01;
    let (info, _) = run(&c).unwrap();
    assert!(info.iter().any(|m| m == "resume changes lr: 0.001 → 0.01"), "{info:?}");
    assert!(info.iter().any(|m| m == "resume changes max_steps: 4 → 6"), "{info:?}");
    let log = std::fs::read_to_string(dir.join("m.metrics.jsonl")).unwrap();
    let records: Vec<serde_json::Value> = log.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let last = records.iter().rev().find(|r| r["kind"] == "eval").unwrap();
    // One epoch is about 240 training lines (the 270 less those of the
    // validation users): still the first epoch, so the new base rate.
    assert!((last["lr"].as_f64().unwrap() - 0.01).abs() < 1e-9, "{last}");
    // The log holds the record of each sitting.
    assert_eq!(log.lines().filter(|l| l.contains("\"kind\":\"run\"")).count(), 2);
}

#[test]
fn the_best_model_survives_a_resume() {
    let dir = tmp("best");
    let data = data(&dir);
    let out = dir.join("m.safetensors");
    let mut c = config(&data, &out);
    c.eval_every = Some(2);
    let (_, first) = run(&c).unwrap();
    let best_before = first.iter().cloned().fold(f64::MIN, f64::max);
    let best_path = dir.join("m.best.safetensors");
    let bytes_before = std::fs::read(&best_path).unwrap();

    // A learning rate far too large spoils the model after the resume.
    c.resume = true;
    c.max_steps = Some(8);
    c.optim.lr = 0.5;
    let (_, later) = run(&c).unwrap();
    assert!(later.iter().any(|&a| a < best_before), "the resumed run never did worse: {later:?} vs {best_before}");
    let best_after = std::fs::read(&best_path).unwrap();
    if later.iter().all(|&a| a <= best_before) {
        assert_eq!(bytes_before, best_after, "a worse model replaced the best one");
    } else {
        assert_ne!(bytes_before, best_after, "a better model did not replace the best one");
    }
    let (_, state) = set::read_part(&out, &meta(&out), set::OPTIM_ROLE, "optim.safetensors").unwrap().unwrap();
    let (state_meta, _) = checkpoint::tensors_from_bytes(&state).unwrap();
    let stored: f64 = state_meta["train.best_auc"].parse().unwrap();
    let overall = first.iter().chain(&later).cloned().fold(f64::MIN, f64::max);
    assert_eq!(stored, overall);
}

#[test]
fn a_checkpoint_names_its_set_and_refuses_foreign_parts() {
    let dir = tmp("set");
    let data = data(&dir);
    let out = dir.join("m.safetensors");
    let mut c = config(&data, &out);
    c.save_every = Some(1);
    run(&c).unwrap();
    let m = meta(&out);
    let optim_name = m["set.optim"].split(' ').next().unwrap().to_string();
    assert!(optim_name.starts_with("m.optim.") && optim_name.ends_with(".safetensors"), "{optim_name}");
    assert!(m["set.vocab"].starts_with("m.vocab.json fnv1a64:"), "{}", m["set.vocab"]);
    // Four saves, one state file: earlier ones are removed once replaced.
    let states: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("m.optim."))
        .collect();
    assert_eq!(states, std::slice::from_ref(&optim_name));

    // The set as published loads for training and for serving.
    load_checkpoint(&out).unwrap();
    Predictor::load(&out).unwrap();
    let best = dir.join("m.best.safetensors");
    assert!(meta(&best)["set.vocab"].starts_with("m.best.vocab.json "));

    // Vocabularies of another save (here: edited) are refused by both.
    let vocab = dir.join("m.vocab.json");
    let text = std::fs::read_to_string(&vocab).unwrap();
    std::fs::write(&vocab, text.replacen("\"uid\":{", "\"uid\":{\"intruder\":0,", 1)).unwrap();
    for err in [load_checkpoint(&out).err().map(|e| e.to_string()), Predictor::load(&out).err().map(|e| e.to_string())]
    {
        let err = err.expect("a foreign vocabulary file was accepted");
        assert!(err.contains("m.vocab.json") && err.contains("does not belong to checkpoint"), "{err}");
    }
    std::fs::write(&vocab, text).unwrap();

    // A missing state file: resume refuses, naming it.
    std::fs::rename(dir.join(&optim_name), dir.join("elsewhere")).unwrap();
    let mut r = config(&data, &out);
    r.resume = true;
    r.max_steps = Some(6);
    let err = run(&r).unwrap_err();
    assert!(err.contains(&optim_name) && err.contains("the optim of checkpoint"), "{err}");
}
