//! # dien-engine
//!
//! The compute core of the DIEN engine: explicit-SIMD vector math
//! ([`vecmath`]), 8-lane load/store and scalar helpers ([`simd`]), GEMM
//! wrappers, the register-tiled small-matrix kernel ([`gemm`], [`gemm::tile`]) and
//! its bf16 counterpart for inference on CPUs with AVX512_BF16 ([`gemm::bf16`]), and the
//! recurrent cells of DIEN (GRU, AUGRU, AGRU, AIGRU) with hand-written
//! forward and backward passes ([`cell`]). [`gradcheck`] compares analytic
//! gradients with central finite differences and is used by the tests of this
//! crate and of the crates built on it.
//!
//! Shape errors inside the engine are programming errors and are `assert!`ed;
//! user-facing validation lives in the model and trainer crates.
//!
//! Build target: the fast path is compiled for x86-64-v3 (AVX2 + FMA) by the
//! workspace's `.cargo/config.toml`; every test also passes on a baseline
//! x86-64 build. See [`simd_target`].

pub mod cell;
pub mod gemm;
pub mod gradcheck;
pub mod simd;
pub mod vecmath;

/// Describes the SIMD instruction set this build of the engine was compiled
/// for, e.g. `"x86-64-v4 (AVX-512, 16 lanes)"`, `"x86-64-v3 (AVX2+FMA)"` or
/// `"baseline (SSE2)"`.
///
/// `wide` selects its vector implementation at compile time, so this is a
/// property of the build, not of the machine running it.
pub fn simd_target() -> &'static str {
    if cfg!(all(target_feature = "avx512f", target_feature = "fma")) {
        "x86-64-v4 (AVX-512, 16 lanes)"
    } else if cfg!(all(target_feature = "avx2", target_feature = "fma")) {
        "x86-64-v3 (AVX2+FMA)"
    } else if cfg!(target_feature = "avx") {
        "AVX (no FMA)"
    } else if cfg!(target_feature = "sse2") {
        "baseline (SSE2)"
    } else {
        "portable"
    }
}
