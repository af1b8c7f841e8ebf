//! The SGD update rule, `p ← p − lr·g`.

/// `p ← p − lr · (g · scale)`.
pub(super) fn sgd_update(p: &mut [f32], g: &[f32], lr: f32, scale: f32) {
    assert_eq!(p.len(), g.len());
    for (p, &g) in p.iter_mut().zip(g) {
        *p -= lr * (g * scale);
    }
}
