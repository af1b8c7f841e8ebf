//! The request path (`serve::Predictor`) against the model's batch forward
//! in evaluation mode, for every model and variant, plus input errors,
//! string ids, checkpoint loading and sharing across threads.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use dien_model::fast::Model;
use dien_model::serve::{BLOCK, Items, Predictor, Scratch, ServeError, Vocabs};
use dien_model::{AttForm, Batch, Mode, ModelConfig, ModelKind, ParamStore, Variant, checkpoint};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const N_UID: usize = 20;
const N_MID: usize = 300;
const N_CAT: usize = 30;

/// Parameters with every tensor random and of order one (running variances
/// positive), so that no layer is close to trivial and every difference shows.
fn random_params(cfg: &ModelConfig, seed: u64) -> ParamStore<f32> {
    let mut p = ParamStore::init(cfg, seed);
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed);
    for (spec, data) in p.iter_mut() {
        let var = spec.name.ends_with("running_var");
        for v in data.iter_mut() {
            *v = if var { rng.random_range(0.3..2.0) } else { rng.random_range(-0.6..0.6) };
        }
    }
    p
}

fn config(model: ModelKind, variant: Variant, att: AttForm, d: usize, h: usize) -> ModelConfig {
    let mut c = ModelConfig::new(model, N_UID, N_MID, N_CAT);
    c.variant = variant;
    c.att = att;
    c.d = d;
    c.hidden = h;
    c
}

/// Every model of docs/MODEL.md#models and every evolving-layer variant and attention
/// form, at default widths and at widths that are not multiples of 8.
fn configs() -> Vec<ModelConfig> {
    let mut out = Vec::new();
    for (d, h) in [(18, 36), (5, 11)] {
        for &model in ModelKind::ALL {
            // Every variant where the model has an evolving layer, every
            // attention form where it has attention.
            let variants =
                if matches!(model, ModelKind::Dien | ModelKind::DienNoaux) { Variant::ALL } else { &[Variant::Augru] };
            let atts = if model == ModelKind::Base { &[AttForm::Mlp][..] } else { AttForm::ALL };
            for &v in variants {
                for &att in atts {
                    out.push(config(model, v, att, d, h));
                }
            }
        }
    }
    out
}

struct Request {
    uid: u32,
    hist_mid: Vec<u32>,
    hist_cat: Vec<u32>,
    cand_mid: Vec<u32>,
    cand_cat: Vec<u32>,
}

fn request(rng: &mut ChaCha8Rng, l: usize, k: usize) -> Request {
    Request {
        uid: rng.random_range(0..N_UID as u32),
        hist_mid: (0..l).map(|_| rng.random_range(0..N_MID as u32)).collect(),
        hist_cat: (0..l).map(|_| rng.random_range(0..N_CAT as u32)).collect(),
        cand_mid: (0..k).map(|_| rng.random_range(0..N_MID as u32)).collect(),
        cand_cat: (0..k).map(|_| rng.random_range(0..N_CAT as u32)).collect(),
    }
}

/// Logits of the equivalent batch: `K` samples sharing the user and the
/// (already truncated) history, candidate `k` as the target.
fn batch_logits(model: &mut Model, r: &Request, keep: usize) -> Vec<f32> {
    let k = r.cand_mid.len();
    let s = r.hist_mid.len() - keep;
    let (hm, hc) = (vec![r.hist_mid[s..].to_vec(); k], vec![r.hist_cat[s..].to_vec(); k]);
    let batch =
        Batch::from_samples(vec![r.uid; k], r.cand_mid.clone(), r.cand_cat.clone(), &hm, &hc, None, None, vec![0.0; k])
            .unwrap();
    model.forward(&batch, Mode::Eval).unwrap();
    model.logits().to_vec()
}

fn sigmoid(z: f32) -> f32 {
    1.0 / (1.0 + (-z).exp())
}

fn assert_close(what: &str, got: &[f32], want: &[f32], tol: f32) -> f32 {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    let mut worst = 0.0f32;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (g - w).abs() / (1.0 + w.abs());
        assert!(err <= tol, "{what}: candidate {i}: {g} vs {w} (relative error {err:e})");
        worst = worst.max(err);
    }
    worst
}

#[test]
fn scores_equal_the_batch_forward_for_every_model() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let mut scratch = Scratch::new();
    let mut worst = 0.0f32;
    for (ci, cfg) in configs().into_iter().enumerate() {
        let params = random_params(&cfg, ci as u64);
        let mut model = Model::new(cfg.clone(), params.clone()).unwrap();
        let pred = Predictor::new(cfg.clone(), params).unwrap();
        // Several blocks with a partial last one; one candidate; an empty history.
        for (l, k) in [(13, 2 * BLOCK + 5), (1, 1), (0, 3), (cfg.max_len, 7)] {
            let r = request(&mut rng, l, k);
            let want = batch_logits(&mut model, &r, l);
            let (hist, cands) = (Items::new(&r.hist_mid, &r.hist_cat), Items::new(&r.cand_mid, &r.cand_cat));
            let mut got = vec![f32::NAN; k];
            pred.logits_into(&mut scratch, r.uid, hist, cands, &mut got).unwrap();
            let what = format!("{} {} {} d={} H={} L={l} K={k}", cfg.model, cfg.variant, cfg.att, cfg.d, cfg.hidden);
            worst = worst.max(assert_close(&what, &got, &want, 2e-5));
            let p = pred.score(&mut scratch, r.uid, hist, cands).unwrap();
            let want_p: Vec<f32> = want.iter().map(|&z| sigmoid(z)).collect();
            assert_close(&format!("{what} (probabilities)"), p, &want_p, 1e-5);
        }
    }
    eprintln!("worst relative logit difference: {worst:e}");
}

#[test]
fn long_histories_keep_their_last_max_len_behaviours() {
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    for &model_kind in ModelKind::ALL {
        let mut cfg = config(model_kind, Variant::Augru, AttForm::Mlp, 18, 36);
        cfg.max_len = 10;
        let params = random_params(&cfg, 3);
        let mut model = Model::new(cfg.clone(), params.clone()).unwrap();
        let pred = Predictor::new(cfg.clone(), params).unwrap();
        let mut r = request(&mut rng, 17, 5);
        let want = batch_logits(&mut model, &r, 10);
        // An index out of range in the dropped part is never looked up.
        r.hist_mid[0] = N_MID as u32 + 5;
        let mut got = vec![0.0; 5];
        let mut sc = Scratch::new();
        pred.logits_into(
            &mut sc,
            r.uid,
            Items::new(&r.hist_mid, &r.hist_cat),
            Items::new(&r.cand_mid, &r.cand_cat),
            &mut got,
        )
        .unwrap();
        assert_close(&format!("{model_kind} truncated"), &got, &want, 2e-5);
    }
}

#[test]
fn a_candidate_scores_the_same_alone_and_in_any_batch() {
    let cfg = config(ModelKind::Dien, Variant::Augru, AttForm::Mlp, 18, 36);
    let pred = Predictor::new(cfg.clone(), random_params(&cfg, 5)).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(13);
    let r = request(&mut rng, 30, 70);
    let hist = Items::new(&r.hist_mid, &r.hist_cat);
    let mut sc = Scratch::new();
    let all = pred.score(&mut sc, r.uid, hist, Items::new(&r.cand_mid, &r.cand_cat)).unwrap().to_vec();
    for i in [0, 31, 32, 69] {
        let one = pred.score(&mut sc, r.uid, hist, Items::new(&r.cand_mid[i..=i], &r.cand_cat[i..=i])).unwrap();
        assert_eq!(one[0], all[i], "candidate {i}: rows are computed independently of their batch");
    }
    // Reversed order gives the reversed scores.
    let (rm, rc): (Vec<u32>, Vec<u32>) =
        (r.cand_mid.iter().rev().copied().collect(), r.cand_cat.iter().rev().copied().collect());
    let rev = pred.score(&mut sc, r.uid, hist, Items::new(&rm, &rc)).unwrap().to_vec();
    assert!(rev.iter().rev().zip(&all).all(|(a, b)| a == b));
}

#[test]
fn bad_requests_are_errors_that_name_the_problem() {
    let cfg = config(ModelKind::Dien, Variant::Augru, AttForm::Mlp, 18, 36);
    let pred = Predictor::new(cfg.clone(), random_params(&cfg, 1)).unwrap();
    let mut sc = Scratch::new();
    let (hm, hc) = ([1u32, 2, 3], [1u32, 2, 3]);
    let hist = Items::new(&hm, &hc);
    let cands = Items::new(&[4, 5], &[1, 1]);

    let e = pred.score(&mut sc, 1, hist, Items::new(&[], &[])).unwrap_err();
    assert!(matches!(e, ServeError::NoCandidates), "{e}");
    assert!(e.to_string().contains("empty candidate list"));

    let e = pred.score(&mut sc, N_UID as u32, hist, cands).unwrap_err();
    assert!(matches!(e, ServeError::IndexOutOfRange { field: "uid", index, rows: N_UID, .. } if index == N_UID as u32));

    let bad = [1, 2, N_MID as u32];
    let e = pred.score(&mut sc, 1, Items::new(&bad, &hc), cands).unwrap_err();
    assert!(matches!(e, ServeError::IndexOutOfRange { field: "hist_mid", position: 2, .. }), "{e}");
    assert!(e.to_string().contains("`hist_mid`[2]") && e.to_string().contains("300 rows"), "{e}");

    let e = pred.score(&mut sc, 1, Items::new(&hm, &[1, 2, N_CAT as u32 + 1]), cands).unwrap_err();
    assert!(matches!(e, ServeError::IndexOutOfRange { field: "hist_cat", position: 2, .. }), "{e}");
    let e = pred.score(&mut sc, 1, hist, Items::new(&[4, N_MID as u32 * 2], &[1, 1])).unwrap_err();
    assert!(matches!(e, ServeError::IndexOutOfRange { field: "cand_mid", position: 1, .. }), "{e}");
    let e = pred.score(&mut sc, 1, hist, Items::new(&[4, 5], &[u32::MAX, 1])).unwrap_err();
    assert!(matches!(e, ServeError::IndexOutOfRange { field: "cand_cat", position: 0, .. }), "{e}");

    let e = pred.score(&mut sc, 1, Items::new(&hm, &hc[..2]), cands).unwrap_err();
    assert!(matches!(e, ServeError::LengthMismatch { field: "hist_cat", len: 2, expected: 3, .. }), "{e}");
    let e = pred.score(&mut sc, 1, hist, Items::new(&[4, 5], &[1])).unwrap_err();
    assert!(matches!(e, ServeError::LengthMismatch { field: "cand_cat", .. }), "{e}");
    let mut out = [0.0; 3];
    let e = pred.score_into(&mut sc, 1, hist, cands, &mut out).unwrap_err();
    assert!(matches!(e, ServeError::LengthMismatch { field: "out", len: 3, expected: 2, .. }), "{e}");

    // No vocabularies: string ids are refused.
    let e = pred.score_ids(&mut sc, "u", &["a"], &["b"], &["c"], &["d"]).unwrap_err();
    assert!(matches!(e, ServeError::NoVocabularies), "{e}");

    // After all these, the scratch still scores correctly.
    let ok = pred.score(&mut sc, 1, hist, cands).unwrap().to_vec();
    let fresh = pred.score(&mut Scratch::new(), 1, hist, cands).unwrap().to_vec();
    assert_eq!(ok, fresh);
}

#[test]
fn mismatched_parameters_are_refused() {
    let cfg = config(ModelKind::Dien, Variant::Augru, AttForm::Mlp, 18, 36);
    let other = config(ModelKind::Din, Variant::Augru, AttForm::Mlp, 18, 36);
    let e = Predictor::new(cfg, ParamStore::init(&other, 1)).unwrap_err();
    assert!(e.to_string().contains("tensor"), "{e}");
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("dien-serve-test-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn vocab_json() -> (String, Vocabs) {
    let mk = |prefix: &str, n: u32| -> HashMap<String, u32> { (1..n).map(|i| (format!("{prefix}{i}"), i)).collect() };
    let (u, m, c) = (mk("user", N_UID as u32), mk("item", N_MID as u32), mk("cat", N_CAT as u32));
    let text = serde_json::json!({"uid": u, "mid": m, "cat": c}).to_string();
    (text, Vocabs::new(u, m, c))
}

#[test]
fn checkpoints_load_with_their_vocabularies_and_score_by_string_id() {
    let dir = temp_dir("ckpt");
    let cfg = config(ModelKind::Dien, Variant::Augru, AttForm::Mlp, 18, 36);
    let params = random_params(&cfg, 9);
    let ckpt = dir.join("m.safetensors");
    checkpoint::save(&ckpt, &cfg, &params).unwrap();

    // Without the sidecar: index inputs only.
    let bare = Predictor::load(&ckpt).unwrap();
    assert!(bare.vocabs().is_none());

    let (text, vocabs) = vocab_json();
    let sidecar = checkpoint::sidecar_path(&ckpt, checkpoint::VOCAB_SUFFIX);
    std::fs::write(&sidecar, &text).unwrap();
    let pred = Predictor::load(&ckpt).unwrap();
    assert_eq!(pred.vocabs(), Some(&vocabs));
    assert_eq!(pred.config(), &cfg);
    let shown = format!("{pred:?}");
    assert!(shown.contains("Predictor") && shown.contains("(19, 299, 29)") && shown.len() < 2000, "{shown}");

    let mut sc = Scratch::new();
    let by_index = pred
        .score(&mut sc, 7, Items::new(&[3, 250, 0, 9], &[4, 29, 0, 1]), Items::new(&[12, 0, 299], &[2, 0, 5]))
        .unwrap()
        .to_vec();
    // "nobody", "nothing" and "none" are unknown: index 0.
    let by_id = pred
        .score_ids(
            &mut sc,
            "user7",
            &["item3", "item250", "nothing", "item9"],
            &["cat4", "cat29", "none", "cat1"],
            &["item12", "zzz", "item299"],
            &["cat2", "???", "cat5"],
        )
        .unwrap()
        .to_vec();
    assert_eq!(by_id, by_index);
    let from_model = Predictor::from_model(&Model::new(cfg.clone(), params).unwrap()).unwrap();
    let again = from_model
        .score(&mut sc, 7, Items::new(&[3, 250, 0, 9], &[4, 29, 0, 1]), Items::new(&[12, 0, 299], &[2, 0, 5]))
        .unwrap();
    assert_eq!(again, &by_index[..]);
    let unknown_user = pred.score_ids(&mut sc, "nobody", &["item3"], &["cat4"], &["item12"], &["cat2"]).unwrap()[0];
    let user0 = pred.score(&mut sc, 0, Items::new(&[3], &[4]), Items::new(&[12], &[2])).unwrap()[0];
    assert_eq!(unknown_user, user0);
    let e = pred.score_ids(&mut sc, "user1", &["item3", "item4"], &["cat4"], &["item12"], &["cat2"]).unwrap_err();
    assert!(matches!(e, ServeError::LengthMismatch { field: "hist_cats", .. }), "{e}");

    // A malformed sidecar, and one whose indices exceed the tables, are errors.
    std::fs::write(&sidecar, "{\"uid\": {\"a\": 1}}").unwrap();
    let e = Predictor::load(&ckpt).unwrap_err();
    assert!(matches!(e, ServeError::Vocab(_)) && e.to_string().contains("vocab.json"), "{e}");
    std::fs::write(&sidecar, r#"{"uid": {"a": 1}, "mid": {"b": 300}, "cat": {}}"#).unwrap();
    let e = Predictor::load(&ckpt).unwrap_err();
    assert!(e.to_string().contains("`mid` maps `b` to index 300"), "{e}");
    // A missing checkpoint is an error naming the path.
    let e = Predictor::load(&dir.join("missing.safetensors")).unwrap_err();
    assert!(e.to_string().contains("missing.safetensors"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn one_predictor_serves_many_threads() {
    let cfg = config(ModelKind::Dien, Variant::AugruRef, AttForm::Mlp, 18, 36);
    let pred = Arc::new(Predictor::new(cfg.clone(), random_params(&cfg, 2)).unwrap());
    let mut rng = ChaCha8Rng::seed_from_u64(14);
    let reqs: Vec<Request> = (0..6).map(|i| request(&mut rng, 5 + 7 * i, 1 + 9 * i)).collect();
    let mut sc = Scratch::new();
    let want: Vec<Vec<f32>> = reqs
        .iter()
        .map(|r| {
            pred.score(&mut sc, r.uid, Items::new(&r.hist_mid, &r.hist_cat), Items::new(&r.cand_mid, &r.cand_cat))
                .unwrap()
                .to_vec()
        })
        .collect();
    std::thread::scope(|s| {
        for t in 0..3 {
            let (pred, reqs, want) = (Arc::clone(&pred), &reqs, &want);
            s.spawn(move || {
                let mut sc = Scratch::new();
                for round in 0..4 {
                    for (i, r) in reqs.iter().enumerate().skip((t + round) % 2) {
                        let got = pred
                            .score(
                                &mut sc,
                                r.uid,
                                Items::new(&r.hist_mid, &r.hist_cat),
                                Items::new(&r.cand_mid, &r.cand_cat),
                            )
                            .unwrap();
                        assert_eq!(got, &want[i][..], "thread {t}, request {i}");
                    }
                }
            });
        }
    });
}
