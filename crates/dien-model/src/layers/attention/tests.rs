//! The fast attention of one chunk against the `f64` reference, per form:
//! weights, key and query gradients, parameter gradients.

use super::reference::{
    AttGrads as RefGrads, att_params, attention_backward as ref_backward, attention_forward as ref_forward,
};
use super::train::{AttChunk, AttGrads, AttPacked};
use crate::config::{AttForm, ModelConfig, ModelKind};
use crate::layers::testutil::{assert_close, uniform, wide};
use crate::params::ParamStore;

/// The reference gradients by tensor name, in [`AttGrads::NAMES`] order.
fn named(g: &RefGrads) -> Vec<(&'static str, Vec<f64>)> {
    match g {
        RefGrads::Mlp { q_w, q_b, prelu, mlp } => vec![
            ("att.q.w", q_w.clone()),
            ("att.q.b", q_b.clone()),
            ("att.q.prelu", prelu.clone()),
            ("att.fc1.w", mlp.w1.clone()),
            ("att.fc1.b", mlp.b1.clone()),
            ("att.fc2.w", mlp.w2.clone()),
            ("att.fc2.b", mlp.b2.clone()),
            ("att.fc3.w", mlp.w3.clone()),
            ("att.fc3.b", mlp.b3.clone()),
        ],
        RefGrads::Bilinear { w } => vec![("att.w", w.clone())],
    }
}

#[test]
fn fast_attention_matches_the_reference_for_every_form() {
    let (bc, t) = (5, 7);
    let lengths = [7, 3, 0, 1, 6];
    for &form in AttForm::ALL {
        // DIN attends over the behaviours, so the key width is E.
        let mut cfg = ModelConfig::new(ModelKind::Din, 10, 10, 10);
        (cfg.att, cfg.d) = (form, 6);
        let (a, e) = (cfg.att_width(), cfg.e());
        let p = ParamStore::init(&cfg, 11);
        let p64 = p.map(f64::from);
        let mut pk = AttPacked::new(form, a, e);
        pk.set(&p);
        let mut ch = AttChunk::default();
        ch.prepare(&pk, bc, t);

        let keys = uniform(bc * t * a, 0.5, 1);
        let e_a = uniform(bc * e, 0.5, 2);
        let d_w = uniform(bc * t, 1.0, 3);
        ch.forward(&pk, &keys, &e_a, &lengths);
        let mut d_keys = vec![0.0; bc * t * a];
        let mut d_e_a = vec![0.0; bc * e];
        // A first backward leaves gradients behind: the second must
        // overwrite them, not add to them.
        let (mut dk0, mut dea0) = (d_keys.clone(), d_e_a.clone());
        ch.backward(&pk, &keys, &e_a, &lengths, &d_w, &mut dk0, &mut dea0);
        ch.backward(&pk, &keys, &e_a, &lengths, &d_w, &mut d_keys, &mut d_e_a);

        let ap = att_params(&cfg, &p64);
        let mut g = RefGrads::zeros_like(&ap);
        let (keys64, e_a64, d_w64) = (wide(&keys), wide(&e_a), wide(&d_w));
        let mut ref_w = vec![0.0; bc * t];
        let mut ref_dk = vec![0.0; bc * t * a];
        let mut ref_dea = vec![0.0; bc * e];
        for s in 0..bc {
            let (l, k0) = (lengths[s], s * t * a);
            let ea = &e_a64[s * e..(s + 1) * e];
            let c = ref_forward(&ap, a, ea, &keys64[k0..k0 + l * a]);
            ref_w[s * t..s * t + l].copy_from_slice(&c.weights);
            ref_backward(
                &ap,
                a,
                ea,
                &keys64[k0..k0 + l * a],
                &c,
                &d_w64[s * t..s * t + l],
                &mut g,
                &mut ref_dk[k0..k0 + l * a],
                &mut ref_dea[s * e..(s + 1) * e],
            );
        }
        // Padded steps carry no weight in either path.
        let fast_w: Vec<f32> = (0..bc * t).map(|i| if i % t < lengths[i / t] { ch.weights[i] } else { 0.0 }).collect();
        assert_close(&format!("{form}: weights"), &fast_w, &ref_w, 1e-5);
        assert_close(&format!("{form}: d_keys"), &d_keys, &ref_dk, 1e-4);
        assert_close(&format!("{form}: d_e_a"), &d_e_a, &ref_dea, 1e-4);
        let parts = ch.grads.parts();
        for (name, want) in named(&g) {
            let i = AttGrads::NAMES.iter().position(|&n| n == name).expect("a named part");
            assert_close(&format!("{form}: {name}"), parts[i], &want, 1e-4);
        }
    }
}
