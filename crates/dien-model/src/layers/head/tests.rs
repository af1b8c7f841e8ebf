//! The fast head against the `f64` reference: logits in both modes, and in
//! training mode the loss, the input gradient and every parameter gradient.

use super::reference::{head_backward, head_forward};
use super::train::{HeadGrads, HeadPacked, HeadWs};
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
