//! `dien.Predictor`: the request path ([`dien_model::serve::Predictor`],
//! docs/EMBEDDING.md) for Python. One user with a history and K candidates
//! per request, by string ids (through the checkpoint's vocabularies) or by
//! index arrays; many requests at once with `score_batch`.
//!
//! The inputs are read (string ids copied, index arrays checked and read
//! into `u32` buffers) while the GIL is held; the scoring itself runs with
//! the GIL released (`Python::detach`, PyO3's `allow_threads`), so Python
//! threads score in parallel, each on a scratch kept per OS thread. Since
//! nothing the scoring reads belongs to Python, another thread writing to
//! an input array meanwhile cannot race with it.

use std::cell::RefCell;
use std::path::PathBuf;
use std::time::Instant;

use dien_model::serve::{Items, Predictor, Scratch, ServeError, Vocabs};
use numpy::prelude::*;
use numpy::{PyArray1, PyUntypedArray};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyInt, PyList, PyString, PyTuple};
use rayon::prelude::*;

use crate::arrays;
use crate::config::model_config_entries;
use crate::convert::{dict_of, type_name};
use crate::errors::{guarded, serve_error, value_error};

thread_local! {
    /// The scratch of the request path on this OS thread (one per Python
    /// thread that scores).
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::new());
}

/// Runs `f` with this thread's scratch (a fresh one if it is in use).
fn with_scratch<R>(f: impl FnOnce(&mut Scratch) -> R) -> R {
    SCRATCH.with(|s| match s.try_borrow_mut() {
        Ok(mut s) => f(&mut s),
        Err(_) => f(&mut Scratch::new()),
    })
}

/// One request, read from Python and owned by Rust.
enum Request {
    /// By string ids, mapped through the vocabularies.
    Strings {
        /// The user (`None`: unknown).
        uid: Option<String>,
        hist_items: Vec<String>,
        hist_cats: Vec<String>,
        cand_items: Vec<String>,
        cand_cats: Vec<String>,
    },
    /// By index.
    Indices {
        /// The user (`None`: unknown, index 0).
        uid: Option<u32>,
        hist_mid: Vec<u32>,
        hist_cat: Vec<u32>,
        cand_mid: Vec<u32>,
        cand_cat: Vec<u32>,
    },
}

/// Whether a request is by string id (`true`) or by index, as its candidate
/// items say: a NumPy integer array or a list of ints is by index, a list
/// of str (or a NumPy str array) by string id.
fn by_string(cands: &Bound<'_, PyAny>) -> PyResult<bool> {
    if let Ok(a) = cands.cast::<PyUntypedArray>() {
        return match a.dtype().kind() {
            b'i' | b'u' => Ok(false),
            b'U' | b'O' => Ok(true),
            _ => Err(arrays::not_int(a, "cand_items")),
        };
    }
    if cands.is_instance_of::<PyString>() {
        return Err(value_error("`cand_items` must be a list of str ids or an array of indices, got a single str"));
    }
    if cands.cast::<PyList>().is_ok() || cands.cast::<PyTuple>().is_ok() {
        let first = cands.try_iter()?.next().transpose()?;
        return Ok(match first {
            // A list of ints (not bools) is by index.
            Some(x) => !x.is_instance_of::<PyInt>() || x.is_instance_of::<PyBool>(),
            None => true,
        });
    }
    Err(value_error(format!(
        "`cand_items` must be a list of str ids or a NumPy array of indices, got {}",
        type_name(cands)
    )))
}

/// A list of string ids.
fn strings(obj: &Bound<'_, PyAny>, name: &str) -> PyResult<Vec<String>> {
    if obj.is_instance_of::<PyString>() {
        return Err(value_error(format!("`{name}` must be a list of str ids, got a single str")));
    }
    obj.extract::<Vec<String>>().map_err(|_| {
        value_error(format!(
            "`{name}` must be a list of str ids like `cand_items` (or every list an array of indices), got {}",
            type_name(obj)
        ))
    })
}

impl Request {
    /// Reads a request; the candidate items decide between string ids and
    /// indices, and the other lists must follow.
    fn extract(
        hist_items: &Bound<'_, PyAny>,
        hist_cats: &Bound<'_, PyAny>,
        cand_items: &Bound<'_, PyAny>,
        cand_cats: &Bound<'_, PyAny>,
        uid: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let uid = uid.filter(|u| !u.is_none());
        if cand_items.len().is_ok_and(|n| n == 0) {
            return Err(serve_error(ServeError::NoCandidates));
        }
        if by_string(cand_items)? {
            let uid = uid
                .map(|u| {
                    u.extract::<String>()
                        .map_err(|_| value_error(format!("`uid` must be a str id, got {}", type_name(u))))
                })
                .transpose()?;
            Ok(Self::Strings {
                uid,
                hist_items: strings(hist_items, "history_items")?,
                hist_cats: strings(hist_cats, "history_cats")?,
                cand_items: strings(cand_items, "cand_items")?,
                cand_cats: strings(cand_cats, "cand_cats")?,
            })
        } else {
            let uid = uid
                .map(|u| {
                    let i = u
                        .extract::<i64>()
                        .map_err(|_| value_error(format!("`uid` must be an integer index, got {}", type_name(u))))?;
                    u32::try_from(i).map_err(|_| {
                        value_error(format!(
                            "`uid`: value {i} is not an index (indices are integers from 0 to {})",
                            u32::MAX
                        ))
                    })
                })
                .transpose()?;
            Ok(Self::Indices {
                uid,
                hist_mid: arrays::index_vec(hist_items, "history_items")?,
                hist_cat: arrays::index_vec(hist_cats, "history_cats")?,
                cand_mid: arrays::index_vec(cand_items, "cand_items")?,
                cand_cat: arrays::index_vec(cand_cats, "cand_cats")?,
            })
        }
    }

    /// Number of candidates.
    fn len(&self) -> usize {
        match self {
            Self::Strings { cand_items, .. } => cand_items.len(),
            Self::Indices { cand_mid, .. } => cand_mid.len(),
        }
    }

    /// Scores into `out` (one probability per candidate).
    fn score_into(&self, p: &Predictor, scratch: &mut Scratch, out: &mut [f32]) -> Result<(), ServeError> {
        match self {
            Self::Strings { uid: Some(user), hist_items, hist_cats, cand_items, cand_cats } => {
                p.score_ids_into(scratch, user, hist_items, hist_cats, cand_items, cand_cats, out)
            }
            Self::Strings { uid: None, hist_items, hist_cats, cand_items, cand_cats } => {
                // No user is index 0. The empty id maps there unless a
                // vocabulary holds it; then the ids are mapped here, as
                // `score_ids_into` maps them.
                let v = p.vocabs().ok_or(ServeError::NoVocabularies)?;
                if v.uid("") == 0 {
                    return p.score_ids_into(scratch, "", hist_items, hist_cats, cand_items, cand_cats, out);
                }
                let map = |ids: &[String], f: fn(&Vocabs, &str) -> u32| ids.iter().map(|s| f(v, s)).collect::<Vec<_>>();
                let (hm, hc) = (map(hist_items, Vocabs::mid), map(hist_cats, Vocabs::cat));
                let (cm, cc) = (map(cand_items, Vocabs::mid), map(cand_cats, Vocabs::cat));
                p.score_into(scratch, 0, Items::new(&hm, &hc), Items::new(&cm, &cc), out)
            }
            Self::Indices { uid, hist_mid, hist_cat, cand_mid, cand_cat } => p.score_into(
                scratch,
                uid.unwrap_or(0),
                Items::new(hist_mid, hist_cat),
                Items::new(cand_mid, cand_cat),
                out,
            ),
        }
    }
}

/// A loaded model ready to score requests; immutable, shared by threads.
///
/// Load a checkpoint with `Predictor.load(path)` (its vocabularies, the
/// `.vocab.json` sidecar, come with it when present), or take one from a
/// `Model` with `Model.predictor()`. Scores equal those of the Rust API
/// (`dien_model::serve::Predictor`) bit for bit.
#[pyclass(frozen, name = "Predictor", module = "dien")]
pub struct PyPredictor {
    /// The request path.
    pub inner: Predictor,
}

#[pymethods]
impl PyPredictor {
    /// Loads a checkpoint (docs/MODEL.md#checkpoints) and, when the sidecar
    /// `<name>.vocab.json` exists beside it, its vocabularies.
    #[staticmethod]
    fn load(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        let inner = py.detach(|| guarded(|| Predictor::load(&path).map_err(serve_error)))?;
        Ok(Self { inner })
    }

    /// The model configuration, as a dict (the keys of `dien.Model`).
    #[getter]
    fn config<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        dict_of(py, model_config_entries(self.inner.config()).iter().map(|(k, v)| (k, v)))
    }

    /// Whether the predictor has vocabularies (can score string ids).
    #[getter]
    fn has_vocabs(&self) -> bool {
        self.inner.vocabs().is_some()
    }

    /// The longest history the model uses: longer ones keep their last
    /// `max_len` behaviours.
    #[getter]
    fn max_len(&self) -> usize {
        self.inner.config().max_len
    }

    /// Click probabilities of the candidates for one user.
    ///
    /// By string ids: `history_items`, `history_cats`, `cand_items` and
    /// `cand_cats` are lists of str and `uid` a str (unknown ids map to
    /// index 0). By index: they are 1-D NumPy integer arrays (or lists of
    /// int) and `uid` an int. `uid=None` is the unknown user. Returns a
    /// float32 array with one probability per candidate. Bad input raises
    /// `ValueError`.
    #[pyo3(signature = (history_items, history_cats, cand_items, cand_cats, uid=None))]
    fn score<'py>(
        &self,
        py: Python<'py>,
        history_items: &Bound<'py, PyAny>,
        history_cats: &Bound<'py, PyAny>,
        cand_items: &Bound<'py, PyAny>,
        cand_cats: &Bound<'py, PyAny>,
        uid: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyArray1<f32>>> {
        let req = Request::extract(history_items, history_cats, cand_items, cand_cats, uid)?;
        let k = req.len();
        if k == 0 {
            return Err(serve_error(ServeError::NoCandidates));
        }
        let out = PyArray1::<f32>::zeros(py, k, false);
        {
            let mut w = out.readwrite();
            let slice = w.as_slice_mut().map_err(|e| value_error(e.to_string()))?;
            let p = &self.inner;
            py.detach(|| guarded(|| with_scratch(|s| req.score_into(p, s, slice)).map_err(serve_error)))?;
        }
        Ok(out)
    }

    /// Scores many requests, in parallel on `threads` threads (default:
    /// every core) with the GIL released.
    ///
    /// Each argument is a list with one entry per request, each entry as in
    /// `score`; `uids` is `None` (unknown users) or a list. Returns a list
    /// of float32 arrays, one per request. An error names the request.
    #[pyo3(signature = (history_items, history_cats, cand_items, cand_cats, uids=None, threads=None))]
    #[allow(clippy::too_many_arguments)]
    fn score_batch<'py>(
        &self,
        py: Python<'py>,
        history_items: &Bound<'py, PyAny>,
        history_cats: &Bound<'py, PyAny>,
        cand_items: &Bound<'py, PyAny>,
        cand_cats: &Bound<'py, PyAny>,
        uids: Option<&Bound<'py, PyAny>>,
        threads: Option<i64>,
    ) -> PyResult<Vec<Bound<'py, PyArray1<f32>>>> {
        let threads = crate::config::threads(threads).map_err(value_error)?;
        let list = |obj: &Bound<'py, PyAny>, name: &str| -> PyResult<Vec<Bound<'py, PyAny>>> {
            if obj.is_instance_of::<PyString>() || arrays::is_ndarray(obj) {
                return Err(value_error(format!("`{name}` must be a list with one entry per request")));
            }
            obj.try_iter()
                .map_err(|_| value_error(format!("`{name}` must be a list with one entry per request")))?
                .collect()
        };
        let (hi, hc, ci, cc) = (
            list(history_items, "history_items")?,
            list(history_cats, "history_cats")?,
            list(cand_items, "cand_items")?,
            list(cand_cats, "cand_cats")?,
        );
        let us = uids.filter(|u| !u.is_none()).map(|u| list(u, "uids")).transpose()?;
        let n = ci.len();
        for (name, len) in [("history_items", hi.len()), ("history_cats", hc.len()), ("cand_cats", cc.len())]
            .into_iter()
            .chain(us.as_ref().map(|u| ("uids", u.len())))
        {
            if len != n {
                return Err(value_error(format!("`{name}` has {len} requests, `cand_items` has {n}")));
            }
        }
        let reqs = (0..n)
            .map(|i| {
                Request::extract(&hi[i], &hc[i], &ci[i], &cc[i], us.as_ref().map(|u| &u[i]))
                    .map_err(|e| value_error(format!("request {i}: {}", e.value(py))))
            })
            .collect::<PyResult<Vec<_>>>()?;
        let p = &self.inner;
        let scored = py.detach(|| {
            guarded(|| {
                let run = || {
                    reqs.par_iter()
                        .enumerate()
                        .map_init(Scratch::new, |s, (i, r)| {
                            let mut out = vec![0.0f32; r.len()];
                            let res =
                                if r.len() == 0 { Err(ServeError::NoCandidates) } else { r.score_into(p, s, &mut out) };
                            res.map(|()| out).map_err(|e| (i, e))
                        })
                        .collect::<Result<Vec<Vec<f32>>, (usize, ServeError)>>()
                };
                let r = match threads {
                    None => run(),
                    Some(t) => rayon::ThreadPoolBuilder::new()
                        .num_threads(t)
                        .build()
                        .map_err(|e| value_error(format!("thread pool: {e}")))?
                        .install(run),
                };
                r.map_err(|(i, e)| value_error(format!("request {i}: {e}")))
            })
        })?;
        Ok(scored.into_iter().map(|v| PyArray1::from_vec(py, v)).collect())
    }

    /// Times the Rust call behind `score` for one request: the request is
    /// read once, then scored `repeats` times on this thread with the GIL
    /// released. Returns the seconds of each call (float64 array); the
    /// difference to timing `score` from Python is the cost of the Python
    /// layer (`scripts/python-bench.py`).
    #[pyo3(signature = (history_items, history_cats, cand_items, cand_cats, uid=None, repeats=1000))]
    #[allow(clippy::too_many_arguments)]
    fn rust_timings<'py>(
        &self,
        py: Python<'py>,
        history_items: &Bound<'py, PyAny>,
        history_cats: &Bound<'py, PyAny>,
        cand_items: &Bound<'py, PyAny>,
        cand_cats: &Bound<'py, PyAny>,
        uid: Option<&Bound<'py, PyAny>>,
        repeats: usize,
    ) -> PyResult<Bound<'py, PyArray1<f64>>> {
        let req = Request::extract(history_items, history_cats, cand_items, cand_cats, uid)?;
        if req.len() == 0 {
            return Err(serve_error(ServeError::NoCandidates));
        }
        let p = &self.inner;
        let times = py.detach(|| {
            guarded(|| {
                with_scratch(|s| {
                    let mut out = vec![0.0f32; req.len()];
                    let mut t = Vec::with_capacity(repeats);
                    for _ in 0..repeats {
                        let start = Instant::now();
                        req.score_into(p, s, &mut out)?;
                        t.push(start.elapsed().as_secs_f64());
                    }
                    std::hint::black_box(&out);
                    Ok(t)
                })
                .map_err(serve_error)
            })
        })?;
        Ok(PyArray1::from_vec(py, times))
    }

    fn __repr__(&self) -> String {
        let c = self.inner.config();
        format!(
            "Predictor(model={:?}, n_uid={}, n_mid={}, n_cat={}, vocabs={})",
            c.model.name(),
            c.n_uid,
            c.n_mid,
            c.n_cat,
            if self.inner.vocabs().is_some() { "True" } else { "False" }
        )
    }
}
