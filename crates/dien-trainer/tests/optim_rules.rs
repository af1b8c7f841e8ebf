//! Optimiser update rules: Adam and SGD against hand computations, lazy
//! versus dense embedding updates, clipping, the learning-rate schedule and
//! the configuration defaults and validation.

mod common;

use dien_model::fast::Model;
use dien_model::fast::{EMB_TABLES, Gradients};
use dien_model::{ModelConfig, ModelKind, ParamStore, TensorKind};
use dien_trainer::TrainError;
use dien_trainer::optim::{OptimConfig, OptimKind, Optimizer, SUM_SQ_BLOCK, sum_sq};

use common::*;

// ---------------------------------------------------------------------------
// Update rules.

#[test]
fn adam_first_steps_match_hand_computation() {
    let mut model = tiny_model(1);
    let d = model.config().d;
    let before = model.params().clone();
    let mut opt = Optimizer::new(OptimConfig::adam(), model.params()).unwrap();
    let name = "head.fc3.b";
    assert_eq!(before.get(name).len(), 1);

    // Step 1 by hand: m = 0.1·g, v = 0.001·g², m̂ = g, v̂ = g², so the move is
    // lr·g / (|g| + eps): the learning rate, against the gradient's sign.
    let p0 = f64::from(before.get(name)[0]);
    opt.step_with(model.params_mut(), || [(name, &[0.5f32][..])].into_iter(), &no_rows(d)).unwrap();
    let p1 = model.params().get(name)[0];
    assert_close(p1, p0 - 0.001 * 0.5 / (0.5 + 1e-8), "step 1");
    assert_close(p1, p0 - 0.001, "step 1 moves by lr");

    // Then known gradients of changing size and sign against Algorithm 1.
    let mut r = RefAdam { m: 0.0, v: 0.0 };
    let mut p = r.step(p0, 0.5, 0.001, 1);
    for (t, g) in [(2, -0.25f32), (3, 2.0), (4, 1e-3), (5, -3.0)] {
        let g = [g];
        opt.step_with(model.params_mut(), || [(name, &g[..])].into_iter(), &no_rows(d)).unwrap();
        let g = g[0];
        p = r.step(p, f64::from(g), 0.001, t);
        assert_close(model.params().get(name)[0], p, &format!("step {t}"));
        assert_close(state_of(&opt.state_tensors(), "adam.m.head.fc3.b")[0], r.m, "m");
        assert_close(state_of(&opt.state_tensors(), "adam.v.head.fc3.b")[0], r.v, "v");
    }
    assert_eq!(opt.steps(), 5);

    // Tensors without a gradient did not move.
    for (spec, v) in model.params().iter().filter(|(s, _)| s.name != name) {
        assert_eq!(bits(v), bits(before.get(&spec.name)), "{}", spec.name);
    }
}

#[test]
fn adam_on_model_gradients_matches_reference() {
    let mut model = tiny_model(2);
    let d = model.config().d;
    let mut opt = Optimizer::new(OptimConfig::adam(), model.params()).unwrap();
    // f64 reference: parameters, moments, and the set of rows ever touched.
    let mut p_ref: Vec<Vec<f64>> = model.params().iter().map(|(_, v)| v.iter().map(|&x| x.into()).collect()).collect();
    let mut m_ref: Vec<Vec<f64>> = p_ref.iter().map(|v| vec![0.0; v.len()]).collect();
    let mut v_ref = m_ref.clone();
    for t in 1..=3 {
        let g = grads(&mut model, 10 + t as u64);
        let dense = g.to_dense_store(model.config());
        // Lazy: only touched embedding rows (or any dense parameter) update.
        let touched = |name: &str, i: usize| match EMB_TABLES.iter().position(|&e| e == name) {
            Some(k) => g.emb[k].row((i / d) as u32).is_some(),
            None => true,
        };
        for (k, (spec, gv)) in dense.iter().enumerate() {
            if spec.kind != TensorKind::Param {
                continue;
            }
            for (i, &gi) in gv.iter().enumerate() {
                if touched(&spec.name, i) {
                    let mut r = RefAdam { m: m_ref[k][i], v: v_ref[k][i] };
                    p_ref[k][i] = r.step(p_ref[k][i], gi.into(), 0.001, t);
                    (m_ref[k][i], v_ref[k][i]) = (r.m, r.v);
                }
            }
        }
        opt.step(model.params_mut(), &g).unwrap();
        for (k, (spec, v)) in model.params().iter().enumerate() {
            for (i, &x) in v.iter().enumerate() {
                assert_close(x, p_ref[k][i], &format!("step {t} {}[{i}]", spec.name));
            }
        }
    }
}

#[test]
fn sgd_is_exact() {
    let mut model = tiny_model(3);
    let lr = 0.05f32;
    let mut opt = Optimizer::new(OptimConfig::sgd(lr), model.params()).unwrap();
    assert!(opt.state_tensors().is_empty());
    let g = grads(&mut model, 7);
    let before = model.params().clone();
    opt.step(model.params_mut(), &g).unwrap();
    let d = model.config().d;
    for (spec, after) in model.params().iter() {
        let p0 = before.get(&spec.name);
        let want: Vec<f32> = if let Some(gd) = g.dense(&spec.name) {
            p0.iter().zip(gd).map(|(&p, &g)| p - lr * g).collect()
        } else if let Some(sr) = g.embedding(&spec.name) {
            assert!(!sr.rows.is_empty());
            (0..p0.len()).map(|i| sr.row((i / d) as u32).map_or(p0[i], |r| p0[i] - lr * r[i % d])).collect()
        } else {
            p0.to_vec() // a buffer
        };
        assert_eq!(bits(after), bits(&want), "{}", spec.name);
    }
}

/// Rows of table `k` touched by `a` but not by `b`, and rows touched by neither.
fn split_rows(a: &Gradients, b: &Gradients, k: usize, n: usize) -> (Vec<u32>, Vec<u32>) {
    let only_a = a.emb[k].rows.iter().copied().filter(|&r| b.emb[k].row(r).is_none()).collect();
    let never = (0..n as u32).filter(|&r| a.emb[k].row(r).is_none() && b.emb[k].row(r).is_none()).collect();
    (only_a, never)
}

#[test]
fn lazy_adam_leaves_untouched_rows_alone_dense_option_moves_them() {
    let run = |lazy: bool| {
        let mut model = tiny_model(4);
        let cfg = OptimConfig { lazy_embeddings: lazy, ..OptimConfig::adam() };
        let mut opt = Optimizer::new(cfg, model.params()).unwrap();
        let init = model.params().clone();
        let ga = grads(&mut model, 21);
        opt.step(model.params_mut(), &ga).unwrap();
        let (p1, s1) = (model.params().clone(), opt.state_tensors());
        let gb = grads(&mut model, 22);
        opt.step(model.params_mut(), &gb).unwrap();
        (init, ga, gb, p1, s1, model.into_params(), opt.state_tensors())
    };
    let (init, ga, gb, lazy_p1, lazy_s1, lazy_p2, lazy_s2) = run(true);
    let (_, _, _, dense_p1, dense_s1, dense_p2, dense_s2) = run(false);
    let d = tiny_cfg().d;

    // After one step no row has history, so both forms agree everywhere.
    assert_eq!(params_bits(&lazy_p1), params_bits(&dense_p1));
    assert_eq!(lazy_s1, dense_s1);

    // Hand-made: a row listed with a zero gradient still takes the lazy
    // update (its moments decay); an unlisted row does not.
    let mut model = tiny_model(4);
    let mut opt = Optimizer::new(OptimConfig::adam(), model.params()).unwrap();
    let mut emb = no_rows(d);
    emb[2] = rows(d, vec![3, 5], vec![1.0, -2.0, 0.5, 0.25]);
    opt.step_with(model.params_mut(), std::iter::empty, &emb).unwrap();
    let (p1, s1) = (model.params().clone(), opt.state_tensors());
    emb[2] = rows(d, vec![3], vec![0.0, 0.0]);
    opt.step_with(model.params_mut(), std::iter::empty, &emb).unwrap();
    let s2 = opt.state_tensors();
    let (m1, m2) = (state_of(&s1, "adam.m.emb.cat"), state_of(&s2, "adam.m.emb.cat"));
    let (v1, v2) = (state_of(&s1, "adam.v.emb.cat"), state_of(&s2, "adam.v.emb.cat"));
    for i in 3 * d..4 * d {
        assert_eq!((m2[i], v2[i]), (0.9 * m1[i], 0.999 * v1[i]), "row 3");
        assert_ne!(model.params().get("emb.cat")[i], p1.get("emb.cat")[i], "row 3");
    }
    for i in 5 * d..6 * d {
        assert_eq!((m2[i], v2[i]), (m1[i], v1[i]), "row 5");
        assert_eq!(model.params().get("emb.cat")[i], p1.get("emb.cat")[i], "row 5");
    }

    let mut checked = 0;
    for (k, table) in EMB_TABLES.iter().enumerate() {
        let n = init.get(table).len() / d;
        let (only_a, never) = split_rows(&ga, &gb, k, n);
        let row = |v: &[f32], r: u32| bits(&v[r as usize * d..(r as usize + 1) * d]);
        let (m, v) = (format!("adam.m.{table}"), format!("adam.v.{table}"));
        for &r in &only_a {
            // Lazy: value and moments exactly as after step 1.
            assert_eq!(row(lazy_p2.get(table), r), row(lazy_p1.get(table), r), "{table} row {r}");
            assert_eq!(row(state_of(&lazy_s2, &m), r), row(state_of(&lazy_s1, &m), r), "{table} m row {r}");
            assert_eq!(row(state_of(&lazy_s2, &v), r), row(state_of(&lazy_s1, &v), r), "{table} v row {r}");
            // Dense: the moments decay and the value follows the old
            // momentum (when there is one: see the zero gradients above).
            let m1 = &state_of(&dense_s1, &m)[r as usize * d..(r as usize + 1) * d];
            if m1.iter().any(|&x| x != 0.0) {
                assert_ne!(row(dense_p2.get(table), r), row(dense_p1.get(table), r), "{table} row {r}");
                checked += 1;
            }
            let v1 = &state_of(&dense_s1, &v)[r as usize * d..(r as usize + 1) * d];
            let m_want: Vec<f32> = m1.iter().map(|&x| 0.9 * x).collect();
            let v_want: Vec<f32> = v1.iter().map(|&x| 0.999 * x).collect();
            assert_eq!(row(state_of(&dense_s2, &m), r), bits(&m_want), "{table} m row {r}");
            assert_eq!(row(state_of(&dense_s2, &v), r), bits(&v_want), "{table} v row {r}");
        }
        for &r in &never {
            // Never touched: initial value and zero moments in both forms
            // (the dense form moves such a row by 0 / (0 + eps) = 0).
            for (p, s) in [(&lazy_p2, &lazy_s2), (&dense_p2, &dense_s2)] {
                assert_eq!(row(p.get(table), r), row(init.get(table), r), "{table} row {r}");
                assert!(row(state_of(s, &m), r).iter().chain(&row(state_of(s, &v), r)).all(|&x| x == 0));
            }
        }
        // Rows with a non-zero gradient in step 2 moved. (A looked-up row
        // can have a zero gradient, e.g. the negative at position 0, which
        // no auxiliary term uses.)
        for (&r, gr) in gb.emb[k].rows.iter().zip(gb.emb[k].values.chunks(d)) {
            if gr.iter().any(|&x| x != 0.0) {
                assert_ne!(row(lazy_p2.get(table), r), row(lazy_p1.get(table), r), "{table} row {r}");
            }
        }
    }
    assert!(checked >= 10, "too few rows touched only by the first batch: {checked}");
    // Dense parameters are the same in both forms.
    for (spec, x) in lazy_p2.iter().filter(|(s, _)| !EMB_TABLES.contains(&s.name.as_str())) {
        assert_eq!(bits(x), bits(dense_p2.get(&spec.name)), "{}", spec.name);
    }
}

#[test]
fn clipping_scales_every_gradient_exactly() {
    let lr = 0.25f32;
    // By hand: dense gradients 3 and 4 and one embedding row (0, 12): the
    // global norm is sqrt(9 + 16 + 144) = 13; a limit of 6.5 halves them.
    let mut model = tiny_model(5);
    let d = model.config().d;
    let before = model.params().clone();
    let cfg = OptimConfig { clip_norm: Some(6.5), ..OptimConfig::sgd(lr) };
    let mut opt = Optimizer::new(cfg, model.params()).unwrap();
    let mut emb = no_rows(d);
    emb[1] = rows(d, vec![7], vec![0.0, 12.0]);
    let dense = || [("head.fc3.b", &[3.0f32][..]), ("att.fc3.b", &[4.0f32][..])].into_iter();
    opt.step_with(model.params_mut(), dense, &emb).unwrap();
    assert_eq!(opt.last_grad_norm(), 13.0);
    let p = model.params();
    assert_eq!(p.get("head.fc3.b")[0], before.get("head.fc3.b")[0] - lr * 1.5);
    assert_eq!(p.get("att.fc3.b")[0], before.get("att.fc3.b")[0] - lr * 2.0);
    assert_eq!(p.get("emb.mid")[7 * d], before.get("emb.mid")[7 * d]);
    assert_eq!(p.get("emb.mid")[7 * d + 1], before.get("emb.mid")[7 * d + 1] - lr * 6.0);

    // Real gradients: the norm in f64 over the dense gradients (in
    // `dense_iter` order) then the sparse rows, each tensor's sum of squares
    // in `sum_sq`'s documented order; scale = (c / norm) as f32.
    for clip_ratio in [0.3, 2.0] {
        let mut model = tiny_model(6);
        let g = grads(&mut model, 31);
        let (mut plain, mut ordered) = (0.0f64, 0.0f64);
        for v in g.dense_iter().map(|(_, v)| v).chain(g.emb.iter().map(|e| e.values.as_slice())) {
            for &x in v {
                plain += f64::from(x) * f64::from(x);
            }
            ordered += sum_sq(v);
        }
        let norm = ordered.sqrt();
        assert!((norm - plain.sqrt()).abs() <= 1e-12 * norm, "{norm} vs {}", plain.sqrt());
        let clip = (norm * clip_ratio) as f32;
        let scale = if norm > f64::from(clip) { (f64::from(clip) / norm) as f32 } else { 1.0 };
        assert_eq!(scale == 1.0, clip_ratio > 1.0);
        let before = model.params().clone();
        let cfg = OptimConfig { clip_norm: Some(clip), ..OptimConfig::sgd(lr) };
        let mut opt = Optimizer::new(cfg, model.params()).unwrap();
        opt.step(model.params_mut(), &g).unwrap();
        assert_eq!(opt.last_grad_norm(), norm);
        for (name, gv) in g.dense_iter() {
            let want: Vec<f32> = before.get(name).iter().zip(gv).map(|(&p, &g)| p - lr * (g * scale)).collect();
            assert_eq!(bits(model.params().get(name)), bits(&want), "{name}");
        }
        for (k, table) in EMB_TABLES.iter().enumerate() {
            for (&r, gr) in g.emb[k].rows.iter().zip(g.emb[k].values.chunks(d)) {
                let span = r as usize * d..(r as usize + 1) * d;
                let want: Vec<f32> =
                    before.get(table)[span.clone()].iter().zip(gr).map(|(&p, &g)| p - lr * (g * scale)).collect();
                assert_eq!(bits(&model.params().get(table)[span]), bits(&want), "{table} row {r}");
            }
        }
    }

    // Adam with a clipped step equals Adam fed the scaled gradients.
    let mut a = tiny_model(7);
    let mut b = tiny_model(7);
    let cfg = OptimConfig { clip_norm: Some(6.5), ..OptimConfig::adam() };
    let mut oa = Optimizer::new(cfg, a.params()).unwrap();
    let mut ob = Optimizer::new(OptimConfig::adam(), b.params()).unwrap();
    for _ in 0..3 {
        oa.step_with(a.params_mut(), dense, &emb).unwrap();
        let half = || [("head.fc3.b", &[1.5f32][..]), ("att.fc3.b", &[2.0f32][..])].into_iter();
        let mut emb_half = no_rows(d);
        emb_half[1] = rows(d, vec![7], vec![0.0, 6.0]);
        ob.step_with(b.params_mut(), half, &emb_half).unwrap();
    }
    assert_eq!(params_bits(a.params()), params_bits(b.params()));
    assert_eq!(state_bits(&oa), state_bits(&ob));
}

#[test]
fn learning_rate_schedule() {
    let mut model = tiny_model(8);
    let mut opt = Optimizer::new(OptimConfig::sgd(0.1), model.params()).unwrap();
    assert_eq!(opt.lr(), 0.1);
    assert_eq!(opt.halve_lr(), 0.05);
    assert_eq!(opt.lr(), 0.05);
    opt.halve_lr();
    assert_eq!(opt.lr(), 0.025);
    // The current rate is the one applied.
    let d = model.config().d;
    let p0 = model.params().get("head.fc3.b")[0];
    opt.step_with(model.params_mut(), || [("head.fc3.b", &[2.0f32][..])].into_iter(), &no_rows(d)).unwrap();
    assert_eq!(model.params().get("head.fc3.b")[0], p0 - 0.025 * 2.0);
    opt.set_lr(0.5).unwrap();
    assert_eq!(opt.lr(), 0.5);
    for bad in [0.0, -1.0, f32::NAN, f32::INFINITY] {
        assert!(matches!(opt.set_lr(bad), Err(TrainError::Config(_))), "{bad}");
        assert_eq!(opt.lr(), 0.5);
    }
    assert_eq!(Optimizer::new(OptimConfig::adam(), model.params()).unwrap().lr(), 0.001);
}

#[test]
fn aux_lr_scale_scales_the_auxiliary_head_only() {
    // Two optimisers on the same gradients, one with the auxiliary head's
    // rate scaled: `aux.*` tensors move `scale` times as far on the first
    // SGD step, every other tensor exactly as far.
    for kind in [OptimKind::Sgd, OptimKind::Adam] {
        let mut a = tiny_model(9);
        let mut b = tiny_model(9);
        let g = grads(&mut a, 21);
        let base = OptimConfig { kind, ..OptimConfig::sgd(0.01) };
        let mut oa = Optimizer::new(base.clone(), a.params()).unwrap();
        let mut ob = Optimizer::new(OptimConfig { aux_lr_scale: 4.0, ..base }, b.params()).unwrap();
        let before = a.params().clone();
        oa.step(a.params_mut(), &g).unwrap();
        ob.step(b.params_mut(), &g).unwrap();
        let mut aux_seen = 0;
        for (spec, pa) in a.params().iter() {
            let (p0, pb) = (before.get(&spec.name), b.params().get(&spec.name));
            if spec.name.starts_with("aux.") {
                aux_seen += 1;
                for ((&x0, &xa), &xb) in p0.iter().zip(pa).zip(pb) {
                    let (da, db) = (f64::from(xa) - f64::from(x0), f64::from(xb) - f64::from(x0));
                    assert!((db - 4.0 * da).abs() <= 1e-6 * (1.0 + da.abs()), "{kind:?} {}: {da} {db}", spec.name);
                }
                assert!(pa.iter().zip(p0).any(|(x, y)| x != y), "{}: no move", spec.name);
            } else {
                assert_eq!(bits(pa), bits(pb), "{kind:?} {}", spec.name);
            }
        }
        assert!(aux_seen >= 6, "the test model has an auxiliary head");
        assert_eq!(ob.state_metadata()["optim.aux_lr_scale"], "4");
    }
}

#[test]
fn config_defaults_and_validation() {
    let c = OptimConfig::default();
    assert_eq!((c.kind, c.lr, c.beta1, c.beta2, c.eps), (OptimKind::Adam, 0.001, 0.9, 0.999, 1e-8));
    assert!(c.lazy_embeddings && c.clip_norm.is_none() && c.aux_lr_scale == 1.0);
    assert_eq!("sgd".parse::<OptimKind>().unwrap(), OptimKind::Sgd);
    assert_eq!(OptimKind::Adam.to_string(), "adam");
    assert!("adagrad".parse::<OptimKind>().is_err());
    let bad = [
        ("lr", OptimConfig { lr: 0.0, ..c.clone() }),
        ("lr", OptimConfig { lr: f32::NAN, ..c.clone() }),
        ("beta1", OptimConfig { beta1: 1.0, ..c.clone() }),
        ("beta2", OptimConfig { beta2: -0.1, ..c.clone() }),
        ("eps", OptimConfig { eps: 0.0, ..c.clone() }),
        ("clip_norm", OptimConfig { clip_norm: Some(0.0), ..c.clone() }),
        ("clip_norm", OptimConfig { clip_norm: Some(f32::INFINITY), ..c.clone() }),
        ("aux_lr_scale", OptimConfig { aux_lr_scale: 0.0, ..c.clone() }),
        ("aux_lr_scale", OptimConfig { aux_lr_scale: f32::NAN, ..c.clone() }),
    ];
    let params = ParamStore::<f32>::zeros(&tiny_cfg());
    for (field, cfg) in bad {
        match Optimizer::new(cfg, &params) {
            Err(TrainError::Config(msg)) => assert!(msg.contains(field), "{msg}"),
            other => panic!("{field}: {other:?}"),
        }
    }
    // SGD ignores Adam's settings.
    assert!(OptimConfig { beta1: 2.0, ..OptimConfig::sgd(0.1) }.validate().is_ok());
}

#[test]
fn sum_of_squares_is_the_documented_blocked_sum_on_any_number_of_threads() {
    // Long enough for several blocks and a partial last one and a tail of
    // the eight accumulators; values of very different sizes so that a
    // different order would show in the bits.
    let n = 5 * SUM_SQ_BLOCK + 13;
    let g: Vec<f32> = (0..n).map(|i| ((i * 7919) % 1013) as f32 * if i % 97 == 0 { 1e3 } else { 1e-3 }).collect();
    let block = |b: &[f32]| {
        let mut a = [0.0f64; 8];
        for (i, &x) in b.iter().enumerate() {
            a[i % 8] += f64::from(x) * f64::from(x);
        }
        ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]))
    };
    // The documented split: halves at the block boundary nearest the middle.
    fn tree(g: &[f32], block: &dyn Fn(&[f32]) -> f64) -> f64 {
        let blocks = g.len().div_ceil(SUM_SQ_BLOCK);
        if blocks <= 1 {
            return block(g);
        }
        let (l, r) = g.split_at((blocks / 2) * SUM_SQ_BLOCK);
        tree(l, block) + tree(r, block)
    }
    let want = tree(&g, &block);
    let plain: f64 = g.iter().map(|&x| f64::from(x) * f64::from(x)).sum();
    assert!((want - plain).abs() <= 1e-12 * plain);
    for threads in [1, 2, 3] {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        assert_eq!(pool.install(|| sum_sq(&g)).to_bits(), want.to_bits(), "{threads} threads");
    }
    assert_eq!(sum_sq(&[]), 0.0);
    assert_eq!(sum_sq(&[3.0, 4.0]), 25.0);
}

#[test]
fn lazy_adam_over_many_rows_matches_the_rule_row_by_row_on_any_number_of_threads() {
    // Enough touched rows that the update splits them over threads (256
    // rows per task); every other row of a 20,000-row table touched.
    let mut cfg = ModelConfig::new(ModelKind::Dien, 10, 20_000, 10);
    cfg.d = 2;
    cfg.hidden = 4;
    let d = cfg.d;
    let init = Model::init(cfg, 3).unwrap().params().clone();
    let touched: Vec<u32> = (0..20_000u32).step_by(2).collect();
    let values: Vec<f32> = (0..touched.len() * d).map(|i| ((i % 37) as f32 - 18.0) * 0.01).collect();
    let mut results = Vec::new();
    for threads in [1, 2, 3] {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        let mut p = init.clone();
        let mut opt = Optimizer::new(OptimConfig::adam(), &p).unwrap();
        let mut emb = no_rows(d);
        emb[1] = rows(d, touched.clone(), values.clone());
        pool.install(|| opt.step_with(&mut p, std::iter::empty, &emb)).unwrap();
        results.push(bits(p.get("emb.mid")));
        let (before, after) = (init.get("emb.mid"), p.get("emb.mid"));
        for (k, &r) in touched.iter().enumerate() {
            for j in 0..d {
                let i = r as usize * d + j;
                let want =
                    RefAdam { m: 0.0, v: 0.0 }.step(f64::from(before[i]), f64::from(values[k * d + j]), 0.001, 1);
                assert_close(after[i], want, &format!("row {r}"));
            }
            let untouched = (r as usize + 1) * d..(r as usize + 2) * d;
            assert_eq!(bits(&after[untouched.clone()]), bits(&before[untouched]), "row {}", r + 1);
        }
    }
    assert!(results.windows(2).all(|w| w[0] == w[1]), "results differ between thread counts");
}
