//! `dien prepare`.

use anyhow::Result;
use dien_trainer::prepare::{PrepareConfig, prepare};

use crate::cli::PrepareArgs;

/// Builds a data directory from an event log; the last line is its summary.
pub(crate) fn run(a: &PrepareArgs) -> Result<()> {
    let mut cfg = PrepareConfig::new(&a.events, a.format, &a.out);
    cfg.items = a.items.clone();
    cfg.min_count = a.min_count;
    cfg.max_len = a.max_len;
    cfg.test_frac = a.test_frac;
    cfg.seed = a.seed;
    cfg.behaviors = a.behavior.clone().unwrap_or_default();
    cfg.chunk_events = a.chunk_events;
    cfg.skip_bad_lines = a.skip_bad_lines;
    let s = prepare(&cfg)?;
    if s.bad_lines.count > 0 {
        eprintln!("{}", s.bad_lines);
    }
    eprintln!("wrote {}", a.out.display());
    println!("{}", serde_json::to_string(&s)?);
    Ok(())
}
