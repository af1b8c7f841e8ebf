//! `dien sweep`: each run's settings become the flags of a `dien train`
//! command line, parsed by the same parser as `dien train` itself (so
//! every flag can be swept and a bad value gets the flag's own message),
//! and the library runs the grid.

use std::ffi::OsString;
use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use clap::{CommandFactory, Parser};
use dien_trainer::sweep::{self, Cell, PlannedRun, Setting, SweepEvent};
use dien_trainer::train::TrainConfig;

use super::print_event;
use crate::cli::{Cli, Cmd, SweepArgs};
use crate::config_file::setting_flags;

/// Settings of `dien train` a sweep sets itself or cannot pass on, with
/// what to do instead.
const OWN: [(&str, &str); 9] = [
    ("data", "the sweep's --data is every run's"),
    ("out", "each run writes into the sweep folder (--out DIR)"),
    ("model", "use --models"),
    ("seed", "use --seeds"),
    ("config", "give the settings as flags or with --set"),
    ("resume", "rerunning the sweep into the same --out resumes it"),
    ("metrics_log", "each run's metrics log goes into its folder"),
    ("plot", "each run's plot goes into its folder"),
    ("distributed", "a sweep trains in one process"),
];

/// Whether `args` (the whole command line) runs `dien sweep`.
pub(crate) fn is_sweep(args: &[OsString]) -> bool {
    args.get(1).is_some_and(|a| a == "sweep")
}

/// The command line of `dien sweep` with the flags of `dien train` that
/// `dien sweep` does not have (and their values) moved behind `--`, where
/// [`SweepArgs::train`] collects them: `--eval-every 5` may then be written
/// anywhere among the sweep's own flags.
pub(crate) fn train_flags_last(args: Vec<OsString>) -> Vec<OsString> {
    let cli = Cli::command();
    let (Some(sweep), Some(train)) = (cli.find_subcommand("sweep"), cli.find_subcommand("train")) else { return args };
    // Whether `name` is a flag of `cmd`, and whether it takes a value.
    let flag = |cmd: &clap::Command, name: &str| {
        cmd.get_arguments().find(|a| a.get_long() == Some(name)).map(|a| a.get_action().takes_values())
    };
    let mut kept: Vec<OsString> = args.iter().take(2).cloned().collect();
    let mut moved = Vec::new();
    let mut rest = args.into_iter().skip(2);
    while let Some(a) = rest.next() {
        if a == "--" {
            kept.push(a);
            kept.append(&mut moved);
            kept.extend(rest.by_ref());
            break;
        }
        let text = a.to_string_lossy().into_owned();
        let Some(long) = text.strip_prefix("--") else {
            kept.push(a);
            continue;
        };
        let (name, inline_value) = match long.split_once('=') {
            Some((n, _)) => (n, true),
            None => (long, false),
        };
        let (to, takes_value) = match (flag(sweep, name), flag(train, name)) {
            (Some(v), _) => (&mut kept, v),
            (None, Some(v)) => (&mut moved, v),
            (None, None) => (&mut kept, false),
        };
        to.push(a);
        if takes_value
            && !inline_value
            && let Some(v) = rest.next()
        {
            to.push(v);
        }
    }
    if !moved.is_empty() {
        kept.push("--".into());
        kept.extend(moved);
    }
    kept
}

/// The first line of a clap error, without its `error: ` prefix.
fn clap_message(e: &clap::Error) -> String {
    let text = e.to_string();
    let line = text.lines().next().unwrap_or_default();
    line.strip_prefix("error: ").unwrap_or(line).to_string()
}

/// Refuses a setting the sweep owns.
fn refuse_own(key: &str, how: &str) -> Result<()> {
    let key = key.replace('-', "_");
    if let Some((_, why)) = OWN.iter().find(|(k, _)| *k == key) {
        bail!("{how}: `{key}` cannot be set for the runs of a sweep: {why}");
    }
    Ok(())
}

/// The `dien train` configuration of `argv` (the arguments after `train`).
fn parse_train(argv: &[OsString]) -> std::result::Result<TrainConfig, clap::Error> {
    let full = ["dien".into(), "train".into()].into_iter().chain(argv.iter().cloned());
    match Cli::try_parse_from(full)?.cmd {
        Cmd::Train(t) => Ok(super::train::config(&t)),
        _ => unreachable!("the command line starts with `train`"),
    }
}

/// The required flags of `dien train` with stand-in paths, for checking
/// other flags before the sweep folder exists: only the flags are parsed.
fn placeholders() -> Vec<OsString> {
    ["--data", "d", "--out", "m.safetensors"].map(OsString::from).to_vec()
}

/// The flags every run shares: the sweep's own that `dien train` has too,
/// then those passed through.
fn shared_flags(a: &SweepArgs) -> Vec<OsString> {
    let mut v: Vec<OsString> = Vec::new();
    if let Some(e) = a.epochs {
        v.extend(["--epochs".into(), e.to_string().into()]);
    }
    if let Some(t) = a.threads {
        v.extend(["--threads".into(), t.to_string().into()]);
    }
    if a.quiet {
        v.push("--quiet".into());
    }
    v.extend(a.train.iter().map(OsString::from));
    v
}

/// The flags of one run: data, model, seed and checkpoint, the shared
/// flags, then the cell's swept settings.
fn run_flags(data: &Path, ckpt: &Path, cell: &Cell, seed: u64, shared: &[OsString]) -> Result<Vec<OsString>> {
    let mut v: Vec<OsString> = vec![
        "--data".into(),
        data.into(),
        "--out".into(),
        ckpt.into(),
        "--model".into(),
        cell.model.name().into(),
        "--seed".into(),
        seed.to_string().into(),
    ];
    v.extend(shared.iter().cloned());
    for (k, value) in &cell.set {
        v.extend(setting_flags(k, value).map_err(|e| anyhow!("--set {k}: {e}"))?);
    }
    Ok(v)
}

/// Checks the swept settings: known keys not owned by the sweep, not also
/// given as a fixed flag, and every value valid for its flag.
fn check_sets(sets: &[Setting], shared: &[OsString]) -> Result<()> {
    for s in sets {
        refuse_own(&s.key, &format!("--set {}", s.key))?;
        let long = format!("--{}", s.key.replace('_', "-"));
        if shared.iter().any(|f| f.to_string_lossy() == long || f.to_string_lossy().starts_with(&format!("{long}="))) {
            bail!("--set {}: {long} is also given as a fixed flag; give one or the other", s.key);
        }
        for value in &s.values {
            let flags = setting_flags(&s.key, value).map_err(|e| anyhow!("--set {}: {e}", s.key))?;
            let argv: Vec<OsString> = placeholders().into_iter().chain(flags).collect();
            parse_train(&argv).map_err(|e| anyhow!("--set {}={value}: {}", s.key, clap_message(&e)))?;
        }
    }
    Ok(())
}

/// Runs the sweep and prints each run's record, then the table.
pub(crate) fn run(a: &SweepArgs) -> Result<()> {
    let models = sweep::parse_models(&a.models)?;
    let seeds = sweep::parse_seeds(&a.seeds)?;
    let sets = a.sets.iter().map(|s| sweep::parse_set(s)).collect::<Result<Vec<_>, _>>()?;
    let cells = sweep::cells(&models, &sets)?;
    for f in &a.train {
        if let Some(long) = f.strip_prefix("--") {
            refuse_own(long.split('=').next().unwrap_or(long), &format!("--{long}"))?;
        }
    }
    let shared = shared_flags(a);
    parse_train(&placeholders().into_iter().chain(shared.iter().cloned()).collect::<Vec<_>>())
        .map_err(|e| anyhow!("the flags of `dien train` given to the sweep: {}", clap_message(&e)))?;
    check_sets(&sets, &shared)?;
    // Each cell's architecture is checked before anything is written,
    // rather than when its first run starts, hours into a sweep (the table
    // sizes come from the data later).
    for cell in &cells {
        let config = parse_train(&run_flags(Path::new("d"), Path::new("m.safetensors"), cell, 0, &shared)?)
            .map_err(|e| anyhow!("cell {}: {}", cell.name, clap_message(&e)))?;
        let mut mc = config.model.clone();
        (mc.n_uid, mc.n_mid, mc.n_cat) = (1, 1, 1);
        mc.validate().with_context(|| format!("cell {}", cell.name))?;
    }

    let (dir, data, recorded) = sweep::open_dir(&a.out, &a.data)?;
    let mut plan = Vec::with_capacity(cells.len() * seeds.len());
    for cell in &cells {
        for &seed in &seeds {
            let ckpt = sweep::checkpoint_path(&dir, cell, seed);
            let argv = run_flags(&data, &ckpt, cell, seed, &shared)?;
            let config = parse_train(&argv).map_err(|e| anyhow!("cell {}: {}", cell.name, clap_message(&e)))?;
            plan.push(PlannedRun { cell: cell.clone(), seed, config });
        }
    }
    eprintln!("sweep: {} cells × {} seeds = {} runs into {}", cells.len(), seeds.len(), plan.len(), dir.display());
    let outcome = sweep::run_sweep(&dir, &cells, &plan, &recorded, &mut |e| match e {
        SweepEvent::Start { index, total, run } => {
            eprintln!("== run {}/{total}: {} seed {} ==", index + 1, run.cell.name, run.seed);
        }
        SweepEvent::Skipped(r) => eprintln!("skipping {}: finished by an earlier sweep", r.dir),
        SweepEvent::Train(e) => print_event(e),
        SweepEvent::Finished(r) => println!("{}", serde_json::to_string(r).expect("run records serialise")),
        SweepEvent::Info(s) => eprintln!("{s}"),
    })?;
    println!();
    print!("{}", outcome.table);
    println!();
    println!(
        "{} runs trained, {} skipped (finished earlier); {} in {}",
        outcome.trained,
        outcome.skipped,
        [sweep::RUNS_FILE, sweep::SUMMARY_MD, sweep::SUMMARY_JSON, sweep::CURVES_SVG].join(", "),
        dir.display()
    );
    Ok(())
}
