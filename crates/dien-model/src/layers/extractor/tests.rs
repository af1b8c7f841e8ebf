//! The fast auxiliary head of one chunk against the `f64` reference, per
//! form: the loss and every gradient.

use super::aux_reference::{AuxGrads as RefGrads, AuxInputs, aux_loss, aux_params, aux_terms};
use super::aux_train::{AuxChunk, AuxGrads, AuxPacked};
use crate::config::{AuxForm, ModelConfig, ModelKind};
use crate::layers::testutil::{assert_close, uniform, wide};
use crate::params::ParamStore;

#[test]
fn fast_aux_head_matches_the_reference_for_every_form() {
    let (bc, t) = (5, 6);
    let lengths = [6, 2, 0, 1, 4];
    let weight = 0.7f32;
    for &form in AuxForm::ALL {
        let mut cfg = ModelConfig::new(ModelKind::Dien, 10, 10, 10);
        // `dot` needs H = E.
        (cfg.aux, cfg.d, cfg.hidden) = (form, 4, 8);
        let (h, e) = (cfg.hidden, cfg.e());
        let p = ParamStore::init(&cfg, 5);
        let p64 = p.map(f64::from);
        let mut pk = AuxPacked::new(form, h, e);
        pk.set(&p);
        let mut ch = AuxChunk::default();
        ch.prepare(&pk, bc, t);

        // Padded steps hold zeros, as the embedding layer leaves them.
        let pad = |mut v: Vec<f32>, w: usize| {
            for (i, row) in v.chunks_exact_mut(w).enumerate() {
                if i % t >= lengths[i / t] {
                    row.fill(0.0);
                }
            }
            v
        };
        let states = pad(uniform(bc * t * h, 0.8, 1), h);
        let pos = pad(uniform(bc * t * e, 0.5, 2), e);
        let neg = pad(uniform(bc * t * e, 0.5, 3), e);
        let n = aux_terms(&lengths);
        let (mut dh, mut dp, mut dn) = (vec![0.0; bc * t * h], vec![0.0; bc * t * e], vec![0.0; bc * t * e]);
        ch.grads.zero();
        let sum = ch.run(&pk, &states, &pos, &neg, &lengths, Some(weight / n as f32), &mut dh, &mut dp, &mut dn);

        let (s64, p64v, n64) = (wide(&states), wide(&pos), wide(&neg));
        let inp = AuxInputs { states: &s64, pos: &p64v, neg: &n64, lengths: &lengths, steps: t, hidden: h, item: e };
        let ap = aux_params(&cfg, &p64);
        let mut g = RefGrads::zeros(&ap, &inp);
        let loss = aux_loss(&ap, &inp, Some((f64::from(weight), &mut g)));

        let fast_loss = sum / n as f64;
        assert!((fast_loss - loss).abs() <= 1e-5 * loss.abs().max(1.0), "{form}: loss {fast_loss} vs {loss}");
        assert_close(&format!("{form}: d_states"), &dh, &g.d_states, 1e-4);
        assert_close(&format!("{form}: d_pos"), &dp, &g.d_pos, 1e-4);
        assert_close(&format!("{form}: d_neg"), &dn, &g.d_neg, 1e-4);
        let parts = ch.grads.parts();
        match &g.mlp {
            Some(m) => {
                for (i, want) in [&m.w1, &m.b1, &m.w2, &m.b2, &m.w3, &m.b3].into_iter().enumerate() {
                    assert_close(&format!("{form}: {}", AuxGrads::NAMES[i]), parts[i], want, 1e-4);
                }
            }
            None => assert!(parts.iter().all(|g| g.iter().all(|&x| x == 0.0)), "{form}: no head, no gradient"),
        }
    }
}
