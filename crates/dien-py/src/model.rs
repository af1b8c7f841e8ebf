//! `dien.Model`: a model's parameters with its forward and backward passes,
//! on the fast `f32` path (`dien_model::fast::Model`, what training runs)
//! or the double-precision reference path (`dien_model::reference`, what
//! the fast path is tested against), and its parameters in and out as
//! NumPy arrays under the names of docs/MODEL.md#tensors. This is how a
//! user checks gradients against PyTorch or JAX, or loads weights trained
//! elsewhere.
//!
//! Parameters are kept in `f32` (the checkpoint format). Parameters loaded
//! as `float64` are also kept exactly, for the `f64` path, so that finite
//! differences taken in Python see the values they set; the `f32` path
//! uses their rounding.
//!
//! A model is used by one thread at a time: its workspace is reused from
//! call to call. Calls run with the GIL released and take the model's lock,
//! so a second Python thread waits for the first.

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use dien_model::fast::Model;
use dien_model::serve::Predictor;
use dien_model::{Mode, ModelConfig, ParamStore, TensorKind, checkpoint, reference};
use numpy::prelude::*;
use numpy::{PyArray1, PyUntypedArray};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};

use crate::arrays::{self, FloatDtype};
use crate::batch::PyBatch;
use crate::config::{model_config, model_config_entries};
use crate::convert::{dict_of, from_py};
use crate::errors::{guarded, model_error, serve_error, value_error};
use crate::predictor::PyPredictor;

/// Which path computes: the fast `f32` one or the `f64` reference.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Precision {
    F32,
    F64,
}

fn precision(s: &str) -> PyResult<Precision> {
    match s {
        "f32" | "float32" => Ok(Precision::F32),
        "f64" | "float64" => Ok(Precision::F64),
        other => Err(value_error(format!("precision `{other}`: expected \"f32\" or \"f64\""))),
    }
}

fn mode(s: &str) -> PyResult<Mode> {
    match s {
        "eval" => Ok(Mode::Eval),
        "train" => Ok(Mode::Train),
        other => Err(value_error(format!("mode `{other}`: expected \"eval\" or \"train\""))),
    }
}

/// What a model holds behind its lock.
struct State {
    /// The fast path with the `f32` parameters.
    model: Model,
    /// Exact values of parameters loaded as `float64` (the others widened
    /// from `f32`); `None` while every value is an `f32` one.
    exact: Option<ParamStore<f64>>,
}

impl State {
    /// The parameters of the reference path.
    fn params64(&self) -> std::borrow::Cow<'_, ParamStore<f64>> {
        match &self.exact {
            Some(p) => std::borrow::Cow::Borrowed(p),
            None => std::borrow::Cow::Owned(self.model.params().map(f64::from)),
        }
    }
}

/// Values of one tensor handed in by `load_parameters`.
enum Values {
    F32(Vec<f32>),
    F64(Vec<f64>),
}

/// The losses of a pass, in either precision.
struct Losses {
    loss: f64,
    loss_target: f64,
    loss_aux: f64,
}

impl Losses {
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("loss", self.loss)?;
        d.set_item("loss_target", self.loss_target)?;
        d.set_item("loss_aux", self.loss_aux)?;
        Ok(d)
    }
}

/// Tensors (name, shape, values) computed without the GIL.
enum Tensors {
    F32(Vec<(String, Vec<usize>, Vec<f32>)>),
    F64(Vec<(String, Vec<usize>, Vec<f64>)>),
}

impl Tensors {
    fn into_dict<'py>(self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        match self {
            Tensors::F32(v) => {
                for (name, shape, values) in v {
                    d.set_item(name, PyArray1::from_vec(py, values).reshape(shape)?)?;
                }
            }
            Tensors::F64(v) => {
                for (name, shape, values) in v {
                    d.set_item(name, PyArray1::from_vec(py, values).reshape(shape)?)?;
                }
            }
        }
        Ok(d)
    }
}

/// A model (docs/MODEL.md#models) with its parameters: forward passes,
/// losses and gradients in `f32` (the fast path) or `f64` (the reference
/// path), and its parameters as NumPy arrays.
///
/// `Model(config, seed=2018, threads=None)` initialises a model
/// (docs/MODEL.md#tensors) from a configuration dict: `n_uid`, `n_mid`,
/// `n_cat` (table sizes) are required; `model` (`"dien"`, `"dien-noaux"`,
/// `"din"`, `"base"`), `variant`, `att`, `aux`, `d`, `H`, `max_len` and
/// `alpha_aux` are optional. `Model.load(path)` reads a checkpoint.
/// `threads` is the size of the compute pool of the `f32` path (default:
/// every core).
#[pyclass(frozen, name = "Model", module = "dien")]
pub struct PyModel {
    cfg: ModelConfig,
    threads: Option<usize>,
    pool: Option<rayon::ThreadPool>,
    state: Mutex<State>,
}

impl PyModel {
    fn build(model: Model, threads: Option<i64>) -> PyResult<Self> {
        let threads = crate::config::threads(threads).map_err(value_error)?;
        let pool = threads
            .map(|t| rayon::ThreadPoolBuilder::new().num_threads(t).build())
            .transpose()
            .map_err(|e| value_error(format!("thread pool: {e}")))?;
        Ok(Self { cfg: model.config().clone(), threads, pool, state: Mutex::new(State { model, exact: None }) })
    }

    /// The state, also after a caught panic (every call re-sizes what it uses).
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs `f` on the model's pool (or the global one).
    fn install<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        match &self.pool {
            Some(p) => p.install(f),
            None => f(),
        }
    }
}

#[pymethods]
impl PyModel {
    /// A freshly initialised model of `config` (a dict; see the class
    /// documentation), deterministic in `seed`.
    #[new]
    #[pyo3(signature = (config, seed=dien_trainer::DEFAULT_SEED, threads=None))]
    fn new(config: &Bound<'_, PyAny>, seed: u64, threads: Option<i64>) -> PyResult<Self> {
        let cfg = match from_py(config, "config")? {
            serde_json::Value::Object(m) => model_config(&m).map_err(value_error)?,
            _ => return Err(value_error("`config` must be a dict")),
        };
        let model = guarded(|| Model::init(cfg, seed).map_err(model_error))?;
        Self::build(model, threads)
    }

    /// Loads a checkpoint (docs/MODEL.md#checkpoints).
    #[staticmethod]
    #[pyo3(signature = (path, threads=None))]
    fn load(py: Python<'_>, path: PathBuf, threads: Option<i64>) -> PyResult<Self> {
        let model = py.detach(|| {
            guarded(|| {
                let (cfg, params) = checkpoint::load(&path).map_err(model_error)?;
                Model::new(cfg, params).map_err(model_error)
            })
        })?;
        Self::build(model, threads)
    }

    /// The configuration, as the dict `Model(config)` takes.
    #[getter]
    fn config<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        dict_of(py, model_config_entries(&self.cfg).iter().map(|(k, v)| (k, v)))
    }

    /// Threads of the compute pool (`None`: every core).
    #[getter]
    fn threads(&self) -> Option<usize> {
        self.threads
    }

    /// The tensors of the model in canonical order (docs/MODEL.md#tensors):
    /// a list of dicts with `name`, `shape` (a tuple) and `kind` (`"param"`,
    /// trained, or `"buffer"`, a running statistic).
    fn tensors<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let items = dien_model::tensor_specs(&self.cfg)
            .iter()
            .map(|s| {
                let d = PyDict::new(py);
                d.set_item("name", &s.name)?;
                d.set_item("shape", PyTuple::new(py, &s.shape)?)?;
                d.set_item("kind", if s.kind == TensorKind::Param { "param" } else { "buffer" })?;
                Ok(d)
            })
            .collect::<PyResult<Vec<_>>>()?;
        PyList::new(py, items)
    }

    /// One forward pass: `(logits, losses)`, the logits `[B]` (float32, or
    /// float64 with `precision="f64"`) and a dict with `loss` (the training
    /// objective `L_target + α_aux·L_aux`), `loss_target` and `loss_aux`.
    ///
    /// `mode="eval"` uses the running statistics of BatchNorm and Dice (as
    /// inference does); `mode="train"` the batch statistics. Nothing in the
    /// model changes. Indices out of the model's tables raise `ValueError`.
    #[pyo3(signature = (batch, mode="eval", precision="f32"))]
    fn forward<'py>(
        &self,
        py: Python<'py>,
        batch: &Bound<'py, PyBatch>,
        mode: &str,
        precision: &str,
    ) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyDict>)> {
        let (m, p) = (self::mode(mode)?, self::precision(precision)?);
        let b = &batch.get().inner;
        let (logits, losses) = py.detach(|| {
            guarded(|| {
                let mut st = self.lock();
                match p {
                    Precision::F32 => {
                        let model = &mut st.model;
                        let l = self.install(|| model.forward(b, m)).map_err(model_error)?;
                        let losses = Losses { loss: l.loss, loss_target: l.loss_target, loss_aux: l.loss_aux };
                        Ok((Values::F32(st.model.logits().to_vec()), losses))
                    }
                    Precision::F64 => {
                        let o = reference::forward(&self.cfg, &st.params64(), b, m).map_err(model_error)?;
                        let losses = Losses { loss: o.loss, loss_target: o.loss_target, loss_aux: o.loss_aux };
                        Ok((Values::F64(o.logits), losses))
                    }
                }
            })
        })?;
        let logits = match logits {
            Values::F32(v) => PyArray1::from_vec(py, v).into_any(),
            Values::F64(v) => PyArray1::from_vec(py, v).into_any(),
        };
        Ok((logits, losses.to_dict(py)?))
    }

    /// Times the Rust call behind `forward` (float32) on `batch`:
    /// `repeats` passes on the model's threads with the GIL released, the
    /// pool entered once as `dien bench --mode infer` does. Returns the
    /// seconds of each pass (float64 array); the difference to timing
    /// `forward` from Python is the cost of the Python layer
    /// (`scripts/python-bench.py`).
    #[pyo3(signature = (batch, mode="eval", repeats=50))]
    fn rust_timings<'py>(
        &self,
        py: Python<'py>,
        batch: &Bound<'py, PyBatch>,
        mode: &str,
        repeats: usize,
    ) -> PyResult<Bound<'py, PyArray1<f64>>> {
        let m = self::mode(mode)?;
        let b = &batch.get().inner;
        let times = py.detach(|| {
            guarded(|| {
                let mut st = self.lock();
                let model = &mut st.model;
                self.install(|| {
                    let mut t = Vec::with_capacity(repeats);
                    for _ in 0..repeats {
                        let start = Instant::now();
                        std::hint::black_box(model.forward(b, m)?);
                        t.push(start.elapsed().as_secs_f64());
                    }
                    Ok(t)
                })
                .map_err(model_error)
            })
        })?;
        Ok(PyArray1::from_vec(py, times))
    }

    /// One training-mode forward and backward pass: `(losses, grads)`,
    /// the losses as in `forward` and the gradient of `loss` with respect
    /// to every trainable tensor (`kind == "param"`), by tensor name, with
    /// the tensor's shape (dense, embedding tables included). float32 on
    /// the fast path, float64 with `precision="f64"` (the reference path).
    /// Nothing in the model changes (no parameter, no running statistic).
    #[pyo3(signature = (batch, precision="f32"))]
    fn loss_and_grads<'py>(
        &self,
        py: Python<'py>,
        batch: &Bound<'py, PyBatch>,
        precision: &str,
    ) -> PyResult<(Bound<'py, PyDict>, Bound<'py, PyDict>)> {
        let p = self::precision(precision)?;
        let b = &batch.get().inner;
        let (losses, grads) = py.detach(|| {
            guarded(|| {
                let mut st = self.lock();
                match p {
                    Precision::F32 => {
                        let model = &mut st.model;
                        let l = self.install(|| model.forward_backward(b)).map_err(model_error)?;
                        let g = st.model.gradients().to_dense_store(&self.cfg);
                        let grads = g
                            .iter()
                            .filter(|(s, _)| s.kind == TensorKind::Param)
                            .map(|(s, v)| (s.name.clone(), s.shape.clone(), v.to_vec()))
                            .collect();
                        let losses = Losses { loss: l.loss, loss_target: l.loss_target, loss_aux: l.loss_aux };
                        Ok((losses, Tensors::F32(grads)))
                    }
                    Precision::F64 => {
                        let (o, g) = reference::forward_backward(&self.cfg, &st.params64(), b).map_err(model_error)?;
                        let grads = g
                            .iter()
                            .filter(|(s, _)| s.kind == TensorKind::Param)
                            .map(|(s, v)| (s.name.clone(), s.shape.clone(), v.to_vec()))
                            .collect();
                        let losses = Losses { loss: o.loss, loss_target: o.loss_target, loss_aux: o.loss_aux };
                        Ok((losses, Tensors::F64(grads)))
                    }
                }
            })
        })?;
        Ok((losses.to_dict(py)?, grads.into_dict(py)?))
    }

    /// Every tensor (parameters and running statistics) by name, as a copy:
    /// float32 arrays, or with `precision="f64"` the float64 values the
    /// reference path uses.
    #[pyo3(signature = (precision="f32"))]
    fn parameters<'py>(&self, py: Python<'py>, precision: &str) -> PyResult<Bound<'py, PyDict>> {
        let p = self::precision(precision)?;
        let tensors = py.detach(|| {
            let st = self.lock();
            match p {
                Precision::F32 => Tensors::F32(
                    st.model.params().iter().map(|(s, v)| (s.name.clone(), s.shape.clone(), v.to_vec())).collect(),
                ),
                Precision::F64 => Tensors::F64(
                    st.params64().iter().map(|(s, v)| (s.name.clone(), s.shape.clone(), v.to_vec())).collect(),
                ),
            }
        });
        tensors.into_dict(py)
    }

    /// Sets tensors from a dict of arrays by name (as `parameters()` gives
    /// them): each must be a tensor of this model with its exact shape,
    /// float32 or float64, C-contiguous, finite. float64 values are kept
    /// exactly for the `f64` path (the `f32` path uses their rounding).
    /// Tensors not named keep their values, unless `strict=True`, which
    /// requires every tensor.
    #[pyo3(signature = (params, strict=false))]
    fn load_parameters(&self, py: Python<'_>, params: &Bound<'_, PyDict>, strict: bool) -> PyResult<()> {
        let specs = dien_model::tensor_specs(&self.cfg);
        let mut given: Vec<(usize, Values)> = Vec::new();
        for (k, v) in params.iter() {
            let name: String = k.extract().map_err(|_| value_error("parameter names must be str"))?;
            let Some(i) = specs.iter().position(|s| s.name == name) else {
                let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
                return Err(value_error(format!(
                    "unknown tensor `{name}` (this model's tensors are: {})",
                    names.join(", ")
                )));
            };
            let spec = &specs[i];
            let a = arrays::ndarray(&v, &name)?;
            if a.shape() != spec.shape.as_slice() {
                return Err(value_error(format!(
                    "`{name}` has shape {:?} in this model, got {:?}",
                    spec.shape,
                    a.shape()
                )));
            }
            arrays::check_layout(&a, &name, spec.shape.len(), &format!("{:?}", spec.shape))?;
            given.push((i, read_values(&a, &name)?));
        }
        if strict {
            let missing: Vec<&str> = specs
                .iter()
                .enumerate()
                .filter(|(i, _)| !given.iter().any(|(j, _)| j == i))
                .map(|(_, s)| s.name.as_str())
                .collect();
            if !missing.is_empty() {
                return Err(value_error(format!("strict: missing tensors: {}", missing.join(", "))));
            }
        }
        py.detach(|| {
            let mut st = self.lock();
            let st = &mut *st;
            if st.exact.is_none() && given.iter().any(|(_, v)| matches!(v, Values::F64(_))) {
                st.exact = Some(st.model.params().map(f64::from));
            }
            let params = st.model.params_mut();
            for (i, v) in &given {
                let dst = params.data_mut(*i);
                match v {
                    Values::F32(x) => dst.copy_from_slice(x),
                    Values::F64(x) => dst.iter_mut().zip(x).for_each(|(d, &s)| *d = s as f32),
                }
                if let Some(e) = &mut st.exact {
                    let dst = e.data_mut(*i);
                    match v {
                        Values::F32(x) => dst.iter_mut().zip(x).for_each(|(d, &s)| *d = f64::from(s)),
                        Values::F64(x) => dst.copy_from_slice(x),
                    }
                }
            }
        });
        Ok(())
    }

    /// Writes the model as a checkpoint (docs/MODEL.md#checkpoints, `f32`),
    /// without vocabularies: a `Predictor` loaded from it scores by index.
    fn save(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        py.detach(|| {
            guarded(|| {
                let st = self.lock();
                checkpoint::save(&path, &self.cfg, st.model.params()).map_err(model_error)
            })
        })
    }

    /// A `Predictor` of the current parameters (a copy; without
    /// vocabularies, so it scores by index).
    fn predictor(&self, py: Python<'_>) -> PyResult<PyPredictor> {
        let inner = py.detach(|| guarded(|| Predictor::from_model(&self.lock().model).map_err(serve_error)))?;
        Ok(PyPredictor { inner })
    }

    fn __repr__(&self) -> String {
        format!(
            "Model(model={:?}, d={}, H={}, n_uid={}, n_mid={}, n_cat={})",
            self.cfg.model.name(),
            self.cfg.d,
            self.cfg.hidden,
            self.cfg.n_uid,
            self.cfg.n_mid,
            self.cfg.n_cat
        )
    }
}

/// The values of a float32 or float64 array (layout checked), each finite.
fn read_values(a: &Bound<'_, PyUntypedArray>, name: &str) -> PyResult<Values> {
    fn read<T: numpy::Element + Copy + Into<f64>>(a: &Bound<'_, PyUntypedArray>, name: &str) -> PyResult<Vec<T>> {
        let r = arrays::readonly::<T, ndarray::IxDyn>(a, name)?;
        let v = r.as_slice().map_err(|e| value_error(format!("`{name}`: {e}")))?.to_vec();
        if let Some(i) = v.iter().position(|&x| !x.into().is_finite()) {
            return Err(value_error(format!("`{name}`: element {i} is not finite ({})", v[i].into())));
        }
        Ok(v)
    }
    Ok(match arrays::require_float(a, name)? {
        FloatDtype::F32 => Values::F32(read(a, name)?),
        FloatDtype::F64 => Values::F64(read(a, name)?),
    })
}
