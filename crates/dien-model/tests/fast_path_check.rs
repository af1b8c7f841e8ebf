//! `gradcheck::check_fast_path`: the fast `f32` training path against the
//! `f64` reference, as `dien gradcheck --path f32` runs it. It passes for
//! every model, variant, attention and auxiliary form on small batches
//! (histories of length 0 and 1, padding, with and without negatives), and
//! it fails, naming the quantity, when one gradient entry, an embedding
//! row, a logit or the loss of the fast step is perturbed.

use dien_model::gradcheck::{
    F32_TOL, FastPathReport, FastStep, check_fast_path, compare_fast_step, probe_batch, probe_params,
};
use dien_model::{AttForm, AuxForm, Batch, ModelConfig, ModelKind, ParamStore, TensorKind, Variant, tensor_specs};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn tiny(model: ModelKind, variant: Variant, att: AttForm, aux: AuxForm) -> ModelConfig {
    let mut c = ModelConfig::new(model, 7, 13, 5);
    (c.variant, c.att, c.aux, c.d, c.hidden) = (variant, att, aux, 4, 8);
    c.validate().unwrap();
    c
}

/// Every model; for DIEN every variant with every attention form and every
/// auxiliary form; for DIN every attention form (the `ALL` lists, so a new
/// entry is covered).
fn all_configs() -> Vec<ModelConfig> {
    let mut out = Vec::new();
    for &model in ModelKind::ALL {
        match model {
            ModelKind::Dien => {
                for &v in Variant::ALL {
                    for &att in AttForm::ALL {
                        out.push(tiny(model, v, att, AuxForm::Mlp));
                    }
                }
                for &aux in AuxForm::ALL.iter().filter(|&&a| a != AuxForm::Mlp) {
                    out.push(tiny(model, Variant::GruAtt, AttForm::Bilinear, aux));
                }
            }
            ModelKind::DienNoaux => {
                for &v in Variant::ALL {
                    out.push(tiny(model, v, AttForm::Mlp, AuxForm::Mlp));
                }
            }
            ModelKind::Din => {
                for &att in AttForm::ALL {
                    out.push(tiny(model, Variant::Augru, att, AuxForm::Mlp));
                }
            }
            ModelKind::Base => out.push(tiny(model, Variant::Augru, AttForm::Mlp, AuxForm::Mlp)),
        }
    }
    out
}

fn label(cfg: &ModelConfig) -> String {
    format!("{}/{}/{}/{}", cfg.model, cfg.variant, cfg.att, cfg.aux)
}

/// `b` samples, `t` steps: lengths 0, 1 and `t` first, then random (so most
/// rows are padded); padded positions hold out-of-range ids, which neither
/// path may read.
fn random_batch(cfg: &ModelConfig, b: usize, t: usize, seed: u64, negatives: bool) -> Batch {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut lens: Vec<usize> = (0..b).map(|_| rng.random_range(0..=t)).collect();
    (lens[0], lens[1], lens[2]) = (0, 1, t);
    let mut hist = |n: usize| -> Vec<Vec<u32>> {
        lens.iter().map(|&l| (0..l).map(|_| rng.random_range(0..n as u32)).collect()).collect()
    };
    let (hm, hc, nm, nc) = (hist(cfg.n_mid), hist(cfg.n_cat), hist(cfg.n_mid), hist(cfg.n_cat));
    let uid = (0..b).map(|_| rng.random_range(0..cfg.n_uid as u32)).collect();
    let mid = (0..b).map(|_| rng.random_range(0..cfg.n_mid as u32)).collect();
    let cat = (0..b).map(|_| rng.random_range(0..cfg.n_cat as u32)).collect();
    let labels = (0..b).map(|i| (i % 2) as f32).collect();
    let (n1, n2) = if negatives { (Some(&nm[..]), Some(&nc[..])) } else { (None, None) };
    let mut batch = Batch::from_samples(uid, mid, cat, &hm, &hc, n1, n2, labels).unwrap();
    for (s, &len) in lens.iter().enumerate() {
        for i in s * t + len..(s + 1) * t {
            batch.hist_mid[i] = 1_000_000;
            batch.hist_cat[i] = 77;
        }
    }
    batch
}

/// The probe parameters of `dien gradcheck`, rounded to `f32`.
fn params(cfg: &ModelConfig, seed: u64) -> ParamStore<f32> {
    probe_params(cfg, seed).map(|x| x as f32)
}

fn n_trainable(cfg: &ModelConfig) -> usize {
    tensor_specs(cfg).iter().filter(|s| s.kind == TensorKind::Param).count()
}

fn assert_passes(rep: &FastPathReport, cfg: &ModelConfig, what: &str) {
    assert!(rep.passes(), "{} ({what}):\n{rep}", label(cfg));
    // Outputs (loss, loss_aux with an auxiliary loss, logits) and every
    // trainable tensor.
    let outputs = if cfg.has_aux() { 3 } else { 2 };
    assert_eq!(rep.checks.len(), outputs + n_trainable(cfg), "{}", label(cfg));
    assert!(rep.max_rel_err() <= F32_TOL, "{}: {}", label(cfg), rep.max_rel_err());
}

#[test]
fn fast_path_matches_reference_for_every_model_and_variant() {
    for (k, cfg) in all_configs().iter().enumerate() {
        let p = params(cfg, 10 + k as u64);
        for (what, batch) in [
            ("random, padded", random_batch(cfg, 11, 6, 20 + k as u64, true)),
            ("no negatives", random_batch(cfg, 9, 4, 40 + k as u64, false)),
            ("probe batch", probe_batch(cfg, 60 + k as u64)),
        ] {
            let rep = check_fast_path(cfg, &p, &batch, F32_TOL).unwrap();
            assert_passes(&rep, cfg, what);
        }
    }
}

#[test]
fn embedding_tables_are_compared_on_the_touched_rows() {
    let cfg = tiny(ModelKind::Dien, Variant::Augru, AttForm::Mlp, AuxForm::Mlp);
    let batch = random_batch(&cfg, 3, 2, 5, true);
    let rep = check_fast_path(&cfg, &params(&cfg, 1), &batch, F32_TOL).unwrap();
    let distinct = |ids: &mut Vec<u32>| {
        ids.sort_unstable();
        ids.dedup();
        ids.len()
    };
    let real = |v: &[u32]| -> Vec<u32> {
        (0..batch.batch).flat_map(|s| v[s * batch.steps..s * batch.steps + batch.lengths[s]].to_vec()).collect()
    };
    let mut mids = [batch.mid.clone(), real(&batch.hist_mid), real(batch.neg_mid.as_ref().unwrap())].concat();
    let emb_mid = rep.checks.iter().find(|c| c.name == "emb.mid").unwrap();
    assert_eq!(emb_mid.shape, vec![distinct(&mut mids), cfg.d]);
    assert_eq!(emb_mid.table_rows, Some(cfg.n_mid));
    let emb_uid = rep.checks.iter().find(|c| c.name == "emb.uid").unwrap();
    assert_eq!(emb_uid.shape, vec![distinct(&mut batch.uid.clone()), cfg.d]);
    assert!(rep.to_string().contains(&format!("[{} of {}, 4]", emb_mid.shape[0], cfg.n_mid)), "{rep}");
}

/// Offset of tensor `name` in the layout of `Gradients::write_dense`.
fn dense_offset(step: &FastStep, name: &str) -> Option<(usize, usize)> {
    let mut at = 0;
    for (id, g) in step.gradients.dense_by_id() {
        if step.gradients.name(id) == name {
            return Some((at, g.len()));
        }
        at += g.len();
    }
    None
}

/// `step` with `f` applied to the dense gradient of `name`.
fn with_dense(step: &FastStep, name: &str, f: impl FnOnce(&mut [f32])) -> FastStep {
    let (at, len) = dense_offset(step, name).unwrap();
    let mut flat = Vec::new();
    step.gradients.write_dense(&mut flat);
    f(&mut flat[at..at + len]);
    let mut out = step.clone();
    out.gradients.read_dense(&flat).unwrap();
    out
}

fn failures(rep: &FastPathReport) -> Vec<&str> {
    rep.failures().iter().map(|c| c.name.as_str()).collect()
}

/// One entry of every trainable tensor moved by ten times the tolerance
/// (relative to the tensor's largest entry, or to the floor for a gradient
/// that is zero in exact arithmetic such as `att.fc3.b`): exactly that
/// tensor fails.
#[test]
fn a_perturbed_gradient_fails_the_check() {
    for cfg in [
        tiny(ModelKind::Dien, Variant::Augru, AttForm::Mlp, AuxForm::Mlp),
        tiny(ModelKind::Dien, Variant::GruAtt, AttForm::Bilinear, AuxForm::Dot),
        tiny(ModelKind::Base, Variant::Augru, AttForm::Mlp, AuxForm::Mlp),
    ] {
        let p = params(&cfg, 3);
        let batch = random_batch(&cfg, 11, 6, 4, true);
        let step = FastStep::run(&cfg, &p, &batch).unwrap();
        let clean = compare_fast_step(&cfg, &p, &batch, &step, F32_TOL).unwrap();
        assert_passes(&clean, &cfg, "unperturbed");
        let mut perturbed = 0;
        for c in &clean.checks {
            if dense_offset(&step, &c.name).is_none() {
                continue;
            }
            let delta = (10.0 * F32_TOL * c.peak.max(c.floor)) as f32;
            let bad = with_dense(&step, &c.name, |g| {
                let i = g.len() / 2;
                g[i] += delta;
            });
            let rep = compare_fast_step(&cfg, &p, &batch, &bad, F32_TOL).unwrap();
            assert_eq!(failures(&rep), [c.name.as_str()], "{}: {}\n{rep}", label(&cfg), c.name);
            perturbed += 1;
        }
        assert_eq!(perturbed + 3, n_trainable(&cfg), "every dense tensor perturbed once");
    }
}

#[test]
fn perturbed_embedding_rows_logits_and_losses_fail_the_check() {
    let cfg = tiny(ModelKind::Dien, Variant::Aigru, AttForm::Mlp, AuxForm::Mlp);
    let p = params(&cfg, 8);
    let batch = random_batch(&cfg, 11, 6, 9, true);
    let step = FastStep::run(&cfg, &p, &batch).unwrap();
    let check = |s: &FastStep| compare_fast_step(&cfg, &p, &batch, s, F32_TOL).unwrap();
    assert!(check(&step).passes());

    // One value of a touched row, by 1% of the table's largest entry.
    let mut bad = step.clone();
    let peak = bad.gradients.emb[1].values.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    bad.gradients.emb[1].values[0] += 0.01 * peak;
    assert_eq!(failures(&check(&bad)), ["emb.mid"]);

    // A row the fast path forgot: the reference's nonzero row still counts.
    let mut bad = step.clone();
    let e = &mut bad.gradients.emb[2];
    e.rows.remove(0);
    e.values.drain(..e.width);
    assert_eq!(failures(&check(&bad)), ["emb.cat"]);

    // A NaN anywhere fails.
    let bad = with_dense(&step, "head.fc1.w", |g| g[0] = f32::NAN);
    assert_eq!(failures(&check(&bad)), ["head.fc1.w"]);

    // A logit off by 1e-3 (ten times the tolerance on the unit scale).
    let mut bad = step.clone();
    bad.logits[3] += 1e-3;
    assert_eq!(failures(&check(&bad)), ["logits"]);

    let mut bad = step.clone();
    bad.losses.loss *= 1.001;
    bad.losses.loss_aux *= 1.001;
    assert_eq!(failures(&check(&bad)), ["loss", "loss_aux"]);
}

#[test]
fn bad_tolerances_and_mismatched_steps_are_errors() {
    let cfg = tiny(ModelKind::Din, Variant::Augru, AttForm::Mlp, AuxForm::Mlp);
    let p = params(&cfg, 2);
    let batch = random_batch(&cfg, 5, 3, 1, true);
    for tol in [0.0, 1.0, -1e-4, f64::NAN] {
        let e = check_fast_path(&cfg, &p, &batch, tol).unwrap_err().to_string();
        assert!(e.contains("tolerance"), "{e}");
    }
    // A step of another model (its tensors differ) is refused, not compared.
    let other = tiny(ModelKind::Base, Variant::Augru, AttForm::Mlp, AuxForm::Mlp);
    let step = FastStep::run(&other, &params(&other, 2), &batch).unwrap();
    let e = compare_fast_step(&cfg, &p, &batch, &step, F32_TOL).unwrap_err().to_string();
    assert!(e.contains("fast-path check"), "{e}");
    // A step of another batch size too.
    let step = FastStep::run(&cfg, &p, &random_batch(&cfg, 4, 3, 1, true)).unwrap();
    assert!(compare_fast_step(&cfg, &p, &batch, &step, F32_TOL).is_err());
}
