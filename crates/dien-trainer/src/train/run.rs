//! The record of a run: every setting of a [`TrainConfig`] under the name of
//! its `dien train` flag (underscores for dashes), with the version and
//! source revision of the code. It is the first line of the metrics log and
//! the [`RUN_METADATA_KEY`] entry of every checkpoint the run writes, and its
//! `config` object reads back as a `dien train --config` file.

use serde_json::{Map, Value, json};

use super::TrainConfig;

/// The checkpoint metadata key holding the run record (a JSON string).
pub const RUN_METADATA_KEY: &str = "run";

/// The version of this code: the package version and the source revision it
/// was built from (`unknown` outside a git checkout).
pub const CODE_VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("DIEN_REVISION"), ")");

/// `x` as the f64 with the shortest decimal form that reads back as `x`
/// (0.001, not 0.0010000000474974513).
fn shortest(x: f32) -> f64 {
    x.to_string().parse().unwrap_or(f64::from(x))
}

impl TrainConfig {
    /// Every setting of the run under its `dien train` flag name; settings
    /// left unset (`threads`, `clip_norm`, ...) are absent.
    pub fn settings(&self) -> Map<String, Value> {
        let m = &self.model;
        let o = &self.optim;
        let entries = [
            ("data", json!(self.data_dir.display().to_string())),
            ("out", json!(self.out.display().to_string())),
            ("model", json!(m.model.name())),
            ("variant", json!(m.variant.name())),
            ("att", json!(m.att.name())),
            ("aux", json!(m.aux.name())),
            ("dim", json!(m.d)),
            ("hidden", json!(m.hidden)),
            ("alpha_aux", json!(shortest(m.alpha_aux))),
            ("max_len", json!(m.max_len)),
            ("epochs", json!(self.epochs)),
            ("batch", json!(self.batch_size)),
            ("seed", json!(self.seed)),
            ("threads", json!(self.threads)),
            ("optimizer", json!(o.kind.name())),
            ("lr", json!(shortest(o.lr))),
            ("dense_embedding_updates", json!(!o.lazy_embeddings)),
            ("aux_lr_scale", json!(shortest(o.aux_lr_scale))),
            ("recipe", json!(self.recipe.name())),
            ("clip_norm", json!(o.clip_norm.map(shortest))),
            ("eval_every", json!(self.eval_every)),
            ("no_epoch_eval", json!(!self.eval_each_epoch)),
            ("valid_frac", json!(self.valid_frac)),
            ("select", json!(self.select.name())),
            ("early_stop", json!(self.early_stop)),
            ("save_every", json!(self.save_every)),
            ("no_recalibrate", json!(!self.recalibrate)),
            ("recal_samples", json!(self.recal_samples)),
            ("skip_bad_lines", json!(self.skip_bad_lines)),
            ("max_steps", json!(self.max_steps)),
            ("resume", json!(self.resume)),
            ("metrics_log", json!(self.metrics_log.as_ref().map(|p| p.display().to_string()))),
            ("plot", json!(self.plot.as_ref().map(|p| p.display().to_string()))),
            ("log_every", json!(self.log_every)),
        ];
        entries.into_iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k.to_string(), v)).collect()
    }

    /// The run record: `{"kind": "run", "version": .., "config": {settings}}`.
    pub fn run_record(&self) -> Value {
        json!({"kind": "run", "version": CODE_VERSION, "config": self.settings()})
    }
}
