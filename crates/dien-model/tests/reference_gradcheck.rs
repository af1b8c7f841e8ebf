//! The `f64` reference path of the whole model: gradients against finite
//! differences for every model, variant, attention and auxiliary form, and
//! the model's behavioural rules (padding, auxiliary masking, `L = 0`,
//! running statistics).
//!
//! Tiny configurations: `d = 2` (`E = 4`), `H = 4` (so `aux = dot` is
//! allowed), vocabularies of 6/10/5 rows, `B = 5`, `T = 5` with lengths
//! 5, 0, 1, 3, 5, negatives given. The dense layers keep their standard widths
//! (100/50, 80/40, 200/80), so a model still has ~30k parameters and the
//! large matrices are checked on a seeded subset of entries
//! (`check_model_sampled`).

use dien_model::gradcheck::{DEFAULT_EPS, check_model, check_model_sampled};
use dien_model::reference::{forward, forward_backward, forward_backward_traced, forward_traced};
use dien_model::{
    AttForm, AuxForm, Batch, Mode, ModelConfig, ModelKind, ParamStore, TensorKind, Variant, tensor_specs,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Relative agreement demanded of every entry whose analytic or numeric
/// gradient is at least `dien_model::gradcheck::ABS_FLOOR` (5e-6) in
/// magnitude; smaller entries must agree within `REL_TOL · ABS_FLOOR` = 5e-12.
const REL_TOL: f64 = 1e-6;
/// Entries checked per large tensor.
const SAMPLE: usize = 32;

fn tiny(model: ModelKind, variant: Variant, att: AttForm, aux: AuxForm) -> ModelConfig {
    let mut c = ModelConfig::new(model, 6, 10, 5);
    c.d = 2;
    c.hidden = 4;
    c.variant = variant;
    c.att = att;
    c.aux = aux;
    c.validate().unwrap();
    c
}

/// Random parameters of moderate size (not the default initialisation: zero
/// biases, unit gammas and tiny embeddings would hide mistakes), with
/// positive running variances.
fn random_params(cfg: &ModelConfig, seed: u64) -> ParamStore<f64> {
    dien_model::gradcheck::probe_params(cfg, seed)
}

/// Five samples, lengths 5, 0, 1, 3, 5 (T = 5), with negatives; ids cover
/// repeats so that embedding rows accumulate several contributions.
fn tiny_batch(seed: u64, with_neg: bool) -> Batch {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let lengths = [5usize, 0, 1, 3, 5];
    let hist = |rng: &mut ChaCha8Rng, n: u32| -> Vec<Vec<u32>> {
        lengths.iter().map(|&l| (0..l).map(|_| rng.random_range(0..n)).collect()).collect()
    };
    let (hm, hc) = (hist(&mut rng, 10), hist(&mut rng, 5));
    let (nm, nc) = (hist(&mut rng, 10), hist(&mut rng, 5));
    let b = Batch::from_samples(
        vec![0, 3, 5, 3, 1],
        (0..5).map(|_| rng.random_range(0..10)).collect(),
        (0..5).map(|_| rng.random_range(0..5)).collect(),
        &hm,
        &hc,
        with_neg.then_some(nm.as_slice()),
        with_neg.then_some(nc.as_slice()),
        vec![1.0, 0.0, 1.0, 0.0, 1.0],
    )
    .unwrap();
    assert_eq!(b.steps, 5);
    b
}

fn check_config(cfg: &ModelConfig, seed: u64) {
    let params = random_params(cfg, seed);
    let batch = tiny_batch(seed + 1, true);
    let rep = check_model_sampled(cfg, &params, &batch, DEFAULT_EPS, SAMPLE, seed).unwrap();
    let tag = format!("{} {} att={} aux={}", cfg.model, cfg.variant, cfg.att, cfg.aux);
    assert!(rep.passes(REL_TOL), "{tag}\n{rep}");
    // Every trainable tensor was checked.
    let n_params = tensor_specs(cfg).iter().filter(|s| s.kind == TensorKind::Param).count();
    assert_eq!(rep.report.tensors.len(), n_params, "{tag}");
}

#[test]
fn gradcheck_dien_every_variant_mlp_attention() {
    for (i, &v) in Variant::ALL.iter().enumerate() {
        check_config(&tiny(ModelKind::Dien, v, AttForm::Mlp, AuxForm::Mlp), 100 + i as u64);
    }
}

#[test]
fn gradcheck_dien_every_variant_bilinear_attention() {
    for (i, &v) in Variant::ALL.iter().enumerate() {
        check_config(&tiny(ModelKind::Dien, v, AttForm::Bilinear, AuxForm::Mlp), 200 + i as u64);
    }
}

#[test]
fn gradcheck_dien_dot_aux_noaux_din_base() {
    // The auxiliary form is independent of the variant: one per attention form.
    check_config(&tiny(ModelKind::Dien, Variant::Augru, AttForm::Bilinear, AuxForm::Dot), 300);
    check_config(&tiny(ModelKind::Dien, Variant::GruAtt, AttForm::Mlp, AuxForm::Dot), 301);
    check_config(&tiny(ModelKind::DienNoaux, Variant::Augru, AttForm::Mlp, AuxForm::Mlp), 400);
    check_config(&tiny(ModelKind::DienNoaux, Variant::GruAtt, AttForm::Bilinear, AuxForm::Mlp), 401);
    check_config(&tiny(ModelKind::Din, Variant::Augru, AttForm::Mlp, AuxForm::Mlp), 402);
    check_config(&tiny(ModelKind::Din, Variant::Augru, AttForm::Bilinear, AuxForm::Mlp), 403);
    check_config(&tiny(ModelKind::Base, Variant::Augru, AttForm::Mlp, AuxForm::Mlp), 404);
}

/// A few configurations covering every code path of the forward pass.
fn path_configs() -> Vec<ModelConfig> {
    vec![
        tiny(ModelKind::Dien, Variant::Augru, AttForm::Mlp, AuxForm::Mlp),
        tiny(ModelKind::Dien, Variant::Aigru, AttForm::Bilinear, AuxForm::Dot),
        tiny(ModelKind::Dien, Variant::GruAtt, AttForm::Mlp, AuxForm::Dot),
        tiny(ModelKind::DienNoaux, Variant::AugruRef, AttForm::Mlp, AuxForm::Mlp),
        tiny(ModelKind::Din, Variant::Augru, AttForm::Mlp, AuxForm::Mlp),
        tiny(ModelKind::Base, Variant::Augru, AttForm::Mlp, AuxForm::Mlp),
    ]
}

/// `b` re-padded to `steps` columns, padding filled by `fill` (ids that may
/// be far out of range: padded positions must never be read).
fn repad(b: &Batch, steps: usize, mut fill: impl FnMut() -> u32) -> Batch {
    let mut out = Batch::zeros(b.batch, steps, b.has_negatives());
    (out.uid, out.mid, out.cat, out.lengths, out.label) =
        (b.uid.clone(), b.mid.clone(), b.cat.clone(), b.lengths.clone(), b.label.clone());
    let copy = |src: &[u32], dst: &mut [u32], fill: &mut dyn FnMut() -> u32| {
        for s in 0..b.batch {
            for t in 0..steps {
                dst[s * steps + t] = if t < b.lengths[s] { src[s * b.steps + t] } else { fill() };
            }
        }
    };
    copy(&b.hist_mid, &mut out.hist_mid, &mut fill);
    copy(&b.hist_cat, &mut out.hist_cat, &mut fill);
    if let (Some(nm), Some(nc), Some(om), Some(oc)) = (&b.neg_mid, &b.neg_cat, &mut out.neg_mid, &mut out.neg_cat) {
        copy(nm, om, &mut fill);
        copy(nc, oc, &mut fill);
    }
    out
}

/// Sample `s` of `b` as a batch of one (padded to its own length).
fn single(b: &Batch, s: usize) -> Batch {
    let l = b.lengths[s];
    let row = |v: &[u32]| vec![v[s * b.steps..s * b.steps + l].to_vec()];
    let (nm, nc) = (b.neg_mid.as_deref().map(row), b.neg_cat.as_deref().map(row));
    Batch::from_samples(
        vec![b.uid[s]],
        vec![b.mid[s]],
        vec![b.cat[s]],
        &row(&b.hist_mid),
        &row(&b.hist_cat),
        nm.as_deref(),
        nc.as_deref(),
        vec![b.label[s]],
    )
    .unwrap()
}

fn softplus(x: f64) -> f64 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

#[test]
fn padding_never_matters_bit_for_bit() {
    for (i, cfg) in path_configs().iter().enumerate() {
        let params = random_params(cfg, 500 + i as u64);
        let batch = tiny_batch(600 + i as u64, true);
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let garbage = repad(&batch, batch.steps, || rng.random_range(1_000..u32::MAX));
        let wider = repad(&batch, batch.steps + 3, || rng.random_range(0..u32::MAX));
        assert_ne!(garbage.hist_mid, batch.hist_mid, "the test must change padded ids");
        for mode in [Mode::Train, Mode::Eval] {
            let want = forward(cfg, &params, &batch, mode).unwrap();
            for other in [&garbage, &wider] {
                assert_eq!(forward(cfg, &params, other, mode).unwrap(), want, "{cfg:?} {mode:?}");
            }
        }
        let (want_out, want_grads, want_trace) = forward_backward_traced(cfg, &params, &batch).unwrap();
        let (out, grads, trace) = forward_backward_traced(cfg, &params, &garbage).unwrap();
        assert!(out == want_out && grads == want_grads && trace == want_trace, "{cfg:?}");
        let (out, grads) = forward_backward(cfg, &params, &wider).unwrap();
        assert!(out == want_out && grads == want_grads, "{cfg:?}");
    }
}

#[test]
fn auxiliary_loss_follows_the_masking_and_weighting_rules() {
    // aux = dot: L_aux can be recomputed here from the extractor states.
    let cfg = tiny(ModelKind::Dien, Variant::Augru, AttForm::Mlp, AuxForm::Dot);
    let params = random_params(&cfg, 700);
    let batch = tiny_batch(701, true);
    let (out, trace) = forward_traced(&cfg, &params, &batch, Mode::Train).unwrap();
    let (d, e, h, t_) = (cfg.d, cfg.e(), cfg.hidden, batch.steps);
    let item = |m: u32, c: u32| -> Vec<f64> {
        let (m, c) = (m as usize, c as usize);
        [&params.get("emb.mid")[m * d..(m + 1) * d], &params.get("emb.cat")[c * d..(c + 1) * d]].concat()
    };
    let (nm, nc) = (batch.neg_mid.as_ref().unwrap(), batch.neg_cat.as_ref().unwrap());
    let (mut sum, mut n) = (0.0, 0usize);
    for b in 0..batch.batch {
        for t in 0..batch.lengths[b].saturating_sub(1) {
            let hs = &trace.extractor_states[(b * t_ + t) * h..(b * t_ + t + 1) * h];
            let i = b * t_ + t + 1;
            let dot = |v: Vec<f64>| hs.iter().zip(&v).map(|(a, b)| a * b).sum::<f64>();
            sum += softplus(-dot(item(batch.hist_mid[i], batch.hist_cat[i])));
            sum += softplus(dot(item(nm[i], nc[i])));
            n += 1;
        }
    }
    // Lengths 5, 0, 1, 3, 5: N = 4 + 0 + 0 + 2 + 4.
    assert_eq!((n, e), (10, h), "N = Σ max(L − 1, 0)");
    let want = sum / n as f64;
    assert!(out.loss_aux > 0.0 && (out.loss_aux - want).abs() <= 1e-14 * want, "{} vs {want}", out.loss_aux);
    assert_eq!(out.loss, out.loss_target + out.loss_aux);

    // α_aux weights L_aux in the objective and in the gradient, linearly.
    let with_alpha = |a: f32| {
        let mut c = cfg.clone();
        c.alpha_aux = a;
        forward_backward(&c, &params, &batch).unwrap()
    };
    let ((o0, g0), (o1, g1), (oh, gh)) = (with_alpha(0.0), with_alpha(1.0), with_alpha(0.5));
    assert_eq!((o0.loss, oh.loss), (o0.loss_target, o0.loss_target + 0.5 * o0.loss_aux));
    assert_eq!(o1.loss_aux, o0.loss_aux);
    for ((spec, a), (b, c)) in g0.iter().zip(g1.iter().map(|x| x.1).zip(gh.iter().map(|x| x.1))) {
        let scale = a.iter().chain(b).fold(1e-300f64, |m, v| m.max(v.abs()));
        for ((x, y), z) in a.iter().zip(b).zip(c) {
            assert!((0.5 * (x + y) - z).abs() <= 1e-12 * scale, "{}", spec.name);
        }
    }
    assert!(g0.iter().zip(g1.iter()).any(|((_, a), (_, b))| a != b), "L_aux must reach the gradient");

    // No negatives: L_aux = 0, the prediction is unchanged and the auxiliary
    // head gets no gradient (aux = mlp has one).
    let cfg = tiny(ModelKind::Dien, Variant::Augru, AttForm::Mlp, AuxForm::Mlp);
    let params = random_params(&cfg, 702);
    let plain = tiny_batch(701, false);
    let (with, _) = forward_backward(&cfg, &params, &batch).unwrap();
    let (without, grads) = forward_backward(&cfg, &params, &plain).unwrap();
    assert!(with.loss_aux > 0.0);
    assert_eq!((without.loss_aux, without.loss), (0.0, without.loss_target));
    assert_eq!((&without.logits, without.loss_target), (&with.logits, with.loss_target));
    for (spec, g) in grads.iter().filter(|(s, _)| s.name.starts_with("aux.")) {
        assert!(g.iter().all(|&v| v == 0.0), "{}", spec.name);
    }
    assert!(grads.get("aux.fc1.w").len() == 100 * (h + e));

    // Negatives given but every L ≤ 1: N = 0 and L_aux = 0 exactly.
    let short = Batch::from_samples(
        vec![1, 2],
        vec![3, 4],
        vec![0, 1],
        &[vec![5], vec![]],
        &[vec![2], vec![]],
        Some(&[vec![6], vec![]]),
        Some(&[vec![3], vec![]]),
        vec![1.0, 0.0],
    )
    .unwrap();
    let out = forward(&cfg, &params, &short, Mode::Train).unwrap();
    assert_eq!((out.loss_aux, out.loss), (0.0, out.loss_target));
}

#[test]
fn dien_noaux_has_no_aux_tensors_and_predicts_like_dien() {
    let noaux = tiny(ModelKind::DienNoaux, Variant::Augru, AttForm::Mlp, AuxForm::Mlp);
    assert!(tensor_specs(&noaux).iter().all(|s| !s.name.starts_with("aux.")));
    let p_noaux = random_params(&noaux, 800);
    let batch = tiny_batch(801, true);
    let out = forward(&noaux, &p_noaux, &batch, Mode::Train).unwrap();
    assert_eq!((out.loss_aux, out.loss), (0.0, out.loss_target));
    // The same shared tensors in a `dien` store: identical prediction, and
    // L_aux only adds to the objective.
    let dien = tiny(ModelKind::Dien, Variant::Augru, AttForm::Mlp, AuxForm::Mlp);
    let mut p_dien = random_params(&dien, 802);
    for (spec, v) in p_noaux.iter() {
        p_dien.get_mut(&spec.name).copy_from_slice(v);
    }
    let full = forward(&dien, &p_dien, &batch, Mode::Train).unwrap();
    assert_eq!((&full.logits, full.loss_target), (&out.logits, out.loss_target));
    assert!(full.loss_aux > 0.0 && full.loss == full.loss_target + full.loss_aux);
}

#[test]
fn eval_mode_scores_a_sample_alone_as_in_the_batch() {
    for (i, cfg) in path_configs().iter().enumerate() {
        let params = random_params(cfg, 900 + i as u64);
        let batch = tiny_batch(901 + i as u64, true);
        let all = forward(cfg, &params, &batch, Mode::Eval).unwrap();
        assert!(all.batch_stats.is_empty());
        for s in 0..batch.batch {
            let one = forward(cfg, &params, &single(&batch, s), Mode::Eval).unwrap();
            assert_eq!(one.logits[0].to_bits(), all.logits[s].to_bits(), "{cfg:?} sample {s}");
        }
        // Training mode normalises with the batch's statistics instead.
        let train = forward(cfg, &params, &batch, Mode::Train).unwrap();
        assert!(train.logits.iter().zip(&all.logits).any(|(a, b)| (a - b).abs() > 1e-6));
    }
}

#[test]
fn batch_statistics_are_reported_and_reproduce_training_in_eval() {
    for (i, cfg) in path_configs().iter().enumerate() {
        let params = random_params(cfg, 1000 + i as u64);
        let batch = tiny_batch(1001 + i as u64, true);
        let (train, trace) = forward_traced(cfg, &params, &batch, Mode::Train).unwrap();
        let names: Vec<&str> = train.batch_stats.iter().map(|(n, _)| n.as_str()).collect();
        let layers = ["head.bn", "head.dice1", "head.dice2"];
        let want: Vec<String> =
            layers.iter().flat_map(|l| [format!("{l}.running_mean"), format!("{l}.running_var")]).collect();
        assert_eq!(names, want);
        // BatchNorm statistics: column mean and biased variance of the head input.
        let (dh, b_) = (cfg.head_in(), batch.batch);
        assert_eq!(trace.head_input.len(), b_ * dh);
        for j in 0..dh {
            let col: Vec<f64> = (0..b_).map(|b| trace.head_input[b * dh + j]).collect();
            let m = col.iter().sum::<f64>() / b_ as f64;
            let v = col.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / b_ as f64;
            let (gm, gv) = (train.batch_stats[0].1[j], train.batch_stats[1].1[j]);
            assert!((gm - m).abs() <= 1e-14 * (1.0 + m.abs()) && (gv - v).abs() <= 1e-14 * (1.0 + v), "{j}");
        }
        // Every reported statistic, written into the running buffers, makes
        // evaluation reproduce training: so the Dice statistics are right too.
        let mut frozen = params.clone();
        for (name, v) in &train.batch_stats {
            assert_eq!(v.len(), frozen.get(name).len(), "{name}");
            frozen.get_mut(name).copy_from_slice(v);
        }
        let eval = forward(cfg, &frozen, &batch, Mode::Eval).unwrap();
        for (a, b) in eval.logits.iter().zip(&train.logits) {
            assert!((a - b).abs() <= 1e-12 * (1.0 + b.abs()), "{cfg:?}: {a} vs {b}");
        }
        assert!((eval.loss - train.loss).abs() <= 1e-12);
    }
}

#[test]
fn zero_length_histories_and_attention_weights() {
    for (i, cfg) in path_configs().iter().enumerate() {
        let params = random_params(cfg, 1100 + i as u64);
        let batch = tiny_batch(1101 + i as u64, true);
        let (_, trace) = forward_traced(cfg, &params, &batch, Mode::Train).unwrap();
        let (d, e, dh, t_) = (cfg.d, cfg.e(), cfg.head_in(), batch.steps);
        // Sample 1 has L = 0: s, e_a ∘ s and the interest are zero.
        assert_eq!(batch.lengths[1], 0);
        let x1 = &trace.head_input[dh..2 * dh];
        assert!(x1[d + e..].iter().all(|&v| v == 0.0), "{cfg:?}: {x1:?}");
        assert!(x1[..d + e].iter().any(|&v| v != 0.0));
        if cfg.has_attention() {
            for b in 0..batch.batch {
                let w = &trace.att_weights[b * t_..(b + 1) * t_];
                let l = batch.lengths[b];
                assert!(w[l..].iter().all(|&v| v == 0.0) && w[..l].iter().all(|&v| v > 0.0));
                let sum: f64 = w.iter().sum();
                assert!(if l == 0 { sum == 0.0 } else { (sum - 1.0).abs() < 1e-15 }, "{sum}");
            }
        } else {
            assert!(trace.att_weights.is_empty());
        }
        // A batch with no history at all (T = 0) still predicts and trains.
        let none: &[Vec<u32>] = &[vec![], vec![]];
        let empty =
            Batch::from_samples(vec![1, 2], vec![3, 4], vec![0, 1], none, none, Some(none), Some(none), vec![1.0, 0.0])
                .unwrap();
        assert_eq!(empty.steps, 0);
        let (e_out, e_grads, e_trace) = forward_backward_traced(cfg, &params, &empty).unwrap();
        assert!(e_out.loss.is_finite() && e_out.loss_aux == 0.0 && e_trace.interest.iter().all(|&v| v == 0.0));
        assert!(e_grads.get("head.fc1.w").iter().any(|&v| v != 0.0));
        // Base: the interest slot repeats s.
        if cfg.model == ModelKind::Base {
            for b in 0..batch.batch {
                let x = &trace.head_input[b * dh..(b + 1) * dh];
                assert_eq!(&x[d + e..d + 2 * e], &x[d + 3 * e..]);
            }
        }
    }
}

#[test]
fn gradients_vanish_where_they_must() {
    for (i, cfg) in path_configs().iter().enumerate() {
        let params = random_params(cfg, 1200 + i as u64);
        let batch = tiny_batch(1201 + i as u64, true);
        let (_, grads) = forward_backward(cfg, &params, &batch).unwrap();
        for (spec, g) in grads.iter() {
            let zero = g.iter().all(|&v| v == 0.0);
            if spec.kind == TensorKind::Buffer {
                assert!(zero, "{}: buffers have no gradient", spec.name);
            }
        }
        // uids 0, 3, 5, 3, 1 appear: rows 2 and 4 get nothing, the rest do.
        let uid = grads.get("emb.uid");
        for r in 0..cfg.n_uid {
            let row = &uid[r * cfg.d..(r + 1) * cfg.d];
            assert_eq!(row.iter().all(|&v| v == 0.0), r == 2 || r == 4, "{cfg:?} uid row {r}");
        }
        // An item row seen nowhere (also not as a padded id) gets nothing.
        let mut used = vec![false; cfg.n_mid];
        for b in 0..batch.batch {
            used[batch.mid[b] as usize] = true;
            for t in 0..batch.lengths[b] {
                used[batch.hist_mid[b * batch.steps + t] as usize] = true;
                if cfg.has_aux() {
                    used[batch.neg_mid.as_ref().unwrap()[b * batch.steps + t] as usize] = true;
                }
            }
        }
        let mid = grads.get("emb.mid");
        for (r, &u) in used.iter().enumerate() {
            if !u {
                assert!(mid[r * cfg.d..(r + 1) * cfg.d].iter().all(|&v| v == 0.0), "{cfg:?} mid row {r}");
            }
        }
    }
}

#[test]
fn user_errors_are_reported_not_panics() {
    let cfg = tiny(ModelKind::Dien, Variant::Augru, AttForm::Mlp, AuxForm::Mlp);
    let params = random_params(&cfg, 1300);
    let mut batch = tiny_batch(1301, true);
    batch.hist_cat[2] = 5; // table has 5 rows
    let e = forward(&cfg, &params, &batch, Mode::Train).unwrap_err().to_string();
    assert!(e.contains("hist_cat") && e.contains("sample 0, step 2"), "{e}");
    let other = tiny(ModelKind::Din, Variant::Augru, AttForm::Mlp, AuxForm::Mlp);
    let e = forward(&other, &params, &tiny_batch(1301, true), Mode::Eval).unwrap_err().to_string();
    assert!(e.contains("gru1.w_ih") || e.contains("att.q.w"), "{e}");
    let e = forward_backward(&cfg, &params, &Batch::zeros(0, 3, false)).unwrap_err().to_string();
    assert!(e.contains("empty"), "{e}");
    let mut bad = cfg.clone();
    bad.aux = AuxForm::Dot;
    bad.hidden = 3;
    assert!(forward(&bad, &params, &tiny_batch(1301, true), Mode::Eval).is_err());
}

/// Every entry of every tensor (no sampling) for the cheapest model, on the
/// first four samples (lengths 5, 0, 1, 3). Not fewer: with batch
/// statistics over two samples every Dice unit sees `x̂ = ±Δ/sqrt(Δ² + 4e-8)`,
/// so units whose two inputs nearly coincide are too steep for a finite
/// difference step that still resolves 1e-12 (three samples leave 5e-6
/// truncation error on the steepest entry).
#[test]
fn full_gradcheck_of_base_model() {
    let cfg = tiny(ModelKind::Base, Variant::Augru, AttForm::Mlp, AuxForm::Mlp);
    let params = random_params(&cfg, 1400);
    let b = tiny_batch(1401, false);
    let rows = |v: &[u32]| vec![v[..5].to_vec(), vec![], v[10..11].to_vec(), v[15..18].to_vec()];
    let small = Batch::from_samples(
        b.uid[..4].to_vec(),
        b.mid[..4].to_vec(),
        b.cat[..4].to_vec(),
        &rows(&b.hist_mid),
        &rows(&b.hist_cat),
        None,
        None,
        b.label[..4].to_vec(),
    )
    .unwrap();
    assert_eq!(small.lengths, [5, 0, 1, 3]);
    let rep = check_model(&cfg, &params, &small, DEFAULT_EPS).unwrap();
    assert!(rep.passes(REL_TOL), "{rep}");
    let total: usize = rep.report.tensors.iter().map(|t| t.len).sum();
    let want: usize = tensor_specs(&cfg).iter().filter(|s| s.kind == TensorKind::Param).map(|s| s.numel()).sum();
    assert_eq!(total, want);
}
