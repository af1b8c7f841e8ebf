//! Plain data between Python and JSON values: settings dictionaries come
//! in as [`serde_json::Value`] (so that the checks of [`crate::config`] are
//! pure Rust, testable without an interpreter), and records and metrics go
//! out as Python dictionaries.

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use serde_json::{Map, Number, Value};

/// A JSON value as a Python object: `null` → `None`, numbers → `int` or
/// `float`, arrays → `list`, objects → `dict` (in their order).
pub fn to_py<'py>(py: Python<'py>, v: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match v {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.into_pyobject(py)?.into_any()
            } else if let Some(u) = n.as_u64() {
                u.into_pyobject(py)?.into_any()
            } else {
                n.as_f64().unwrap_or(f64::NAN).into_pyobject(py)?.into_any()
            }
        }
        Value::String(s) => PyString::new(py, s).into_any(),
        Value::Array(a) => {
            let items = a.iter().map(|x| to_py(py, x)).collect::<PyResult<Vec<_>>>()?;
            PyList::new(py, items)?.into_any()
        }
        Value::Object(m) => dict(py, m)?.into_any(),
    })
}

/// A JSON object as a Python `dict`.
pub fn dict<'py>(py: Python<'py>, m: &Map<String, Value>) -> PyResult<Bound<'py, PyDict>> {
    dict_of(py, m)
}

/// `(key, value)` entries as a Python `dict`, in their order.
pub fn dict_of<'py, 'a, K: AsRef<str> + 'a>(
    py: Python<'py>,
    entries: impl IntoIterator<Item = (K, &'a Value)>,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    for (k, v) in entries {
        d.set_item(k.as_ref(), to_py(py, v)?)?;
    }
    Ok(d)
}

/// A Python value as JSON, for settings: `None`, `bool`, `int`, `float`,
/// `str`, paths (`os.PathLike`), lists, tuples and dicts with `str` keys,
/// and NumPy scalars (anything with `__index__` or `__float__`). `what`
/// names the value in the error.
pub fn from_py(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Value> {
    if obj.is_none() {
        return Ok(Value::Null);
    }
    if let Ok(b) = obj.cast::<PyBool>() {
        return Ok(Value::Bool(b.is_true()));
    }
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(Value::String(s.to_cow()?.into_owned()));
    }
    if obj.is_instance_of::<PyInt>() {
        return int(obj, what);
    }
    if let Ok(f) = obj.cast::<PyFloat>() {
        return float(f.value(), what);
    }
    if let Ok(l) = obj.cast::<PyList>() {
        return l.iter().enumerate().map(|(i, x)| from_py(&x, &format!("{what}[{i}]"))).collect();
    }
    if let Ok(t) = obj.cast::<PyTuple>() {
        return t.iter().enumerate().map(|(i, x)| from_py(&x, &format!("{what}[{i}]"))).collect();
    }
    if let Ok(d) = obj.cast::<PyDict>() {
        let mut m = Map::new();
        for (k, v) in d.iter() {
            let key: String = k
                .extract()
                .map_err(|_| PyTypeError::new_err(format!("{what}: keys must be str, found {}", type_name(&k))))?;
            let value = from_py(&v, &format!("{what}[{key:?}]"))?;
            m.insert(key, value);
        }
        return Ok(Value::Object(m));
    }
    if obj.hasattr("__fspath__")? {
        let os = obj.py().import("os")?;
        let p = os.call_method1("fspath", (obj,))?;
        return from_py(&p, what);
    }
    // NumPy scalars: integers have `__index__`, floats `__float__`.
    if obj.hasattr("__index__")? {
        return int(obj, what);
    }
    if obj.hasattr("__float__")? {
        return float(obj.extract::<f64>()?, what);
    }
    Err(PyTypeError::new_err(format!("{what}: unsupported value of type {}", type_name(obj))))
}

fn int(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Value> {
    if let Ok(i) = obj.extract::<i64>() {
        return Ok(Value::Number(i.into()));
    }
    match obj.extract::<u64>() {
        Ok(u) => Ok(Value::Number(u.into())),
        Err(_) => Err(crate::errors::value_error(format!("{what}: integer {obj} is out of range"))),
    }
}

fn float(x: f64, what: &str) -> PyResult<Value> {
    Number::from_f64(x)
        .map(Value::Number)
        .ok_or_else(|| crate::errors::value_error(format!("{what}: {x} is not a finite number")))
}

/// The name of `obj`'s type, for messages.
pub fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type().name().map(|n| n.to_string()).unwrap_or_else(|_| "?".into())
}
