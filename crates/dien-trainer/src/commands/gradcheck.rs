//! `dien gradcheck`.

use anyhow::{Result, bail};
use dien_model::gradcheck::{check_model, check_model_sampled, probe_batch, probe_params};
use serde_json::json;

use crate::cli::{ArchArgs, GradcheckArgs};

/// Checks the reference path's gradients of a tiny model against finite
/// differences; fails if any tensor disagrees.
pub(crate) fn run(a: &GradcheckArgs) -> Result<()> {
    let arch = ArchArgs { variant: a.variant, att: a.att, aux: a.aux, dim: a.dim, hidden: a.hidden, alpha_aux: 1.0 };
    let cfg = arch.model_config(a.model, 6, 10, 5)?;
    let p = probe_params(&cfg, a.seed);
    let batch = probe_batch(&cfg, a.seed + 1);
    println!(
        "gradient check: model {} variant {} att {} aux {} (d = {}, H = {}, B = {}, T = {}, lengths {:?}), training mode",
        cfg.model, cfg.variant, cfg.att, cfg.aux, cfg.d, cfg.hidden, batch.batch, batch.steps, batch.lengths
    );
    let rep = if a.max_entries == 0 {
        check_model(&cfg, &p, &batch, a.eps)?
    } else {
        check_model_sampled(&cfg, &p, &batch, a.eps, a.max_entries, a.seed)?
    };
    println!("{rep}");
    let ok = rep.passes(a.tol);
    println!(
        "{}",
        json!({"model": cfg.model.to_string(), "passed": ok, "max_rel": rep.report.max_rel(), "tol": a.tol})
    );
    if !ok {
        bail!("gradient check failed for {:?}", rep.failures(a.tol).iter().map(|t| &t.name).collect::<Vec<_>>());
    }
    Ok(())
}
