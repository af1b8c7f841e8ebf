//! Small vector helpers shared by the fused kernels of this crate and by
//! the crates built on it: the vector type [`V`] of the build and its
//! width [`LANES`], whole-vector loads and stores (with partial, masked
//! forms for row tails), the row padding they assume, a grow-only buffer,
//! and scalar `dot`, `axpy` and logistic `sigmoid` whose exact arithmetic
//! the model's training path relies on.
//!
//! # Vector width
//!
//! The kernels are written once against [`V`]: `wide::f32x8` (8 lanes, one
//! AVX register with the default x86-64-v3 build) or, when the build
//! enables AVX-512 (`-C target-cpu=x86-64-v4`, see docs/ARCHITECTURE.md),
//! `wide::f32x16` (16 lanes, one AVX-512 register). Everything that
//! depends on the width — row padding, packed weights, masks, tails — is
//! stated in terms of [`LANES`].
//!
//! Rows of packed weights and padded workspace rows are multiples of
//! [`LANES`] values ([`pad_lanes`]); [`load`]/[`store`] move whole vectors
//! and panic if the values are not all inside the slice; [`load_n`] and
//! [`store_n`] touch only the first `n ≤ LANES` of them.

/// The `f32` vector of this build (8 lanes; 16 with AVX-512).
#[cfg(not(all(target_arch = "x86_64", target_feature = "avx512f")))]
pub type V = wide::f32x8;
/// The `i32` vector of the same width as [`V`].
#[cfg(not(all(target_arch = "x86_64", target_feature = "avx512f")))]
pub type VI = wide::i32x8;
/// The `f32` vector of this build (8 lanes; 16 with AVX-512).
#[cfg(all(target_arch = "x86_64", target_feature = "avx512f"))]
pub type V = wide::f32x16;
/// The `i32` vector of the same width as [`V`].
#[cfg(all(target_arch = "x86_64", target_feature = "avx512f"))]
pub type VI = wide::i32x16;

/// Lanes per vector [`V`]: rows of packed weights and padded workspace rows
/// are multiples of this many values.
#[cfg(not(all(target_arch = "x86_64", target_feature = "avx512f")))]
pub const LANES: usize = 8;
/// Lanes per vector [`V`]: rows of packed weights and padded workspace rows
/// are multiples of this many values.
#[cfg(all(target_arch = "x86_64", target_feature = "avx512f"))]
pub const LANES: usize = 16;

/// `n` rounded up to a multiple of [`LANES`].
#[inline]
pub fn pad_lanes(n: usize) -> usize {
    n.div_ceil(LANES) * LANES
}

/// Loads `s[off..off + LANES]`. Panics if that range leaves `s`.
#[inline(always)]
pub fn load(s: &[f32], off: usize) -> V {
    V::from(<[f32; LANES]>::try_from(&s[off..off + LANES]).expect("one vector"))
}

/// `TAIL_MASK[8 − n..16 − n]` enables the low `n` lanes.
#[cfg(all(target_arch = "x86_64", target_feature = "avx", not(target_feature = "avx512f")))]
static TAIL_MASK: [i32; 16] = [-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0];

/// Loads `n ≤ LANES` values from `s[off..]` into the low lanes, zeroing the
/// rest (`n ≥ LANES` loads all). Panics if `s[off..off + min(n, LANES)]`
/// leaves `s`; nothing past it is read.
#[inline(always)]
pub fn load_n(s: &[f32], off: usize, n: usize) -> V {
    if n >= LANES {
        return load(s, off);
    }
    assert!(off + n <= s.len(), "load_n: out of bounds");
    #[cfg(all(target_arch = "x86_64", target_feature = "avx512f"))]
    {
        use std::arch::x86_64::{__m512, _mm512_maskz_loadu_ps};
        // SAFETY: AVX-512F is enabled at compile time (cfg); the mask
        // enables the low `n < 16` lanes and the masked load reads only
        // those, `s[off..off + n]`, checked above (masked-off lanes never
        // fault). A `__m512` and a `[f32; 16]` are the same 64 bytes, any
        // bit pattern valid.
        unsafe {
            let v = _mm512_maskz_loadu_ps((1u16 << n) - 1, s.as_ptr().add(off));
            V::from(std::mem::transmute::<__m512, [f32; LANES]>(v))
        }
    }
    #[cfg(all(target_arch = "x86_64", target_feature = "avx", not(target_feature = "avx512f")))]
    {
        use std::arch::x86_64::{__m256i, _mm256_loadu_si256, _mm256_maskload_ps};
        // SAFETY: AVX is enabled at compile time (cfg); `TAIL_MASK[8 − n..]`
        // has 8 elements since n < 8; the masked load reads only the `n`
        // enabled lanes, `s[off..off + n]`, checked above. A `__m256` and a
        // `[f32; 8]` are the same 32 bytes, any bit pattern valid.
        unsafe {
            let m = _mm256_loadu_si256(TAIL_MASK.as_ptr().add(LANES - n).cast::<__m256i>());
            let v = _mm256_maskload_ps(s.as_ptr().add(off), m);
            V::from(std::mem::transmute::<std::arch::x86_64::__m256, [f32; LANES]>(v))
        }
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "avx")))]
    {
        let mut t = [0.0f32; LANES];
        t[..n].copy_from_slice(&s[off..off + n]);
        V::from(t)
    }
}

/// Stores all lanes of `v` at `s[off..]`. Panics if they do not fit.
#[inline(always)]
pub fn store(s: &mut [f32], off: usize, v: V) {
    s[off..off + LANES].copy_from_slice(&v.to_array());
}

/// Stores the low `n ≤ LANES` lanes of `v` at `s[off..]` (a masked store:
/// the values past `off + n` are left untouched; `n ≥ LANES` stores all).
/// Panics if the written range leaves `s`.
#[inline(always)]
pub fn store_n(s: &mut [f32], off: usize, n: usize, v: V) {
    if n >= LANES {
        return store(s, off, v);
    }
    assert!(off + n <= s.len(), "store_n: out of bounds");
    #[cfg(all(target_arch = "x86_64", target_feature = "avx512f"))]
    {
        use std::arch::x86_64::{__m512, _mm512_mask_storeu_ps};
        // SAFETY: AVX-512F is enabled at compile time (cfg); the mask
        // enables the low `n < 16` lanes and the masked store writes only
        // those, `s[off..off + n]`, checked above and uniquely borrowed.
        unsafe {
            _mm512_mask_storeu_ps(
                s.as_mut_ptr().add(off),
                (1u16 << n) - 1,
                std::mem::transmute::<[f32; LANES], __m512>(v.to_array()),
            );
        }
    }
    #[cfg(all(target_arch = "x86_64", target_feature = "avx", not(target_feature = "avx512f")))]
    {
        use std::arch::x86_64::{__m256, __m256i, _mm256_loadu_si256, _mm256_maskstore_ps};
        // SAFETY: AVX is enabled at compile time (cfg); the mask slice has 8
        // elements since n < 8; the masked store writes only the `n` enabled
        // lanes, `s[off..off + n]`, checked above and uniquely borrowed.
        unsafe {
            let m = _mm256_loadu_si256(TAIL_MASK.as_ptr().add(LANES - n).cast::<__m256i>());
            _mm256_maskstore_ps(s.as_mut_ptr().add(off), m, std::mem::transmute::<[f32; LANES], __m256>(v.to_array()));
        }
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "avx")))]
    s[off..off + n].copy_from_slice(&v.to_array()[..n]);
}

/// Asks the cache to fetch `s[off..off + len]` (clamped to `s`): a hint for
/// rows visited in an order too scattered for the hardware prefetchers
/// (the cells' time loops read one step of each sample at a time; the
/// embedding tables are read and their gradients written by row ids).
/// Has no visible effect.
#[inline(always)]
pub fn prefetch<T>(s: &[T], off: usize, len: usize) {
    let end = (off + len).min(s.len());
    if off >= end {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        // One hint per 64-byte line.
        let step = (64 / std::mem::size_of::<T>().max(1)).max(1);
        let mut o = off;
        while o < end {
            // SAFETY: a prefetch never faults and has no visible effect; the
            // address is inside `s` (o < end ≤ s.len()).
            unsafe { _mm_prefetch::<_MM_HINT_T0>(s.as_ptr().add(o).cast::<i8>()) };
            o += step;
        }
        // SAFETY: as above; `end − 1` is inside `s`.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(s.as_ptr().add(end - 1).cast::<i8>()) };
    }
}

/// Lane masks for a width-`n` row split in vectors of [`LANES`]: vector `v` keeps
/// the lanes of columns `< n` (all bits set) and zeroes the others (`&`).
pub fn lane_masks(n: usize) -> Vec<V> {
    (0..n.div_ceil(LANES))
        .map(|v| {
            let mut m = [0.0f32; LANES];
            for (l, x) in m.iter_mut().enumerate() {
                if v * LANES + l < n {
                    *x = f32::from_bits(u32::MAX);
                }
            }
            V::from(m)
        })
        .collect()
}

/// Grows `v` to at least `n` values (new ones zero: `T::default()`). Never shrinks, so a
/// workspace that has seen a size never allocates for it again.
#[inline]
pub fn grow<T: Copy + Default>(v: &mut Vec<T>, n: usize) {
    if v.len() < n {
        v.resize(n, T::default());
    }
}

/// Dot product of two slices (over the shorter length): fused
/// multiply-adds over the whole vectors ([`LANES`] wide), a horizontal sum, then the tail
/// added one product at a time. This order is part of the contract:
/// training results depend on it bit for bit.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = V::ZERO;
    let mut ca = a.chunks_exact(LANES);
    let mut cb = b.chunks_exact(LANES);
    for (x, y) in (&mut ca).zip(&mut cb) {
        let x = V::from(<[f32; LANES]>::try_from(x).expect("one vector"));
        let y = V::from(<[f32; LANES]>::try_from(y).expect("one vector"));
        acc = x.mul_add(y, acc);
    }
    let mut s = acc.reduce_add();
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        s += x * y;
    }
    s
}

/// `y += alpha·x` (over the shorter length), one fused multiply-add per
/// element.
#[inline]
pub fn axpy(alpha: f32, x: &[f32], y: &mut [f32]) {
    for (yi, &xi) in y.iter_mut().zip(x) {
        *yi = alpha.mul_add(xi, *yi);
    }
}

/// Scalar logistic sigmoid `1 / (1 + e^{−x})` without overflow (for
/// `x < 0` it is evaluated as `e^x / (1 + e^x)`), with the standard
/// library's `exp`, unlike the vector [`crate::vecmath::simd::sigmoid_v`].
/// The same function as the scalar reference of the vector math.
pub use crate::vecmath::scalar::sigmoid;

#[cfg(test)]
mod tests {
    use super::*;

    const LENS: [usize; 12] = [0, 1, 2, 7, 8, 9, 15, 16, 17, 36, 41, 100];

    fn seq(n: usize, f: f32) -> Vec<f32> {
        (0..n).map(|i| (i as f32 * f).sin()).collect()
    }

    #[test]
    fn dot_matches_its_scalar_statement_bit_for_bit() {
        for n in LENS {
            let (a, b) = (seq(n, 0.37), seq(n, 0.11));
            // The documented order: lane-wise FMA chains, lane sum, tail.
            let body = n / LANES * LANES;
            let mut lanes = V::ZERO;
            for c in 0..n / LANES {
                lanes = load(&a, c * LANES).mul_add(load(&b, c * LANES), lanes);
            }
            let mut want = lanes.reduce_add();
            for i in body..n {
                want += a[i] * b[i];
            }
            assert_eq!(dot(&a, &b).to_bits(), want.to_bits(), "n = {n}");
            let f64dot: f64 = a.iter().zip(&b).map(|(&x, &y)| x as f64 * y as f64).sum();
            assert!((dot(&a, &b) as f64 - f64dot).abs() < 1e-5, "n = {n}");
        }
    }

    #[test]
    fn axpy_matches_a_scalar_loop() {
        for n in LENS {
            let (x, y0) = (seq(n, 0.37), seq(n, 0.11));
            let mut y = y0.clone();
            axpy(0.5, &x, &mut y);
            for i in 0..n {
                assert_eq!(y[i].to_bits(), 0.5f32.mul_add(x[i], y0[i]).to_bits(), "n = {n}, i = {i}");
            }
        }
    }

    #[test]
    fn sigmoid_is_accurate_and_stable_at_extremes() {
        assert_eq!(sigmoid(-200.0), 0.0);
        assert_eq!(sigmoid(200.0), 1.0);
        assert_eq!(sigmoid(0.0), 0.5);
        for x in [-30.0f32, -3.5, -0.3, 0.3, 3.5, 30.0] {
            let want = 1.0 / (1.0 + (-(x as f64)).exp());
            assert!((sigmoid(x) as f64 - want).abs() < 1e-7 * want.max(1e-30) + 1e-7, "x = {x}");
        }
    }

    #[test]
    fn pad_lanes_and_grow() {
        let l = LANES;
        assert_eq!([0, 1, l - 1, l, l + 1, 36].map(pad_lanes), [0, l, l, l, 2 * l, 36usize.div_ceil(l) * l]);
        let mut v = vec![1.0f32; 3];
        grow(&mut v, 2);
        assert_eq!(v, [1.0; 3], "never shrinks");
        grow(&mut v, 5);
        assert_eq!(v, [1.0, 1.0, 1.0, 0.0, 0.0]);
        let p = v.as_ptr();
        grow(&mut v, 5);
        assert_eq!(v.as_ptr(), p, "no reallocation for a size already seen");
    }

    #[test]
    fn whole_and_partial_loads_and_stores_touch_exactly_their_lanes() {
        let len = 2 * LANES + 4;
        let s: Vec<f32> = (0..len).map(|i| i as f32 + 1.0).collect();
        for n in 0..=LANES + 1 {
            let w = n.min(LANES);
            for off in [0, 3, len - w] {
                let v = load_n(&s, off, n).to_array();
                for (l, &x) in v.iter().enumerate() {
                    assert_eq!(x, if l < w { s[off + l] } else { 0.0 }, "load_n(off {off}, n {n}) lane {l}");
                }
                let mut d = vec![-7.0f32; len];
                store_n(&mut d, off, n, V::splat(5.0));
                for (j, &x) in d.iter().enumerate() {
                    assert_eq!(x, if (off..off + w).contains(&j) { 5.0 } else { -7.0 }, "store_n(off {off}, n {n})");
                }
            }
        }
        assert_eq!(load(&s, 3).to_array()[..], s[3..3 + LANES]);
        let mut d = vec![0.0f32; LANES + 1];
        store(&mut d, 1, load(&s, 0));
        assert_eq!(&d[1..], &s[..LANES]);
        // Prefetch has no visible effect, also at the ends of the slice.
        prefetch(&s, 0, 100);
        prefetch(&s, len - 1, 1);
        prefetch(&s, len + 5, 4);
    }

    #[test]
    fn partial_load_store_and_masks() {
        let s: Vec<f32> = (0..2 * LANES).map(|i| i as f32).collect();
        let v = load_n(&s, 9, 3).to_array();
        assert_eq!(v[..3], [9.0, 10.0, 11.0]);
        assert!(v[3..].iter().all(|&x| x == 0.0));
        let mut d = vec![-1.0f32; 2 * LANES];
        store_n(&mut d, 2, 5, load(&s, 0));
        assert_eq!(&d[..8], &[-1.0, -1.0, 0.0, 1.0, 2.0, 3.0, 4.0, -1.0]);
        assert!(d[8..].iter().all(|&x| x == -1.0));
        let m = lane_masks(LANES + 3);
        assert_eq!(m.len(), 2);
        let ones = V::splat(3.0);
        assert_eq!((ones & m[0]).to_array(), [3.0; LANES]);
        let tail = (ones & m[1]).to_array();
        assert_eq!(tail[..3], [3.0; 3]);
        assert!(tail[3..].iter().all(|&x| x == 0.0));
    }

    #[test]
    #[should_panic(expected = "out of bounds")]
    fn partial_store_past_the_end_panics() {
        store_n(&mut [0.0f32; 6], 3, 4, V::ZERO);
    }

    #[test]
    #[should_panic(expected = "out of bounds")]
    fn partial_load_past_the_end_panics() {
        let _ = load_n(&[0.0f32; 6], 3, 4);
    }
}
