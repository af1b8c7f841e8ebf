//! `dien predict`.

use std::fs;
use std::io::{BufWriter, Write};

use anyhow::{Context, Result};
use dien_trainer::predict::predict_file;
use dien_trainer::train::load_checkpoint;
use serde_json::json;

use super::{data_file, pool};
use crate::cli::PredictArgs;

/// Scores a data file and writes one probability per line, in input order.
pub(crate) fn run(a: &PredictArgs) -> Result<()> {
    let (mut model, vocabs) = load_checkpoint(&a.checkpoint)?;
    let probs = pool(a.threads)?.install(|| predict_file(&mut model, vocabs, &data_file(&a.data), a.batch))?;
    let f = fs::File::create(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let mut w = BufWriter::new(f);
    for p in &probs {
        writeln!(w, "{p}")?;
    }
    w.flush()?;
    eprintln!("wrote {} probabilities to {}", probs.len(), a.out.display());
    println!("{}", json!({"samples": probs.len(), "out": a.out.display().to_string()}));
    Ok(())
}
