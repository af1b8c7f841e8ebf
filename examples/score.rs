//! Scores one user with a checkpoint through `dien_model::serve::Predictor`
//! and prints the click probability of each candidate.
//!
//! ```sh
//! cargo run --release --example score                           # trains a tiny model first
//! cargo run --release --example score -- m.safetensors DATA     # the first user of a data file or directory
//! cargo run --release --example score -- m.safetensors          # a request made of table indices
//! ```
//!
//! - Without arguments it generates a small data set and trains a tiny
//!   DIEN model for a few steps (in a temporary directory), then scores
//!   the first user of that data set's test file.
//! - With a checkpoint and a data file (or a data directory: its test file)
//!   it scores the first user of the file: the consecutive lines of that
//!   user with the same history are the candidates, looked up by string id
//!   in the checkpoint's vocabularies (the `.vocab.json` sidecar).
//! - With a checkpoint alone it scores a made-up request by index: user 1,
//!   items 1–8 as the history and items 9–12 as the candidates, every one
//!   in category 1 (indices beyond a table wrap around).
//!
//! `tests/examples.rs` runs [`run`] and checks its probabilities against
//! `Predictor` called directly.

use std::error::Error;
use std::path::{Path, PathBuf};

use dien_model::ModelKind;
use dien_model::serve::{Items, Predictor, Scratch};
use dien_trainer::data::DataSet;
use dien_trainer::data::line::{split_fields_with, strip_line_end};
use dien_trainer::generate::{GenerateConfig, generate};
use dien_trainer::train::{TrainConfig, train};

/// One scored request.
#[derive(Clone, Debug, PartialEq)]
pub struct Scored {
    /// The checkpoint that scored it.
    pub checkpoint: PathBuf,
    /// The user: the id string of the data file, or `#<index>`.
    pub user: String,
    /// The user's index in `emb.uid`.
    pub uid: u32,
    /// The history's item indices, oldest first.
    pub hist_mid: Vec<u32>,
    /// The history's category indices.
    pub hist_cat: Vec<u32>,
    /// The candidates' item indices.
    pub cand_mid: Vec<u32>,
    /// The candidates' category indices.
    pub cand_cat: Vec<u32>,
    /// The candidates as printed: item id strings, or `#<index>`.
    pub candidates: Vec<String>,
    /// The click probability of each candidate.
    pub probabilities: Vec<f32>,
}

/// A request read from a data file, by string id.
struct IdRequest {
    user: String,
    hist_items: Vec<String>,
    hist_cats: Vec<String>,
    cand_items: Vec<String>,
    cand_cats: Vec<String>,
}

/// The first user of a data file: its first line and the lines right
/// after it with the same user and history (one candidate each).
fn first_request(file: &Path) -> Result<IdRequest, Box<dyn Error>> {
    let text = std::fs::read(file).map_err(|e| format!("reading {}: {e}", file.display()))?;
    let mut req: Option<IdRequest> = None;
    for line in text.split(|&c| c == b'\n').map(strip_line_end).filter(|l| !l.is_empty()) {
        let f = split_fields_with(line, true).map_err(|e| format!("{}: {}: {}", file.display(), e.field, e.msg))?;
        let hist_items: Vec<String> = f.mid_tokens().map(str::to_string).collect();
        let hist_cats: Vec<String> = f.cat_tokens().map(str::to_string).collect();
        match &mut req {
            None => {
                req = Some(IdRequest {
                    user: f.uid.to_string(),
                    hist_items,
                    hist_cats,
                    cand_items: vec![f.mid.to_string()],
                    cand_cats: vec![f.cat.to_string()],
                })
            }
            Some(r) if r.user == f.uid && r.hist_items == hist_items && r.hist_cats == hist_cats => {
                r.cand_items.push(f.mid.to_string());
                r.cand_cats.push(f.cat.to_string());
            }
            Some(_) => break,
        }
    }
    req.ok_or_else(|| format!("{} holds no sample", file.display()).into())
}

/// Generates a small data set in `dir/data` and trains a tiny DIEN model
/// for a few steps into `dir/m.safetensors`; returns the checkpoint and
/// the data directory.
pub fn train_tiny(dir: &Path) -> Result<(PathBuf, PathBuf), Box<dyn Error>> {
    let data = dir.join("data");
    generate(&data, &GenerateConfig { users: 300, seed: 11, ..GenerateConfig::default() })?;
    let ck = dir.join("m.safetensors");
    let mut cfg = TrainConfig::new(&data, &ck, ModelKind::Dien);
    (cfg.model.d, cfg.model.hidden) = (4, 8);
    cfg.max_steps = Some(3);
    cfg.threads = Some(2);
    cfg.seed = 11;
    train(&cfg, &mut |_| {})?;
    Ok((ck, data))
}

/// Scores one user with `checkpoint` (see the module documentation for
/// what is scored); without a checkpoint, trains a tiny model in `work`
/// first ([`train_tiny`]) and scores the first user of its test file.
pub fn run(checkpoint: Option<&Path>, data: Option<&Path>, work: &Path) -> Result<Scored, Box<dyn Error>> {
    let (checkpoint, data) = match checkpoint {
        Some(c) => (c.to_path_buf(), data.map(Path::to_path_buf)),
        None => {
            let (c, d) = train_tiny(work)?;
            (c, Some(data.map_or(d, Path::to_path_buf)))
        }
    };
    // The checkpoint and, beside it, its vocabularies.
    let predictor = Predictor::load(&checkpoint).map_err(|e| format!("{}: {e}", checkpoint.display()))?;
    let mut scratch = Scratch::new();
    let scored = match data {
        Some(data) => {
            let file = if data.is_dir() { DataSet::test_file(&data) } else { data };
            let r = first_request(&file)?;
            let v = predictor.vocabs().ok_or("scoring by string id needs the checkpoint's .vocab.json sidecar")?;
            // By string id; the indices are kept for the caller.
            let p =
                predictor.score_ids(&mut scratch, &r.user, &r.hist_items, &r.hist_cats, &r.cand_items, &r.cand_cats)?;
            Scored {
                checkpoint: checkpoint.clone(),
                uid: v.uid(&r.user),
                hist_mid: r.hist_items.iter().map(|s| v.mid(s)).collect(),
                hist_cat: r.hist_cats.iter().map(|s| v.cat(s)).collect(),
                cand_mid: r.cand_items.iter().map(|s| v.mid(s)).collect(),
                cand_cat: r.cand_cats.iter().map(|s| v.cat(s)).collect(),
                probabilities: p.to_vec(),
                user: r.user,
                candidates: r.cand_items,
            }
        }
        None => {
            let c = predictor.config();
            let wrap = |i: u32, n: usize| i % n as u32;
            let hist_mid: Vec<u32> = (1..=8).map(|i| wrap(i, c.n_mid)).collect();
            let cand_mid: Vec<u32> = (9..=12).map(|i| wrap(i, c.n_mid)).collect();
            let (uid, cat) = (wrap(1, c.n_uid), wrap(1, c.n_cat));
            let (hist_cat, cand_cat) = (vec![cat; hist_mid.len()], vec![cat; cand_mid.len()]);
            // By index.
            let p = predictor.score(
                &mut scratch,
                uid,
                Items::new(&hist_mid, &hist_cat),
                Items::new(&cand_mid, &cand_cat),
            )?;
            Scored {
                checkpoint: checkpoint.clone(),
                user: format!("#{uid}"),
                uid,
                candidates: cand_mid.iter().map(|i| format!("#{i}")).collect(),
                probabilities: p.to_vec(),
                hist_mid,
                hist_cat,
                cand_mid,
                cand_cat,
            }
        }
    };
    println!(
        "{} ({} model): user {} with {} behaviours",
        checkpoint.display(),
        predictor.config().model,
        scored.user,
        scored.hist_mid.len()
    );
    for (c, p) in scored.candidates.iter().zip(&scored.probabilities) {
        println!("  {c:>12}  {p:.6}");
    }
    Ok(scored)
}

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    if args.len() > 2 {
        return Err("usage: score [CHECKPOINT [DATA_FILE_OR_DIR]]".into());
    }
    let work = std::env::temp_dir().join(format!("dien-example-score-{}", std::process::id()));
    run(args.first().map(PathBuf::as_path), args.get(1).map(PathBuf::as_path), &work)?;
    Ok(())
}
