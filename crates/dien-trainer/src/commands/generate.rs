//! `dien generate`.

use anyhow::Result;
use dien_trainer::generate::{GenerateConfig, generate};

use crate::cli::GenerateArgs;

/// Writes a synthetic data set; the last line is its summary.
pub(crate) fn run(a: &GenerateArgs) -> Result<()> {
    let mut g = GenerateConfig { seed: a.seed, ..GenerateConfig::default() };
    if let Some(v) = a.users {
        g.users = v;
    }
    if let Some(v) = a.items {
        g.items = v;
    }
    if let Some(v) = a.categories {
        g.categories = v;
    }
    if let Some(v) = a.min_history {
        g.min_len = v;
    }
    if let Some(v) = a.max_history {
        g.max_len = v;
    }
    let s = generate(&a.out, &g)?;
    eprintln!("wrote {}", a.out.display());
    println!("{}", serde_json::to_string(&s)?);
    Ok(())
}
