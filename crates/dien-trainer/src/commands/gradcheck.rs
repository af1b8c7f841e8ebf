//! `dien gradcheck`.

use anyhow::{Result, bail};
use dien_model::gradcheck::{check_fast_path, check_model, check_model_sampled, probe_batch, probe_params};
use serde_json::{Value, json};

use crate::cli::{ArchArgs, GradcheckArgs};

/// Checks a tiny model on a probe batch: the reference path's gradients
/// against finite differences, the fast path against the reference, or
/// both; fails if any tensor disagrees.
pub(crate) fn run(a: &GradcheckArgs) -> Result<()> {
    let arch = ArchArgs { variant: a.variant, att: a.att, aux: a.aux, dim: a.dim, hidden: a.hidden, alpha_aux: 1.0 };
    let cfg = arch.model_config(a.model, 6, 10, 5)?;
    // Rounded to f32 once, so that both checks and both paths of the f32
    // check see exactly the same weights.
    let p32 = probe_params(&cfg, a.seed).map(|x| x as f32);
    let batch = probe_batch(&cfg, a.seed + 1);
    println!(
        "gradient check: model {} variant {} att {} aux {} (d = {}, H = {}, B = {}, T = {}, lengths {:?}), training mode",
        cfg.model, cfg.variant, cfg.att, cfg.aux, cfg.d, cfg.hidden, batch.batch, batch.steps, batch.lengths
    );
    let mut summary = json!({
        "model": cfg.model.to_string(), "variant": cfg.variant.to_string(), "att": cfg.att.to_string(),
        "aux": cfg.aux.to_string(), "path": a.path.name(),
    });
    let mut failed: Vec<String> = Vec::new();
    if a.path.f64() {
        let p64 = p32.map(f64::from);
        let rep = if a.max_entries == 0 {
            check_model(&cfg, &p64, &batch, a.eps)?
        } else {
            check_model_sampled(&cfg, &p64, &batch, a.eps, a.max_entries, a.seed)?
        };
        let bad: Vec<&str> = rep.failures(a.tol).iter().map(|t| t.name.as_str()).collect();
        println!("\nf64 reference path against finite differences:\n{rep}");
        println!("f64 check: {}", verdict(&bad));
        let tensors: Vec<Value> = rep
            .report
            .tensors
            .iter()
            .zip(&rep.max_abs_below_floor)
            .map(|(t, small)| {
                json!({"name": t.name, "n": t.len, "max_abs": t.max_abs, "max_rel": t.max_rel,
                       "max_abs_below_floor": small, "passed": !bad.contains(&t.name.as_str())})
            })
            .collect();
        summary["f64"] = json!({"passed": bad.is_empty(), "max_rel": rep.report.max_rel(), "tol": a.tol,
                                "eps": a.eps, "tensors": tensors});
        failed.extend(bad.iter().map(|n| format!("f64 {n}")));
    }
    if a.path.f32() {
        let rep = check_fast_path(&cfg, &p32, &batch, a.tol_f32)?;
        let bad: Vec<&str> = rep.failures().iter().map(|c| c.name.as_str()).collect();
        println!("\nf32 fast path against the f64 reference (same batch, same weights):\n{rep}");
        println!("f32 check: {}", verdict(&bad));
        summary["f32"] = json!({"passed": bad.is_empty(), "max_rel_err": rep.max_rel_err(), "tol": rep.tol,
                                "grad_floor": rep.grad_floor, "tensors": rep.checks});
        failed.extend(bad.iter().map(|n| format!("f32 {n}")));
    }
    summary["passed"] = json!(failed.is_empty());
    println!("{summary}");
    if !failed.is_empty() {
        bail!("gradient check failed for {failed:?}");
    }
    Ok(())
}

fn verdict(bad: &[&str]) -> String {
    if bad.is_empty() { "passed".into() } else { format!("FAILED for {}", bad.join(", ")) }
}
