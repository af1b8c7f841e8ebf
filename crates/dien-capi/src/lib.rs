//! # dien-capi
//!
//! The C interface of the DIEN scoring engine (`dien_model::serve`): open a
//! checkpoint, score requests by index or by string id, free, and read the
//! last error. Built as a `cdylib` (`libdien_capi.so`) and a `staticlib`
//! (`libdien_capi.a`); the header is `include/dien.h`, generated from this
//! file by cbindgen (see `cbindgen.toml`; a test checks it is up to date).
//!
//! Rules of the interface (docs/EMBEDDING.md has the full story):
//! - Every function that can fail returns a status code, `DIEN_OK` (0) on
//!   success; on failure `dien_last_error()` gives a message on the same
//!   thread.
//! - No panic crosses the boundary: one is caught and reported as
//!   `DIEN_ERR_INTERNAL`.
//! - A null pointer where a value is required is `DIEN_ERR_NULL`; an array
//!   may be null only when its length is 0.
//! - A predictor is immutable once opened: any number of threads may score
//!   with it at once. A scratch belongs to one thread at a time; passing a
//!   null scratch uses one kept per calling thread.
//! - Everything `dien_*_open`/`_new` returns is freed by the matching
//!   `_free`; output arrays are the caller's.

use std::cell::RefCell;
use std::ffi::{CStr, CString, c_char};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use dien_model::serve::{Items, Predictor, Scratch, ServeError};

/// Success.
pub const DIEN_OK: i32 = 0;
/// A required pointer was null.
pub const DIEN_ERR_NULL: i32 = 1;
/// A bad argument: empty candidate list, index out of range, a length too
/// large, or a string that is not UTF-8.
pub const DIEN_ERR_ARGUMENT: i32 = 2;
/// The checkpoint or its vocabularies could not be read or are invalid.
pub const DIEN_ERR_LOAD: i32 = 3;
/// String ids were given to a predictor without vocabularies.
pub const DIEN_ERR_NO_VOCAB: i32 = 4;
/// An internal error (a bug) was caught; the call had no effect on the
/// predictor, which stays usable.
pub const DIEN_ERR_INTERNAL: i32 = 5;

/// A loaded model (opaque). Immutable: share it between threads freely.
pub struct DienPredictor {
    inner: Predictor,
}

/// A scoring workspace (opaque). Use it from one thread at a time.
pub struct DienScratch {
    inner: Scratch,
}

thread_local! {
    static LAST_ERROR: RefCell<Option<CString>> = const { RefCell::new(None) };
    static THREAD_SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::new());
}

type Failure = (i32, String);

fn set_last_error(msg: String) {
    let c = CString::new(msg.replace('\0', " ")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = Some(c));
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("unknown panic")
}

/// Runs `f`, turning its error or a panic into a status code and the
/// thread's last error. Nothing unwinds past this function.
fn guard(f: impl FnOnce() -> Result<(), Failure>) -> i32 {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => DIEN_OK,
        Ok(Err((code, msg))) => {
            set_last_error(msg);
            code
        }
        Err(payload) => {
            set_last_error(format!("internal error: {}", panic_message(payload.as_ref())));
            DIEN_ERR_INTERNAL
        }
    }
}

fn serve_failure(e: ServeError) -> Failure {
    let code = match e {
        ServeError::NoCandidates | ServeError::LengthMismatch { .. } | ServeError::IndexOutOfRange { .. } => {
            DIEN_ERR_ARGUMENT
        }
        ServeError::NoVocabularies => DIEN_ERR_NO_VOCAB,
        _ => DIEN_ERR_LOAD,
    };
    (code, e.to_string())
}

/// A slice from a C array: null is allowed only for `len == 0`.
///
/// # Safety
/// A non-null `ptr` must point at `len` readable, initialised values that
/// stay valid and unchanged for `'a`.
unsafe fn slice<'a, T>(ptr: *const T, len: usize, what: &str) -> Result<&'a [T], Failure> {
    if len == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() {
        return Err((DIEN_ERR_NULL, format!("`{what}` is null but its length is {len}")));
    }
    if len > isize::MAX as usize / size_of::<T>().max(1) {
        return Err((DIEN_ERR_ARGUMENT, format!("`{what}`: length {len} is too large")));
    }
    // SAFETY: non-null, length bounded as `from_raw_parts` requires; the
    // caller guarantees `len` valid values.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// [`slice`] for an output array.
///
/// # Safety
/// As [`slice`], with the values writable and not aliased for `'a`.
unsafe fn slice_mut<'a, T>(ptr: *mut T, len: usize, what: &str) -> Result<&'a mut [T], Failure> {
    if len == 0 {
        return Ok(&mut []);
    }
    if ptr.is_null() {
        return Err((DIEN_ERR_NULL, format!("`{what}` is null but its length is {len}")));
    }
    if len > isize::MAX as usize / size_of::<T>().max(1) {
        return Err((DIEN_ERR_ARGUMENT, format!("`{what}`: length {len} is too large")));
    }
    // SAFETY: as in `slice`, plus exclusive access guaranteed by the caller.
    Ok(unsafe { std::slice::from_raw_parts_mut(ptr, len) })
}

/// A UTF-8 string from a C string.
///
/// # Safety
/// A non-null `ptr` must point at a NUL-terminated string valid for `'a`.
unsafe fn c_str<'a>(ptr: *const c_char, what: &str) -> Result<&'a str, Failure> {
    if ptr.is_null() {
        return Err((DIEN_ERR_NULL, format!("`{what}` is null")));
    }
    // SAFETY: non-null and NUL-terminated by the caller's contract.
    let s = unsafe { CStr::from_ptr(ptr) };
    s.to_str().map_err(|e| (DIEN_ERR_ARGUMENT, format!("`{what}` is not UTF-8: {e}")))
}

/// A C string pointer already checked to be non-null and UTF-8, so it can
/// be read as `&str` without allocating.
#[repr(transparent)]
#[derive(Debug)]
struct Utf8Ptr(*const c_char);

impl AsRef<str> for Utf8Ptr {
    fn as_ref(&self) -> &str {
        // SAFETY: only built by `utf8_array`, which checked that the
        // pointer is non-null, NUL-terminated and UTF-8; the strings stay
        // valid for the duration of the call that borrowed them.
        unsafe { std::str::from_utf8_unchecked(CStr::from_ptr(self.0).to_bytes()) }
    }
}

/// An array of C strings viewed as `&[Utf8Ptr]` after checking each one.
///
/// # Safety
/// A non-null `ptr` must point at `len` pointers, each null or a
/// NUL-terminated string valid for `'a`.
unsafe fn utf8_array<'a>(ptr: *const *const c_char, len: usize, what: &str) -> Result<&'a [Utf8Ptr], Failure> {
    // SAFETY: forwarded contract.
    let ptrs = unsafe { slice(ptr, len, what)? };
    for (i, &p) in ptrs.iter().enumerate() {
        // SAFETY: forwarded contract.
        unsafe { c_str(p, &format!("{what}[{i}]"))? };
    }
    // SAFETY: `Utf8Ptr` is a transparent wrapper of `*const c_char`.
    Ok(unsafe { std::slice::from_raw_parts(ptrs.as_ptr().cast::<Utf8Ptr>(), ptrs.len()) })
}

/// Runs `f` with the given scratch, or this thread's own when null.
///
/// # Safety
/// A non-null `scratch` must come from `dien_scratch_new()`, not freed, and
/// not in use by another thread.
unsafe fn with_scratch(
    scratch: *mut DienScratch,
    f: impl FnOnce(&mut Scratch) -> Result<(), Failure>,
) -> Result<(), Failure> {
    if scratch.is_null() {
        THREAD_SCRATCH.with(|s| match s.try_borrow_mut() {
            Ok(mut s) => f(&mut s),
            Err(_) => Err((DIEN_ERR_INTERNAL, "the thread's scratch is already in use".to_string())),
        })
    } else {
        // SAFETY: the caller's contract.
        f(unsafe { &mut (*scratch).inner })
    }
}

/// # Safety
/// A non-null `p` must come from `dien_predictor_open()` and not be freed.
unsafe fn predictor<'a>(p: *const DienPredictor) -> Result<&'a Predictor, Failure> {
    if p.is_null() {
        return Err((DIEN_ERR_NULL, "`predictor` is null".to_string()));
    }
    // SAFETY: the caller's contract.
    Ok(unsafe { &(*p).inner })
}

/// Opens the checkpoint at `path` (a UTF-8 path) and, when the file
/// `<name>.vocab.json` exists beside it, its vocabularies. On success
/// `*out` receives a predictor to free with `dien_predictor_free()`; on
/// failure `*out` is set to null.
///
/// # Safety
/// `path` must be null or a NUL-terminated string; `out` must be null or
/// point at writable storage for one pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dien_predictor_open(path: *const c_char, out: *mut *mut DienPredictor) -> i32 {
    guard(|| {
        if out.is_null() {
            return Err((DIEN_ERR_NULL, "`out` is null".to_string()));
        }
        // SAFETY: checked non-null; writable by the caller's contract.
        unsafe { *out = std::ptr::null_mut() };
        // SAFETY: the caller's contract.
        let path = unsafe { c_str(path, "path")? };
        let inner = Predictor::load(Path::new(path)).map_err(serve_failure)?;
        // SAFETY: as above.
        unsafe { *out = Box::into_raw(Box::new(DienPredictor { inner })) };
        Ok(())
    })
}

/// Frees a predictor (null is allowed and does nothing). No other thread
/// may be using it.
///
/// # Safety
/// `p` must be null or come from `dien_predictor_open()`, freed only once.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dien_predictor_free(p: *mut DienPredictor) {
    if !p.is_null() {
        // SAFETY: allocated by `Box::into_raw` in `dien_predictor_open`.
        let _ = catch_unwind(AssertUnwindSafe(|| drop(unsafe { Box::from_raw(p) })));
    }
}

/// 1 if the predictor has vocabularies (string ids can be scored), 0 if
/// not or if `p` is null.
///
/// # Safety
/// `p` must be null or a live predictor.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dien_predictor_has_vocabs(p: *const DienPredictor) -> i32 {
    // SAFETY: the caller's contract.
    unsafe { predictor(p) }.map_or(0, |p| i32::from(p.vocabs().is_some()))
}

/// The longest history the model uses (`max_len`): longer histories keep
/// their last `max_len` behaviours. 0 if `p` is null.
///
/// # Safety
/// `p` must be null or a live predictor.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dien_predictor_max_len(p: *const DienPredictor) -> usize {
    // SAFETY: the caller's contract.
    unsafe { predictor(p) }.map_or(0, |p| p.config().max_len)
}

/// A new scoring workspace, to free with `dien_scratch_free()`. Use one per
/// thread; it grows to the largest request and then stops allocating.
#[unsafe(no_mangle)]
pub extern "C" fn dien_scratch_new() -> *mut DienScratch {
    catch_unwind(|| Box::into_raw(Box::new(DienScratch { inner: Scratch::new() }))).unwrap_or(std::ptr::null_mut())
}

/// Frees a workspace (null is allowed and does nothing).
///
/// # Safety
/// `s` must be null or come from `dien_scratch_new()`, freed only once.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dien_scratch_free(s: *mut DienScratch) {
    if !s.is_null() {
        // SAFETY: allocated by `Box::into_raw` in `dien_scratch_new`.
        let _ = catch_unwind(AssertUnwindSafe(|| drop(unsafe { Box::from_raw(s) })));
    }
}

/// Scores `n_cand` candidates for user `uid` by index: writes one click
/// probability per candidate into `out[0..n_cand]`. The history is
/// `hist_len` (item, category) index pairs, oldest first (longer than
/// `max_len`: the last `max_len` are used); candidate `i` is
/// `(cand_mid[i], cand_cat[i])`. `scratch` may be null (a per-thread one
/// is used). On failure `out` is left unspecified.
///
/// # Safety
/// Every non-null array must hold its stated number of values; `out` must
/// be writable for `n_cand` floats; `p` and a non-null `scratch` must be
/// live, and `scratch` not in use by another thread.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn dien_score(
    p: *const DienPredictor,
    scratch: *mut DienScratch,
    uid: u32,
    hist_mid: *const u32,
    hist_cat: *const u32,
    hist_len: usize,
    cand_mid: *const u32,
    cand_cat: *const u32,
    n_cand: usize,
    out: *mut f32,
) -> i32 {
    guard(|| {
        // SAFETY (all below): the caller's contract, as documented above.
        let pred = unsafe { predictor(p)? };
        let hist =
            unsafe { Items::new(slice(hist_mid, hist_len, "hist_mid")?, slice(hist_cat, hist_len, "hist_cat")?) };
        let cands = unsafe { Items::new(slice(cand_mid, n_cand, "cand_mid")?, slice(cand_cat, n_cand, "cand_cat")?) };
        let out = unsafe { slice_mut(out, n_cand, "out")? };
        unsafe { with_scratch(scratch, |s| pred.score_into(s, uid, hist, cands, out).map_err(serve_failure)) }
    })
}

/// `dien_score()` by string ids of the checkpoint's vocabularies (UTF-8,
/// NUL-terminated): the user, the history's items and their categories,
/// the candidates' items and their categories. Unknown ids map to index 0.
/// Needs vocabularies (`DIEN_ERR_NO_VOCAB` otherwise).
///
/// # Safety
/// As `dien_score()`; each array holds its stated number of string
/// pointers, each a NUL-terminated string.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn dien_score_ids(
    p: *const DienPredictor,
    scratch: *mut DienScratch,
    user: *const c_char,
    hist_items: *const *const c_char,
    hist_cats: *const *const c_char,
    hist_len: usize,
    cand_items: *const *const c_char,
    cand_cats: *const *const c_char,
    n_cand: usize,
    out: *mut f32,
) -> i32 {
    guard(|| {
        // SAFETY (all below): the caller's contract, as documented above.
        let pred = unsafe { predictor(p)? };
        let user = unsafe { c_str(user, "user")? };
        let hi = unsafe { utf8_array(hist_items, hist_len, "hist_items")? };
        let hc = unsafe { utf8_array(hist_cats, hist_len, "hist_cats")? };
        let ci = unsafe { utf8_array(cand_items, n_cand, "cand_items")? };
        let cc = unsafe { utf8_array(cand_cats, n_cand, "cand_cats")? };
        let out = unsafe { slice_mut(out, n_cand, "out")? };
        unsafe { with_scratch(scratch, |s| pred.score_ids_into(s, user, hi, hc, ci, cc, out).map_err(serve_failure)) }
    })
}

/// The message of the last failed call on this thread ("" if none). The
/// pointer stays valid until the next failing call on this thread; copy
/// the text to keep it.
#[unsafe(no_mangle)]
pub extern "C" fn dien_last_error() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ref().map_or(c"".as_ptr(), |m| m.as_ptr()))
}

/// The library version, e.g. "0.1.0" (a static string).
#[unsafe(no_mangle)]
pub extern "C" fn dien_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn last_error() -> String {
        // SAFETY: `dien_last_error` returns a valid NUL-terminated string.
        unsafe { CStr::from_ptr(dien_last_error()) }.to_string_lossy().into_owned()
    }

    #[test]
    fn a_panic_becomes_an_error_code_and_message() {
        let code = guard(|| panic!("boom {}", 7));
        assert_eq!(code, DIEN_ERR_INTERNAL);
        assert_eq!(last_error(), "internal error: boom 7");
        let code = guard(|| std::panic::panic_any(3u8));
        assert_eq!(code, DIEN_ERR_INTERNAL);
        assert_eq!(last_error(), "internal error: unknown panic");
        assert_eq!(guard(|| Ok(())), DIEN_OK);
        // Success leaves the last error as it was.
        assert_eq!(last_error(), "internal error: unknown panic");
        assert_eq!(guard(|| Err((DIEN_ERR_ARGUMENT, "a\0b".into()))), DIEN_ERR_ARGUMENT);
        assert_eq!(last_error(), "a b");
    }

    #[test]
    fn null_and_oversized_arrays_are_refused() {
        // SAFETY: null with length 0 is allowed; the other calls fail before reading.
        unsafe {
            assert!(slice::<u32>(std::ptr::null(), 0, "x").unwrap().is_empty());
            assert_eq!(slice::<u32>(std::ptr::null(), 3, "x").unwrap_err().0, DIEN_ERR_NULL);
            let one = [1u32];
            assert_eq!(slice(one.as_ptr(), usize::MAX / 2, "x").unwrap_err().0, DIEN_ERR_ARGUMENT);
            assert_eq!(slice_mut::<f32>(std::ptr::null_mut(), 1, "out").unwrap_err().0, DIEN_ERR_NULL);
            assert_eq!(c_str(std::ptr::null(), "s").unwrap_err().0, DIEN_ERR_NULL);
            let bad = [0xffu8, 0];
            assert_eq!(c_str(bad.as_ptr().cast(), "s").unwrap_err().0, DIEN_ERR_ARGUMENT);
            let good = c"ok";
            let arr = [good.as_ptr(), std::ptr::null()];
            let e = utf8_array(arr.as_ptr(), 2, "ids").unwrap_err();
            assert_eq!(e, (DIEN_ERR_NULL, "`ids[1]` is null".to_string()));
            let v = utf8_array(arr.as_ptr(), 1, "ids").unwrap();
            assert_eq!(v[0].as_ref(), "ok");
        }
    }

    #[test]
    fn version_is_the_crate_version() {
        // SAFETY: a static NUL-terminated string.
        let v = unsafe { CStr::from_ptr(dien_version()) };
        assert_eq!(v.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
    }
}
