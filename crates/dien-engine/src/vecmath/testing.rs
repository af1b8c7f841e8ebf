//! Accuracy harness for the vector math: every function is swept against an
//! `f64` reference and the worst input is reported.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Size of one `f32` ulp at the magnitude of `r` (the spacing of `f32`
/// values around `r`); in the subnormal range, the smallest subnormal.
pub fn ulp_f32(r: f64) -> f64 {
    let a = r.abs();
    if a < f64::from(f32::MIN_POSITIVE) {
        return 2f64.powi(-149);
    }
    // Unbiased binary exponent of `a`, read from its f64 bits (exact, unlike log2).
    let e = ((a.to_bits() >> 52) & 0x7ff) as i32 - 1023;
    2f64.powi(e - 23)
}

/// Error of `y` against the exact value `r`, in ulps of `f32` at `r`.
///
/// Infinite when exactly one of them is NaN, when `r` rounds to an infinity
/// that `y` is not (or `y` is infinite and `r` is not), or when `r` is an
/// exact zero and `y` is a zero of the other sign.
pub fn ulp_error(y: f32, r: f64) -> f64 {
    if y.is_nan() || r.is_nan() {
        return if y.is_nan() && r.is_nan() { 0.0 } else { f64::INFINITY };
    }
    let rf = r as f32;
    if rf.is_infinite() || y.is_infinite() {
        return if y == rf { 0.0 } else { f64::INFINITY };
    }
    if r == 0.0 && y == 0.0 && y.is_sign_negative() != r.is_sign_negative() {
        return f64::INFINITY;
    }
    (f64::from(y) - r).abs() / ulp_f32(r)
}

/// Worst errors found by one sweep.
#[derive(Debug, Clone, Copy)]
pub struct Report {
    /// Number of inputs checked.
    pub points: usize,
    /// Largest error in ulps and the input that produced it.
    pub max_ulp: f64,
    pub worst_ulp_input: f32,
    /// Largest relative error where the reference is above the relative
    /// floor, and its input.
    pub max_rel: f64,
    pub worst_rel_input: f32,
}

/// Checks a slice function against an `f64` reference, rten-style.
#[derive(Clone, Copy)]
pub struct UnaryOpTester {
    /// Name used in failure messages.
    pub name: &'static str,
    /// Exact (f64) reference.
    pub reference: fn(f64) -> f64,
    /// Function under test, slice form.
    pub op: fn(&[f32], &mut [f32]),
    /// The useful range of the function, swept by the grid and random tests.
    pub range: (f32, f32),
    /// Largest error allowed, in ulps (see [`ulp_error`]).
    pub max_ulp: f64,
    /// Optional `(bound, floor)`: relative error at most `bound` wherever the
    /// reference's magnitude is at least `floor`.
    pub max_rel: Option<(f64, f64)>,
}

impl UnaryOpTester {
    /// Runs the op on `xs` in one call and measures its errors.
    pub fn measure(&self, xs: &[f32]) -> Report {
        let mut ys = vec![f32::NAN; xs.len()];
        (self.op)(xs, &mut ys);
        let mut rep = Report {
            points: xs.len(),
            max_ulp: 0.0,
            worst_ulp_input: f32::NAN,
            max_rel: 0.0,
            worst_rel_input: f32::NAN,
        };
        for (&x, &y) in xs.iter().zip(&ys) {
            let r = (self.reference)(f64::from(x));
            let e = ulp_error(y, r);
            if e > rep.max_ulp || e.is_nan() {
                rep.max_ulp = e;
                rep.worst_ulp_input = x;
            }
            if let Some((_, floor)) = self.max_rel
                && r.abs() >= floor
                && r.is_finite()
            {
                let rel = (f64::from(y) - r).abs() / r.abs();
                if rel > rep.max_rel || rel.is_nan() {
                    rep.max_rel = rel;
                    rep.worst_rel_input = x;
                }
            }
        }
        rep
    }

    /// Measures `xs` and panics, naming the worst input, if a bound is broken.
    pub fn check(&self, xs: &[f32], what: &str) -> Report {
        let rep = self.measure(xs);
        self.print(&rep, what);
        self.assert_within_bounds(&rep, what);
        rep
    }

    /// Prints a report; shown with `--nocapture`: the measured worst cases
    /// behind the stated bounds.
    fn print(&self, rep: &Report, what: &str) {
        eprintln!(
            "{:<12} {what:<14} {:>10} points: max {:.3} ulp at x = {:e}; max rel {:.3e} at x = {:e}",
            self.name, rep.points, rep.max_ulp, rep.worst_ulp_input, rep.max_rel, rep.worst_rel_input
        );
    }

    /// Panics, naming the worst input, if the report breaks a bound.
    fn assert_within_bounds(&self, rep: &Report, what: &str) {
        let show = |x: f32| {
            let mut y = [0.0f32];
            (self.op)(&[x], &mut y);
            format!("x = {x:e} ({:#010x}): got {:e}, reference {:e}", x.to_bits(), y[0], (self.reference)(f64::from(x)))
        };
        assert!(
            rep.max_ulp <= self.max_ulp,
            "{} ({what}): {:.3} ulp > {} ulp allowed; {}",
            self.name,
            rep.max_ulp,
            self.max_ulp,
            show(rep.worst_ulp_input)
        );
        if let Some((bound, floor)) = self.max_rel {
            assert!(
                rep.max_rel <= bound,
                "{} ({what}): relative error {:e} > {bound:e} (where |ref| >= {floor:e}); {}",
                self.name,
                rep.max_rel,
                show(rep.worst_rel_input)
            );
        }
    }

    /// Dense, evenly spaced grid of `n` points over the range, ends included.
    pub fn check_grid(&self, n: usize) -> Report {
        let (lo, hi) = (f64::from(self.range.0), f64::from(self.range.1));
        let xs: Vec<f32> = (0..n).map(|i| (lo + (hi - lo) * i as f64 / (n - 1) as f64) as f32).collect();
        self.check(&xs, "grid")
    }

    /// Geometric sweep of magnitudes from the smallest subnormal up to the
    /// largest end of the range, both signs: where relative accuracy near
    /// zero (or far into a tail) is easy to lose.
    pub fn check_log_grid(&self) -> Report {
        let top = f64::from(self.range.0.abs().max(self.range.1.abs()));
        let mut xs = Vec::new();
        let mut m = f64::from(f32::from_bits(1));
        while m <= top {
            xs.push(m as f32);
            xs.push(-m as f32);
            m *= 1.001;
        }
        self.check(&xs, "log grid")
    }

    /// `n` uniform random inputs in the range.
    pub fn check_random(&self, n: usize, seed: u64) -> Report {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let xs: Vec<f32> = (0..n).map(|_| rng.random_range(self.range.0..=self.range.1)).collect();
        self.check(&xs, "random")
    }

    /// `n` random bit patterns: every sign, exponent, subnormals, infinities
    /// and NaNs, far outside the useful range.
    pub fn check_random_bits(&self, n: usize, seed: u64) -> Report {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let xs: Vec<f32> = (0..n).map(|_| f32::from_bits(rng.random())).collect();
        self.check(&xs, "random bits")
    }

    /// Every `f32` with `min_abs ≤ |x| < max_abs`, both signs, in chunks.
    pub fn check_all_floats(&self, min_abs: f32, max_abs: f32) -> Report {
        const CHUNK: u32 = 1 << 20;
        let mut worst: Option<Report> = None;
        let mut xs = Vec::with_capacity(2 * CHUNK as usize);
        let (lo, hi) = (min_abs.to_bits(), max_abs.to_bits());
        let mut start = lo;
        while start < hi {
            let end = hi.min(start.saturating_add(CHUNK));
            xs.clear();
            for b in start..end {
                xs.push(f32::from_bits(b));
                xs.push(-f32::from_bits(b));
            }
            let r = self.measure(&xs);
            self.assert_within_bounds(&r, "all floats");
            worst = Some(match worst {
                None => r,
                Some(w) => Report {
                    points: w.points + r.points,
                    max_ulp: w.max_ulp.max(r.max_ulp),
                    worst_ulp_input: if r.max_ulp > w.max_ulp { r.worst_ulp_input } else { w.worst_ulp_input },
                    max_rel: w.max_rel.max(r.max_rel),
                    worst_rel_input: if r.max_rel > w.max_rel { r.worst_rel_input } else { w.worst_rel_input },
                },
            });
            start = end;
        }
        let w = worst.expect("empty magnitude range");
        self.print(&w, "all floats");
        w
    }

    /// Every length `0..=67` (all tail sizes, several full registers): the
    /// values are checked and nothing past the end of `out` is written.
    pub fn check_lengths(&self, seed: u64) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        for len in 0..=67usize {
            let xs: Vec<f32> = (0..len).map(|_| rng.random_range(self.range.0..=self.range.1)).collect();
            let sentinel = -1234.5f32;
            let mut out = vec![sentinel; len + 9];
            (self.op)(&xs, &mut out[..len]);
            assert!(out[len..].iter().all(|&v| v == sentinel), "{}: wrote past the end at len {len}", self.name);
            for (&x, &y) in xs.iter().zip(&out) {
                let e = ulp_error(y, (self.reference)(f64::from(x)));
                assert!(e <= self.max_ulp, "{}: len {len}, x = {x:e}: got {y:e}, {e:.3} ulp", self.name);
            }
        }
    }
}

/// Checks exact results: `expected` NaN means any NaN; otherwise `==`, and
/// with `zero_sign_matters` a zero must also carry the expected sign.
pub fn check_special(name: &str, op: fn(&[f32], &mut [f32]), cases: &[(f32, f32)], zero_sign_matters: bool) {
    let xs: Vec<f32> = cases.iter().map(|c| c.0).collect();
    let mut ys = vec![0.0f32; xs.len()];
    op(&xs, &mut ys);
    for (&(x, want), &y) in cases.iter().zip(&ys) {
        let ok = if want.is_nan() {
            y.is_nan()
        } else {
            y == want && (!zero_sign_matters || want != 0.0 || y.is_sign_negative() == want.is_sign_negative())
        };
        assert!(ok, "{name}({x:e}) = {y:e}, expected {want:e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulp_error_measures_spacing_and_special_cases() {
        // One f32 step at 1.0 (upwards) is one ulp.
        assert_eq!(ulp_error(1.0f32.next_up(), 1.0), 1.0);
        assert_eq!(ulp_error(2.0, 2.0), 0.0);
        // Subnormals are measured in units of the smallest subnormal.
        let s = f32::from_bits(3);
        assert_eq!(ulp_error(s, f64::from(f32::from_bits(1))), 2.0);
        assert_eq!(ulp_error(f32::NAN, f64::NAN), 0.0);
        assert_eq!(ulp_error(1.0, f64::NAN), f64::INFINITY);
        assert_eq!(ulp_error(f32::INFINITY, 1e39), 0.0);
        assert_eq!(ulp_error(f32::MAX, 1e39), f64::INFINITY);
        assert_eq!(ulp_error(f32::INFINITY, 1.0), f64::INFINITY);
        assert_eq!(ulp_error(-0.0, 0.0), f64::INFINITY);
        assert_eq!(ulp_error(-0.0, -0.0), 0.0);
    }

    #[test]
    #[should_panic(expected = "ulp allowed")]
    fn tester_reports_an_inaccurate_function() {
        // A function that is off by ~2^-20 relative must fail a 4 ulp bound.
        let t = UnaryOpTester {
            name: "sloppy",
            reference: f64::exp,
            op: |x, out| x.iter().zip(out).for_each(|(x, o)| *o = x.exp() * (1.0 + 1e-6)),
            range: (-1.0, 1.0),
            max_ulp: 4.0,
            max_rel: None,
        };
        t.check_grid(1000);
    }
}
