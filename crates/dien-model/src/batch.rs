//! A batch of samples (docs/MODEL.md#inputs) in the padded layout every model consumes,
//! and the JSON batch-file format of docs/MODEL.md#batch-file.

use std::path::Path;

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
#[derive(Deserialize)]
struct BatchFile {
    uid: Vec<u32>,
    mid: Vec<u32>,
    cat: Vec<u32>,
    hist_mid: Vec<Vec<u32>>,
    hist_cat: Vec<Vec<u32>>,
    #[serde(default)]
    neg_mid: Option<Vec<Vec<u32>>>,
    #[serde(default)]
    neg_cat: Option<Vec<Vec<u32>>>,
    label: Vec<f32>,
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
            if len != b {
                return Err(ModelError::Batch(format!("field `{name}` has {len} samples, `uid` has {b}")));
            }
        }
        if neg_mid.is_some() != neg_cat.is_some() {
            return Err(ModelError::Batch("`neg_mid` and `neg_cat` must be given together".into()));
        }
        let steps = hist_mid.iter().map(Vec::len).max().unwrap_or(0);
        if b > MAX_SAMPLES {
            return Err(ModelError::Batch(format!("{b} samples; a batch holds at most {MAX_SAMPLES}")));
        }
        if b.checked_mul(steps).is_none_or(|n| n > MAX_ENTRIES) {
            return Err(ModelError::Batch(format!(
                "{b} samples × {steps} steps; a batch holds at most {MAX_ENTRIES} history entries"
            )));
        }
        let mut out = Self::zeros(b, steps, neg_mid.is_some());
        out.uid = uid;
        out.mid = mid;
        out.cat = cat;
        out.label = label;
        for s in 0..b {
            let l = hist_mid[s].len();
            if hist_cat[s].len() != l {
                return Err(ModelError::Batch(format!(
                    "sample {s}: `hist_cat` has {} entries, `hist_mid` has {l}",
                    hist_cat[s].len()
                )));
            }
            out.lengths[s] = l;
            out.hist_mid[s * steps..s * steps + l].copy_from_slice(&hist_mid[s]);
            out.hist_cat[s * steps..s * steps + l].copy_from_slice(&hist_cat[s]);
            if let (Some(nm), Some(nc)) = (neg_mid, neg_cat) {
                for (name, v) in [("neg_mid", nm), ("neg_cat", nc)] {
                    if v.len() != b {
                        return Err(ModelError::Batch(format!(
                            "field `{name}` has {} samples, `uid` has {b}",
                            v.len()
                        )));
                    }
                    if v[s].len() != l {
                        return Err(ModelError::Batch(format!(
                            "sample {s}: `{name}` has {} entries, `hist_mid` has {l}",
                            v[s].len()
                        )));
                    }
                }
                out.neg_mid.as_mut().expect("allocated")[s * steps..s * steps + l].copy_from_slice(&nm[s]);
                out.neg_cat.as_mut().expect("allocated")[s * steps..s * steps + l].copy_from_slice(&nc[s]);
            }
        }
        for (s, &y) in out.label.iter().enumerate() {
            if y != 0.0 && y != 1.0 {
                return Err(ModelError::Batch(format!("sample {s}: label {y} is not 0 or 1")));
            }
        }
        Ok(out)
    }

    /// Parses the JSON batch format of docs/MODEL.md#batch-file.
    pub fn from_json_str(text: &str) -> Result<Self, ModelError> {
        let f: BatchFile = serde_json::from_str(text).map_err(|e| ModelError::Batch(format!("batch JSON: {e}")))?;
        Self::from_samples(
            f.uid,
            f.mid,
            f.cat,
            &f.hist_mid,
            &f.hist_cat,
            f.neg_mid.as_deref(),
            f.neg_cat.as_deref(),
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
                    let at = if per_sample == 1 { format!("sample {s}") } else { format!("sample {s}, step {t}") };
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
        if let Some(s) = self.lengths.iter().position(|&l| l > self.steps) {
            return Err(ModelError::Batch(format!(
                "sample {s}: length {} exceeds T = {}",
                self.lengths[s], self.steps
            )));
        }
        match (&self.neg_mid, &self.neg_cat) {
            (Some(nm), Some(nc)) if nm.len() != bt || nc.len() != bt => {
                Err(ModelError::Batch(format!("negatives must have {bt} entries")))
            }
            (Some(_), Some(_)) | (None, None) => Ok(()),
            _ => Err(ModelError::Batch("`neg_mid` and `neg_cat` must be given together".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_recent_keeps_the_latest_behaviours_and_sizes_are_bounded() {
        let h: Vec<Vec<u32>> = vec![vec![1, 2, 3, 4, 5], vec![7], vec![]];
        let mut b = Batch::from_samples(
            vec![0, 1, 2],
            vec![1, 1, 1],
            vec![0, 0, 0],
            &h,
            &h,
            Some(&h),
            Some(&h),
            vec![1.0, 0.0, 1.0],
        )
        .unwrap();
        b.keep_recent(3);
        assert_eq!((b.steps, b.lengths.clone()), (3, vec![3, 1, 0]));
        assert_eq!(b.hist_mid, [3, 4, 5, 7, 0, 0, 0, 0, 0]);
        assert_eq!(b.neg_cat.as_deref(), Some(&[3, 4, 5, 7, 0, 0, 0, 0, 0][..]));
        let before = b.clone();
        b.keep_recent(10);
        assert_eq!(b, before);

        let many = vec![Vec::new(); MAX_SAMPLES + 1];
        let ids = vec![0; MAX_SAMPLES + 1];
        let labels = vec![0.0; MAX_SAMPLES + 1];
        let err = Batch::from_samples(ids.clone(), ids.clone(), ids, &many, &many, None, None, labels).unwrap_err();
        assert!(err.to_string().contains("at most"), "{err}");
    }

    #[test]
    fn json_round_and_errors() {
        let j = r#"{"uid":[1,2],"mid":[3,4],"cat":[1,1],"hist_mid":[[5,6,7],[]],"hist_cat":[[1,2,1],[]],
                   "neg_mid":[[8,9,1],[]],"neg_cat":[[2,2,2],[]],"label":[1,0],"extra":true}"#;
        let b = Batch::from_json_str(j).unwrap();
        assert_eq!((b.batch, b.steps), (2, 3));
        assert_eq!(b.lengths, vec![3, 0]);
        assert_eq!(b.hist_mid, vec![5, 6, 7, 0, 0, 0]);
        assert!(b.validate(3, 10, 3).is_ok());
        let e = b.validate(3, 9, 3).unwrap_err().to_string();
        assert!(e.contains("neg_mid") && e.contains("sample 0, step 1"), "{e}");
        let bad = r#"{"uid":[1],"mid":[3],"cat":[1],"hist_mid":[[5,6]],"hist_cat":[[1]],"label":[1]}"#;
        let e = Batch::from_json_str(bad).unwrap_err().to_string();
        assert!(e.contains("hist_cat"), "{e}");
        let bad = r#"{"uid":[1],"mid":[3],"cat":[1],"hist_mid":[[]],"hist_cat":[[]],"label":[0.5]}"#;
        assert!(Batch::from_json_str(bad).unwrap_err().to_string().contains("label"));
    }
}
