//! The fast head against the `f64` reference: logits in both modes, and in
//! training mode the loss, the input gradient and every parameter gradient;
//! recalibration against its definition.

use super::reference::{head_backward, head_forward};
use super::train::{H1, H2, HeadGrads, HeadPacked, HeadWs, RecalScratch, recalibrate};
use crate::config::{ModelConfig, ModelKind};
use crate::layers::testutil::{assert_close, uniform, wide};
use crate::mode::Mode;
use crate::params::ParamStore;
use crate::reference::layers::target_loss;

#[test]
fn fast_head_matches_the_reference() {
    let rows = 13;
    let mut cfg = ModelConfig::new(ModelKind::Base, 10, 10, 10);
    cfg.d = 5;
    let dh = cfg.head_in();
    let mut p = ParamStore::init(&cfg, 9);
    // Running statistics away from their initial values, for evaluation.
    for (name, v) in [("head.bn.running_mean", 0.1f32), ("head.bn.running_var", 1.5)] {
        p.get_mut(name).fill(v);
    }
    let p64 = p.map(f64::from);
    let mut pk = HeadPacked::new(dh);
    pk.set(&p);
    let x = uniform(rows * dh, 1.0, 4);
    let labels: Vec<f32> = (0..rows).map(|i| (i % 3 == 0) as u8 as f32).collect();
    for mode in [Mode::Train, Mode::Eval] {
        let mut ws = HeadWs::default();
        ws.prepare(dh, rows);
        ws.x[..rows * dh].copy_from_slice(&x);
        ws.forward(&pk, &p, mode, &mut crate::NoSync).unwrap();
        let (cache, logits) = head_forward(&p64, wide(&x), rows, mode, &mut Vec::new());
        assert_close(&format!("{mode:?}: logits"), &ws.logits[..rows], &logits, 1e-4);
        let (loss, dz) = target_loss(&logits, &labels);
        let fast_loss = ws.target_loss(&labels);
        assert!((fast_loss - loss).abs() <= 1e-5 * loss.max(1.0), "{mode:?}: loss {fast_loss} vs {loss}");
        if mode != Mode::Train {
            continue;
        }
        let mut g = HeadGrads::new(dh);
        ws.backward(&pk, &p, mode, &labels, &mut g, &mut crate::NoSync).unwrap();
        let mut grads = ParamStore::<f64>::zeros(&cfg);
        let dx = head_backward(&p64, &cache, &dz, &mut grads);
        assert_close("d_x", &ws.dx[..rows * dh], &dx, 1e-4);
        for (name, part) in HeadGrads::NAMES.iter().zip(g.parts()) {
            assert_close(name, part, grads.get(name), 1e-4);
        }
    }
}

/// Exact column mean and biased variance in f64, rows in order, as f32.
fn exact(x: &[f32], rows: usize, cols: usize) -> (Vec<f32>, Vec<f32>) {
    let mut mean = vec![0.0f64; cols];
    for r in 0..rows {
        for j in 0..cols {
            mean[j] += x[r * cols + j] as f64;
        }
    }
    mean.iter_mut().for_each(|m| *m /= rows as f64);
    let mut var = vec![0.0f64; cols];
    for r in 0..rows {
        for j in 0..cols {
            let d = x[r * cols + j] as f64 - mean[j];
            var[j] += d * d;
        }
    }
    (mean.iter().map(|&m| m as f32).collect(), var.iter().map(|&v| (v / rows as f64) as f32).collect())
}

#[test]
fn recalibration_gives_each_layer_the_statistics_of_its_input() {
    // More rows than one block of the recalibration, and not a multiple.
    let rows = 2500;
    let mut cfg = ModelConfig::new(ModelKind::Base, 10, 10, 10);
    cfg.d = 3;
    let dh = cfg.head_in();
    let mut p = ParamStore::init(&cfg, 5);
    let mut pk = HeadPacked::new(dh);
    pk.set(&p);
    let x = uniform(rows * dh, 2.0, 8);
    // By the definition: each layer's running statistics become the exact
    // statistics of its input over all rows, the layers before it already
    // recalibrated, all rows in one evaluation-mode pass.
    let mut want = p.clone();
    let set = |q: &mut ParamStore<f32>, name: &str, (m, v): (Vec<f32>, Vec<f32>)| {
        q.get_mut(&format!("{name}.running_mean")).copy_from_slice(&m);
        q.get_mut(&format!("{name}.running_var")).copy_from_slice(&v);
    };
    set(&mut want, "head.bn", exact(&x, rows, dh));
    let mut ws = HeadWs::default();
    ws.prepare(dh, rows);
    ws.x[..rows * dh].copy_from_slice(&x);
    ws.forward(&pk, &want, Mode::Eval, &mut crate::NoSync).unwrap();
    set(&mut want, "head.dice1", exact(ws.dice_inputs().0, rows, H1));
    ws.forward(&pk, &want, Mode::Eval, &mut crate::NoSync).unwrap();
    set(&mut want, "head.dice2", exact(ws.dice_inputs().1, rows, H2));

    // Scratch that served a larger recalibration before (other values
    // left in its buffers) gives the same bits as fresh scratch.
    let mut scratch = RecalScratch::default();
    let mut other = p.clone();
    let big = uniform((rows + 700) * dh, 3.0, 9);
    recalibrate(&pk, &mut other, &big, rows + 700, &mut crate::NoSync, &mut scratch).unwrap();
    let mut fresh = p.clone();
    recalibrate(&pk, &mut fresh, &x, rows, &mut crate::NoSync, &mut RecalScratch::default()).unwrap();
    recalibrate(&pk, &mut p, &x, rows, &mut crate::NoSync, &mut scratch).unwrap();
    for (spec, v) in want.iter() {
        let bits = |s: &[f32]| s.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(fresh.get(&spec.name)), bits(v), "{} (fresh scratch)", spec.name);
    }
    for (spec, v) in want.iter() {
        let bits = |s: &[f32]| s.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(p.get(&spec.name)), bits(v), "{}", spec.name);
    }
    assert_ne!(want.get("head.dice2.running_var"), ParamStore::init(&cfg, 5).get("head.dice2.running_var"));
}
