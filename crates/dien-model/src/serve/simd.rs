//! Small vector helpers of the request path: loads and stores of whole
//! `f32x8` vectors from slices whose rows are padded to a multiple of 8.

use wide::f32x8;

/// Lanes per vector.
pub(crate) const LANES: usize = 8;

/// `n` rounded up to a multiple of 8.
#[inline]
pub(crate) fn pad8(n: usize) -> usize {
    n.div_ceil(LANES) * LANES
}

/// The 8 values at `s[o..o + 8]`.
#[inline(always)]
pub(crate) fn load(s: &[f32], o: usize) -> f32x8 {
    f32x8::from(<[f32; 8]>::try_from(&s[o..o + LANES]).expect("8 lanes"))
}

/// Writes `v` to `s[o..o + 8]`.
#[inline(always)]
pub(crate) fn store(s: &mut [f32], o: usize, v: f32x8) {
    s[o..o + LANES].copy_from_slice(v.as_array());
}

/// Grows `v` to at least `n` values (never shrinks, so a later request of
/// the same or a smaller size reuses the buffer without allocating).
#[inline]
pub(crate) fn grow(v: &mut Vec<f32>, n: usize) {
    if v.len() < n {
        v.resize(n, 0.0);
    }
}

pub(crate) use crate::fast::dense::{axpy, dot, sigmoid};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_and_axpy_match_scalar_loops_for_odd_lengths() {
        for n in [0, 1, 7, 8, 9, 36, 41] {
            let a: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos()).collect();
            let want: f64 = a.iter().zip(&b).map(|(&x, &y)| x as f64 * y as f64).sum();
            assert!((dot(&a, &b) as f64 - want).abs() < 1e-5, "n = {n}");
            let mut y = b.clone();
            axpy(0.5, &a, &mut y);
            for i in 0..n {
                assert!((y[i] - (b[i] + 0.5 * a[i])).abs() < 1e-6);
            }
        }
    }

    #[test]
    fn sigmoid_is_stable_at_extremes() {
        assert_eq!(sigmoid(-200.0), 0.0);
        assert_eq!(sigmoid(200.0), 1.0);
        assert!((sigmoid(0.3) as f64 - 1.0 / (1.0 + (-0.3f64).exp())).abs() < 1e-7);
    }
}
