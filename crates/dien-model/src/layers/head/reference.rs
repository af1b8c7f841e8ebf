//! The prediction head in `f64` (docs/MODEL.md#prediction-head): BatchNorm, fc1, Dice, fc2, Dice,
//! fc3 over the whole batch, forward and training-mode backward.

use crate::mode::Mode;
use crate::params::ParamStore;
use crate::reference::layers::add;
use crate::reference::layers::{
    DiceCache, NormCache, batch_mean_var, batch_norm_backward, batch_norm_forward, dense_backward, dense_forward,
    dice_backward, dice_forward,
};

/// Head activations (docs/MODEL.md#prediction-head), all `[B, width]`.
pub(crate) struct HeadCache {
    pub x: Vec<f64>,
    bn: NormCache,
    y0: Vec<f64>,
    a1: Vec<f64>,
    dice1: DiceCache,
    y1: Vec<f64>,
    a2: Vec<f64>,
    dice2: DiceCache,
    y2: Vec<f64>,
}

/// Statistics of a normalising layer: the batch's own in training (recorded
/// under the running buffers' names), the running ones in evaluation.
fn norm_stats(
    p: &ParamStore<f64>,
    layer: &str,
    x: &[f64],
    rows: usize,
    cols: usize,
    mode: Mode,
    record: &mut Vec<(String, Vec<f64>)>,
) -> (Vec<f64>, Vec<f64>) {
    let (mean_name, var_name) = (format!("{layer}.running_mean"), format!("{layer}.running_var"));
    match mode {
        Mode::Train => {
            let (m, v) = batch_mean_var(x, rows, cols);
            record.push((mean_name, m.clone()));
            record.push((var_name, v.clone()));
            (m, v)
        }
        Mode::Eval => (p.get(&mean_name).to_vec(), p.get(&var_name).to_vec()),
    }
}

/// Dense layer applied to every row of `x [rows, in]`.
fn dense_rows(w: &[f64], b: &[f64], x: &[f64], rows: usize) -> Vec<f64> {
    let (n_out, n_in) = (b.len(), x.len() / rows);
    let mut y = vec![0.0; rows * n_out];
    for r in 0..rows {
        dense_forward(w, b, &x[r * n_in..(r + 1) * n_in], &mut y[r * n_out..(r + 1) * n_out]);
    }
    y
}

/// Backward of [`dense_rows`]; returns `∂L/∂x [rows, in]`.
fn dense_rows_backward(
    w: &[f64],
    x: &[f64],
    dy: &[f64],
    rows: usize,
    grads: &mut ParamStore<f64>,
    layer: &str,
) -> Vec<f64> {
    let (n_in, n_out) = (x.len() / rows, dy.len() / rows);
    let mut dw = vec![0.0; w.len()];
    let mut db = vec![0.0; n_out];
    let mut dx = vec![0.0; x.len()];
    for r in 0..rows {
        dense_backward(
            w,
            &x[r * n_in..(r + 1) * n_in],
            &dy[r * n_out..(r + 1) * n_out],
            &mut dw,
            &mut db,
            Some(&mut dx[r * n_in..(r + 1) * n_in]),
        );
    }
    add(grads, &format!("{layer}.w"), &dw);
    add(grads, &format!("{layer}.b"), &db);
    dx
}

pub(crate) fn head_forward(
    p: &ParamStore<f64>,
    x: Vec<f64>,
    rows: usize,
    mode: Mode,
    record: &mut Vec<(String, Vec<f64>)>,
) -> (HeadCache, Vec<f64>) {
    let cols = x.len() / rows;
    let (m, v) = norm_stats(p, "head.bn", &x, rows, cols, mode, record);
    let mut y0 = vec![0.0; x.len()];
    let bn = batch_norm_forward(&x, rows, cols, p.get("head.bn.gamma"), p.get("head.bn.beta"), &m, &v, &mut y0);

    let a1 = dense_rows(p.get("head.fc1.w"), p.get("head.fc1.b"), &y0, rows);
    let n1 = a1.len() / rows;
    let (m, v) = norm_stats(p, "head.dice1", &a1, rows, n1, mode, record);
    let mut y1 = vec![0.0; a1.len()];
    let dice1 = dice_forward(&a1, rows, n1, p.get("head.dice1.alpha"), &m, &v, &mut y1);

    let a2 = dense_rows(p.get("head.fc2.w"), p.get("head.fc2.b"), &y1, rows);
    let n2 = a2.len() / rows;
    let (m, v) = norm_stats(p, "head.dice2", &a2, rows, n2, mode, record);
    let mut y2 = vec![0.0; a2.len()];
    let dice2 = dice_forward(&a2, rows, n2, p.get("head.dice2.alpha"), &m, &v, &mut y2);

    let logits = dense_rows(p.get("head.fc3.w"), p.get("head.fc3.b"), &y2, rows);
    (HeadCache { x, bn, y0, a1, dice1, y1, a2, dice2, y2 }, logits)
}

/// Training-mode head backward; returns `∂L/∂x [B, D]`.
pub(crate) fn head_backward(p: &ParamStore<f64>, c: &HeadCache, dz: &[f64], grads: &mut ParamStore<f64>) -> Vec<f64> {
    let rows = dz.len();
    let dy2 = dense_rows_backward(p.get("head.fc3.w"), &c.y2, dz, rows, grads, "head.fc3");
    let n2 = c.a2.len() / rows;
    let mut da2 = vec![0.0; c.a2.len()];
    let mut dalpha = vec![0.0; n2];
    dice_backward(&c.dice2, &c.a2, rows, n2, p.get("head.dice2.alpha"), &dy2, true, &mut dalpha, &mut da2);
    add(grads, "head.dice2.alpha", &dalpha);

    let dy1 = dense_rows_backward(p.get("head.fc2.w"), &c.y1, &da2, rows, grads, "head.fc2");
    let n1 = c.a1.len() / rows;
    let mut da1 = vec![0.0; c.a1.len()];
    let mut dalpha = vec![0.0; n1];
    dice_backward(&c.dice1, &c.a1, rows, n1, p.get("head.dice1.alpha"), &dy1, true, &mut dalpha, &mut da1);
    add(grads, "head.dice1.alpha", &dalpha);

    let dy0 = dense_rows_backward(p.get("head.fc1.w"), &c.y0, &da1, rows, grads, "head.fc1");
    let cols = c.x.len() / rows;
    let (mut dgamma, mut dbeta, mut dx) = (vec![0.0; cols], vec![0.0; cols], vec![0.0; c.x.len()]);
    batch_norm_backward(&c.bn, rows, cols, p.get("head.bn.gamma"), &dy0, true, &mut dgamma, &mut dbeta, &mut dx);
    add(grads, "head.bn.gamma", &dgamma);
    add(grads, "head.bn.beta", &dbeta);
    dx
}
