//! NumPy arrays at the boundary: the checks every array argument goes
//! through (a NumPy array of the right number of dimensions and kind of
//! dtype, C-contiguous and aligned), each failure a `ValueError` that names
//! the argument, and typed read-only views of the arrays that pass.
//!
//! Arrays are read where they are: an array of a supported dtype is viewed
//! (`ndarray::ArrayView`) in place, never copied first. An array that is not
//! C-contiguous (a strided slice, a transposed view) or not aligned is
//! refused rather than copied silently; `np.ascontiguousarray(x)` makes one
//! that is accepted.

use numpy::prelude::*;
use numpy::{PyArray, PyArrayDescr, PyReadonlyArray, PyUntypedArray};
use pyo3::prelude::*;
use pyo3::types::{PyList, PyTuple};

use crate::convert::type_name;
use crate::errors::value_error;

/// The integer dtypes accepted for indices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IntDtype {
    /// `int8`.
    I8,
    /// `int16`.
    I16,
    /// `int32`.
    I32,
    /// `int64` (NumPy's default integer).
    I64,
    /// `uint8`.
    U8,
    /// `uint16`.
    U16,
    /// `uint32`.
    U32,
    /// `uint64`.
    U64,
}

/// Runs `$body` with the type alias `$t` set to the Rust type of an
/// [`IntDtype`].
#[macro_export]
macro_rules! with_int_type {
    ($dt:expr, $t:ident => $body:expr) => {
        match $dt {
            $crate::arrays::IntDtype::I8 => {
                type $t = i8;
                $body
            }
            $crate::arrays::IntDtype::I16 => {
                type $t = i16;
                $body
            }
            $crate::arrays::IntDtype::I32 => {
                type $t = i32;
                $body
            }
            $crate::arrays::IntDtype::I64 => {
                type $t = i64;
                $body
            }
            $crate::arrays::IntDtype::U8 => {
                type $t = u8;
                $body
            }
            $crate::arrays::IntDtype::U16 => {
                type $t = u16;
                $body
            }
            $crate::arrays::IntDtype::U32 => {
                type $t = u32;
                $body
            }
            $crate::arrays::IntDtype::U64 => {
                type $t = u64;
                $body
            }
        }
    };
}

/// The floating-point dtypes accepted for values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FloatDtype {
    /// `float32`.
    F32,
    /// `float64`.
    F64,
}

/// Whether `obj` is a NumPy array.
pub fn is_ndarray(obj: &Bound<'_, PyAny>) -> bool {
    obj.cast::<PyUntypedArray>().is_ok()
}

/// `obj` as a NumPy array: an array as it is, a list or tuple through
/// `numpy.asarray` (a new array). Anything else is a `ValueError`.
pub fn ndarray<'py>(obj: &Bound<'py, PyAny>, name: &str) -> PyResult<Bound<'py, PyUntypedArray>> {
    if let Ok(a) = obj.cast::<PyUntypedArray>() {
        return Ok(a.clone());
    }
    if obj.cast::<PyList>().is_ok() || obj.cast::<PyTuple>().is_ok() {
        let np = obj.py().import("numpy")?;
        let a = np.call_method1("asarray", (obj,)).map_err(|e| value_error(format!("`{name}`: {e}")))?;
        return Ok(a.cast_into::<PyUntypedArray>()?);
    }
    Err(value_error(format!("`{name}` must be a NumPy array, got {}", type_name(obj))))
}

/// "shape (2, 3)" as NumPy writes shapes.
fn shape_text(shape: &[usize]) -> String {
    match shape {
        [n] => format!("({n},)"),
        s => format!("({})", s.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")),
    }
}

/// Checks the layout of an array argument: `ndim` dimensions (`dims`
/// describes them, e.g. `[B, T]`), C-contiguous, aligned, native byte order.
pub fn check_layout(a: &Bound<'_, PyUntypedArray>, name: &str, ndim: usize, dims: &str) -> PyResult<()> {
    if a.ndim() != ndim {
        return Err(value_error(format!(
            "`{name}` must be a {ndim}-D array {dims}, got shape {}",
            shape_text(a.shape())
        )));
    }
    if !a.is_c_contiguous() {
        return Err(value_error(format!(
            "`{name}` is not C-contiguous (a strided or transposed view): pass np.ascontiguousarray({name})"
        )));
    }
    if !a.is_aligned() {
        return Err(value_error(format!("`{name}` is not aligned: pass np.require({name}, requirements=\"CA\")")));
    }
    if a.dtype().is_native_byteorder() == Some(false) {
        return Err(value_error(format!(
            "`{name}` has dtype {}, which is not in this machine's byte order: pass {name}.astype({name}.dtype.newbyteorder(\"=\"))",
            dtype_text(&a.dtype())
        )));
    }
    Ok(())
}

fn dtype_text(d: &Bound<'_, PyArrayDescr>) -> String {
    d.str().map(|s| s.to_string()).unwrap_or_else(|_| "?".into())
}

/// The integer dtype of `a`, or `None` for any other dtype.
pub fn int_dtype(a: &Bound<'_, PyUntypedArray>) -> Option<IntDtype> {
    let d = a.dtype();
    match (d.kind(), d.itemsize()) {
        (b'i', 1) => Some(IntDtype::I8),
        (b'i', 2) => Some(IntDtype::I16),
        (b'i', 4) => Some(IntDtype::I32),
        (b'i', 8) => Some(IntDtype::I64),
        (b'u', 1) => Some(IntDtype::U8),
        (b'u', 2) => Some(IntDtype::U16),
        (b'u', 4) => Some(IntDtype::U32),
        (b'u', 8) => Some(IntDtype::U64),
        _ => None,
    }
}

/// The integer dtype of `a`, or a `ValueError` naming its dtype.
pub fn require_int(a: &Bound<'_, PyUntypedArray>, name: &str) -> PyResult<IntDtype> {
    int_dtype(a).ok_or_else(|| not_int(a, name))
}

/// The `ValueError` of an index array whose dtype is not an integer one.
pub fn not_int(a: &Bound<'_, PyUntypedArray>, name: &str) -> PyErr {
    value_error(format!(
        "`{name}` has dtype {}; expected an integer array of indices (int64, int32, uint32, ...)",
        dtype_text(&a.dtype())
    ))
}

/// The floating-point dtype of `a`, or `None`.
pub fn float_dtype(a: &Bound<'_, PyUntypedArray>) -> Option<FloatDtype> {
    let d = a.dtype();
    match (d.kind(), d.itemsize()) {
        (b'f', 4) => Some(FloatDtype::F32),
        (b'f', 8) => Some(FloatDtype::F64),
        _ => None,
    }
}

/// The floating-point dtype of `a`, or a `ValueError` naming its dtype.
pub fn require_float(a: &Bound<'_, PyUntypedArray>, name: &str) -> PyResult<FloatDtype> {
    float_dtype(a).ok_or_else(|| {
        value_error(format!("`{name}` has dtype {}; expected float32 or float64", dtype_text(&a.dtype())))
    })
}

/// Whether `a`'s dtype is numeric or boolean (what `astype` turns into a
/// number without guessing).
pub fn is_numeric(a: &Bound<'_, PyUntypedArray>) -> bool {
    matches!(a.dtype().kind(), b'b' | b'i' | b'u' | b'f')
}

/// `a.astype(dtype)`: a converted copy.
pub fn astype<'py>(a: &Bound<'py, PyUntypedArray>, dtype: &str) -> PyResult<Bound<'py, PyUntypedArray>> {
    Ok(a.call_method1("astype", (dtype,))?.cast_into::<PyUntypedArray>()?)
}

/// A read-only typed view of an array whose dtype and layout were checked.
pub fn readonly<'py, T: numpy::Element, D: ndarray::Dimension>(
    a: &Bound<'py, PyUntypedArray>,
    name: &str,
) -> PyResult<PyReadonlyArray<'py, T, D>> {
    let typed = a.as_any().cast::<PyArray<T, D>>().map_err(|e| value_error(format!("`{name}`: {e}")))?;
    typed.try_readonly().map_err(|e| value_error(format!("`{name}`: {e}")))
}

/// A 1-D array of indices (or a list or tuple of ints) as `u32` values,
/// each checked: a negative value or one above `u32::MAX` is a
/// `ValueError` naming the position. An empty list, or an empty array of any
/// dtype, is an empty history.
pub fn index_vec(obj: &Bound<'_, PyAny>, name: &str) -> PyResult<Vec<u32>> {
    if !is_ndarray(obj) && obj.len().is_ok_and(|n| n == 0) {
        return Ok(Vec::new());
    }
    let a = ndarray(obj, name)?;
    check_layout(&a, name, 1, "of indices")?;
    if a.len() == 0 {
        // `np.asarray([])` is float64: an empty list is empty in any dtype.
        return Ok(Vec::new());
    }
    let dt = require_int(&a, name)?;
    with_int_type!(dt, T => {
        let r = readonly::<T, ndarray::Ix1>(&a, name)?;
        to_indices(r.as_slice().map_err(|e| value_error(format!("`{name}`: {e}")))?, name)
    })
}

/// Integers as `u32` indices; the error names the first that is not one.
fn to_indices<T: Copy + TryInto<u32> + std::fmt::Display>(s: &[T], name: &str) -> PyResult<Vec<u32>> {
    s.iter()
        .enumerate()
        .map(|(i, &x)| {
            x.try_into().map_err(|_| {
                value_error(format!(
                    "`{name}`[{i}]: value {x} is not an index (indices are integers from 0 to {})",
                    u32::MAX
                ))
            })
        })
        .collect()
}
