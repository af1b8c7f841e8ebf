//! `dien sweep` on a tiny generated data set: the grid's runs and their
//! records, the summary against the records, the curves, resuming, and
//! the refusals of bad grids.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use common::cli::{ok, refused, s, small_data, tmp};
use serde_json::Value;

/// Tiny runs: three steps of a tiny model, evaluated after each.
const TINY: [&str; 14] = [
    "--threads",
    "1",
    "--quiet",
    "--dim",
    "4",
    "--hidden",
    "8",
    "--batch",
    "16",
    "--max-steps",
    "3",
    "--max-len",
    "8",
    "--no-recalibrate",
];

fn lines(path: &Path) -> Vec<Value> {
    fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// Mean and sample sd of `v`.
fn mean_sd(v: &[f64]) -> (f64, f64) {
    let m = v.iter().sum::<f64>() / v.len() as f64;
    (m, (v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (v.len() - 1) as f64).sqrt())
}

/// A well-formed SVG document: one `svg` root in the SVG namespace, every
/// element closed in order.
fn assert_svg(text: &str) {
    let body = text.trim_start().strip_prefix("<?xml").map_or(text, |r| &r[r.find("?>").unwrap() + 2..]);
    let mut open: Vec<String> = Vec::new();
    let mut roots = 0;
    let mut rest = body;
    while let Some(i) = rest.find('<') {
        let j = i + rest[i..].find('>').expect("an unclosed tag");
        let tag = &rest[i + 1..j];
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(open.pop().as_deref(), Some(name.trim()), "misnested </{name}>");
        } else {
            let name: String = tag.chars().take_while(|c| !c.is_whitespace() && *c != '/').collect();
            if open.is_empty() {
                roots += 1;
                assert_eq!(name, "svg", "the root element is <{name}>");
                assert!(tag.contains("xmlns=\"http://www.w3.org/2000/svg\""), "no SVG namespace: <{tag}>");
            }
            if !tag.ends_with('/') {
                open.push(name);
            }
        }
        rest = &rest[j + 1..];
    }
    assert!(open.is_empty(), "unclosed elements: {open:?}");
    assert_eq!(roots, 1);
}

#[test]
fn a_sweep_runs_the_grid_summarises_it_and_resumes() {
    let dir = tmp("sweep", "grid");
    let data = small_data(&dir);
    let out = dir.join("sweep");
    // `--eval-every` (a flag of `dien train`) among the sweep's own flags.
    let mut args = vec!["sweep", "--data", s(&data), "--models", "base,din", "--eval-every", "1", "--seeds", "1-2"];
    args.extend(["--set", "lr=0.001,0.01", "--out", s(&out)]);
    args.extend(TINY);
    let (stdout, _) = ok(&args);

    let runs = lines(&out.join("runs.jsonl"));
    assert_eq!(runs.len(), 8);
    let printed: Vec<Value> = stdout.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    assert_eq!(printed, runs, "each run's record is printed as written");
    let mut grid = BTreeSet::new();
    for r in &runs {
        let lr = r["set"]["lr"].as_f64().unwrap();
        assert_eq!(r["config"]["lr"].as_f64(), Some(lr), "{r}");
        assert_eq!(r["config"]["model"], r["model"]);
        assert_eq!(r["config"]["seed"], r["seed"]);
        assert_eq!(r["config"]["eval_every"], 1);
        assert_eq!(r["steps"], 3);
        let best_step = r["best"]["step"].as_u64().unwrap();
        assert!((1..=3).contains(&best_step), "{r}");
        assert!(r["test"]["auc"].as_f64().is_some_and(|a| (0.0..=1.0).contains(&a)));
        // Chosen by validation; its test metrics come from the run's end.
        assert!(r["best"]["valid"]["auc"].as_f64().is_some(), "{r}");
        assert!(r["best"]["test"]["auc"].as_f64().is_some_and(|a| (0.0..=1.0).contains(&a)), "{r}");
        if best_step == 3 {
            assert_eq!(r["best"]["test"], r["test"], "the best is the final model: {r}");
        }
        let run_dir = out.join(r["dir"].as_str().unwrap());
        assert!(run_dir.join("model.safetensors").is_file() && run_dir.join("model.metrics.jsonl").is_file());
        grid.insert((r["model"].as_str().unwrap().to_string(), r["seed"].as_u64().unwrap(), lr.to_string()));
    }
    assert_eq!(grid.len(), 8, "every model × seed × lr once: {grid:?}");

    // The summary's mean and sample sd are those of the records.
    let summary: Value = serde_json::from_str(&fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let cells = summary["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 4);
    let table = fs::read_to_string(out.join("summary.md")).unwrap();
    for c in cells {
        let name = c["cell"].as_str().unwrap();
        assert!(table.contains(name) && stdout.contains(name), "{name} missing from the table");
        assert_eq!(c["n"], 2);
        let of =
            |f: &dyn Fn(&Value) -> f64| -> Vec<f64> { runs.iter().filter(|r| r["cell"] == c["cell"]).map(f).collect() };
        let metrics: [(&str, Vec<f64>); 4] = [
            ("auc", of(&|r| r["test"]["auc"].as_f64().unwrap())),
            ("gauc", of(&|r| r["test"]["gauc"].as_f64().unwrap())),
            ("logloss", of(&|r| r["test"]["logloss"].as_f64().unwrap())),
            ("best_epoch", of(&|r| r["best"]["epoch"].as_f64().unwrap())),
        ];
        for (key, values) in metrics {
            let (m, sd) = mean_sd(&values);
            assert!((c[key]["mean"].as_f64().unwrap() - m).abs() < 1e-12, "{name} {key}: {c}");
            assert!((c[key]["sd"].as_f64().unwrap() - sd).abs() < 1e-12, "{name} {key}: {c}");
        }
    }
    assert!(table.contains(" ± "));

    let svg = fs::read_to_string(out.join("curves.svg")).unwrap();
    assert_svg(&svg);
    assert!(svg.contains("validation AUC") && svg.contains("din_lr=0.01"), "the curves name the split and the cells");

    // Rerun: every run is skipped and nothing is appended.
    let (stdout, stderr) = ok(&args);
    assert_eq!(stderr.matches("skipping").count(), 8, "{stderr}");
    assert!(stdout.contains("0 runs trained, 8 skipped"), "{stdout}");
    assert_eq!(lines(&out.join("runs.jsonl")), runs);

    // One more seed trains only the new runs.
    let mut more = args.clone();
    let at = more.iter().position(|a| *a == "--seeds").unwrap();
    more[at + 1] = "1-3";
    let (stdout, _) = ok(&more);
    assert!(stdout.contains("4 runs trained, 8 skipped"), "{stdout}");
    assert_eq!(lines(&out.join("runs.jsonl")).len(), 12);

    // Other settings for recorded runs: refused before any work.
    let mut other = args.clone();
    let at = other.iter().position(|a| *a == "--max-steps").unwrap();
    other[at + 1] = "2";
    let err = refused(&other);
    assert!(err.contains("max_steps: 3 then, 2 now"), "{err}");
    assert_eq!(lines(&out.join("runs.jsonl")).len(), 12);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_grids_are_refused_naming_the_flag() {
    let dir = tmp("sweep", "refusals");
    let data = small_data(&dir);
    let out = dir.join("sweep");
    let sweep = |extra: &[&str]| {
        let mut a = vec!["sweep", "--data", s(&data), "--out", s(&out), "--models", "base", "--seeds", "1"];
        a.extend(extra);
        refused(&a)
    };
    let err = sweep(&["--set", "lrr=0.1"]);
    assert!(err.contains("unknown key `lrr`") && err.contains("alpha_aux"), "{err}");
    let err = sweep(&["--set", "lr=abc"]);
    assert!(err.contains("--set lr=abc") && err.contains("--lr"), "{err}");
    let err = sweep(&["--set", "lr=0.1", "--lr", "0.2"]);
    assert!(err.contains("--set lr") && err.contains("also given"), "{err}");
    let err = sweep(&["--set", "dense_embedding_updates=maybe"]);
    assert!(err.contains("dense_embedding_updates") && err.contains("true or false"), "{err}");
    let err = sweep(&["--set", "lr="]);
    assert!(err.contains("--set lr="), "{err}");
    let err = sweep(&["--set", "model=din"]);
    assert!(err.contains("--models"), "{err}");
    let err = sweep(&["--seeds", "5-1"]);
    assert!(err.contains("--seeds 5-1") && err.contains("empty"), "{err}");
    let err = sweep(&["--seeds", "1-x"]);
    assert!(err.contains("--seeds 1-x"), "{err}");
    let err = sweep(&["--models", ""]);
    assert!(err.contains("--models"), "{err}");
    let err = sweep(&["--seed", "3"]);
    assert!(err.contains("--seeds"), "{err}");
    let err = sweep(&["--eval-every", "0"]);
    assert!(err.contains("--eval-every"), "{err}");
    // An architecture a model cannot have is refused before the first run.
    let err =
        refused(&["sweep", "--data", s(&data), "--out", s(&out), "--models", "dien", "--set", "aux=dot", "--dim", "4"]);
    assert!(err.contains("cell dien_aux=dot") && err.contains("H == E"), "{err}");
    assert!(!out.exists(), "a refused grid writes nothing");

    // A folder holding the data, and a folder of other files, are refused.
    let err = refused(&["sweep", "--data", s(&data), "--out", s(&dir), "--models", "base", "--seeds", "1"]);
    assert!(err.contains("apart"), "{err}");
    let inside = data.join("sweep");
    let err = refused(&["sweep", "--data", s(&data), "--out", s(&inside), "--models", "base", "--seeds", "1"]);
    assert!(err.contains("apart") && !inside.exists(), "{err}");
    fs::create_dir_all(&out).unwrap();
    fs::write(out.join("notes.txt"), "mine").unwrap();
    let err = refused(&["sweep", "--data", s(&data), "--out", s(&out), "--models", "base", "--seeds", "1"]);
    assert!(err.contains("not a sweep folder"), "{err}");
    assert_eq!(fs::read_to_string(out.join("notes.txt")).unwrap(), "mine");
    fs::remove_dir_all(&dir).unwrap();
}
