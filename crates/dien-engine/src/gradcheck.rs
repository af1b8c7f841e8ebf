//! Gradient verification: analytic gradients against central finite
//! differences, reported per tensor.
//!
//! Everything here is `f64`: finite differences in `f32` cannot resolve the
//! 1e-6 relative agreement a correct backward pass reaches.

use std::fmt;

/// A named `f64` tensor (flat data; the shape is the caller's business).
#[derive(Clone, Debug, PartialEq)]
pub struct NamedTensor {
    /// Tensor name, e.g. `gru1.w_ih`.
    pub name: String,
    /// Flat values.
    pub data: Vec<f64>,
}

impl NamedTensor {
    /// A tensor named `name` holding `data`.
    pub fn new(name: impl Into<String>, data: Vec<f64>) -> Self {
        Self { name: name.into(), data }
    }
}

/// Agreement of one tensor's analytic gradient with the numeric one.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorCheck {
    /// Tensor name.
    pub name: String,
    /// Number of entries compared.
    pub len: usize,
    /// Largest `|analytic − numeric|`.
    pub max_abs: f64,
    /// Largest `|analytic − numeric| / max(|analytic|, |numeric|)` over the
    /// entries whose magnitude is at least [`GradReport::abs_floor`];
    /// entries below the floor are judged by `max_abs` alone.
    pub max_rel: f64,
    /// Flat index of the entry with the largest relative error (or absolute
    /// error when no entry is above the floor).
    pub worst_index: usize,
    /// Analytic value at `worst_index`.
    pub worst_analytic: f64,
    /// Numeric value at `worst_index`.
    pub worst_numeric: f64,
}

/// Per-tensor report of a gradient check.
#[derive(Clone, Debug, PartialEq)]
pub struct GradReport {
    /// One entry per tensor, in the order given.
    pub tensors: Vec<TensorCheck>,
    /// Finite-difference step used.
    pub eps: f64,
    /// Magnitude below which an entry is judged by absolute error only.
    pub abs_floor: f64,
}

impl GradReport {
    /// Largest relative error over all tensors.
    pub fn max_rel(&self) -> f64 {
        self.tensors.iter().map(|t| t.max_rel).fold(0.0, f64::max)
    }
    /// Largest absolute error over all tensors.
    pub fn max_abs(&self) -> f64 {
        self.tensors.iter().map(|t| t.max_abs).fold(0.0, f64::max)
    }
    /// True when every tensor has `max_rel <= rel_tol` and `max_abs <= abs_tol`.
    pub fn passes(&self, rel_tol: f64, abs_tol: f64) -> bool {
        self.tensors.iter().all(|t| t.max_rel <= rel_tol && t.max_abs <= abs_tol)
    }
    /// The tensors failing [`GradReport::passes`] with the same tolerances.
    pub fn failures(&self, rel_tol: f64, abs_tol: f64) -> Vec<&TensorCheck> {
        self.tensors.iter().filter(|t| !(t.max_rel <= rel_tol && t.max_abs <= abs_tol)).collect()
    }
}

impl fmt::Display for GradReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{:<28} {:>8} {:>12} {:>12}  worst (analytic vs numeric)", "tensor", "n", "max_abs", "max_rel")?;
        for t in &self.tensors {
            writeln!(
                f,
                "{:<28} {:>8} {:>12.3e} {:>12.3e}  [{}] {:.9e} vs {:.9e}",
                t.name, t.len, t.max_abs, t.max_rel, t.worst_index, t.worst_analytic, t.worst_numeric
            )?;
        }
        write!(f, "eps = {:e}, entries below {:e} judged by absolute error", self.eps, self.abs_floor)
    }
}

/// Compares one tensor's analytic gradient with a numeric one.
pub fn compare(name: &str, analytic: &[f64], numeric: &[f64], abs_floor: f64) -> TensorCheck {
    assert_eq!(analytic.len(), numeric.len(), "gradcheck: {name}: lengths differ");
    let mut out = TensorCheck {
        name: name.to_string(),
        len: analytic.len(),
        max_abs: 0.0,
        max_rel: 0.0,
        worst_index: 0,
        worst_analytic: analytic.first().copied().unwrap_or(0.0),
        worst_numeric: numeric.first().copied().unwrap_or(0.0),
    };
    let mut worst_abs_idx = 0;
    let mut any_rel = false;
    for (i, (&a, &n)) in analytic.iter().zip(numeric).enumerate() {
        let abs = (a - n).abs();
        // NaN anywhere must fail loudly, never compare as "small".
        let abs = if abs.is_nan() { f64::INFINITY } else { abs };
        if abs > out.max_abs {
            out.max_abs = abs;
            worst_abs_idx = i;
        }
        let mag = a.abs().max(n.abs());
        if mag >= abs_floor {
            let rel = abs / mag;
            if !any_rel || rel > out.max_rel {
                out.max_rel = rel;
                out.worst_index = i;
                any_rel = true;
            }
        }
    }
    if !any_rel {
        out.worst_index = worst_abs_idx;
    }
    if let (Some(&a), Some(&n)) = (analytic.get(out.worst_index), numeric.get(out.worst_index)) {
        out.worst_analytic = a;
        out.worst_numeric = n;
    }
    out
}

/// Central finite differences `(f(x+eps) − f(x−eps)) / 2eps` of `loss` with
/// respect to every entry of `tensors[which]`. The tensor is restored exactly
/// after each probe.
pub fn numeric_gradient(
    tensors: &mut [NamedTensor],
    which: usize,
    eps: f64,
    loss: &mut dyn FnMut(&[NamedTensor]) -> f64,
) -> Vec<f64> {
    let n = tensors[which].data.len();
    let mut g = vec![0.0; n];
    for (i, gi) in g.iter_mut().enumerate() {
        let x0 = tensors[which].data[i];
        tensors[which].data[i] = x0 + eps;
        let fp = loss(tensors);
        tensors[which].data[i] = x0 - eps;
        let fm = loss(tensors);
        tensors[which].data[i] = x0;
        *gi = (fp - fm) / (2.0 * eps);
    }
    g
}

/// Checks `analytic[i]` (the gradient of `loss` w.r.t. `tensors[i]`) for every
/// tensor against central finite differences with step `eps`.
///
/// `loss` is evaluated `2·Σ len` times; keep configurations tiny.
pub fn check(
    tensors: &mut [NamedTensor],
    analytic: &[Vec<f64>],
    eps: f64,
    abs_floor: f64,
    mut loss: impl FnMut(&[NamedTensor]) -> f64,
) -> GradReport {
    assert_eq!(tensors.len(), analytic.len(), "gradcheck: one analytic gradient per tensor");
    let mut report = GradReport { tensors: Vec::with_capacity(tensors.len()), eps, abs_floor };
    for i in 0..tensors.len() {
        assert_eq!(tensors[i].data.len(), analytic[i].len(), "gradcheck: {}: gradient length", tensors[i].name);
        let num = numeric_gradient(tensors, i, eps, &mut loss);
        report.tensors.push(compare(&tensors[i].name, &analytic[i], &num, abs_floor));
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quadratic_gradient_passes_and_wrong_gradient_fails() {
        // loss = Σ x_i² · w_0 + w_1 ; d/dx = 2 x w0, d/dw = [Σx², 1]
        let x = vec![0.3, -1.2, 2.5];
        let w = vec![1.7, 0.4];
        let mut t = vec![NamedTensor::new("x", x.clone()), NamedTensor::new("w", w.clone())];
        let s: f64 = x.iter().map(|v| v * v).sum();
        let good = vec![x.iter().map(|v| 2.0 * v * w[0]).collect(), vec![s, 1.0]];
        let loss = |t: &[NamedTensor]| t[0].data.iter().map(|v| v * v).sum::<f64>() * t[1].data[0] + t[1].data[1];
        let rep = check(&mut t, &good, 1e-5, 1e-8, loss);
        assert!(rep.passes(1e-8, 1e-8), "{rep}");
        assert_eq!(t[0].data, x, "tensors restored");
        let mut bad = good.clone();
        bad[1][0] *= 1.001;
        let rep = check(&mut t, &bad, 1e-5, 1e-8, loss);
        assert_eq!(rep.failures(1e-6, 1.0).len(), 1);
        assert_eq!(rep.failures(1e-6, 1.0)[0].name, "w");
        assert!(rep.to_string().contains("w"));
    }

    #[test]
    fn nan_is_a_failure() {
        let c = compare("t", &[f64::NAN], &[1.0], 1e-8);
        assert!(c.max_abs.is_infinite());
    }
}
