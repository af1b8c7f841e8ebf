//! The request path in bf16 (`Predictor::with_precision(Precision::Bf16)`)
//! against the `f32` request path: close for every model, variant and
//! attention form, independent of the other candidates, reversible to the
//! `f32` scores bit for bit, and an error on a CPU without AVX512_BF16
//! (where the rest of this file is skipped with a printed reason).

use dien_model::serve::{BLOCK, Items, Precision, Predictor, Scratch, ServeError};
use dien_model::{AttForm, ModelConfig, ModelKind, ParamStore, Variant};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const N_UID: usize = 20;
const N_MID: usize = 300;
const N_CAT: usize = 30;

/// Every model, evolving variant and attention form, at default widths and
/// at widths that are not multiples of 8 (odd inner dimensions).
fn configs() -> Vec<ModelConfig> {
    let mut out = Vec::new();
    for (d, h) in [(18, 36), (5, 11)] {
        for &model in ModelKind::ALL {
            let variants =
                if matches!(model, ModelKind::Dien | ModelKind::DienNoaux) { Variant::ALL } else { &[Variant::Augru] };
            let atts = if model == ModelKind::Base { &[AttForm::Mlp][..] } else { AttForm::ALL };
            for &variant in variants {
                for &att in atts {
                    let mut c = ModelConfig::new(model, N_UID, N_MID, N_CAT);
                    (c.variant, c.att, c.d, c.hidden) = (variant, att, d, h);
                    out.push(c);
                }
            }
        }
    }
    out
}

/// A random request: user, history of `l`, `k` candidates.
fn request(rng: &mut ChaCha8Rng, l: usize, k: usize) -> [Vec<u32>; 5] {
    let mut ids = |n: usize, len: usize| (0..len).map(|_| rng.random_range(0..n as u32)).collect::<Vec<u32>>();
    [ids(N_UID, 1), ids(N_MID, l), ids(N_CAT, l), ids(N_MID, k), ids(N_CAT, k)]
}

fn logits(p: &Predictor, sc: &mut Scratch, r: &[Vec<u32>; 5]) -> Vec<f32> {
    let mut out = vec![f32::NAN; r[3].len()];
    p.logits_into(sc, r[0][0], Items::new(&r[1], &r[2]), Items::new(&r[3], &r[4]), &mut out).unwrap();
    out
}

/// The bf16 predictor of `p`, or `None` after checking the error on a CPU
/// without AVX512_BF16.
fn bf16(p: &Predictor) -> Option<Predictor> {
    if Precision::Bf16.supported() {
        let b = p.clone().with_precision(Precision::Bf16).unwrap();
        assert_eq!(b.precision(), Precision::Bf16);
        return Some(b);
    }
    let e = p.clone().with_precision(Precision::Bf16).unwrap_err();
    assert!(matches!(e, ServeError::PrecisionUnsupported { precision: Precision::Bf16, .. }), "{e}");
    assert!(e.to_string().contains("AVX512_BF16"), "{e}");
    println!("skipped: this CPU lacks AVX512_BF16 (checked that asking for bf16 is an error)");
    None
}

#[test]
fn bf16_logits_are_close_to_f32_for_every_model() {
    let mut rng = ChaCha8Rng::seed_from_u64(21);
    let mut sc = Scratch::new();
    let mut worst = 0.0f32;
    for (ci, cfg) in configs().into_iter().enumerate() {
        let f = Predictor::new(cfg.clone(), ParamStore::init(&cfg, ci as u64)).unwrap();
        assert_eq!(f.precision(), Precision::F32, "f32 is the default");
        let Some(b) = bf16(&f) else { return };
        // Several blocks with a partial last one; one candidate; an empty
        // history; the longest history.
        for (l, k) in [(13, 2 * BLOCK + 5), (1, 1), (0, 3), (cfg.max_len, 7)] {
            let r = request(&mut rng, l, k);
            let (zf, zb) = (logits(&f, &mut sc, &r), logits(&b, &mut sc, &r));
            for (i, (&x, &y)) in zf.iter().zip(&zb).enumerate() {
                let err = (x - y).abs() / (1.0 + x.abs());
                assert!(
                    err <= 1e-2,
                    "{} {} {} d={} H={} L={l} K={k} candidate {i}: f32 {x}, bf16 {y}",
                    cfg.model,
                    cfg.variant,
                    cfg.att,
                    cfg.d,
                    cfg.hidden
                );
                worst = worst.max(err);
            }
        }
    }
    println!("worst |bf16 − f32| / (1 + |f32|) over the logits: {worst:e}");
}

#[test]
fn bf16_scores_do_not_depend_on_the_other_candidates_and_f32_comes_back() {
    let mut cfg = ModelConfig::new(ModelKind::Dien, N_UID, N_MID, N_CAT);
    cfg.max_len = 40;
    let f = Predictor::new(cfg.clone(), ParamStore::init(&cfg, 5)).unwrap();
    let Some(b) = bf16(&f) else { return };
    let mut rng = ChaCha8Rng::seed_from_u64(22);
    let r = request(&mut rng, 30, 70);
    let mut sc = Scratch::new();
    let all = logits(&b, &mut sc, &r);
    for i in [0, 31, 32, 69] {
        let one = [r[0].clone(), r[1].clone(), r[2].clone(), vec![r[3][i]], vec![r[4][i]]];
        assert_eq!(logits(&b, &mut sc, &one)[0].to_bits(), all[i].to_bits(), "candidate {i}");
    }
    // Back to f32: the f32 scores, bit for bit; the same precision again
    // changes nothing.
    let back = b.clone().with_precision(Precision::F32).unwrap();
    assert_eq!(back.precision(), Precision::F32);
    let (zf, zback) = (logits(&f, &mut sc, &r), logits(&back, &mut sc, &r));
    assert!(zf.iter().zip(&zback).all(|(x, y)| x.to_bits() == y.to_bits()));
    let again = b.with_precision(Precision::Bf16).unwrap();
    assert!(logits(&again, &mut sc, &r).iter().zip(&all).all(|(x, y)| x.to_bits() == y.to_bits()));
}
