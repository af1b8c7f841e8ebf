//! Scoring requests: one user with a behaviour history and `K` candidate
//! items to rank, the way a recommendation service calls the model.
//!
//! A [`Predictor`] is built once (from a checkpoint with its vocabularies,
//! from a configuration and parameters, or from a [`fast::Model`]) and is
//! immutable: it is `Send + Sync` and many threads share it (for example
//! through an `Arc`). Each thread owns a [`Scratch`], the reusable
//! workspace of the request path; after a warm-up request at least as long
//! (history length, number of candidates) as later ones, scoring performs
//! no heap allocation.
//!
//! # The request path
//!
//! The history is the same for all `K` candidates, so the work splits into
//! a per-request part, done once, and a per-candidate part, done for the
//! candidates as a batch (in blocks of [`BLOCK`]):
//!
//! | stage | per request | per candidate |
//! |---|---|---|
//! | embeddings (docs/MODEL.md#embedding) | user row, history `e_t`, sum pooling `s` | `e_a` |
//! | interest extractor GRU (#gru) | the whole GRU (one row) | — |
//! | attention MLP (#attention, #cost) | `(Wk − Wd)·h_t + b1` for every step | `Wp·(q ∘ h_t)`, `(Wq + Wd)·q`, layers 2–3, softmax |
//! | evolving GRU (#interest-evolving-layer) | input projection `W_ih·h_t + b` | recurrent products and gates |
//! | head (#prediction-head) | — | BatchNorm, MLP, Dice with running statistics |
//!
//! `gru_att` runs its evolving GRU once per request (it has no attention
//! inside); AIGRU shares the bias-free projection and scales it by `a_t`.
//! `din` attends over the raw behaviours, `base` has no attention. An empty
//! history is valid: the interest is zero (docs/MODEL.md#edge-cases).
//!
//! Everything runs on the calling thread: a service scores many requests
//! in parallel, one per thread, each with its own [`Scratch`].
//!
//! # Inputs
//!
//! By index ([`Predictor::score`]): the user index, the history as item and
//! category indices (oldest first), the candidates as item and category
//! indices. By string id ([`Predictor::score_ids`]): the same fields as the
//! strings of the checkpoint's vocabularies; the caller passes each
//! candidate's item id *and* its category id. Unknown string ids map to
//! index 0 (docs/MODEL.md#edge-cases).
//!
//! Bad input is an error ([`ServeError`]), never a panic: an empty
//! candidate list, item and category lists of different lengths, an index
//! outside its table. A history longer than the model's `max_len` keeps
//! its last `max_len` behaviours, as in training (only those are checked).
//!
//! Scores equal those of [`fast::Model::forward`] in evaluation mode on the
//! equivalent batch (`K` samples sharing the user and history), up to
//! floating-point rounding: evaluation mode uses running statistics, so a
//! candidate's score does not depend on the others.
//!
//! # Precision
//!
//! By default every product is `f32`. [`Predictor::with_precision`] with
//! [`Precision::Bf16`] (an explicit option, on CPUs with AVX512_BF16)
//! runs the attention MLP's products, the head's hidden layers and the
//! GRUs' input projections with bf16 weights and `f32` accumulation; its
//! measured cost in accuracy and gain in speed are in
//! docs/PERFORMANCE.md, "bf16 (opt-in)".
//!
//! ```
//! use dien_model::serve::{Items, Predictor, Scratch};
//! use dien_model::{ModelConfig, ModelKind, ParamStore};
//!
//! let cfg = ModelConfig::new(ModelKind::Dien, 10, 50, 5);
//! let params = ParamStore::init(&cfg, 1);
//! let predictor = Predictor::new(cfg, params).unwrap();
//! let mut scratch = Scratch::new();
//! let history = Items::new(&[3, 7, 7, 12], &[1, 2, 2, 4]);
//! let candidates = Items::new(&[20, 21, 22], &[1, 1, 3]);
//! let p = predictor.score(&mut scratch, 4, history, candidates).unwrap();
//! assert_eq!(p.len(), 3);
//! assert!(p.iter().all(|&x| x > 0.0 && x < 1.0));
//! assert!(predictor.score(&mut scratch, 4, history, Items::new(&[], &[])).is_err());
//! ```
//!
//! [`fast::Model`]: crate::fast::Model
//! [`fast::Model::forward`]: crate::fast::Model::forward

pub(crate) mod linear;
mod path;

use std::path::Path;

use dien_engine::cell::fast::SharedWorkspace;
use dien_engine::gemm::bf16::{Bf16Cpu, Bf16Rows};
use dien_engine::simd::grow;
use thiserror::Error;

pub use self::linear::Precision;
use self::path::InterestServe;

use crate::vocab::VocabError;
pub use crate::vocab::Vocabs;

use crate::checkpoint;
use crate::config::ModelConfig;
use crate::error::ModelError;
use crate::fast::Model;
use crate::layers::attention::serve::AttWs;
use crate::layers::head::serve::{HeadServe, HeadWs};
use crate::params::ParamStore;

/// Candidates per block of the per-candidate stages: their activations
/// stay in cache, and the scratch does not grow with `K`.
pub const BLOCK: usize = 32;

/// Why a request (or building a predictor) failed.
#[derive(Debug, Error)]
pub enum ServeError {
    /// The candidate list is empty: there is nothing to score.
    #[error("empty candidate list: a request needs at least one candidate")]
    NoCandidates,
    /// Two lists that must have equal lengths do not.
    #[error("`{field}` has {len} entries, expected {expected} ({why})")]
    LengthMismatch {
        /// The offending list.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The length it must have.
        expected: usize,
        /// What determines that length.
        why: &'static str,
    },
    /// An index is outside its embedding table.
    #[error("`{field}`[{position}]: index {index} out of range (the table has {rows} rows)")]
    IndexOutOfRange {
        /// The list (`uid`, `hist_mid`, `hist_cat`, `cand_mid`, `cand_cat`).
        field: &'static str,
        /// Position in the caller's list (0 for `uid`).
        position: usize,
        /// The offending index.
        index: u32,
        /// Rows of the table.
        rows: usize,
    },
    /// String ids were given but the predictor has no vocabularies.
    #[error("this predictor has no vocabularies: score by index, or load a checkpoint with its `.vocab.json` sidecar")]
    NoVocabularies,
    /// The precision asked for needs an instruction set this CPU lacks.
    #[error("precision `{precision}` needs a CPU with {needs}, which this one lacks (use `f32`)")]
    PrecisionUnsupported {
        /// The precision asked for.
        precision: Precision,
        /// What it needs.
        needs: &'static str,
    },
    /// The vocabularies are unreadable or do not fit the checkpoint.
    #[error("vocabularies: {0}")]
    Vocab(String),
    /// Loading or checking the model failed.
    #[error(transparent)]
    Model(#[from] ModelError),
}

/// A list of items as parallel item and category indices (a history,
/// oldest first, or the candidates).
#[derive(Clone, Copy, Debug, Default)]
pub struct Items<'a> {
    /// Item indices.
    pub mid: &'a [u32],
    /// Category indices, one per item.
    pub cat: &'a [u32],
}

impl<'a> Items<'a> {
    /// Items from parallel index lists (lengths are checked when scoring).
    pub fn new(mid: &'a [u32], cat: &'a [u32]) -> Self {
        Self { mid, cat }
    }
    /// Number of items (the length of `mid`).
    pub fn len(&self) -> usize {
        self.mid.len()
    }
    /// Whether there is no item.
    pub fn is_empty(&self) -> bool {
        self.mid.is_empty()
    }
}

/// A loaded model ready to score requests; immutable, `Send + Sync`.
///
/// See the [module documentation](self) for the request path and inputs.
#[derive(Clone)]
pub struct Predictor {
    cfg: ModelConfig,
    params: ParamStore<f32>,
    /// Canonical indices of `emb.uid`, `emb.mid`, `emb.cat` in `params`.
    emb: [usize; 3],
    vocabs: Option<Vocabs>,
    interest: InterestServe,
    head: HeadServe,
    precision: Precision,
}

impl std::fmt::Debug for Predictor {
    /// The configuration and vocabulary sizes (the weights are too many to print).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Predictor")
            .field("config", &self.cfg)
            .field("precision", &self.precision)
            .field("vocabs", &self.vocabs.as_ref().map(Vocabs::sizes))
            .finish_non_exhaustive()
    }
}

// Shared by many threads: checked at compile time.
const _: () = {
    const fn shareable<T: Send + Sync>() {}
    shareable::<Predictor>();
    shareable::<Vocabs>();
};

/// The reusable workspace of the request path, one per thread.
///
/// Buffers grow to the largest request seen and are never shrunk, so a
/// request no longer than one already scored with this scratch (history
/// length after truncation, number of candidates) allocates nothing. A
/// scratch may be used with any predictor.
#[derive(Clone, Default)]
pub struct Scratch {
    /// Mapped string ids: history items, history categories, candidate
    /// items, candidate categories.
    ids: [Vec<u32>; 4],
    out: Vec<f32>,
    u: Vec<f32>,
    e_hist: Vec<f32>,
    s: Vec<f32>,
    g1: Vec<f32>,
    h1: Vec<f32>,
    g2: Vec<f32>,
    h2: Vec<f32>,
    e_a: Vec<f32>,
    w: Vec<f32>,
    interest: Vec<f32>,
    x: Vec<f32>,
    gru: SharedWorkspace,
    att: AttWs,
    head: HeadWs,
    /// The bf16 copy of a projection's input ([`Precision::Bf16`]).
    bf: Bf16Rows,
}

impl Scratch {
    /// An empty workspace (it grows on first use).
    pub fn new() -> Self {
        Self::default()
    }
}

impl std::fmt::Debug for Scratch {
    /// The candidates and history steps it has room for without growing.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scratch")
            .field("output_len", &self.out.len())
            .field("history_floats", &self.e_hist.len())
            .finish_non_exhaustive()
    }
}

fn check_indices(field: &'static str, v: &[u32], offset: usize, rows: usize) -> Result<(), ServeError> {
    match v.iter().position(|&i| i as usize >= rows) {
        Some(p) => Err(ServeError::IndexOutOfRange { field, position: offset + p, index: v[p], rows }),
        None => Ok(()),
    }
}

fn check_len(field: &'static str, len: usize, expected: usize, why: &'static str) -> Result<(), ServeError> {
    if len == expected { Ok(()) } else { Err(ServeError::LengthMismatch { field, len, expected, why }) }
}

impl Predictor {
    /// A predictor of `params`, which must hold exactly the tensors of
    /// `cfg` (names and shapes), without vocabularies (index inputs only;
    /// see [`Predictor::with_vocabs`]).
    pub fn new(cfg: ModelConfig, params: ParamStore<f32>) -> Result<Self, ServeError> {
        cfg.validate()?;
        params.check_matches(&cfg)?;
        let (interest, head) = path::pack(&cfg, &params);
        let p = &params;
        let idx = |name: &str| p.index_of(name).expect("embedding tables exist in every model");
        let emb = [idx("emb.uid"), idx("emb.mid"), idx("emb.cat")];
        Ok(Self { cfg, params, emb, vocabs: None, interest, head, precision: Precision::F32 })
    }

    /// A predictor of a model's current parameters (copied), without
    /// vocabularies.
    pub fn from_model(model: &Model) -> Result<Self, ServeError> {
        Self::new(model.config().clone(), model.params().clone())
    }

    /// Loads a checkpoint (docs/MODEL.md#checkpoints) and its vocabularies:
    /// the file the checkpoint names as its vocabulary part, which must be
    /// the one it was saved with ([`checkpoint::set`]), or, for a checkpoint
    /// that names none, the sidecar `<name>.vocab.json` when it exists. A
    /// vocabulary file that is malformed, from another save or does not fit
    /// the tables is an error.
    pub fn load(path: &Path) -> Result<Self, ServeError> {
        let (cfg, params, meta) = checkpoint::load_with_metadata(path)?;
        let p = Self::new(cfg, params)?;
        match checkpoint::set::read_part(path, &meta, checkpoint::set::VOCAB_ROLE, checkpoint::VOCAB_SUFFIX)? {
            Some((file, bytes)) => p.with_vocabs(Vocabs::from_json_bytes(&bytes, &file)?),
            None => Ok(p),
        }
    }

    /// Attaches vocabularies (for [`Predictor::score_ids`]) after checking
    /// that every index fits the tables.
    pub fn with_vocabs(mut self, vocabs: Vocabs) -> Result<Self, ServeError> {
        vocabs.check(&self.cfg)?;
        self.vocabs = Some(vocabs);
        Ok(self)
    }

    /// This predictor with its large products in `precision`
    /// ([`Precision`]: `f32`, the default, or bf16 weights with `f32`
    /// accumulation). [`Precision::Bf16`] on a CPU without AVX512_BF16 is
    /// an error ([`ServeError::PrecisionUnsupported`]); nothing else
    /// changes (inputs, vocabularies, errors, allocation).
    pub fn with_precision(mut self, precision: Precision) -> Result<Self, ServeError> {
        if precision == self.precision {
            return Ok(self);
        }
        let (interest, head) = path::pack(&self.cfg, &self.params);
        (self.interest, self.head) = match precision {
            Precision::F32 => (interest, head),
            Precision::Bf16 => {
                let cpu = Bf16Cpu::detect()
                    .ok_or(ServeError::PrecisionUnsupported { precision, needs: "AVX512_BF16 (and AVX-512F)" })?;
                (interest.to_bf16(&self.cfg, &self.params, cpu), head.to_bf16(cpu))
            }
        };
        self.precision = precision;
        Ok(self)
    }

    /// The precision of the large products ([`Predictor::with_precision`]).
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// The model configuration.
    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }
    /// The parameters.
    pub fn params(&self) -> &ParamStore<f32> {
        &self.params
    }
    /// The vocabularies, if any.
    pub fn vocabs(&self) -> Option<&Vocabs> {
        self.vocabs.as_ref()
    }

    /// Click probabilities of `candidates` for user `uid` with `history`,
    /// in candidate order. The slice lives in `scratch` until its next use.
    pub fn score<'s>(
        &self,
        scratch: &'s mut Scratch,
        uid: u32,
        history: Items<'_>,
        candidates: Items<'_>,
    ) -> Result<&'s [f32], ServeError> {
        let k = candidates.len();
        let mut out = std::mem::take(&mut scratch.out);
        grow(&mut out, k);
        let r = self.run(scratch, uid, history, candidates, &mut out[..k], true);
        scratch.out = out;
        r.map(|()| &scratch.out[..k])
    }

    /// [`Predictor::score`] writing the probabilities into `out` (one per
    /// candidate; a different length is an error).
    pub fn score_into(
        &self,
        scratch: &mut Scratch,
        uid: u32,
        history: Items<'_>,
        candidates: Items<'_>,
        out: &mut [f32],
    ) -> Result<(), ServeError> {
        self.run(scratch, uid, history, candidates, out, true)
    }

    /// [`Predictor::score_into`] writing logits (`σ(logit)` is the
    /// probability; logits rank the same and do not saturate).
    pub fn logits_into(
        &self,
        scratch: &mut Scratch,
        uid: u32,
        history: Items<'_>,
        candidates: Items<'_>,
        out: &mut [f32],
    ) -> Result<(), ServeError> {
        self.run(scratch, uid, history, candidates, out, false)
    }

    /// [`Predictor::score`] by string ids of the checkpoint's
    /// vocabularies: the user, the history's items and their categories,
    /// the candidates' items and their categories. Unknown ids map to 0.
    #[allow(clippy::too_many_arguments)]
    pub fn score_ids<'s, S: AsRef<str>>(
        &self,
        scratch: &'s mut Scratch,
        user: &str,
        hist_items: &[S],
        hist_cats: &[S],
        cand_items: &[S],
        cand_cats: &[S],
    ) -> Result<&'s [f32], ServeError> {
        let k = cand_items.len();
        let mut out = std::mem::take(&mut scratch.out);
        grow(&mut out, k);
        let r = self.score_ids_into(scratch, user, hist_items, hist_cats, cand_items, cand_cats, &mut out[..k]);
        scratch.out = out;
        r.map(|()| &scratch.out[..k])
    }

    /// [`Predictor::score_ids`] writing the probabilities into `out`.
    #[allow(clippy::too_many_arguments)]
    pub fn score_ids_into<S: AsRef<str>>(
        &self,
        scratch: &mut Scratch,
        user: &str,
        hist_items: &[S],
        hist_cats: &[S],
        cand_items: &[S],
        cand_cats: &[S],
        out: &mut [f32],
    ) -> Result<(), ServeError> {
        let v = self.vocabs.as_ref().ok_or(ServeError::NoVocabularies)?;
        check_len("hist_cats", hist_cats.len(), hist_items.len(), "one category per history item")?;
        check_len("cand_cats", cand_cats.len(), cand_items.len(), "one category per candidate item")?;
        // Only the behaviours training would keep are looked up.
        let start = hist_items.len().saturating_sub(self.cfg.max_len);
        let mut ids = std::mem::take(&mut scratch.ids);
        let [hm, hc, cm, cc] = &mut ids;
        for (dst, src, f) in [
            (&mut *hm, &hist_items[start..], Vocabs::mid as fn(&Vocabs, &str) -> u32),
            (&mut *hc, &hist_cats[start..], Vocabs::cat),
            (&mut *cm, cand_items, Vocabs::mid),
            (&mut *cc, cand_cats, Vocabs::cat),
        ] {
            dst.clear();
            dst.extend(src.iter().map(|s| f(v, s.as_ref())));
        }
        let r = self.run(scratch, v.uid(user), Items::new(hm, hc), Items::new(cm, cc), out, true);
        scratch.ids = ids;
        r
    }

    /// Checks a request; returns where the kept history starts.
    fn validate(&self, uid: u32, hist: Items<'_>, cands: Items<'_>, out: usize) -> Result<usize, ServeError> {
        let cfg = &self.cfg;
        check_len("hist_cat", hist.cat.len(), hist.mid.len(), "one category per history item")?;
        check_len("cand_cat", cands.cat.len(), cands.mid.len(), "one category per candidate item")?;
        if cands.is_empty() {
            return Err(ServeError::NoCandidates);
        }
        check_len("out", out, cands.len(), "one score per candidate")?;
        check_indices("uid", &[uid], 0, cfg.n_uid)?;
        let start = hist.len().saturating_sub(cfg.max_len);
        check_indices("hist_mid", &hist.mid[start..], start, cfg.n_mid)?;
        check_indices("hist_cat", &hist.cat[start..], start, cfg.n_cat)?;
        check_indices("cand_mid", cands.mid, 0, cfg.n_mid)?;
        check_indices("cand_cat", cands.cat, 0, cfg.n_cat)?;
        Ok(start)
    }
}

/// Vocabulary problems of a predictor are reported as [`ServeError::Vocab`].
impl From<VocabError> for ServeError {
    fn from(e: VocabError) -> Self {
        ServeError::Vocab(e.to_string())
    }
}
