//! The fast f32 path against the f64 reference path, for every model and
//! variant; thread-count independence; padding invariance.
//!
//! Tolerances: f32 against f64 on tiny configurations. Loss: 1e-5
//! relative. Logits: 2e-4 absolute. Gradients: per tensor, the largest
//! absolute difference is at most 2e-3 of that tensor's largest reference
//! magnitude (plus 1e-7): f32 accumulation over a batch and through two
//! recurrences loses about 3–4 decimal digits on the smallest entries, never
//! on the scale of the tensor. Attention and auxiliary layers use the
//! algebra of docs/MODEL.md#cost on the fast path and the plain formulas in the
//! reference, so these checks also show that the algebra changes nothing
//! beyond rounding.

use dien_model::fast::Model;
use dien_model::reference;
use dien_model::{AttForm, AuxForm, Batch, Mode, ModelConfig, ModelKind, ParamStore, Variant};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn tiny(model: ModelKind, variant: Variant, att: AttForm, aux: AuxForm) -> ModelConfig {
    let mut c = ModelConfig::new(model, 7, 13, 5);
    c.variant = variant;
    c.att = att;
    c.aux = aux;
    c.d = 4;
    c.hidden = 8;
    c.max_len = 6;
    c
}

fn random_params(cfg: &ModelConfig, seed: u64) -> ParamStore<f32> {
    let mut p = ParamStore::init(cfg, seed);
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed);
    // Perturb everything so no parameter sits at a special value (α = 0,
    // unit running variance, zero biases) that could hide a wrong gradient.
    let names: Vec<String> = p.specs().iter().map(|s| s.name.clone()).collect();
    for name in names {
        let scale = if name.starts_with("emb.") { 0.5 } else { 0.2 };
        for v in p.get_mut(&name) {
            *v += scale * (rng.random::<f32>() - 0.5);
            if name.ends_with("running_var") {
                *v = v.abs() + 0.5;
            }
        }
    }
    p
}

fn random_batch(cfg: &ModelConfig, b: usize, t: usize, seed: u64, neg: bool) -> Batch {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut lens: Vec<usize> = (0..b).map(|_| rng.random_range(0..=t)).collect();
    lens[0] = 0;
    lens[1] = 1;
    lens[2] = t;
    let hist = |rng: &mut ChaCha8Rng, n: usize, l: usize| (0..l).map(|_| rng.random_range(0..n as u32)).collect();
    let hm: Vec<Vec<u32>> = lens.iter().map(|&l| hist(&mut rng, cfg.n_mid, l)).collect();
    let hc: Vec<Vec<u32>> = lens.iter().map(|&l| hist(&mut rng, cfg.n_cat, l)).collect();
    let nm: Vec<Vec<u32>> = lens.iter().map(|&l| hist(&mut rng, cfg.n_mid, l)).collect();
    let nc: Vec<Vec<u32>> = lens.iter().map(|&l| hist(&mut rng, cfg.n_cat, l)).collect();
    let uid = (0..b).map(|_| rng.random_range(0..cfg.n_uid as u32)).collect();
    let mid = (0..b).map(|_| rng.random_range(0..cfg.n_mid as u32)).collect();
    let cat = (0..b).map(|_| rng.random_range(0..cfg.n_cat as u32)).collect();
    let label = (0..b).map(|_| if rng.random::<bool>() { 1.0 } else { 0.0 }).collect();
    let (n1, n2) = if neg { (Some(&nm[..]), Some(&nc[..])) } else { (None, None) };
    Batch::from_samples(uid, mid, cat, &hm, &hc, n1, n2, label).unwrap()
}

/// Every model; for DIEN every variant with every attention form and every
/// auxiliary form; for DIN every attention form. Iterates the `ALL` lists
/// (and matches every model) so that a new one is covered.
fn all_configs() -> Vec<ModelConfig> {
    let mut out = Vec::new();
    for &model in ModelKind::ALL {
        match model {
            ModelKind::Dien => {
                for &variant in Variant::ALL {
                    for &att in AttForm::ALL {
                        out.push(tiny(model, variant, att, AuxForm::Mlp));
                    }
                }
                for &aux in AuxForm::ALL.iter().filter(|&&a| a != AuxForm::Mlp) {
                    out.push(tiny(model, Variant::Augru, AttForm::Mlp, aux));
                }
            }
            ModelKind::DienNoaux => {
                let mut noaux = tiny(model, Variant::Augru, AttForm::Mlp, AuxForm::Mlp);
                noaux.alpha_aux = 0.0;
                out.push(noaux);
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

#[test]
fn fast_matches_reference_for_every_model_and_variant() {
    for (k, cfg) in all_configs().into_iter().enumerate() {
        let p32 = random_params(&cfg, 100 + k as u64);
        let p64 = p32.map(|x| x as f64);
        let batch = random_batch(&cfg, 11, 6, 7 + k as u64, true);
        let name = label(&cfg);

        let mut m = Model::new(cfg.clone(), p32.clone()).unwrap();
        let l = m.forward_backward(&batch).unwrap();
        let (r, g64) = reference::forward_backward(&cfg, &p64, &batch).unwrap();
        assert!((l.loss - r.loss).abs() <= 1e-5 * r.loss.abs().max(1.0), "{name}: loss {} vs {}", l.loss, r.loss);
        assert!((l.loss_aux - r.loss_aux).abs() <= 1e-5 * r.loss_aux.abs().max(1.0), "{name}: aux loss");
        for (i, (&a, &b)) in m.logits().iter().zip(&r.logits).enumerate() {
            assert!((a as f64 - b).abs() <= 2e-4, "{name}: logit {i}: {a} vs {b}");
        }
        let g32 = m.gradients().to_dense_store(&cfg);
        let mut checked = 0;
        for ((spec, a), (_, b)) in g32.iter().zip(g64.iter()) {
            let scale = b.iter().fold(0.0f64, |s, x| s.max(x.abs()));
            let err = a.iter().zip(b).fold(0.0f64, |s, (&x, &y)| s.max((x as f64 - y).abs()));
            assert!(err <= 2e-3 * scale + 1e-7, "{name}: {}: max err {err:e}, scale {scale:e}", spec.name);
            checked += 1;
        }
        assert_eq!(checked, g64.len());

        // Evaluation mode (running statistics), no gradients.
        let le = m.forward(&batch, Mode::Eval).unwrap();
        let re = reference::forward(&cfg, &p64, &batch, Mode::Eval).unwrap();
        assert!((le.loss - re.loss).abs() <= 1e-5 * re.loss.abs().max(1.0), "{name}: eval loss");
        for (&a, &b) in m.logits().iter().zip(&re.logits) {
            assert!((a as f64 - b).abs() <= 2e-4, "{name}: eval logit {a} vs {b}");
        }
    }
}

fn run_bits(cfg: &ModelConfig, p: &ParamStore<f32>, batch: &Batch, threads: usize) -> (Vec<u32>, Vec<u32>) {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    pool.install(|| {
        let mut m = Model::new(cfg.clone(), p.clone()).unwrap();
        m.forward_backward(batch).unwrap();
        let logits = m.logits().iter().map(|x| x.to_bits()).collect();
        let g = m.gradients().to_dense_store(cfg);
        let grads = g.iter().flat_map(|(_, v)| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>()).collect();
        (logits, grads)
    })
}

#[test]
fn results_are_bit_identical_for_any_thread_count() {
    let mut cfg = ModelConfig::new(ModelKind::Dien, 30, 60, 9);
    cfg.max_len = 20;
    let p = random_params(&cfg, 3);
    // Short histories (chunks of 16 samples) and longer ones (of 8).
    for t in [12, 20] {
        let batch = random_batch(&cfg, 75, t, 9, true);
        let one = run_bits(&cfg, &p, &batch, 1);
        for n in [2, 3, 8] {
            assert!(one == run_bits(&cfg, &p, &batch, n), "T = {t}: {n} threads differ from one");
        }
    }
}

#[test]
fn padded_positions_change_nothing() {
    for cfg in all_configs() {
        let p = random_params(&cfg, 11);
        let batch = random_batch(&cfg, 9, 5, 4, true);
        let mut noisy = batch.clone();
        // Arbitrary ids (even out of range) at padded positions.
        for s in 0..noisy.batch {
            for t in noisy.lengths[s]..noisy.steps {
                let i = s * noisy.steps + t;
                noisy.hist_mid[i] = 1_000_000;
                noisy.hist_cat[i] = 3;
                noisy.neg_mid.as_mut().unwrap()[i] = 2;
            }
        }
        // Appending a padding column changes nothing either.
        let mut wider = Batch::zeros(batch.batch, batch.steps + 2, true);
        for s in 0..batch.batch {
            let (t0, t1) = (batch.steps, batch.steps + 2);
            wider.hist_mid[s * t1..s * t1 + t0].copy_from_slice(&batch.hist_mid[s * t0..(s + 1) * t0]);
            wider.hist_cat[s * t1..s * t1 + t0].copy_from_slice(&batch.hist_cat[s * t0..(s + 1) * t0]);
            wider.neg_mid.as_mut().unwrap()[s * t1..s * t1 + t0]
                .copy_from_slice(&batch.neg_mid.as_ref().unwrap()[s * t0..(s + 1) * t0]);
            wider.neg_cat.as_mut().unwrap()[s * t1..s * t1 + t0]
                .copy_from_slice(&batch.neg_cat.as_ref().unwrap()[s * t0..(s + 1) * t0]);
        }
        wider.uid.clone_from(&batch.uid);
        wider.mid.clone_from(&batch.mid);
        wider.cat.clone_from(&batch.cat);
        wider.lengths.clone_from(&batch.lengths);
        wider.label.clone_from(&batch.label);
        let mut outs = Vec::new();
        for b in [&batch, &noisy, &wider] {
            let mut m = Model::new(cfg.clone(), p.clone()).unwrap();
            let l = m.forward_backward(b).unwrap();
            outs.push((l, m.logits().to_vec(), m.gradients().to_dense_store(&cfg)));
        }
        for o in &outs[1..] {
            assert_eq!(o.0, outs[0].0, "{}: losses", label(&cfg));
            assert_eq!(o.1, outs[0].1, "{}: logits", label(&cfg));
            for ((s, a), (_, b)) in o.2.iter().zip(outs[0].2.iter()) {
                assert_eq!(a, b, "{}: gradient {}", label(&cfg), s.name);
            }
        }
    }
}

#[test]
fn bad_batches_are_errors() {
    let cfg = tiny(ModelKind::Dien, Variant::Augru, AttForm::Mlp, AuxForm::Mlp);
    let mut m = Model::init(cfg.clone(), 1).unwrap();
    let mut b = random_batch(&cfg, 4, 3, 1, true);
    b.hist_mid[2 * 3 + 2] = 13; // sample 2 has length 3: a valid position
    let e = m.forward_backward(&b).unwrap_err().to_string();
    assert!(e.contains("hist_mid") && e.contains("sample 2"), "{e}");
}

/// After recalibration the running statistics equal the exact population
/// statistics of each layer's input: the batch statistics of a single
/// training-mode pass over the whole set (where BatchNorm normalises with the
/// population statistics, exactly as evaluation mode then does).
#[test]
fn recalibration_gives_population_statistics() {
    let cfg = tiny(ModelKind::Dien, Variant::Augru, AttForm::Mlp, AuxForm::Mlp);
    let p = random_params(&cfg, 21);
    let all = random_batch(&cfg, 40, 6, 5, true);
    let mut m = Model::new(cfg.clone(), p).unwrap();
    // Collect head inputs in evaluation mode, in two uneven batches.
    let mut xs = Vec::new();
    for (lo, hi) in [(0, 17), (17, 40)] {
        let part = slice_batch(&all, lo, hi);
        m.forward(&part, Mode::Eval).unwrap();
        xs.extend_from_slice(m.head_input());
    }
    m.recalibrate(&xs).unwrap();
    m.forward(&all, Mode::Train).unwrap();
    for (name, batch_stat) in m.last_stats() {
        let running = m.params().get(&name);
        for (j, (&r, &s)) in running.iter().zip(&batch_stat).enumerate() {
            assert!((r - s).abs() <= 1e-5 * s.abs().max(1.0), "{name}[{j}]: running {r} vs population {s}");
        }
    }
    assert!(m.recalibrate(&xs[..5]).is_err());
}

fn slice_batch(b: &Batch, lo: usize, hi: usize) -> Batch {
    let t = b.steps;
    let r = lo * t..hi * t;
    Batch {
        batch: hi - lo,
        steps: t,
        uid: b.uid[lo..hi].to_vec(),
        mid: b.mid[lo..hi].to_vec(),
        cat: b.cat[lo..hi].to_vec(),
        hist_mid: b.hist_mid[r.clone()].to_vec(),
        hist_cat: b.hist_cat[r.clone()].to_vec(),
        neg_mid: b.neg_mid.as_ref().map(|v| v[r.clone()].to_vec()),
        neg_cat: b.neg_cat.as_ref().map(|v| v[r.clone()].to_vec()),
        lengths: b.lengths[lo..hi].to_vec(),
        label: b.label[lo..hi].to_vec(),
    }
}

/// Cuts every history of `b` to at most one step (ids past it padded).
fn shorten_to_one_step(b: &mut Batch) {
    let t = b.steps;
    for s in 0..b.batch {
        b.lengths[s] = b.lengths[s].min(1);
        let pad = s * t + b.lengths[s]..(s + 1) * t;
        for ids in
            [Some(&mut b.hist_mid), Some(&mut b.hist_cat), b.neg_mid.as_mut(), b.neg_cat.as_mut()].into_iter().flatten()
        {
            ids[pad.clone()].fill(0);
        }
    }
}

/// Everything one step of `m` produces, as bits: losses, logits, head
/// inputs and (for training) every gradient.
fn step_bits(m: &mut Model, cfg: &ModelConfig, batch: &Batch, pass: usize) -> Vec<u64> {
    let mut out = Vec::new();
    match pass {
        0 => {
            let l = m.forward_backward(batch).unwrap();
            out.extend([l.loss.to_bits(), l.loss_target.to_bits(), l.loss_aux.to_bits()]);
            let g = m.gradients().to_dense_store(cfg);
            out.extend(g.iter().flat_map(|(_, v)| v.iter().map(|x| x.to_bits() as u64).collect::<Vec<_>>()));
        }
        1 => out.push(m.forward(batch, Mode::Eval).unwrap().loss.to_bits()),
        _ => m.forward_head_input(batch).unwrap(),
    }
    if pass < 2 {
        out.extend(m.logits().iter().map(|x| x.to_bits() as u64));
    }
    out.extend(m.head_input().iter().map(|x| x.to_bits() as u64));
    out
}

/// A model's buffers keep what earlier, longer or wider batches left in
/// them; a step must not read any of it: every step of a model that ran
/// batches of other sizes before gives exactly the bits of a fresh model.
#[test]
fn a_reused_model_gives_a_fresh_models_bits() {
    for cfg in all_configs() {
        let mut m = Model::new(cfg.clone(), random_params(&cfg, 21)).unwrap();
        let shapes = [(9, 6), (4, 2), (11, 5), (3, 1), (9, 6), (6, 3), (7, 4), (8, 5)];
        for (k, &(b, t)) in shapes.iter().enumerate() {
            // Batches 4 and 7 have no auxiliary term (no history of two
            // steps; no negatives), each after one that has: the auxiliary
            // head's gradients must be zero, not the earlier batch's.
            let mut batch = random_batch(&cfg, b.max(3), t.max(2), 40 + k as u64, k != 7);
            if k == 4 {
                shorten_to_one_step(&mut batch);
            }
            for pass in 0..3 {
                let mut fresh = Model::new(cfg.clone(), m.params().clone()).unwrap();
                let want = step_bits(&mut fresh, &cfg, &batch, pass);
                assert!(step_bits(&mut m, &cfg, &batch, pass) == want, "{}: batch {k}, pass {pass}", label(&cfg));
            }
        }
    }
}
