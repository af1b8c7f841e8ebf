//! The metrics log of a run (JSON lines, docs/MODEL.md#run-records): written
//! by rank 0, and kept in memory as the run's history for the summary and
//! the plot.

use std::fs;
use std::io::Write;
use std::path::Path;

use serde::Serialize;

use super::{Event, TrainConfig};
use crate::error::TrainError;
use crate::record::LogRecord;

/// The open log and the records of this sitting.
pub(super) struct MetricsLog<'a> {
    file: Option<(fs::File, &'a Path)>,
    /// Every [`LogRecord`] emitted so far.
    pub(super) history: Vec<LogRecord>,
}

impl<'a> MetricsLog<'a> {
    /// Opens `cfg.metrics_log` (when `lead` writes files): a fresh run
    /// truncates it, a resumed one appends; either way the run `record`
    /// is its next line.
    pub(super) fn open(cfg: &'a TrainConfig, lead: bool, record: &serde_json::Value) -> Result<Self, TrainError> {
        let file = match &cfg.metrics_log {
            Some(p) if lead => {
                let mut f = fs::OpenOptions::new()
                    .create(true)
                    .append(cfg.resume)
                    .write(true)
                    .truncate(!cfg.resume)
                    .open(p)
                    .map_err(|e| TrainError::io(p, e))?;
                writeln!(f, "{record}").map_err(|e| TrainError::io(p, e))?;
                Some((f, p.as_path()))
            }
            _ => None,
        };
        Ok(Self { file, history: Vec::new() })
    }

    /// Writes `rec`, reports it and keeps it.
    pub(super) fn emit(
        &mut self,
        rec: LogRecord,
        on_event: &mut (dyn FnMut(Event<'_>) + Send),
    ) -> Result<(), TrainError> {
        self.line(&rec)?;
        on_event(Event::Record(&rec));
        self.history.push(rec);
        Ok(())
    }

    /// Writes one line that is not a [`LogRecord`] (the split, the best
    /// model's test metrics): readers tell lines apart by their `kind`.
    pub(super) fn line(&mut self, value: &impl Serialize) -> Result<(), TrainError> {
        if let Some((f, p)) = &mut self.file {
            let line = serde_json::to_string(value).map_err(|e| TrainError::Config(format!("metrics log: {e}")))?;
            writeln!(f, "{line}").map_err(|e| TrainError::io(*p, e))?;
        }
        Ok(())
    }
}
