//! A batch of samples (docs/MODEL.md#inputs) in the padded layout every model consumes,
//! and the two ways a caller hands one over: the JSON batch-file format of
//! docs/MODEL.md#batch-file ([`Batch::from_json_file`]) and padded `ndarray`
//! arrays ([`Batch::from_arrays`], what the Python package passes NumPy
//! arrays through). Both go through the same checks, so a mistake gets the
//! same message whichever way the batch came in.

use std::fmt::Display;
use std::path::Path;

use ndarray::{ArrayView1, ArrayView2};
use serde::Deserialize;

use crate::error::ModelError;

/// The most samples a batch built from samples or a file may hold.
pub const MAX_SAMPLES: usize = 1 << 16;

/// The most history entries (`B × T`) such a batch may hold.
pub const MAX_ENTRIES: usize = 1 << 26;

/// The largest JSON batch file read.
pub const MAX_FILE_BYTES: u64 = 1 << 30;

/// A batch of `B` samples with histories padded to `T` steps.
///
/// Histories are stored row-major `[B, T]`, oldest first; positions
/// `t ≥ lengths[b]` are padding (index 0) and never influence any output.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    /// Number of samples `B`.
    pub batch: usize,
    /// Padded history length `T` (the longest history in the batch, or more).
    pub steps: usize,
    /// User index `[B]`.
    pub uid: Vec<u32>,
    /// Target item index `[B]`.
    pub mid: Vec<u32>,
    /// Target category index `[B]`.
    pub cat: Vec<u32>,
    /// History item indices `[B, T]`.
    pub hist_mid: Vec<u32>,
    /// History category indices `[B, T]`.
    pub hist_cat: Vec<u32>,
    /// Sampled negative items `[B, T]`, one per history step (training).
    pub neg_mid: Option<Vec<u32>>,
    /// Categories of the negatives `[B, T]`.
    pub neg_cat: Option<Vec<u32>>,
    /// True history lengths `[B]`, each `≤ T`.
    pub lengths: Vec<usize>,
    /// Labels `[B]`, 0.0 or 1.0.
    pub label: Vec<f32>,
}

/// The JSON batch file of docs/MODEL.md#batch-file (unknown keys are ignored).
///
/// Indices are read as `i64` and converted by [`to_index`], so that a
/// negative index gets the same message as in [`Batch::from_arrays`].
#[derive(Deserialize)]
struct BatchFile {
    uid: Vec<i64>,
    mid: Vec<i64>,
    cat: Vec<i64>,
    hist_mid: Vec<Vec<i64>>,
    hist_cat: Vec<Vec<i64>>,
    #[serde(default)]
    neg_mid: Option<Vec<Vec<i64>>>,
    #[serde(default)]
    neg_cat: Option<Vec<Vec<i64>>>,
    label: Vec<f32>,
}

// The checks every way of building a batch shares (docs/MODEL.md#batch-file):
// each returns the one message of its rule.

/// Where in a batch a value sits: `sample s` or `sample s, step t`.
fn position(s: usize, t: Option<usize>) -> String {
    match t {
        Some(t) => format!("sample {s}, step {t}"),
        None => format!("sample {s}"),
    }
}

/// A per-sample field must have one entry per sample (`B`, the length of `uid`).
fn check_samples(name: &str, len: usize, b: usize) -> Result<(), ModelError> {
    if len == b { Ok(()) } else { Err(ModelError::Batch(format!("field `{name}` has {len} samples, `uid` has {b}"))) }
}

/// Sample `s`'s list `name` must have one entry per history step (`l`).
fn check_entries(s: usize, name: &str, len: usize, l: usize) -> Result<(), ModelError> {
    if len == l {
        Ok(())
    } else {
        Err(ModelError::Batch(format!("sample {s}: `{name}` has {len} entries, `hist_mid` has {l}")))
    }
}

/// A batch of `b` samples padded to `steps` steps stays within the limits
/// ([`MAX_SAMPLES`], [`MAX_ENTRIES`]); checked before anything is allocated.
fn check_size(b: usize, steps: usize) -> Result<(), ModelError> {
    if b > MAX_SAMPLES {
        return Err(ModelError::Batch(format!("{b} samples; a batch holds at most {MAX_SAMPLES}")));
    }
    if b.checked_mul(steps).is_none_or(|n| n > MAX_ENTRIES) {
        return Err(ModelError::Batch(format!(
            "{b} samples × {steps} steps; a batch holds at most {MAX_ENTRIES} history entries"
        )));
    }
    Ok(())
}

/// The negatives come both or not at all.
fn check_negatives_paired(neg_mid: bool, neg_cat: bool) -> Result<(), ModelError> {
    if neg_mid == neg_cat {
        Ok(())
    } else {
        Err(ModelError::Batch("`neg_mid` and `neg_cat` must be given together".into()))
    }
}

/// A label is 0 or 1.
fn check_label(s: usize, y: f32) -> Result<(), ModelError> {
    if y == 0.0 || y == 1.0 { Ok(()) } else { Err(ModelError::Batch(format!("sample {s}: label {y} is not 0 or 1"))) }
}

/// A history length is at most `T`.
fn check_length(s: usize, l: usize, steps: usize) -> Result<(), ModelError> {
    if l <= steps { Ok(()) } else { Err(ModelError::Batch(format!("sample {s}: length {l} exceeds T = {steps}"))) }
}

/// A caller's index (or length) as `u32`: a negative value or one above
/// `u32::MAX` is an error naming the field and the position.
fn to_index<I: Copy + TryInto<u32> + Display>(x: I, name: &str, s: usize, t: Option<usize>) -> Result<u32, ModelError> {
    x.try_into().map_err(|_| {
        ModelError::Batch(format!(
            "{}: `{name}` value {x} is not an index (indices are integers from 0 to {})",
            position(s, t),
            u32::MAX
        ))
    })
}

impl Batch {
    /// An empty batch with room for `batch` samples of `steps` steps: all
    /// indices 0, all lengths 0, labels 0, negatives present iff `with_neg`.
    pub fn zeros(batch: usize, steps: usize, with_neg: bool) -> Self {
        let bt = batch * steps;
        Self {
            batch,
            steps,
            uid: vec![0; batch],
            mid: vec![0; batch],
            cat: vec![0; batch],
            hist_mid: vec![0; bt],
            hist_cat: vec![0; bt],
            neg_mid: with_neg.then(|| vec![0; bt]),
            neg_cat: with_neg.then(|| vec![0; bt]),
            lengths: vec![0; batch],
            label: vec![0.0; batch],
        }
    }

    /// Builds a batch from per-sample histories (`hist_mid[b]` etc. hold the
    /// true history of sample `b`). `T` is the longest history. Checks that
    /// every per-sample list has the same length as its history.
    #[allow(clippy::too_many_arguments)]
    pub fn from_samples(
        uid: Vec<u32>,
        mid: Vec<u32>,
        cat: Vec<u32>,
        hist_mid: &[Vec<u32>],
        hist_cat: &[Vec<u32>],
        neg_mid: Option<&[Vec<u32>]>,
        neg_cat: Option<&[Vec<u32>]>,
        label: Vec<f32>,
    ) -> Result<Self, ModelError> {
        let b = uid.len();
        for (name, len) in [
            ("mid", mid.len()),
            ("cat", cat.len()),
            ("hist_mid", hist_mid.len()),
            ("hist_cat", hist_cat.len()),
            ("label", label.len()),
        ] {
            check_samples(name, len, b)?;
        }
        check_negatives_paired(neg_mid.is_some(), neg_cat.is_some())?;
        let steps = hist_mid.iter().map(Vec::len).max().unwrap_or(0);
        check_size(b, steps)?;
        let mut out = Self::zeros(b, steps, neg_mid.is_some());
        out.uid = uid;
        out.mid = mid;
        out.cat = cat;
        out.label = label;
        for s in 0..b {
            let l = hist_mid[s].len();
            check_entries(s, "hist_cat", hist_cat[s].len(), l)?;
            out.lengths[s] = l;
            out.hist_mid[s * steps..s * steps + l].copy_from_slice(&hist_mid[s]);
            out.hist_cat[s * steps..s * steps + l].copy_from_slice(&hist_cat[s]);
            if let (Some(nm), Some(nc)) = (neg_mid, neg_cat) {
                for (name, v) in [("neg_mid", nm), ("neg_cat", nc)] {
                    check_samples(name, v.len(), b)?;
                    check_entries(s, name, v[s].len(), l)?;
                }
                out.neg_mid.as_mut().expect("allocated")[s * steps..s * steps + l].copy_from_slice(&nm[s]);
                out.neg_cat.as_mut().expect("allocated")[s * steps..s * steps + l].copy_from_slice(&nc[s]);
            }
        }
        for (s, &y) in out.label.iter().enumerate() {
            check_label(s, y)?;
        }
        Ok(out)
    }

    /// Builds a batch from padded arrays, the layout of a batch in memory
    /// (and of NumPy or PyTorch tensors): `uid`, `mid`, `cat`, `lengths` and
    /// `label` hold one value per sample (`[B]`); `hist_mid`, `hist_cat` and
    /// the optional negatives are `[B, T]`, oldest behaviour first, sample
    /// `b` using its first `lengths[b]` columns.
    ///
    /// The rules and messages are those of the JSON batch file
    /// (docs/MODEL.md#batch-file): every per-sample array has `B` entries,
    /// the history arrays have the same shape, the negatives come together,
    /// every length is at most `T`, every label is 0 or 1, and every index
    /// used is a non-negative integer that fits `u32` (padded positions,
    /// `t ≥ lengths[b]`, are not read, so any padding value will do; they
    /// are stored as 0). The arrays are read in place, in any memory layout;
    /// `I` is any integer type (`i64`, NumPy's default, `i32`, `u32`, …).
    /// Indices are checked against the table sizes when the batch is run
    /// ([`Batch::validate`]).
    ///
    /// ```
    /// use dien_model::Batch;
    /// use ndarray::array;
    ///
    /// let b = Batch::from_arrays(
    ///     array![1i64, 2].view(), array![3, 4].view(), array![1, 1].view(),
    ///     array![[5, 6, 7], [0, 0, 0]].view(), array![[1, 2, 1], [0, 0, 0]].view(),
    ///     array![3, 0].view(), array![1.0f32, 0.0].view(), None, None,
    /// ).unwrap();
    /// assert_eq!((b.batch, b.steps, b.lengths.clone()), (2, 3, vec![3, 0]));
    /// let json = r#"{"uid": [1, 2], "mid": [3, 4], "cat": [1, 1],
    ///     "hist_mid": [[5, 6, 7], []], "hist_cat": [[1, 2, 1], []], "label": [1, 0]}"#;
    /// assert_eq!(b, Batch::from_json_str(json).unwrap());
    /// ```
    #[allow(clippy::too_many_arguments)]
    pub fn from_arrays<I: Copy + TryInto<u32> + Display>(
        uid: ArrayView1<'_, I>,
        mid: ArrayView1<'_, I>,
        cat: ArrayView1<'_, I>,
        hist_mid: ArrayView2<'_, I>,
        hist_cat: ArrayView2<'_, I>,
        lengths: ArrayView1<'_, I>,
        label: ArrayView1<'_, f32>,
        neg_mid: Option<ArrayView2<'_, I>>,
        neg_cat: Option<ArrayView2<'_, I>>,
    ) -> Result<Self, ModelError> {
        let b = uid.len();
        for (name, len) in [
            ("mid", mid.len()),
            ("cat", cat.len()),
            ("hist_mid", hist_mid.nrows()),
            ("hist_cat", hist_cat.nrows()),
            ("lengths", lengths.len()),
            ("label", label.len()),
        ] {
            check_samples(name, len, b)?;
        }
        check_negatives_paired(neg_mid.is_some(), neg_cat.is_some())?;
        let steps = hist_mid.ncols();
        check_size(b, steps)?;
        let negs = [("neg_mid", neg_mid), ("neg_cat", neg_cat)];
        // Every sample's rows have T entries, so a width mismatch shows at
        // the first sample.
        if b > 0 {
            check_entries(0, "hist_cat", hist_cat.ncols(), steps)?;
        }
        for (name, v) in &negs {
            if let Some(v) = v {
                check_samples(name, v.nrows(), b)?;
                if b > 0 {
                    check_entries(0, name, v.ncols(), steps)?;
                }
            }
        }
        let mut out = Self::zeros(b, steps, negs[0].1.is_some());
        let one = |name: &str, v: &ArrayView1<'_, I>, dst: &mut [u32]| -> Result<(), ModelError> {
            for (s, (d, &x)) in dst.iter_mut().zip(v.iter()).enumerate() {
                *d = to_index(x, name, s, None)?;
            }
            Ok(())
        };
        one("uid", &uid, &mut out.uid)?;
        one("mid", &mid, &mut out.mid)?;
        one("cat", &cat, &mut out.cat)?;
        for (s, &l) in lengths.iter().enumerate() {
            let l = to_index(l, "lengths", s, None)? as usize;
            check_length(s, l, steps)?;
            out.lengths[s] = l;
        }
        let rows = |name: &str, v: &ArrayView2<'_, I>, dst: &mut [u32], lengths: &[usize]| -> Result<(), ModelError> {
            for (s, (row, &l)) in v.rows().into_iter().zip(lengths).enumerate() {
                for (t, &x) in row.iter().take(l).enumerate() {
                    dst[s * steps + t] = to_index(x, name, s, Some(t))?;
                }
            }
            Ok(())
        };
        rows("hist_mid", &hist_mid, &mut out.hist_mid, &out.lengths)?;
        rows("hist_cat", &hist_cat, &mut out.hist_cat, &out.lengths)?;
        if let [(_, Some(nm)), (_, Some(nc))] = &negs {
            rows("neg_mid", nm, out.neg_mid.as_mut().expect("allocated"), &out.lengths)?;
            rows("neg_cat", nc, out.neg_cat.as_mut().expect("allocated"), &out.lengths)?;
        }
        for (s, (d, &y)) in out.label.iter_mut().zip(label.iter()).enumerate() {
            check_label(s, y)?;
            *d = y;
        }
        Ok(out)
    }

    /// Parses the JSON batch format of docs/MODEL.md#batch-file.
    pub fn from_json_str(text: &str) -> Result<Self, ModelError> {
        let f: BatchFile = serde_json::from_str(text).map_err(|e| ModelError::Batch(format!("batch JSON: {e}")))?;
        let flat = |name: &str, v: &[i64]| -> Result<Vec<u32>, ModelError> {
            v.iter().enumerate().map(|(s, &x)| to_index(x, name, s, None)).collect()
        };
        let nested = |name: &str, v: &[Vec<i64>]| -> Result<Vec<Vec<u32>>, ModelError> {
            v.iter()
                .enumerate()
                .map(|(s, row)| row.iter().enumerate().map(|(t, &x)| to_index(x, name, s, Some(t))).collect())
                .collect()
        };
        let neg_mid = f.neg_mid.as_deref().map(|v| nested("neg_mid", v)).transpose()?;
        let neg_cat = f.neg_cat.as_deref().map(|v| nested("neg_cat", v)).transpose()?;
        Self::from_samples(
            flat("uid", &f.uid)?,
            flat("mid", &f.mid)?,
            flat("cat", &f.cat)?,
            &nested("hist_mid", &f.hist_mid)?,
            &nested("hist_cat", &f.hist_cat)?,
            neg_mid.as_deref(),
            neg_cat.as_deref(),
            f.label,
        )
    }

    /// The batch in the JSON batch format of docs/MODEL.md#batch-file: each
    /// history cut to its true length, negatives only when present.
    /// [`from_json_str`](Self::from_json_str) reads it back to an equal batch
    /// when `T` is the longest history (as for every batch built from samples
    /// or read from JSON).
    ///
    /// Fails when the fields disagree with `B`, `T` and the lengths (a batch
    /// assembled by hand).
    pub fn to_json_string(&self) -> Result<String, ModelError> {
        self.check_layout()?;
        let (t, lengths) = (self.steps, &self.lengths);
        let rows = |v: &[u32]| -> serde_json::Value {
            serde_json::json!((0..self.batch).map(|s| &v[s * t..s * t + lengths[s]]).collect::<Vec<_>>())
        };
        let mut out = serde_json::json!({
            "uid": self.uid,
            "mid": self.mid,
            "cat": self.cat,
            "hist_mid": rows(&self.hist_mid),
            "hist_cat": rows(&self.hist_cat),
            "label": self.label,
        });
        if let (Some(nm), Some(nc)) = (&self.neg_mid, &self.neg_cat) {
            out["neg_mid"] = rows(nm);
            out["neg_cat"] = rows(nc);
        }
        Ok(out.to_string())
    }

    /// Reads a JSON batch file (docs/MODEL.md#batch-file) of at most
    /// [`MAX_FILE_BYTES`].
    pub fn from_json_file(path: &Path) -> Result<Self, ModelError> {
        let io = |e| ModelError::Io(path.display().to_string(), e);
        let len = std::fs::metadata(path).map_err(io)?.len();
        if len > MAX_FILE_BYTES {
            return Err(ModelError::Batch(format!(
                "{}: {len} bytes; a batch file has at most {MAX_FILE_BYTES}",
                path.display()
            )));
        }
        let text = std::fs::read_to_string(path).map_err(io)?;
        Self::from_json_str(&text).map_err(|e| match e {
            ModelError::Batch(m) => ModelError::Batch(format!("{}: {m}", path.display())),
            other => other,
        })
    }

    /// Keeps at most the `max_len` most recent behaviours of every history
    /// (as the data loader does for a model whose longest kept history is
    /// `max_len`); `T` becomes at most `max_len`.
    pub fn keep_recent(&mut self, max_len: usize) {
        if self.steps <= max_len {
            return;
        }
        let (b, old_t) = (self.batch, self.steps);
        let cut = |v: &[u32], lengths: &[usize]| -> Vec<u32> {
            let mut out = vec![0; b * max_len];
            for s in 0..b {
                let l = lengths[s];
                let keep = l.min(max_len);
                out[s * max_len..s * max_len + keep].copy_from_slice(&v[s * old_t + l - keep..s * old_t + l]);
            }
            out
        };
        self.hist_mid = cut(&self.hist_mid, &self.lengths);
        self.hist_cat = cut(&self.hist_cat, &self.lengths);
        self.neg_mid = self.neg_mid.as_deref().map(|v| cut(v, &self.lengths));
        self.neg_cat = self.neg_cat.as_deref().map(|v| cut(v, &self.lengths));
        for l in &mut self.lengths {
            *l = (*l).min(max_len);
        }
        self.steps = max_len;
    }

    /// Whether negatives are present (then the auxiliary loss is evaluated).
    pub fn has_negatives(&self) -> bool {
        self.neg_mid.is_some()
    }

    /// Checks every index against the table sizes; the error names the field
    /// and sample of the first offending index.
    pub fn validate(&self, n_uid: usize, n_mid: usize, n_cat: usize) -> Result<(), ModelError> {
        self.check_layout()?;
        let check_flat = |name: &str, v: &[u32], n: usize, per_sample: usize| -> Result<(), ModelError> {
            for (i, &x) in v.iter().enumerate() {
                let (s, t) = if per_sample == 1 { (i, 0) } else { (i / per_sample, i % per_sample) };
                if per_sample > 1 && t >= self.lengths[s] {
                    continue;
                }
                if x as usize >= n {
                    let at = position(s, (per_sample > 1).then_some(t));
                    return Err(ModelError::Batch(format!(
                        "{at}: `{name}` index {x} out of range (table has {n} rows)"
                    )));
                }
            }
            Ok(())
        };
        check_flat("uid", &self.uid, n_uid, 1)?;
        check_flat("mid", &self.mid, n_mid, 1)?;
        check_flat("cat", &self.cat, n_cat, 1)?;
        check_flat("hist_mid", &self.hist_mid, n_mid, self.steps.max(1))?;
        check_flat("hist_cat", &self.hist_cat, n_cat, self.steps.max(1))?;
        if let (Some(nm), Some(nc)) = (&self.neg_mid, &self.neg_cat) {
            check_flat("neg_mid", nm, n_mid, self.steps.max(1))?;
            check_flat("neg_cat", nc, n_cat, self.steps.max(1))?;
        }
        Ok(())
    }

    /// Checks that every field has the size `B` and `T` give it and that no
    /// length exceeds `T`.
    fn check_layout(&self) -> Result<(), ModelError> {
        let bt = self
            .batch
            .checked_mul(self.steps)
            .ok_or_else(|| ModelError::Batch(format!("{} samples × {} steps overflow", self.batch, self.steps)))?;
        let sizes = [
            ("uid", self.uid.len(), self.batch),
            ("mid", self.mid.len(), self.batch),
            ("cat", self.cat.len(), self.batch),
            ("label", self.label.len(), self.batch),
            ("lengths", self.lengths.len(), self.batch),
            ("hist_mid", self.hist_mid.len(), bt),
            ("hist_cat", self.hist_cat.len(), bt),
        ];
        for (name, got, want) in sizes {
            if got != want {
                return Err(ModelError::Batch(format!("field `{name}` has {got} entries, expected {want}")));
            }
        }
        for (s, &l) in self.lengths.iter().enumerate() {
            check_length(s, l, self.steps)?;
        }
        match (&self.neg_mid, &self.neg_cat) {
            (Some(nm), Some(nc)) if nm.len() != bt || nc.len() != bt => {
                Err(ModelError::Batch(format!("negatives must have {bt} entries")))
            }
            (Some(_), Some(_)) | (None, None) => Ok(()),
            _ => check_negatives_paired(self.neg_mid.is_some(), self.neg_cat.is_some()),
        }
    }
}

#[cfg(test)]
mod tests;
