//! A dense layer's weight on the request path, packed for the predictor's
//! [`Precision`]: `f32` (the engine's register-tiled product) or bf16
//! (the engine's AVX512_BF16 product, `dien_engine::gemm::bf16`).

use std::str::FromStr;

use dien_engine::gemm::bf16::{Bf16Cpu, Bf16Rows, PackedBf16};
use dien_engine::gemm::tile::{Accumulate, Packed, gemm_packed};

/// The arithmetic of the request path's large products.
///
/// - `F32` (the default): every product in `f32`.
/// - `Bf16`: the products of the attention MLP (the query layer, the
///   three parts of the first layer, the second layer), the prediction
///   head's two hidden layers and the GRUs' input projections take their
///   weights and inputs rounded to bf16 (round to nearest even) and
///   accumulate in `f32` (`vdpbf16ps`); everything else (embeddings, the
///   recurrent products, activations, softmax, normalisation, the last
///   layers' dot products) stays `f32`. Needs a CPU with AVX512_BF16.
///   Its cost in accuracy and its speed: docs/PERFORMANCE.md, "bf16
///   (opt-in)".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Precision {
    /// `f32` products (the default).
    #[default]
    F32,
    /// bf16 weights and inputs, `f32` accumulation.
    Bf16,
}

impl Precision {
    /// Every precision, in the order of their names.
    pub const ALL: [Precision; 2] = [Precision::F32, Precision::Bf16];

    /// The name used on command lines (`f32`, `bf16`).
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
        }
    }

    /// Whether this CPU can run it (`F32` always; `Bf16` with AVX512_BF16).
    pub fn supported(self) -> bool {
        self == Precision::F32 || Bf16Cpu::detect().is_some()
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Precision {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| format!("unknown precision `{s}` (expected one of: f32, bf16)"))
    }
}

/// `Wᵀ` of a dense layer `W [out = n, in = k]`, packed for `x · Wᵀ` in
/// one precision.
#[derive(Clone, Debug)]
pub(crate) enum Linear {
    /// The `f32` pack.
    F32(Packed),
    /// The bf16 pack and the token of the CPU that runs it.
    Bf16(PackedBf16, Bf16Cpu),
}

impl Linear {
    /// `Wᵀ` of a row-major `w [n, k]`, in `f32`.
    pub(crate) fn new(w: &[f32], n: usize, k: usize) -> Self {
        Linear::F32(Packed::from_weight_t(w, n, k))
    }

    /// This weight in bf16 (unchanged if it already is).
    pub(crate) fn to_bf16(&self, cpu: Bf16Cpu) -> Self {
        match self {
            Linear::F32(p) => {
                let mut b = PackedBf16::new();
                b.fill(p.data(), p.k(), p.n(), p.ld(), 1);
                Linear::Bf16(b, cpu)
            }
            Linear::Bf16(..) => self.clone(),
        }
    }

    /// `C[m, n] (+)= A[m, k] · Wᵀ` with `A` row `i` at `a[i·lda..]` and `C`
    /// row `i` at `c[i·ldc..]` (first `n` columns), as
    /// [`gemm_packed`]; `ws` holds the bf16 copy of `A` (untouched in
    /// `f32`). Never allocates once `ws` has grown.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn gemm(
        &self,
        m: usize,
        a: &[f32],
        lda: usize,
        c: &mut [f32],
        ldc: usize,
        acc: Accumulate,
        ws: &mut Bf16Rows,
    ) {
        match self {
            Linear::F32(p) => gemm_packed(m, a, lda, p, c, ldc, acc),
            Linear::Bf16(p, cpu) => cpu.gemm_f32(m, a, lda, p, c, ldc, acc, ws),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dien_engine::gemm::bf16::gemm_bf16_ref;
    use dien_engine::gemm::tile::gemm_packed_ref;

    #[test]
    fn names_round_trip_and_f32_is_the_default() {
        for p in Precision::ALL {
            assert_eq!(p.name().parse::<Precision>().unwrap(), p);
            assert_eq!(p.to_string(), p.name());
        }
        assert_eq!(Precision::default(), Precision::F32);
        assert!(Precision::F32.supported());
        assert!("fp16".parse::<Precision>().unwrap_err().contains("f32, bf16"));
    }

    #[test]
    fn both_forms_compute_their_reference_product() {
        let (m, k, n) = (5, 37, 41);
        let w: Vec<f32> = (0..n * k).map(|i| (i as f32 * 0.37).sin()).collect();
        let a: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.11).cos()).collect();
        let f = Linear::new(&w, n, k);
        let mut ws = Bf16Rows::new();
        let (mut got, mut want) = (vec![1.0; m * n], vec![1.0; m * n]);
        f.gemm(m, &a, k, &mut got, n, Accumulate::Yes, &mut ws);
        let Linear::F32(p) = &f else { unreachable!() };
        gemm_packed_ref(m, &a, k, p, &mut want, n, Accumulate::Yes);
        assert_eq!(got, want, "f32 is the f32 product");
        let Some(cpu) = Bf16Cpu::detect() else {
            println!("skipped the bf16 half: this CPU lacks AVX512_BF16");
            return;
        };
        let b = f.to_bf16(cpu);
        b.gemm(m, &a, k, &mut got, n, Accumulate::No, &mut ws);
        let Linear::Bf16(pb, _) = &b else { unreachable!() };
        assert_eq!(pb.get(3, 7), dien_engine::gemm::bf16::round_bf16(w[7 * k + 3]));
        gemm_bf16_ref(m, &a, k, pb, &mut want, n, Accumulate::No);
        for (g, e) in got.iter().zip(&want) {
            assert!((g - e).abs() <= 1e-5 * (1.0 + e.abs()), "{g} vs {e}");
        }
    }
}
