//! Sweeps (`dien sweep`): train every cell of a grid (models × the values of
//! swept settings) with every seed, one run after another, and compare the
//! cells by the mean and sample standard deviation over their seeds.
//!
//! A sweep folder holds one folder per cell and in it one per seed
//! (`DIR/<cell>/seed<k>/`, with the run's checkpoint, metrics log and
//! plot), `runs.jsonl` (one [`RunRecord`] per finished run, appended as
//! each run ends), `summary.md`, `summary.json` and `curves.svg`.
//!
//! A sweep into a folder that holds an earlier sweep resumes it: a run
//! recorded in `runs.jsonl` is skipped when its recorded settings are the
//! ones it would run with now, and the sweep is refused before any work
//! when they differ, so that a summary never mixes settings. Runs that
//! were not recorded (an interrupted run, new seeds or cells) are trained
//! from the start.
//!
//! - `grid`: parsing `--models`, `--seeds`, `--set` and the cells.
//! - `runs`: the run records and the evaluations of a metrics log.
//! - `summary`: mean ± sd per cell.
//! - `curves`: the SVG of the per-evaluation curves.

pub mod curves;
pub mod grid;
pub mod runs;
pub mod summary;

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

pub use self::grid::{Cell, Setting, cells, parse_models, parse_seeds, parse_set};
pub use self::runs::{Evaluation, Metrics, RunRecord};
pub use self::summary::{CellSummary, Stat};
use crate::error::TrainError;
use crate::train::{Event, TrainConfig, train};

/// The run records of a sweep folder.
pub const RUNS_FILE: &str = "runs.jsonl";
/// The summary table (Markdown).
pub const SUMMARY_MD: &str = "summary.md";
/// The summary (JSON).
pub const SUMMARY_JSON: &str = "summary.json";
/// The curves (SVG).
pub const CURVES_SVG: &str = "curves.svg";

/// The checkpoint of the run of `cell` with `seed` in sweep folder `dir`
/// (`DIR/<cell>/seed<k>/model.safetensors`).
pub fn checkpoint_path(dir: &Path, cell: &Cell, seed: u64) -> PathBuf {
    dir.join(run_dir(cell, seed)).join("model.safetensors")
}

/// A run's folder relative to the sweep's.
fn run_dir(cell: &Cell, seed: u64) -> String {
    format!("{}/seed{seed}", cell.name)
}

/// One run of the grid.
#[derive(Clone, Debug)]
pub struct PlannedRun {
    /// Its cell.
    pub cell: Cell,
    /// Its seed.
    pub seed: u64,
    /// Its training configuration: the checkpoint at
    /// [`checkpoint_path`], and a metrics log (from which its curves and
    /// best evaluation are read).
    pub config: TrainConfig,
}

/// What a sweep reports while it runs.
#[derive(Debug)]
pub enum SweepEvent<'a> {
    /// Run `index` (0-based) of `total` starts.
    Start {
        /// Its place in the grid.
        index: usize,
        /// Runs in the grid.
        total: usize,
        /// The run.
        run: &'a PlannedRun,
    },
    /// A run recorded by an earlier sweep with the same settings is skipped.
    Skipped(&'a RunRecord),
    /// An event of the run being trained.
    Train(Event<'a>),
    /// A run finished; its record was appended to `runs.jsonl`.
    Finished(&'a RunRecord),
    /// Something worth telling.
    Info(String),
}

/// The result of a sweep.
#[derive(Clone, Debug)]
pub struct SweepOutcome {
    /// The record of every run of the grid, in grid order.
    pub runs: Vec<RunRecord>,
    /// Mean ± sd per cell, in cell order.
    pub summary: Vec<CellSummary>,
    /// The summary as the Markdown table written to `summary.md`.
    pub table: String,
    /// Runs trained now.
    pub trained: usize,
    /// Runs skipped as recorded by an earlier sweep.
    pub skipped: usize,
}

/// Makes `dir` ready for a sweep on the data directory `data` and returns
/// both as absolute paths with the runs an earlier sweep recorded there.
/// Refuses a folder that holds the data or lies inside it, and a folder
/// that holds files but no `runs.jsonl` (not a sweep folder, so nothing
/// of it may be overwritten).
pub fn open_dir(dir: &Path, data: &Path) -> Result<(PathBuf, PathBuf, Vec<RunRecord>), TrainError> {
    let data = data.canonicalize().map_err(|e| TrainError::io(data, e))?;
    if !data.is_dir() {
        return Err(TrainError::Config(format!("--data {}: not a data directory", data.display())));
    }
    // Checked before the folder is created, so that a refused --out inside
    // the data directory leaves nothing there.
    let resolved = resolved(dir)?;
    if data.starts_with(&resolved) || resolved.starts_with(&data) {
        return Err(TrainError::Config(format!(
            "--out {}: the sweep folder and the data directory {} must lie apart (neither inside the other)",
            dir.display(),
            data.display()
        )));
    }
    fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
    let dir = dir.canonicalize().map_err(|e| TrainError::io(dir, e))?;
    let runs_file = dir.join(RUNS_FILE);
    if !runs_file.exists() {
        let mut entries = fs::read_dir(&dir).map_err(|e| TrainError::io(&dir, e))?;
        if entries.next().is_some() {
            return Err(TrainError::Config(format!(
                "--out {}: the folder holds files but no {RUNS_FILE}, so it is not a sweep folder; refusing to write \
                 into it (name a new or empty folder)",
                dir.display()
            )));
        }
        // Created at once: it marks the folder as a sweep's even if the
        // first run is interrupted.
        fs::write(&runs_file, "").map_err(|e| TrainError::io(&runs_file, e))?;
    }
    let recorded = runs::read_runs(&runs_file)?;
    Ok((dir, data, recorded))
}

/// `path` made absolute with its links resolved, whether or not it exists
/// yet: its nearest existing ancestor resolved, the rest appended.
fn resolved(path: &Path) -> Result<PathBuf, TrainError> {
    let abs = std::path::absolute(path).map_err(|e| TrainError::io(path, e))?;
    let mut rest = Vec::new();
    let mut at = abs.as_path();
    loop {
        if let Ok(real) = at.canonicalize() {
            return Ok(rest.iter().rev().fold(real, |p, c| p.join(c)));
        }
        match (at.parent(), at.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_owned());
                at = parent;
            }
            _ => return Ok(abs),
        }
    }
}

/// Settings that may differ between a recorded run and its rerun: the
/// thread count does not change what a run computes (results are
/// bit-identical for any thread count).
fn comparable(settings: &Map<String, Value>) -> Map<String, Value> {
    settings.iter().filter(|(k, _)| k.as_str() != "threads").map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// The differences between recorded and planned settings, as
/// `key: then → now`.
fn differences(then: &Map<String, Value>, now: &Map<String, Value>) -> Vec<String> {
    let (then, now) = (comparable(then), comparable(now));
    let mut keys: Vec<&String> = then.keys().chain(now.keys()).collect();
    keys.sort();
    keys.dedup();
    let show = |v: Option<&Value>| v.map_or("unset".to_string(), Value::to_string);
    keys.into_iter()
        .filter(|k| then.get(*k) != now.get(*k))
        .map(|k| format!("{k}: {} then, {} now", show(then.get(k)), show(now.get(k))))
        .collect()
}

/// Runs the grid in sweep folder `dir` (from [`open_dir`], with the runs
/// it found in `recorded`): skips the runs recorded with the same
/// settings, trains the others one after another, then writes the summary
/// and the curves.
pub fn run_sweep(
    dir: &Path,
    cells: &[Cell],
    plan: &[PlannedRun],
    recorded: &[RunRecord],
    on_event: &mut (dyn FnMut(SweepEvent<'_>) + Send),
) -> Result<SweepOutcome, TrainError> {
    if plan.is_empty() {
        return Err(TrainError::Config("the grid is empty: no run to do".into()));
    }
    // Every recorded run is checked before any training: a sweep either
    // resumes exactly or does nothing.
    let mut done: Vec<Option<RunRecord>> = Vec::with_capacity(plan.len());
    for run in plan {
        if run.config.metrics_log.is_none() {
            return Err(TrainError::Config(format!(
                "{}: a sweep's run needs a metrics log",
                run_dir(&run.cell, run.seed)
            )));
        }
        let earlier = recorded.iter().rev().find(|r| r.cell == run.cell.name && r.seed == run.seed);
        if let Some(r) = earlier {
            let diff = differences(&r.config, &run.config.settings());
            if !diff.is_empty() {
                return Err(TrainError::Config(format!(
                    "{}: {} records this run with other settings ({}); sweep into a new --out, or remove its line \
                     from {RUNS_FILE} to train it again",
                    dir.join(run_dir(&run.cell, run.seed)).display(),
                    RUNS_FILE,
                    diff.join("; ")
                )));
            }
        }
        done.push(earlier.cloned());
    }
    let runs_file = dir.join(RUNS_FILE);
    let (mut trained, mut skipped) = (0, 0);
    let mut records = Vec::with_capacity(plan.len());
    for (index, (run, earlier)) in plan.iter().zip(done).enumerate() {
        if let Some(r) = earlier {
            on_event(SweepEvent::Skipped(&r));
            skipped += 1;
            records.push(r);
            continue;
        }
        on_event(SweepEvent::Start { index, total: plan.len(), run });
        let s = train(&run.config, &mut |e| on_event(SweepEvent::Train(e)))?;
        let log = run.config.metrics_log.as_deref().expect("checked above");
        let evals = runs::evaluations(log)?;
        let mut best = runs::best(&evals).cloned();
        // With a validation split the test file is scored for the best
        // model once, at the end: the summary has those metrics.
        if let (Some(b), Some(sb)) = (best.as_mut(), s.best.as_ref())
            && b.step == sb.step
            && b.test.is_none()
        {
            b.test = Some((&sb.test).into());
        }
        let record = RunRecord {
            cell: run.cell.name.clone(),
            model: run.cell.model.name().to_string(),
            seed: run.seed,
            set: run.cell.set.iter().map(|(k, v)| (k.clone(), runs::typed(v))).collect(),
            test: (&s.last).into(),
            best,
            seconds: s.seconds,
            steps: s.steps,
            samples: s.samples,
            dir: run_dir(&run.cell, run.seed),
            config: run.config.settings(),
        };
        runs::append_run(&runs_file, &record)?;
        on_event(SweepEvent::Finished(&record));
        trained += 1;
        records.push(record);
    }
    let summary = summary::summarise(cells, &records);
    let table = summary::markdown(&summary);
    write(&dir.join(SUMMARY_MD), &table)?;
    let json = json!({"cells": summary, "runs": records.len()});
    write(&dir.join(SUMMARY_JSON), &format!("{:#}\n", json))?;
    draw(dir, cells, plan, on_event)?;
    Ok(SweepOutcome { runs: records, summary, table, trained, skipped })
}

fn write(path: &Path, text: &str) -> Result<(), TrainError> {
    fs::write(path, text).map_err(|e| TrainError::io(path, e))
}

/// Draws `curves.svg` from the metrics logs of the grid's runs; a run
/// whose log is gone (removed after an earlier sweep recorded it) is left
/// out with a message.
fn draw(
    dir: &Path,
    cells: &[Cell],
    plan: &[PlannedRun],
    on_event: &mut (dyn FnMut(SweepEvent<'_>) + Send),
) -> Result<(), TrainError> {
    let mut curves = Vec::with_capacity(cells.len());
    for cell in cells {
        let mut seeds = Vec::new();
        for run in plan.iter().filter(|r| r.cell == *cell) {
            let log = run.config.metrics_log.as_deref().expect("checked by run_sweep");
            if log.exists() {
                seeds.push(runs::evaluations(log)?);
            } else {
                on_event(SweepEvent::Info(format!("{}: no metrics log; left out of the curves", log.display())));
            }
        }
        curves.push((cell.name.clone(), seeds));
    }
    curves::write_sweep_curves(&dir.join(CURVES_SVG), &curves)
}
