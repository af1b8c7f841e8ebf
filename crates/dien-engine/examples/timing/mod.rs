//! The timing loop the kernel examples share.

use std::time::Instant;

/// Best of 5 timings of `reps` calls of `f`, in seconds per call.
pub fn best_of(reps: usize, mut f: impl FnMut()) -> f64 {
    (0..5)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..reps {
                f();
            }
            t.elapsed().as_secs_f64() / reps as f64
        })
        .fold(f64::INFINITY, f64::min)
}
