//! Checkpoints (docs/MODEL.md#checkpoints): one `safetensors` file holding every tensor of a
//! model under its canonical name (f32, little-endian, shapes as in
//! [`tensor_specs`]) and the configuration as string `__metadata__`.
//!
//! Loading trusts nothing: the header is validated by `safetensors`, a
//! `checksum` entry (written by [`save`], optional on read so that files from
//! other writers load) is verified, the metadata is parsed key by key, and
//! every tensor is checked for presence, dtype, shape and finiteness; unknown
//! tensors are rejected. Every failure is a [`ModelError::Checkpoint`] naming
//! the file, the tensor or the metadata key.
//!
//! Files are written atomically ([`write_atomic`]): a temporary file beside
//! the target, synced, then renamed over it, so a crash leaves either the old
//! file or the new one, never half of one.
//!
//! Optimiser state and vocabularies live in sidecar files beside the
//! checkpoint ([`sidecar_path`]); [`save_tensors`] and [`load_tensors`] read
//! and write any named set of f32 tensors with the same guarantees.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

use crate::config::ModelConfig;
use crate::error::ModelError;
use crate::params::{ParamStore, tensor_specs};

pub mod set;

/// A test hook of debug builds: `DIEN_FAULT=<fail|abort>:<part>:<n>` acts
/// on the n-th atomic write (counting from 1, in this process) of a file
/// whose name contains `<part>`. `fail` makes it fail once its bytes are
/// written, before the rename, as a full disk would; `abort` ends the
/// process right after the rename, as a crash between two files of a set
/// would. The fault tests use it on each file of a checkpoint set in turn.
#[cfg(debug_assertions)]
mod fault {
    use std::path::Path;
    use std::sync::atomic::{AtomicU64, Ordering};

    static SEEN: AtomicU64 = AtomicU64::new(0);

    /// Whether the fault `action` is due for this write of `path`.
    fn due(path: &Path, action: &str) -> bool {
        let Ok(spec) = std::env::var("DIEN_FAULT") else { return false };
        let mut f = spec.splitn(3, ':');
        let (Some(act), Some(part), Some(n)) = (f.next(), f.next(), f.next()) else { return false };
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        act == action
            && name.contains(part)
            && !name.starts_with('.')
            && SEEN.fetch_add(1, Ordering::SeqCst) + 1 == n.parse().unwrap_or(1)
    }

    /// Before the rename: an injected full disk.
    pub(super) fn before_rename(path: &Path) -> std::io::Result<()> {
        if due(path, "fail") {
            return Err(std::io::Error::new(
                std::io::ErrorKind::StorageFull,
                "no space left on device (injected by DIEN_FAULT)",
            ));
        }
        Ok(())
    }

    /// After the rename: an injected crash.
    pub(super) fn after_rename(path: &Path) {
        if due(path, "abort") {
            std::process::abort();
        }
    }
}

/// Metadata key of the integrity checksum (reserved: callers may not set it).
pub const CHECKSUM_KEY: &str = "checksum";

/// Sidecar suffix of the optimiser state ([`sidecar_path`]).
pub const OPTIM_SUFFIX: &str = "optim.safetensors";

/// Sidecar suffix of the vocabularies ([`sidecar_path`]).
pub const VOCAB_SUFFIX: &str = "vocab.json";

/// Prefix of the checksum value, naming the algorithm.
const CHECKSUM_ALGO: &str = "fnv1a64:";

/// Origin named in errors of the byte-level functions.
const BYTES_ORIGIN: &str = "<bytes>";

/// 64-bit FNV-1a, fed incrementally.
struct Fnv1a(u64);

impl Fnv1a {
    fn new() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }

    fn update(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

/// A borrowed named f32 tensor: `(name, shape, values)`, row-major.
pub type TensorRef<'a> = (&'a str, &'a [usize], &'a [f32]);

/// Tensor values to hash: in memory (f32) or as stored (little-endian bytes).
#[derive(Clone, Copy)]
enum Values<'a> {
    F32(&'a [f32]),
    Bytes(&'a [u8]),
}

/// The checksum of a file's content (see `docs/FORMATS.md`): FNV-1a 64 over
/// every metadata entry but the checksum, sorted by key (`key 0 value 0`),
/// then every tensor sorted by name (`name 0 dims-joined-by-commas 0 bytes`).
/// It covers values, not layout, so it is independent of how a writer orders
/// the data section.
fn checksum<'a>(
    meta: impl IntoIterator<Item = (&'a str, &'a str)>,
    tensors: impl IntoIterator<Item = (&'a str, &'a [usize], Values<'a>)>,
) -> String {
    let mut meta: Vec<_> = meta.into_iter().filter(|(k, _)| *k != CHECKSUM_KEY).collect();
    meta.sort_unstable();
    let mut tensors: Vec<_> = tensors.into_iter().collect();
    tensors.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let mut h = Fnv1a::new();
    for (k, v) in meta {
        h.update(k.as_bytes());
        h.update(&[0]);
        h.update(v.as_bytes());
        h.update(&[0]);
    }
    for (name, shape, values) in tensors {
        h.update(name.as_bytes());
        h.update(&[0]);
        let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
        h.update(dims.join(",").as_bytes());
        h.update(&[0]);
        match values {
            // Hashed in place: saving never holds a second copy of the model.
            Values::F32(v) => v.iter().for_each(|x| h.update(&x.to_le_bytes())),
            Values::Bytes(b) => h.update(b),
        }
    }
    format!("{CHECKSUM_ALGO}{:016x}", h.0)
}

/// A validated, ready-to-write file: the padded header and the tensors in
/// data-section order (sorted by name).
struct Encoded<'a> {
    header: Vec<u8>,
    tensors: Vec<TensorRef<'a>>,
}

impl Encoded<'_> {
    /// Total file size in bytes.
    fn len(&self) -> usize {
        self.header.len() + self.tensors.iter().map(|t| 4 * t.2.len()).sum::<usize>()
    }

    /// Streams the file: header, then each tensor little-endian through a
    /// small buffer, so no second copy of the model is ever held.
    fn write_to(&self, w: &mut impl Write) -> std::io::Result<()> {
        w.write_all(&self.header)?;
        let mut buf = Vec::with_capacity(4 * 4096);
        for &(_, _, data) in &self.tensors {
            for chunk in data.chunks(4096) {
                buf.clear();
                buf.extend(chunk.iter().flat_map(|x| x.to_le_bytes()));
                w.write_all(&buf)?;
            }
        }
        Ok(())
    }
}

/// Validates named f32 tensors and `metadata` and builds the safetensors
/// header (with a checksum entry). `origin` names the destination in errors.
///
/// The header is built here rather than by `safetensors::serialize`, which
/// writes metadata in hash-map order: this way equal content gives equal
/// bytes (metadata keys and tensors sorted, compact JSON, space padding to a
/// multiple of 8 as the format requires).
fn encode<'a>(
    tensors: &[TensorRef<'a>],
    metadata: &BTreeMap<String, String>,
    origin: &str,
) -> Result<Encoded<'a>, ModelError> {
    let err = |what: &str, msg: String| ModelError::Checkpoint(what.to_string(), format!("{msg} (writing {origin})"));
    if metadata.contains_key(CHECKSUM_KEY) {
        return Err(err(CHECKSUM_KEY, "metadata key `checksum` is reserved".into()));
    }
    let mut seen = HashSet::new();
    for &(name, shape, data) in tensors {
        if name.is_empty() || name == "__metadata__" {
            return Err(err(name, "invalid tensor name".into()));
        }
        if !seen.insert(name) {
            return Err(err(name, "tensor name given twice".into()));
        }
        let numel = shape.iter().try_fold(1usize, |a, &b| a.checked_mul(b));
        if numel != Some(data.len()) {
            return Err(err(name, format!("shape {shape:?} does not match {} values", data.len())));
        }
    }
    let mut sorted = tensors.to_vec();
    sorted.sort_unstable_by(|a, b| a.0.cmp(b.0));

    let sum = checksum(
        metadata.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        sorted.iter().map(|&(name, shape, data)| (name, shape, Values::F32(data))),
    );
    let mut meta = metadata.clone();
    meta.insert(CHECKSUM_KEY.to_string(), sum);

    let mut json = String::from("{\"__metadata__\":");
    json.push_str(&serde_json::to_string(&meta).map_err(|e| err(origin, format!("cannot encode metadata: {e}")))?);
    let mut offset = 0usize;
    for &(name, shape, data) in &sorted {
        let end = offset + 4 * data.len();
        let entry = serde_json::json!({ "dtype": "F32", "shape": shape, "data_offsets": [offset, end] });
        let name = serde_json::to_string(name).map_err(|e| err(name, format!("cannot encode name: {e}")))?;
        json.push(',');
        json.push_str(&name);
        json.push(':');
        json.push_str(&entry.to_string());
        offset = end;
    }
    json.push('}');
    let mut json = json.into_bytes();
    json.resize(json.len().next_multiple_of(8), b' ');
    let mut header = (json.len() as u64).to_le_bytes().to_vec();
    header.extend(json);
    Ok(Encoded { header, tensors: sorted })
}

/// [`encode`] into one buffer.
fn encode_bytes(
    tensors: &[TensorRef<'_>],
    metadata: &BTreeMap<String, String>,
    origin: &str,
) -> Result<Vec<u8>, ModelError> {
    let enc = encode(tensors, metadata, origin)?;
    let mut out = Vec::with_capacity(enc.len());
    enc.write_to(&mut out).expect("writing to a Vec cannot fail");
    Ok(out)
}

/// [`encode`] straight into `path`, atomically.
fn encode_file(path: &Path, tensors: &[TensorRef<'_>], metadata: &BTreeMap<String, String>) -> Result<(), ModelError> {
    let enc = encode(tensors, metadata, &path.display().to_string())?;
    write_atomic_with(path, |w| enc.write_to(w))
}

/// A parsed tensor file: metadata (without the checksum) and
/// `(name, shape, values)` of every tensor, in name order.
pub type Decoded = (BTreeMap<String, String>, Vec<(String, Vec<usize>, Vec<f32>)>);

/// Parses a safetensors buffer holding only f32 tensors, verifying the
/// checksum when present. `origin` names the source in errors.
fn decode(bytes: &[u8], origin: &str) -> Result<Decoded, ModelError> {
    let file_err = |msg: String| ModelError::Checkpoint(origin.to_string(), msg);
    let st = SafeTensors::deserialize(bytes).map_err(|e| file_err(format!("not a valid safetensors file: {e}")))?;
    let (_, header) =
        SafeTensors::read_metadata(bytes).map_err(|e| file_err(format!("not a valid safetensors file: {e}")))?;
    let meta = header.metadata().clone().unwrap_or_default();

    let mut views: Vec<(String, TensorView<'_>)> = st.tensors();
    views.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    for (name, view) in &views {
        if view.dtype() != Dtype::F32 {
            return Err(ModelError::Checkpoint(
                name.clone(),
                format!("dtype {:?}, expected F32 (in {origin})", view.dtype()),
            ));
        }
    }

    if let Some(stored) = meta.get(CHECKSUM_KEY) {
        if !stored.starts_with(CHECKSUM_ALGO) {
            return Err(file_err(format!("metadata key `checksum`: unknown algorithm in `{stored}`")));
        }
        let actual = checksum(
            meta.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            views.iter().map(|(name, v)| (name.as_str(), v.shape(), Values::Bytes(v.data()))),
        );
        if *stored != actual {
            return Err(file_err(format!(
                "checksum mismatch (stored {stored}, content {actual}): the file is corrupted"
            )));
        }
    }

    let tensors = views
        .into_iter()
        .map(|(name, v)| {
            let data = v.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
            (name, v.shape().to_vec(), data)
        })
        .collect();
    let meta = meta.into_iter().filter(|(k, _)| k != CHECKSUM_KEY).collect();
    Ok((meta, tensors))
}

/// The checkpoint of `params` under `cfg` as bytes (see [`save`]).
pub fn to_bytes(cfg: &ModelConfig, params: &ParamStore<f32>) -> Result<Vec<u8>, ModelError> {
    let tensors = model_tensors(cfg, params, BYTES_ORIGIN)?;
    encode_bytes(&tensors, &cfg.metadata(), BYTES_ORIGIN)
}

/// The named tensors of `params`, after checking they belong to `cfg`.
fn model_tensors<'a>(
    cfg: &ModelConfig,
    params: &'a ParamStore<f32>,
    origin: &str,
) -> Result<Vec<TensorRef<'a>>, ModelError> {
    cfg.validate()?;
    let specs = tensor_specs(cfg);
    if params.specs() != specs.as_slice() {
        return Err(ModelError::Checkpoint(
            origin.to_string(),
            format!("the parameters do not belong to the configuration (model {})", cfg.model),
        ));
    }
    Ok(params.iter().map(|(s, data)| (s.name.as_str(), s.shape.as_slice(), data)).collect())
}

/// Parses a checkpoint from bytes (see [`load`]).
pub fn from_bytes(bytes: &[u8]) -> Result<(ModelConfig, ParamStore<f32>), ModelError> {
    decode_model(bytes, BYTES_ORIGIN).map(|(c, p, _)| (c, p))
}

/// A checkpoint's configuration, parameters and whole metadata (without the
/// checksum).
pub type Loaded = (ModelConfig, ParamStore<f32>, BTreeMap<String, String>);

fn decode_model(bytes: &[u8], origin: &str) -> Result<Loaded, ModelError> {
    let (all_meta, tensors) = decode(bytes, origin)?;
    let meta = &all_meta;
    if meta.is_empty() {
        return Err(ModelError::Checkpoint(
            origin.to_string(),
            "no `__metadata__`: metadata key `format_version` is missing".into(),
        ));
    }
    let meta: HashMap<String, String> = meta.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let cfg = ModelConfig::from_metadata(&meta).map_err(|e| match e {
        ModelError::Config(msg) => ModelError::Checkpoint(origin.to_string(), msg),
        other => other,
    })?;
    let specs = tensor_specs(&cfg);

    let mut by_name: HashMap<String, (Vec<usize>, Vec<f32>)> =
        tensors.into_iter().map(|(name, shape, data)| (name, (shape, data))).collect();
    let mut unknown: Vec<&String> = by_name.keys().filter(|n| !specs.iter().any(|s| &s.name == *n)).collect();
    unknown.sort();
    if let Some(name) = unknown.first() {
        return Err(ModelError::Checkpoint(
            (*name).clone(),
            format!("unknown tensor for model {} (in {origin})", cfg.model),
        ));
    }

    let mut data = Vec::with_capacity(specs.len());
    for spec in &specs {
        let tensor_err = |msg: String| ModelError::Checkpoint(spec.name.clone(), format!("{msg} (in {origin})"));
        let Some((shape, values)) = by_name.remove(&spec.name) else {
            return Err(tensor_err(format!("missing (model {} needs it)", cfg.model)));
        };
        if shape != spec.shape {
            return Err(tensor_err(format!("shape {shape:?}, expected {:?}", spec.shape)));
        }
        if let Some(i) = values.iter().position(|x| !x.is_finite()) {
            return Err(tensor_err(format!("non-finite value {} at element {i}", values[i])));
        }
        if spec.name.ends_with("running_var")
            && let Some(i) = values.iter().position(|&x| x < 0.0)
        {
            return Err(tensor_err(format!("negative variance {} at element {i}", values[i])));
        }
        data.push(values);
    }
    let params = ParamStore::from_data(&cfg, data)
        .ok_or_else(|| ModelError::Checkpoint(origin.to_string(), "tensor sizes disagree with the specs".into()))?;
    Ok((cfg, params, all_meta))
}

/// Writes the checkpoint of `params` under `cfg` to `path`, atomically.
///
/// Fails if the configuration is invalid or `params` was not built for it.
pub fn save(path: &Path, cfg: &ModelConfig, params: &ParamStore<f32>) -> Result<(), ModelError> {
    save_with(path, cfg, params, &BTreeMap::new())
}

/// [`save`] with `extra` metadata entries beside the configuration (for
/// example a record of the run that trained it); loading ignores them. A
/// key of the configuration's own metadata is refused.
pub fn save_with(
    path: &Path,
    cfg: &ModelConfig,
    params: &ParamStore<f32>,
    extra: &BTreeMap<String, String>,
) -> Result<(), ModelError> {
    let tensors = model_tensors(cfg, params, &path.display().to_string())?;
    let mut meta = cfg.metadata();
    for (k, v) in extra {
        if meta.insert(k.clone(), v.clone()).is_some() {
            return Err(ModelError::Checkpoint(
                path.display().to_string(),
                format!("metadata key `{k}` belongs to the model configuration"),
            ));
        }
    }
    encode_file(path, &tensors, &meta)
}

/// Reads and fully validates the checkpoint at `path`.
pub fn load(path: &Path) -> Result<(ModelConfig, ParamStore<f32>), ModelError> {
    load_with_metadata(path).map(|(c, p, _)| (c, p))
}

/// [`load`], also returning the whole metadata (the configuration's entries,
/// the run record, the [set](set) entries).
pub fn load_with_metadata(path: &Path) -> Result<Loaded, ModelError> {
    let bytes = fs::read(path).map_err(|e| ModelError::Io(path.display().to_string(), e))?;
    decode_model(&bytes, &path.display().to_string())
}

/// Writes named f32 tensors and string metadata to a safetensors file,
/// atomically, with a checksum entry (the metadata key `checksum` is
/// reserved). Used for optimiser state and any other tensor sidecar.
pub fn save_tensors(
    path: &Path,
    tensors: &[TensorRef<'_>],
    metadata: &BTreeMap<String, String>,
) -> Result<(), ModelError> {
    encode_file(path, tensors, metadata)
}

/// [`save_tensors`] to bytes.
pub fn tensors_to_bytes(tensors: &[TensorRef<'_>], metadata: &BTreeMap<String, String>) -> Result<Vec<u8>, ModelError> {
    encode_bytes(tensors, metadata, BYTES_ORIGIN)
}

/// Reads a safetensors file of f32 tensors: its metadata (without the
/// checksum, which is verified when present) and its tensors sorted by name.
pub fn load_tensors(path: &Path) -> Result<Decoded, ModelError> {
    let bytes = fs::read(path).map_err(|e| ModelError::Io(path.display().to_string(), e))?;
    decode(&bytes, &path.display().to_string())
}

/// [`load_tensors`] from bytes.
pub fn tensors_from_bytes(bytes: &[u8]) -> Result<Decoded, ModelError> {
    decode(bytes, BYTES_ORIGIN)
}

/// [`load_tensors`] from bytes already read from `path` (named in errors).
pub fn tensors_from_file_bytes(bytes: &[u8], path: &Path) -> Result<Decoded, ModelError> {
    decode(bytes, &path.display().to_string())
}

/// The path of a file kept beside checkpoint `ckpt`: its `.safetensors`
/// extension (if any) replaced by `.{suffix}`, e.g. `run/model.safetensors`
/// with `"optim.safetensors"` gives `run/model.optim.safetensors`, with
/// `"vocab.json"` gives `run/model.vocab.json`.
pub fn sidecar_path(ckpt: &Path, suffix: &str) -> PathBuf {
    let suffix = suffix.trim_start_matches('.');
    let base = if ckpt.extension().is_some_and(|e| e == "safetensors") { ckpt.file_stem() } else { ckpt.file_name() };
    let mut name = base.map(|s| s.to_os_string()).unwrap_or_default();
    name.push(".");
    name.push(suffix);
    match ckpt.file_name() {
        Some(_) => ckpt.with_file_name(name),
        None => ckpt.join(name),
    }
}

/// Distinguishes temporary files of concurrent writers in one process.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes `bytes` to `path` so that `path` always holds either its old
/// content or all of `bytes`: a temporary file in the same directory is
/// written and synced, then renamed over `path`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ModelError> {
    write_atomic_with(path, |w| w.write_all(bytes))
}

/// [`write_atomic`] with the content produced by `fill` (buffered).
fn write_atomic_with(
    path: &Path,
    fill: impl FnOnce(&mut std::io::BufWriter<&fs::File>) -> std::io::Result<()>,
) -> Result<(), ModelError> {
    let io_err = |p: &Path, e| ModelError::Io(p.display().to_string(), e);
    let file_name = path
        .file_name()
        .ok_or_else(|| io_err(path, std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file path")))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(file_name);
    tmp_name.push(format!(".tmp-{}-{}", std::process::id(), TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)));
    let tmp = path.with_file_name(tmp_name);

    let write = |tmp: &Path| -> std::io::Result<()> {
        let f = fs::OpenOptions::new().write(true).create_new(true).open(tmp)?;
        let mut w = std::io::BufWriter::with_capacity(1 << 20, &f);
        fill(&mut w)?;
        w.flush()?;
        drop(w);
        f.sync_all()?;
        #[cfg(debug_assertions)]
        fault::before_rename(path)?;
        Ok(())
    };
    if let Err(e) = write(&tmp) {
        let _ = fs::remove_file(&tmp);
        // Name the file asked for, not the hidden temporary one.
        return Err(io_err(path, e));
    }
    if let Err(e) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(io_err(path, e));
    }
    #[cfg(debug_assertions)]
    fault::after_rename(path);
    // Make the rename itself durable; not every platform can sync a directory.
    #[cfg(unix)]
    if let Some(dir) = path.parent() {
        let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sidecar_paths() {
        let p = |s: &str, suf: &str| sidecar_path(Path::new(s), suf);
        assert_eq!(p("run/model.safetensors", OPTIM_SUFFIX), PathBuf::from("run/model.optim.safetensors"));
        assert_eq!(p("run/model.safetensors", VOCAB_SUFFIX), PathBuf::from("run/model.vocab.json"));
        assert_eq!(p("model.safetensors", ".vocab.json"), PathBuf::from("model.vocab.json"));
        assert_eq!(p("/a/b/ckpt", "optim.safetensors"), PathBuf::from("/a/b/ckpt.optim.safetensors"));
        assert_eq!(p("best.v2.safetensors", "vocab.json"), PathBuf::from("best.v2.vocab.json"));
        // Distinct from the checkpoint itself, always.
        assert_ne!(p("x.safetensors", "safetensors"), PathBuf::from("x.safetensors.x"));
    }

    #[test]
    fn checksum_covers_values_not_layout() {
        let le: Vec<u8> = [1.0f32, 2.0].iter().flat_map(|x| x.to_le_bytes()).collect();
        assert_eq!(
            checksum([], [("a", &[2][..], Values::F32(&[1.0, 2.0]))]),
            checksum([], [("a", &[2][..], Values::Bytes(&le))]),
        );
        let bytes = Values::F32;
        let a = [1.0f32, 2.0];
        let b = [3.0f32];
        let s1 = checksum([("k", "v")], [("a", &[2][..], bytes(&a)), ("b", &[1][..], bytes(&b))]);
        let s2 =
            checksum([("k", "v"), (CHECKSUM_KEY, "ignored")], [("b", &[1][..], bytes(&b)), ("a", &[2][..], bytes(&a))]);
        assert_eq!(s1, s2);
        assert!(s1.starts_with(CHECKSUM_ALGO) && s1.len() == CHECKSUM_ALGO.len() + 16);
        let changed = [
            checksum([("k", "w")], [("a", &[2][..], bytes(&a)), ("b", &[1][..], bytes(&b))]),
            checksum([("k", "v")], [("a", &[1, 2][..], bytes(&a)), ("b", &[1][..], bytes(&b))]),
            checksum([("k", "v")], [("a", &[2][..], bytes(&[1.0, 2.5])), ("b", &[1][..], bytes(&b))]),
            checksum([("k", "v")], [("c", &[2][..], bytes(&a)), ("b", &[1][..], bytes(&b))]),
        ];
        for c in changed {
            assert_ne!(c, s1);
        }
    }
}
