//! `dien.Batch`: a batch of samples (docs/MODEL.md#inputs) from padded
//! NumPy arrays, through [`dien_model::Batch::from_arrays`], so that the
//! rules and messages are those of the JSON batch file
//! (docs/MODEL.md#batch-file).

use dien_model::Batch;
use ndarray::{Ix1, Ix2};
use numpy::prelude::*;
use numpy::{PyArray1, PyArray2, PyUntypedArray};
use pyo3::prelude::*;

use crate::arrays::{self, IntDtype};
use crate::errors::{guarded, model_error, value_error};
use crate::with_int_type;

/// A batch of samples for `Model.forward` and `Model.loss_and_grads`.
///
/// `Batch(uid, mid, cat, hist_mid, hist_cat, lengths, label, neg_mid=None,
/// neg_cat=None)`: `uid`, `mid`, `cat`, `lengths` and `label` are 1-D
/// arrays of length B; `hist_mid`, `hist_cat` (and the negatives `neg_mid`,
/// `neg_cat`, which the auxiliary loss needs) are 2-D `[B, T]` arrays of
/// indices, oldest behaviour first, sample b using its first `lengths[b]`
/// columns (the rest is padding and is not read). Indices are integer
/// arrays (int64, int32, uint32, …), C-contiguous; `label` holds 0 or 1
/// (float32 is read in place, other numeric dtypes are converted). Lists
/// are accepted too (through `numpy.asarray`). Errors are `ValueError`s
/// with the messages of the JSON batch file.
#[pyclass(frozen, name = "Batch", module = "dien")]
pub struct PyBatch {
    /// The batch, in the engine's layout.
    pub inner: Batch,
}

/// The index arrays of a batch, checked: the arrays and their common dtype
/// (int64 when they differ, after conversion).
struct IndexArrays<'py> {
    arrays: Vec<Bound<'py, PyUntypedArray>>,
    dtype: IntDtype,
}

/// Names, dimensions and descriptions of the index arguments, in order.
const INDEX_ARGS: [(&str, usize, &str); 8] = [
    ("uid", 1, "[B]"),
    ("mid", 1, "[B]"),
    ("cat", 1, "[B]"),
    ("hist_mid", 2, "[B, T]"),
    ("hist_cat", 2, "[B, T]"),
    ("lengths", 1, "[B]"),
    ("neg_mid", 2, "[B, T]"),
    ("neg_cat", 2, "[B, T]"),
];

fn index_arrays<'py>(given: [Option<&Bound<'py, PyAny>>; 8]) -> PyResult<IndexArrays<'py>> {
    let mut arrays = Vec::new();
    for ((name, ndim, dims), obj) in INDEX_ARGS.iter().zip(given) {
        let Some(obj) = obj else { continue };
        let a = arrays::ndarray(obj, name)?;
        // An empty list becomes a float64 array: as good as any integer one.
        let a = match arrays::int_dtype(&a) {
            Some(_) => a,
            None if a.shape().iter().product::<usize>() == 0 => arrays::astype(&a, "int64")?,
            None => return Err(arrays::not_int(&a, name)),
        };
        arrays::check_layout(&a, name, *ndim, dims)?;
        arrays.push(a);
    }
    let first = arrays::int_dtype(&arrays[0]).expect("checked");
    if arrays.iter().all(|a| arrays::int_dtype(a) == Some(first)) {
        return Ok(IndexArrays { arrays, dtype: first });
    }
    // Mixed dtypes: one common type for `from_arrays`.
    let arrays = arrays
        .iter()
        .map(|a| if arrays::int_dtype(a) == Some(IntDtype::I64) { Ok(a.clone()) } else { arrays::astype(a, "int64") })
        .collect::<PyResult<Vec<_>>>()?;
    Ok(IndexArrays { arrays, dtype: IntDtype::I64 })
}

/// `label` as a float32 array: read in place when it is one, else
/// converted from a numeric (or boolean) dtype.
fn label_array<'py>(obj: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyUntypedArray>> {
    let a = arrays::ndarray(obj, "label")?;
    arrays::check_layout(&a, "label", 1, "[B]")?;
    let a = match arrays::float_dtype(&a) {
        Some(arrays::FloatDtype::F32) => a,
        _ if arrays::is_numeric(&a) => arrays::astype(&a, "float32")?,
        _ => {
            return Err(value_error(format!(
                "`label` has dtype {}; expected numbers (0 or 1)",
                a.dtype().str().map(|s| s.to_string()).unwrap_or_default()
            )));
        }
    };
    Ok(a)
}

/// Builds the batch from checked arrays of index type `T`.
fn build<T>(ix: &IndexArrays<'_>, has_neg: bool, label: &Bound<'_, PyUntypedArray>) -> PyResult<Batch>
where
    T: numpy::Element + Copy + TryInto<u32> + std::fmt::Display,
{
    let a = &ix.arrays;
    let r1 = |i: usize, name: &str| arrays::readonly::<T, Ix1>(&a[i], name);
    let r2 = |i: usize, name: &str| arrays::readonly::<T, Ix2>(&a[i], name);
    let (uid, mid, cat) = (r1(0, "uid")?, r1(1, "mid")?, r1(2, "cat")?);
    let (hist_mid, hist_cat, lengths) = (r2(3, "hist_mid")?, r2(4, "hist_cat")?, r1(5, "lengths")?);
    let (neg_mid, neg_cat) = if has_neg { (Some(r2(6, "neg_mid")?), Some(r2(7, "neg_cat")?)) } else { (None, None) };
    let label = arrays::readonly::<f32, Ix1>(label, "label")?;
    guarded(|| {
        Batch::from_arrays(
            uid.as_array(),
            mid.as_array(),
            cat.as_array(),
            hist_mid.as_array(),
            hist_cat.as_array(),
            lengths.as_array(),
            label.as_array(),
            neg_mid.as_ref().map(|x| x.as_array()),
            neg_cat.as_ref().map(|x| x.as_array()),
        )
        .map_err(model_error)
    })
}

/// The values of a `[B]` engine array as an int64 NumPy array.
fn ids1<'py>(py: Python<'py>, v: &[u32]) -> Bound<'py, PyArray1<i64>> {
    PyArray1::from_iter(py, v.iter().map(|&x| i64::from(x)))
}

/// The values of a `[B, T]` engine array as an int64 NumPy array.
fn ids2<'py>(py: Python<'py>, v: &[u32], b: usize, t: usize) -> PyResult<Bound<'py, PyArray2<i64>>> {
    ids1(py, v).reshape([b, t])
}

#[pymethods]
impl PyBatch {
    /// A batch from padded arrays (see the class documentation).
    #[new]
    #[pyo3(signature = (uid, mid, cat, hist_mid, hist_cat, lengths, label, neg_mid=None, neg_cat=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        uid: &Bound<'_, PyAny>,
        mid: &Bound<'_, PyAny>,
        cat: &Bound<'_, PyAny>,
        hist_mid: &Bound<'_, PyAny>,
        hist_cat: &Bound<'_, PyAny>,
        lengths: &Bound<'_, PyAny>,
        label: &Bound<'_, PyAny>,
        neg_mid: Option<&Bound<'_, PyAny>>,
        neg_cat: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        if neg_mid.is_some() != neg_cat.is_some() {
            // The rule of the JSON batch file, in its words.
            return Err(value_error("batch: `neg_mid` and `neg_cat` must be given together"));
        }
        let has_neg = neg_mid.is_some();
        let ix = index_arrays([
            Some(uid),
            Some(mid),
            Some(cat),
            Some(hist_mid),
            Some(hist_cat),
            Some(lengths),
            neg_mid,
            neg_cat,
        ])?;
        let label = label_array(label)?;
        let inner = with_int_type!(ix.dtype, T => build::<T>(&ix, has_neg, &label)?);
        Ok(Self { inner })
    }

    /// Reads a JSON batch file (docs/MODEL.md#batch-file), as `dien grads --batch-file` does.
    #[staticmethod]
    fn from_json(path: std::path::PathBuf) -> PyResult<Self> {
        Ok(Self { inner: guarded(|| Batch::from_json_file(&path).map_err(model_error))? })
    }

    /// Parses the text of a JSON batch file.
    #[staticmethod]
    fn from_json_str(text: &str) -> PyResult<Self> {
        Ok(Self { inner: guarded(|| Batch::from_json_str(text).map_err(model_error))? })
    }

    /// Number of samples B.
    #[getter]
    fn size(&self) -> usize {
        self.inner.batch
    }

    /// Padded history length T.
    #[getter]
    fn steps(&self) -> usize {
        self.inner.steps
    }

    /// Whether the batch holds negatives (then the auxiliary loss is evaluated).
    #[getter]
    fn has_negatives(&self) -> bool {
        self.inner.has_negatives()
    }

    /// User indices `[B]` (int64, a copy).
    #[getter]
    fn uid<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<i64>> {
        ids1(py, &self.inner.uid)
    }

    /// Target item indices `[B]`.
    #[getter]
    fn mid<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<i64>> {
        ids1(py, &self.inner.mid)
    }

    /// Target category indices `[B]`.
    #[getter]
    fn cat<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<i64>> {
        ids1(py, &self.inner.cat)
    }

    /// History item indices `[B, T]` (padding is 0).
    #[getter]
    fn hist_mid<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray2<i64>>> {
        ids2(py, &self.inner.hist_mid, self.inner.batch, self.inner.steps)
    }

    /// History category indices `[B, T]`.
    #[getter]
    fn hist_cat<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray2<i64>>> {
        ids2(py, &self.inner.hist_cat, self.inner.batch, self.inner.steps)
    }

    /// Negative item indices `[B, T]`, or `None`.
    #[getter]
    fn neg_mid<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyArray2<i64>>>> {
        self.inner.neg_mid.as_ref().map(|v| ids2(py, v, self.inner.batch, self.inner.steps)).transpose()
    }

    /// Negative category indices `[B, T]`, or `None`.
    #[getter]
    fn neg_cat<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyArray2<i64>>>> {
        self.inner.neg_cat.as_ref().map(|v| ids2(py, v, self.inner.batch, self.inner.steps)).transpose()
    }

    /// History lengths `[B]`.
    #[getter]
    fn lengths<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<i64>> {
        PyArray1::from_iter(py, self.inner.lengths.iter().map(|&l| l as i64))
    }

    /// Labels `[B]` (float32).
    #[getter]
    fn label<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f32>> {
        PyArray1::from_slice(py, &self.inner.label)
    }

    fn __len__(&self) -> usize {
        self.inner.batch
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other.cast::<PyBatch>().is_ok_and(|o| o.get().inner == self.inner)
    }

    fn __repr__(&self) -> String {
        format!(
            "Batch(size={}, steps={}, negatives={})",
            self.inner.batch,
            self.inner.steps,
            if self.inner.has_negatives() { "True" } else { "False" }
        )
    }
}
