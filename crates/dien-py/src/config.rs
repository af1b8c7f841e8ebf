//! Settings dictionaries of the Python API, checked in plain Rust: a
//! model's configuration (`dien.Model(config)`), a training run
//! (`dien.train(..., **settings)`) and a synthetic data set
//! (`dien.generate(..., **settings)`). The Python layer turns its
//! dictionaries into JSON values ([`crate::convert::from_py`]); every
//! error here is a message for a `ValueError`.
//!
//! Names follow the `dien` command: the keys of `dien.train` are the flags
//! of `dien train` with underscores (as in a `--config` file), and a model
//! configuration uses the checkpoint metadata's names
//! (docs/MODEL.md#checkpoints), with `dim` and `hidden` accepted for `d`
//! and `H`.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use dien_model::checkpoint::sidecar_path;
use dien_model::{AttForm, AuxForm, ModelConfig, ModelKind, Variant};
use dien_trainer::generate::GenerateConfig;
use dien_trainer::optim::{OptimConfig, OptimKind};
use dien_trainer::train::{Recipe, Select, TrainConfig};
use serde_json::{Map, Value, json};

/// The largest batch `dien.train` and `dien.evaluate` accept (as the
/// command line).
pub const MAX_BATCH: usize = 1 << 16;

/// The most threads a call accepts: eight per core, as the command line.
pub fn thread_limit() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()).saturating_mul(8)
}

/// Checks a `threads` setting: `None` (every core) or 1 to
/// [`thread_limit`].
pub fn threads(v: Option<i64>) -> Result<Option<usize>, String> {
    match v {
        None => Ok(None),
        Some(n) if n < 1 => Err(format!("threads = {n}: must be at least 1 (leave it out to use every core)")),
        Some(n) if n as u64 > thread_limit() as u64 => {
            Err(format!("threads = {n} is more than {} (eight per core of this machine)", thread_limit()))
        }
        Some(n) => Ok(Some(n as usize)),
    }
}

/// A settings dictionary: typed reads, and a check that every key is known.
struct Settings<'a> {
    map: &'a Map<String, Value>,
    /// What the settings configure, for messages (`model config`, `train`).
    what: &'static str,
}

impl<'a> Settings<'a> {
    /// Fails on a key outside `known`, listing the valid ones.
    fn new(map: &'a Map<String, Value>, what: &'static str, known: &[&str]) -> Result<Self, String> {
        if let Some(k) = map.keys().find(|k| !known.contains(&k.as_str())) {
            return Err(format!("{what}: unknown key `{k}` (the keys are: {})", known.join(", ")));
        }
        Ok(Self { map, what })
    }

    /// The value of `key`; `None` when absent or `None`/null.
    fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    fn bad(&self, key: &str, want: &str, v: &Value) -> String {
        format!("{}: `{key}` must be {want}, got {v}", self.what)
    }

    fn string(&self, key: &str) -> Result<Option<&'a str>, String> {
        self.get(key).map(|v| v.as_str().ok_or_else(|| self.bad(key, "a string", v))).transpose()
    }

    fn parse<T: FromStr>(&self, key: &str) -> Result<Option<T>, String>
    where
        T::Err: std::fmt::Display,
    {
        self.string(key)?.map(|s| s.parse::<T>().map_err(|e| format!("{}: {e}", self.what))).transpose()
    }

    fn u64(&self, key: &str) -> Result<Option<u64>, String> {
        self.get(key).map(|v| v.as_u64().ok_or_else(|| self.bad(key, "a non-negative integer", v))).transpose()
    }

    fn usize(&self, key: &str) -> Result<Option<usize>, String> {
        self.u64(key)?
            .map(|n| usize::try_from(n).map_err(|_| format!("{}: `{key}` = {n} is too large", self.what)))
            .transpose()
    }

    /// A count that must be at least 1.
    fn positive(&self, key: &str) -> Result<Option<usize>, String> {
        match self.usize(key)? {
            Some(0) => Err(format!("{}: `{key}` must be at least 1", self.what)),
            v => Ok(v),
        }
    }

    fn i64(&self, key: &str) -> Result<Option<i64>, String> {
        self.get(key).map(|v| v.as_i64().ok_or_else(|| self.bad(key, "an integer", v))).transpose()
    }

    fn f64(&self, key: &str) -> Result<Option<f64>, String> {
        self.get(key).map(|v| v.as_f64().ok_or_else(|| self.bad(key, "a number", v))).transpose()
    }

    fn f32(&self, key: &str) -> Result<Option<f32>, String> {
        Ok(self.f64(key)?.map(|x| x as f32))
    }

    fn bool(&self, key: &str) -> Result<Option<bool>, String> {
        self.get(key).map(|v| v.as_bool().ok_or_else(|| self.bad(key, "True or False", v))).transpose()
    }

    /// A path, `False` for "none" (`Some(None)`), or absent (`None`).
    fn path_or_off(&self, key: &str) -> Result<Option<Option<PathBuf>>, String> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(false)) => Ok(Some(None)),
            Some(Value::String(s)) => Ok(Some(Some(PathBuf::from(s)))),
            Some(v) => Err(self.bad(key, "a path or False", v)),
        }
    }

    /// One of two spellings of the same setting.
    fn either<T>(
        &self,
        a: &str,
        b: &str,
        read: impl Fn(&str) -> Result<Option<T>, String>,
    ) -> Result<Option<T>, String> {
        match (read(a)?, read(b)?) {
            (Some(_), Some(_)) => Err(format!("{}: give `{a}` or `{b}`, not both", self.what)),
            (x, None) | (None, x) => Ok(x),
        }
    }
}

/// The keys of a model configuration.
pub const MODEL_KEYS: &[&str] =
    &["model", "variant", "att", "aux", "d", "dim", "H", "hidden", "max_len", "n_uid", "n_mid", "n_cat", "alpha_aux"];

/// A model configuration from a dictionary: `n_uid`, `n_mid`, `n_cat`
/// (the table sizes) are required; `model` (default `dien`), `variant`,
/// `att`, `aux`, `d` (or `dim`), `H` (or `hidden`), `max_len` and
/// `alpha_aux` default as in docs/MODEL.md. Checked
/// ([`ModelConfig::validate`]).
pub fn model_config(map: &Map<String, Value>) -> Result<ModelConfig, String> {
    let s = Settings::new(map, "model config", MODEL_KEYS)?;
    let kind = s.parse::<ModelKind>("model")?.unwrap_or_default();
    let table = |key: &str| s.usize(key)?.ok_or_else(|| format!("model config: `{key}` (a table size) is required"));
    let mut c = ModelConfig::new(kind, table("n_uid")?, table("n_mid")?, table("n_cat")?);
    if let Some(v) = s.parse::<Variant>("variant")? {
        c.variant = v;
    }
    if let Some(v) = s.parse::<AttForm>("att")? {
        c.att = v;
    }
    if let Some(v) = s.parse::<AuxForm>("aux")? {
        c.aux = v;
    }
    if let Some(v) = s.either("d", "dim", |k| s.usize(k))? {
        c.d = v;
    }
    if let Some(v) = s.either("H", "hidden", |k| s.usize(k))? {
        c.hidden = v;
    }
    if let Some(v) = s.usize("max_len")? {
        c.max_len = v;
    }
    if let Some(v) = s.f32("alpha_aux")? {
        c.alpha_aux = v;
    }
    c.validate().map_err(|e| e.to_string())?;
    Ok(c)
}

/// `x` as the `f64` with the shortest decimal form that reads back as `x`.
fn shortest(x: f32) -> f64 {
    x.to_string().parse().unwrap_or(f64::from(x))
}

/// A configuration as the dictionary [`model_config`] reads (the
/// checkpoint metadata's names, numbers as numbers), in the order of
/// docs/MODEL.md#checkpoints.
pub fn model_config_entries(c: &ModelConfig) -> Vec<(&'static str, Value)> {
    vec![
        ("model", json!(c.model.name())),
        ("variant", json!(c.variant.name())),
        ("att", json!(c.att.name())),
        ("aux", json!(c.aux.name())),
        ("d", json!(c.d)),
        ("H", json!(c.hidden)),
        ("max_len", json!(c.max_len)),
        ("n_uid", json!(c.n_uid)),
        ("n_mid", json!(c.n_mid)),
        ("n_cat", json!(c.n_cat)),
        ("alpha_aux", json!(shortest(c.alpha_aux))),
    ]
}

/// The settings `dien.train` accepts: the flags of `dien train` (with
/// underscores) that the function does not take by name, plus `log_every`
/// and `progress`.
pub const TRAIN_KEYS: &[&str] = &[
    "epochs",
    "seed",
    "threads",
    "variant",
    "att",
    "aux",
    "dim",
    "hidden",
    "alpha_aux",
    "recipe",
    "aux_lr_scale",
    "max_len",
    "batch",
    "optimizer",
    "lr",
    "dense_embedding_updates",
    "clip_norm",
    "eval_every",
    "no_epoch_eval",
    "valid_frac",
    "select",
    "early_stop",
    "save_every",
    "no_recalibrate",
    "recal_samples",
    "skip_bad_lines",
    "max_steps",
    "resume",
    "metrics_log",
    "plot",
    "log_every",
    "progress",
];

/// A training run on `data` writing `out`, from `dien.train`'s settings
/// (keys [`TRAIN_KEYS`]; defaults as `dien train`: one epoch, batch 128,
/// seed 2018, every core, the metrics log and the plot beside the
/// checkpoint, no progress bar).
pub fn train_config(data: &Path, model: &str, out: &Path, map: &Map<String, Value>) -> Result<TrainConfig, String> {
    let s = Settings::new(map, "train", TRAIN_KEYS)?;
    let kind = model.parse::<ModelKind>().map_err(|e| format!("train: {e}"))?;
    let mut c = TrainConfig::new(data, out, kind);
    let m = &mut c.model;
    if let Some(v) = s.parse::<Variant>("variant")? {
        m.variant = v;
    }
    if let Some(v) = s.parse::<AttForm>("att")? {
        m.att = v;
    }
    if let Some(v) = s.parse::<AuxForm>("aux")? {
        m.aux = v;
    }
    if let Some(v) = s.usize("dim")? {
        m.d = v;
    }
    if let Some(v) = s.usize("hidden")? {
        m.hidden = v;
    }
    // As `dien train`: the weight applies to the model with the auxiliary loss.
    if let Some(v) = s.f32("alpha_aux")?
        && m.has_aux()
    {
        m.alpha_aux = v;
    }
    if let Some(v) = s.positive("max_len")? {
        m.max_len = v;
    }
    if let Some(v) = s.positive("epochs")? {
        c.epochs = v;
    }
    if let Some(v) = s.positive("batch")? {
        if v > MAX_BATCH {
            return Err(format!("train: `batch` = {v} is more than {MAX_BATCH}"));
        }
        c.batch_size = v;
    }
    if let Some(v) = s.u64("seed")? {
        c.seed = v;
    }
    c.threads = threads(s.i64("threads")?).map_err(|e| format!("train: {e}"))?;
    let mut o = OptimConfig::default();
    if let Some(k) = s.parse::<OptimKind>("optimizer")? {
        o.kind = k;
    }
    if let Some(lr) = s.f32("lr")? {
        o.lr = lr;
    }
    o.lazy_embeddings = !s.bool("dense_embedding_updates")?.unwrap_or(false);
    o.clip_norm = s.f32("clip_norm")?;
    if let Some(v) = s.f32("aux_lr_scale")? {
        o.aux_lr_scale = v;
    }
    o.validate().map_err(|e| format!("train: {e}"))?;
    c.optim = o;
    c.eval_every = s.u64("eval_every")?;
    c.eval_each_epoch = !s.bool("no_epoch_eval")?.unwrap_or(false);
    if let Some(f) = s.f64("valid_frac")? {
        if !(0.0..1.0).contains(&f) {
            return Err(format!(
                "train: `valid_frac` = {f}: the fraction of training users held out for validation must be at least 0 \
                 and below 1 (0 holds out no user)"
            ));
        }
        c.valid_frac = f;
    }
    if let Some(v) = s.parse::<Recipe>("recipe")? {
        c.recipe = v;
    }
    if let Some(v) = s.parse::<Select>("select")? {
        c.select = v;
    }
    c.early_stop = s.positive("early_stop")?.map(|v| v as u64);
    c.save_every = s.u64("save_every")?;
    c.recalibrate = !s.bool("no_recalibrate")?.unwrap_or(false);
    if let Some(v) = s.usize("recal_samples")? {
        c.recal_samples = v;
    }
    c.skip_bad_lines = s.bool("skip_bad_lines")?.unwrap_or(false);
    c.max_steps = s.positive("max_steps")?.map(|v| v as u64);
    c.resume = s.bool("resume")?.unwrap_or(false);
    c.metrics_log = s.path_or_off("metrics_log")?.unwrap_or_else(|| Some(sidecar_path(out, "metrics.jsonl")));
    c.plot = s.path_or_off("plot")?.unwrap_or_else(|| Some(sidecar_path(out, "curves.svg")));
    if let Some(v) = s.positive("log_every")? {
        c.log_every = v as u64;
    }
    c.progress = s.bool("progress")?.unwrap_or(false);
    // The table sizes come from the vocabularies; the rest is checked now.
    let mut probe = c.model.clone();
    (probe.n_uid, probe.n_mid, probe.n_cat) = (1, 1, 1);
    probe.validate().map_err(|e| format!("train: {e}"))?;
    Ok(c)
}

/// The settings `dien.generate` accepts (the flags of `dien generate`, and
/// `test_fraction`).
pub const GENERATE_KEYS: &[&str] =
    &["seed", "users", "items", "categories", "min_history", "max_history", "test_fraction"];

/// A synthetic data set's settings; what is not given keeps the default of
/// `dien generate` (docs/DATA.md).
pub fn generate_config(map: &Map<String, Value>) -> Result<GenerateConfig, String> {
    let s = Settings::new(map, "generate", GENERATE_KEYS)?;
    let mut g = GenerateConfig::default();
    if let Some(v) = s.u64("seed")? {
        g.seed = v;
    }
    for (key, field) in [
        ("users", &mut g.users),
        ("items", &mut g.items),
        ("categories", &mut g.categories),
        ("min_history", &mut g.min_len),
        ("max_history", &mut g.max_len),
    ] {
        if let Some(v) = s.usize(key)? {
            *field = v;
        }
    }
    if let Some(v) = s.f64("test_fraction")? {
        g.test_fraction = v;
    }
    g.validate().map_err(|e| e.to_string())?;
    Ok(g)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    #[test]
    fn model_configs_read_back_and_name_bad_keys() {
        let c = model_config(&map(json!({"n_uid": 5, "n_mid": 7, "n_cat": 3, "dim": 2, "H": 4}))).unwrap();
        assert_eq!((c.model, c.d, c.hidden, c.max_len, c.alpha_aux), (ModelKind::Dien, 2, 4, 100, 1.0));
        let entries = model_config_entries(&c).into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        let back = model_config(&entries).unwrap();
        assert_eq!(back, c);
        let noaux = model_config(&map(json!({"model": "dien-noaux", "n_uid": 5, "n_mid": 7, "n_cat": 3}))).unwrap();
        assert_eq!(noaux.alpha_aux, 0.0);
        let e = model_config(&map(json!({"n_uid": 5, "n_mid": 7}))).unwrap_err();
        assert_eq!(e, "model config: `n_cat` (a table size) is required");
        let e = model_config(&map(json!({"n_uid": 5, "n_mid": 7, "n_cat": 3, "hiden": 4}))).unwrap_err();
        assert!(e.starts_with("model config: unknown key `hiden` (the keys are: model, variant"), "{e}");
        let e = model_config(&map(json!({"n_uid": 5, "n_mid": 7, "n_cat": 3, "d": 2, "dim": 2}))).unwrap_err();
        assert_eq!(e, "model config: give `d` or `dim`, not both");
        let e = model_config(&map(json!({"n_uid": 5, "n_mid": 7, "n_cat": 3, "variant": "lstm"}))).unwrap_err();
        assert!(e.contains("unknown value `lstm`") && e.contains("augru"), "{e}");
        let e = model_config(&map(json!({"n_uid": -1, "n_mid": 7, "n_cat": 3}))).unwrap_err();
        assert_eq!(e, "model config: `n_uid` must be a non-negative integer, got -1");
        let e = model_config(&map(json!({"n_uid": 0, "n_mid": 7, "n_cat": 3}))).unwrap_err();
        assert!(e.contains("n_uid must be at least 1"), "{e}");
    }

    #[test]
    fn train_settings_follow_the_command_line() {
        let out = Path::new("run/m.safetensors");
        let c = train_config(Path::new("data"), "din", out, &Map::new()).unwrap();
        assert_eq!((c.epochs, c.batch_size, c.seed, c.threads), (1, 128, dien_trainer::DEFAULT_SEED, None));
        assert_eq!(c.metrics_log.as_deref(), Some(Path::new("run/m.metrics.jsonl")));
        assert!(c.recalibrate && !c.progress && c.optim.lazy_embeddings);
        let c = train_config(
            Path::new("data"),
            "dien",
            out,
            &map(json!({"epochs": 2, "batch": 32, "threads": 1, "max_len": 20, "dim": 4, "hidden": 8,
                        "alpha_aux": 0.5, "lr": 0.01, "plot": false, "max_steps": 3, "no_recalibrate": true})),
        )
        .unwrap();
        assert_eq!((c.epochs, c.batch_size, c.threads, c.model.max_len), (2, 32, Some(1), 20));
        assert_eq!((c.model.d, c.model.hidden, c.model.alpha_aux, c.optim.lr), (4, 8, 0.5, 0.01));
        assert_eq!((c.plot, c.max_steps, c.recalibrate), (None, Some(3), false));
        assert_eq!((c.valid_frac, c.select, c.early_stop, c.eval_each_epoch), (0.1, Select::Valid, None, true));
        let c = train_config(
            Path::new("data"),
            "din",
            out,
            &map(json!({"valid_frac": 0.0, "select": "test", "early_stop": 3, "no_epoch_eval": true})),
        )
        .unwrap();
        assert_eq!((c.valid_frac, c.select, c.early_stop, c.eval_each_epoch), (0.0, Select::Test, Some(3), false));
        // As `dien train`: alpha_aux is the weight of dien's auxiliary loss only.
        let c = train_config(Path::new("d"), "dien-noaux", out, &map(json!({"alpha_aux": 0.5}))).unwrap();
        assert_eq!(c.model.alpha_aux, 0.0);
        for (bad, want) in [
            (json!({"epochs": 0}), "train: `epochs` must be at least 1"),
            (json!({"threads": 0}), "train: threads = 0: must be at least 1 (leave it out to use every core)"),
            (json!({"lr": "fast"}), "train: `lr` must be a number, got \"fast\""),
            (json!({"batch": 1 << 20}), "train: `batch` = 1048576 is more than 65536"),
            (json!({"early_stop": 0}), "train: `early_stop` must be at least 1"),
        ] {
            assert_eq!(train_config(Path::new("d"), "dien", out, &map(bad)).unwrap_err(), want);
        }
        let e = train_config(Path::new("d"), "dien", out, &map(json!({"epoch": 2}))).unwrap_err();
        assert!(e.starts_with("train: unknown key `epoch` (the keys are: epochs, seed"), "{e}");
        let e = train_config(Path::new("d"), "gru4rec", out, &Map::new()).unwrap_err();
        assert!(e.contains("unknown value `gru4rec`"), "{e}");
        let e = train_config(Path::new("d"), "dien", out, &map(json!({"aux": "dot", "dim": 2}))).unwrap_err();
        assert!(e.contains("aux = dot needs H == E"), "{e}");
        let e = train_config(Path::new("d"), "dien", out, &map(json!({"optimizer": "adagrad"}))).unwrap_err();
        assert!(e.contains("optimizer `adagrad`"), "{e}");
        let e = train_config(Path::new("d"), "dien", out, &map(json!({"valid_frac": 1.0}))).unwrap_err();
        assert!(e.starts_with("train: `valid_frac` = 1: ") && e.contains("below 1"), "{e}");
        let e = train_config(Path::new("d"), "dien", out, &map(json!({"select": "best"}))).unwrap_err();
        assert!(e.contains("select `best`: expected `valid` or `test`"), "{e}");
    }

    #[test]
    fn generate_settings_and_threads() {
        let g = generate_config(&map(
            json!({"users": 40, "items": 60, "categories": 6, "min_history": 3, "max_history": 9, "seed": 5}),
        ))
        .unwrap();
        assert_eq!((g.users, g.items, g.categories, g.min_len, g.max_len, g.seed), (40, 60, 6, 3, 9, 5));
        assert!(generate_config(&map(json!({"users": 0}))).unwrap_err().contains("users"));
        let e = generate_config(&map(json!({"max_history": 9}))).unwrap_err();
        assert!(e.contains("max_len = 9 is below min_len = 10"), "{e}");
        assert_eq!(threads(None), Ok(None));
        assert_eq!(threads(Some(1)), Ok(Some(1)));
        assert!(threads(Some(-2)).is_err());
        assert!(threads(Some(1 << 40)).unwrap_err().contains("eight per core"));
    }
}
