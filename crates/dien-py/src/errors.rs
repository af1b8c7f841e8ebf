//! Rust errors as Python exceptions, and the guard that keeps panics from
//! reaching the interpreter.
//!
//! | Rust error | Python exception |
//! |---|---|
//! | a bad argument, batch, configuration, checkpoint, vocabulary or data line | `ValueError` |
//! | a file that cannot be read or written | `OSError` (`FileNotFoundError`, `PermissionError`, …) |
//! | a non-finite loss or gradient during training | `FloatingPointError` |
//! | a caught panic (a bug) | `RuntimeError("internal error: …")` |
//!
//! The message is the Rust error's own text.

use std::any::Any;
use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};

use dien_model::ModelError;
use dien_model::serve::ServeError;
use dien_model::vocab::VocabError;
use dien_trainer::TrainError;
use pyo3::PyErr;
use pyo3::exceptions::{
    PyFileExistsError, PyFileNotFoundError, PyFloatingPointError, PyIsADirectoryError, PyOSError, PyPermissionError,
    PyRuntimeError, PyValueError,
};

/// `ValueError(msg)`.
pub fn value_error(msg: impl Into<String>) -> PyErr {
    PyValueError::new_err(msg.into())
}

/// The `OSError` subclass of an I/O error's kind, with `msg`.
pub fn io_error(kind: io::ErrorKind, msg: String) -> PyErr {
    match kind {
        io::ErrorKind::NotFound => PyFileNotFoundError::new_err(msg),
        io::ErrorKind::PermissionDenied => PyPermissionError::new_err(msg),
        io::ErrorKind::AlreadyExists => PyFileExistsError::new_err(msg),
        io::ErrorKind::IsADirectory => PyIsADirectoryError::new_err(msg),
        _ => PyOSError::new_err(msg),
    }
}

/// A model error: I/O as `OSError`, everything else (configuration, batch,
/// checkpoint contents) as `ValueError`; a non-finite value as
/// `FloatingPointError`.
pub fn model_error(e: ModelError) -> PyErr {
    let msg = e.to_string();
    match e {
        ModelError::Io(_, source) => io_error(source.kind(), msg),
        ModelError::NonFinite(_) => PyFloatingPointError::new_err(msg),
        _ => value_error(msg),
    }
}

/// A vocabulary error: I/O as `OSError`, else `ValueError`.
pub fn vocab_error(e: VocabError) -> PyErr {
    let msg = e.to_string();
    match e {
        VocabError::Io { source, .. } => io_error(source.kind(), msg),
        _ => value_error(msg),
    }
}

/// A request-path error (a bad request, loading a checkpoint).
pub fn serve_error(e: ServeError) -> PyErr {
    match e {
        ServeError::Model(m) => model_error(m),
        other => value_error(other.to_string()),
    }
}

/// A trainer error: I/O as `OSError`, a non-finite gradient as
/// `FloatingPointError`, a stopped loader thread as `RuntimeError`, the
/// rest (configuration, data lines, vocabularies) as `ValueError`.
pub fn train_error(e: TrainError) -> PyErr {
    let msg = e.to_string();
    match e {
        TrainError::Io { source, .. } => io_error(source.kind(), msg),
        TrainError::NonFiniteGradient { .. } => PyFloatingPointError::new_err(msg),
        TrainError::Loader(_) => PyRuntimeError::new_err(msg),
        TrainError::Model(m) => model_error(m),
        TrainError::Serve(s) => serve_error(s),
        _ => value_error(msg),
    }
}

/// The text of a panic's payload.
pub fn panic_message(payload: &(dyn Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("unknown panic")
}

/// `RuntimeError("internal error: …")` for a caught panic.
pub fn internal_error(payload: &(dyn Any + Send)) -> PyErr {
    PyRuntimeError::new_err(format!("internal error: {}", panic_message(payload)))
}

/// Runs `f`, turning a panic into `RuntimeError("internal error: …")`.
/// Every computation of the package runs inside it: inputs are checked
/// first, so a panic would be a bug, and it must not take the interpreter
/// down (PyO3 would raise `PanicException`, which `except Exception` does
/// not catch).
pub fn guarded<T>(f: impl FnOnce() -> Result<T, PyErr>) -> Result<T, PyErr> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|payload| Err(internal_error(payload.as_ref())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_messages_are_read_from_either_payload() {
        let s: Box<dyn Any + Send> = Box::new("boom");
        assert_eq!(panic_message(s.as_ref()), "boom");
        let s: Box<dyn Any + Send> = Box::new(String::from("bang 7"));
        assert_eq!(panic_message(s.as_ref()), "bang 7");
        let s: Box<dyn Any + Send> = Box::new(3u8);
        assert_eq!(panic_message(s.as_ref()), "unknown panic");
    }
}
