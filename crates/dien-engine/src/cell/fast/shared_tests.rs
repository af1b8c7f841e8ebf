//! Tests of the shared-input mode against the `f64` reference cells.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::*;
use crate::cell::{GruParams, SeqInput, reference};

fn rand_vec(rng: &mut ChaCha8Rng, n: usize, lo: f32, hi: f32) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(lo..hi)).collect()
}

fn widen(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| f64::from(x)).collect()
}

/// `K` rows over one sequence of length `l` against the reference run on
/// `K` copies of the sequence (each with its row's attention weights).
#[allow(clippy::too_many_arguments)]
fn check(rng: &mut ChaCha8Rng, kind: CellKind, input: usize, h: usize, k: usize, l: usize, ws: &mut SharedWorkspace) {
    let (w_ih, w_hh, b) =
        (rand_vec(rng, 3 * h * input, -0.5, 0.5), rand_vec(rng, 3 * h * h, -0.5, 0.5), rand_vec(rng, 3 * h, -0.5, 0.5));
    let x = rand_vec(rng, l * input, -1.0, 1.0);
    // Attention weights at a row stride above `l`, the gaps NaN (never read).
    let ld = l + 2;
    let mut att = vec![f32::NAN; k * ld];
    for i in 0..k {
        for t in 0..l {
            att[i * ld + t] = rng.random_range(0.0..1.0);
        }
    }
    let mut cell = GruCell::new(kind, input, h);
    cell.set_params(&GruParams { w_ih: &w_ih, w_hh: &w_hh, b: &b, input, hidden: h });
    let mut proj = vec![f32::NAN; l * 3 * h];
    cell.project_shared(l, &x, input, &mut proj);
    let mut states = vec![f32::NAN; k * l * h];
    let a = kind.uses_attention().then_some((&att[..], ld));
    cell.forward_shared(k, l, &proj, a, ws, Some(&mut states));

    let (w_ih, w_hh, b) = (widen(&w_ih), widen(&w_hh), widen(&b));
    let p = GruParams { w_ih: &w_ih, w_hh: &w_hh, b: &b, input, hidden: h };
    let xs: Vec<f64> = (0..k).flat_map(|_| widen(&x)).collect();
    let att64: Vec<f64> = (0..k).flat_map(|i| widen(&att[i * ld..i * ld + l])).collect();
    let lengths = vec![l; k];
    let si = SeqInput {
        x: &xs,
        lengths: &lengths,
        att: kind.uses_attention().then_some(&att64[..]),
        h0: None,
        batch: k,
        steps: l,
    };
    let want = reference::forward(kind, &p, &si);
    let what = |i: usize| format!("{kind:?} in {input} H {h} K {k} L {l} row {i}");
    for i in 0..k {
        let got = ws.state(i);
        assert_eq!(got.len(), h);
        for (j, (&g, &w)) in got.iter().zip(&want.last[i * h..(i + 1) * h]).enumerate() {
            assert!((g as f64 - w).abs() < 3e-5, "{}: unit {j}: {g} vs {w}", what(i));
        }
        for (j, (&s, &w)) in states[i * l * h..(i + 1) * l * h].iter().zip(&want.states[i * l * h..]).enumerate() {
            assert!((s as f64 - w).abs() < 3e-5, "{}: state {j}: {s} vs {w}", what(i));
        }
    }
}

#[test]
fn shared_rows_match_the_reference_for_every_kind() {
    let mut rng = ChaCha8Rng::seed_from_u64(21);
    let mut ws = SharedWorkspace::new();
    for kind in CellKind::ALL {
        for (input, h) in [(12, 9), (5, 13), (16, 36)] {
            for k in [1, 3, 33] {
                for l in [0, 1, 6] {
                    check(&mut rng, kind, input, h, k, l, &mut ws);
                }
            }
        }
    }
}

#[test]
fn one_fresh_workspace_per_case_gives_the_same_bits() {
    // Reusing a workspace (with stale values from a larger run) must not
    // change anything: states are reset and padding lanes stay zero.
    let (input, h, k, l) = (7, 11, 5, 4);
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let (w_ih, w_hh, b) = (
        rand_vec(&mut rng, 3 * h * input, -0.5, 0.5),
        rand_vec(&mut rng, 3 * h * h, -0.5, 0.5),
        rand_vec(&mut rng, 3 * h, -0.5, 0.5),
    );
    let x = rand_vec(&mut rng, l * input, -1.0, 1.0);
    let att = rand_vec(&mut rng, 40 * l, 0.0, 1.0);
    for kind in CellKind::ALL {
        let mut cell = GruCell::new(kind, input, h);
        cell.set_params(&GruParams { w_ih: &w_ih, w_hh: &w_hh, b: &b, input, hidden: h });
        let mut proj = vec![0.0; l * 3 * h];
        cell.project_shared(l, &x, input, &mut proj);
        let a = kind.uses_attention().then_some((&att[..], l));
        let mut used = SharedWorkspace::new();
        cell.forward_shared(40, l, &proj, a, &mut used, None);
        let ptrs = (used.hprev.as_ptr(), used.ru.as_ptr(), used.rh.as_ptr());
        cell.forward_shared(k, l, &proj, a, &mut used, None);
        assert_eq!(ptrs, (used.hprev.as_ptr(), used.ru.as_ptr(), used.rh.as_ptr()), "no reallocation");
        let mut fresh = SharedWorkspace::new();
        cell.forward_shared(k, l, &proj, a, &mut fresh, None);
        for i in 0..k {
            let bits = |w: &SharedWorkspace| w.state(i).iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&used), bits(&fresh), "{kind:?} row {i}");
            let (hp, o) = (used.hp, used.off[0]);
            assert!(used.hprev[o + i * hp + h..o + (i + 1) * hp].iter().all(|&v| v == 0.0), "padding lanes stay zero");
        }
    }
}

#[test]
#[should_panic(expected = "attention iff the kind uses it")]
fn attention_kinds_need_weights() {
    let mut cell = GruCell::new(CellKind::Augru, 2, 3);
    cell.set_params(&GruParams { w_ih: &[0.0; 18], w_hh: &[0.0; 27], b: &[0.0; 9], input: 2, hidden: 3 });
    cell.forward_shared(1, 1, &[0.0; 9], None, &mut SharedWorkspace::new(), None);
}
