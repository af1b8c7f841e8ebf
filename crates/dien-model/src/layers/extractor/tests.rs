//! The extractor GRU stage and the fast auxiliary head (per form) against
//! the `f64` reference: outputs and every gradient.

use super::aux_reference::{AuxGrads as RefGrads, AuxInputs, aux_loss, aux_params, aux_terms};
use super::aux_train::{AuxChunk, AuxGrads, AuxPacked};
use crate::config::{AuxForm, ModelConfig, ModelKind};
use crate::layers::testutil::{assert_close, uniform, wide};
use crate::params::ParamStore;

#[test]
fn fast_aux_head_matches_the_reference_for_every_form() {
    // Short and long histories: several samples packed into one block,
    // and (T = 150) blocks split between samples and one sample longer
    // than a block alone.
    aux_head_case(6, [6, 2, 0, 1, 4]);
    aux_head_case(60, [60, 2, 0, 1, 57]);
    aux_head_case(150, [40, 150, 0, 70, 80]);
}

fn aux_head_case(t: usize, lengths: [usize; 5]) {
    let bc = lengths.len();
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
        // The input gradients overwrite what the buffers hold, every row
        // (packed blocks and blocks of one sample alike; zeros where no
        // term reaches): NaN left anywhere fails the comparison below.
        let (mut dh, mut dp, mut dn) =
            (vec![f32::NAN; bc * t * h], vec![f32::NAN; bc * t * e], vec![f32::NAN; bc * t * e]);
        // A first run leaves parameter gradients behind: the second must
        // overwrite them, not add to them.
        let (mut dh0, mut dp0, mut dn0) = (dh.clone(), dp.clone(), dn.clone());
        ch.run(&pk, &states, &pos, &neg, &lengths, Some(weight / n as f32), &mut dh0, &mut dp0, &mut dn0);
        let sum = ch.run(&pk, &states, &pos, &neg, &lengths, Some(weight / n as f32), &mut dh, &mut dp, &mut dn);
        assert!(dh.iter().chain(&dp).chain(&dn).all(|x| x.is_finite()), "{form}: a gradient row left unwritten");

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

/// The extractor GRU stage against the reference cell: states, and from a
/// state gradient the parameter and input gradients.
#[test]
fn fast_extractor_matches_the_reference() {
    use dien_engine::cell::fast::Mode as CellMode;
    use dien_engine::cell::reference as cell;
    use dien_engine::cell::{CellKind, GruGrads, GruParams, SeqInput};

    use crate::fast::workspace::Workspace;
    use crate::layers::{InterestLayers, Layers};
    use crate::plan::Plan;

    let (b, t) = (10, 6);
    let lengths = [6, 0, 1, 4, 6, 2, 5, 3, 6, 1];
    let mut cfg = ModelConfig::new(ModelKind::DienNoaux, 10, 10, 10);
    (cfg.d, cfg.hidden) = (3, 5);
    let (e, h) = (cfg.e(), cfg.hidden);
    let p = ParamStore::init(&cfg, 17);
    let p64 = p.map(f64::from);
    let mut layers = Layers::new(&cfg, &Plan::new(&cfg));
    layers.set(&cfg, &p);
    let InterestLayers::Evolving(ev) = &layers.interest else { panic!("a DIEN stage") };
    let mut ws = Workspace::default();
    ws.prepare(&cfg, &layers, b, t, false);
    let mut x = uniform(b * t * e, 0.7, 1);
    for (i, row) in x.chunks_exact_mut(e).enumerate() {
        if i % t >= lengths[i / t] {
            row.fill(0.0);
        }
    }
    ws.e_hist.copy_from_slice(&x);
    let d_h1 = uniform(b * t * h, 1.0, 2);
    super::forward(&ev.gru1, &mut ws, &lengths, b, t, CellMode::Train);
    let states = ws.h1.clone();
    ws.d_h1.copy_from_slice(&d_h1);
    ws.d_e_hist.fill(0.0);
    let mut g = GruGrads::zeros(e, h);
    super::backward(&ev.gru1, &mut ws, &mut g, &lengths, b, t, e);

    let x64 = wide(&x);
    let gp =
        GruParams { w_ih: p64.get("gru1.w_ih"), w_hh: p64.get("gru1.w_hh"), b: p64.get("gru1.b"), input: e, hidden: h };
    let input = SeqInput { x: &x64[..], lengths: &lengths[..], att: None, h0: None, batch: b, steps: t };
    let f = cell::forward(CellKind::Gru, &gp, &input);
    let mut d_states = wide(&d_h1);
    // Padded steps have no state, so no gradient reaches them.
    for (i, row) in d_states.chunks_exact_mut(h).enumerate() {
        if i % t >= lengths[i / t] {
            row.fill(0.0);
        }
    }
    let mut g_ref = GruGrads::zeros(e, h);
    let ig = cell::backward(CellKind::Gru, &gp, &input, &f, Some(&d_states), None, &mut g_ref);
    let fast_states: Vec<f32> = states
        .chunks_exact(h)
        .enumerate()
        .flat_map(|(i, row)| row.iter().map(move |&v| if i % t < lengths[i / t] { v } else { 0.0 }))
        .collect();
    assert_close("h1", &fast_states, &f.states, 1e-5);
    assert_close("d_e_hist", &ws.d_e_hist, &ig.x, 1e-4);
    assert_close("gru1.w_ih", &g.w_ih, &g_ref.w_ih, 1e-4);
    assert_close("gru1.w_hh", &g.w_hh, &g_ref.w_hh, 1e-4);
    assert_close("gru1.b", &g.b, &g_ref.b, 1e-4);
}
