//! Where the wall time of a run goes, by stage ([`StageTimes`]).

use std::collections::BTreeMap;
use std::time::Instant;

use dien_model::fast::{Stage as ModelStage, StageTimes as ModelStageTimes};
use serde::Serialize;

/// Wall seconds of each stage of a run (this sitting's, without the part
/// before a resume), measured on the thread that drives the run: a stage
/// that waits for data counts the wait. The stages do not overlap; what
/// none of them covers (metrics-log writes, the progress bar, the loop
/// itself) is `other`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct StageTimes {
    /// Before the first step: vocabularies, item-info and reviews-info,
    /// the count of the validation split, the model, the optimiser.
    pub setup: f64,
    /// Waiting for the next training batch (read, parsed and sampled on a
    /// background thread).
    pub batch_wait: f64,
    /// Forward and backward passes of the training steps.
    pub forward_backward: f64,
    /// `forward_backward` split by the model's stages (input, extractor,
    /// auxiliary loss, …; the names of [`ModelStage::name`]), seconds.
    pub forward_backward_stages: BTreeMap<&'static str, f64>,
    /// Optimiser steps and the running statistics' updates.
    pub optimiser: f64,
    /// Recalibration before each evaluation: the forward passes over its
    /// sample and the new statistics.
    pub recalibration: f64,
    /// Scoring the validation split and the test file (the best model's
    /// too).
    pub evaluation: f64,
    /// Writing checkpoints (the best model's, periodic and final ones,
    /// with their sidecars) and the plot.
    pub saving: f64,
    /// The rest of the run's wall time.
    pub other: f64,
    /// The run's wall time.
    pub total: f64,
}

/// Which field of [`StageTimes`] a measurement goes to.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Stage {
    BatchWait,
    ForwardBackward,
    Optimiser,
    Recalibration,
    Evaluation,
    Saving,
}

impl StageTimes {
    /// Runs `f`, adding its wall time to `stage`.
    pub(crate) fn time<R>(&mut self, stage: Stage, f: impl FnOnce() -> R) -> R {
        let t = Instant::now();
        let r = f();
        let s = t.elapsed().as_secs_f64();
        *match stage {
            Stage::BatchWait => &mut self.batch_wait,
            Stage::ForwardBackward => &mut self.forward_backward,
            Stage::Optimiser => &mut self.optimiser,
            Stage::Recalibration => &mut self.recalibration,
            Stage::Evaluation => &mut self.evaluation,
            Stage::Saving => &mut self.saving,
        } += s;
        r
    }

    /// Adds the model's per-stage times of one or more steps.
    pub(crate) fn add_model_stages(&mut self, t: &ModelStageTimes) {
        for stage in ModelStage::ALL {
            *self.forward_backward_stages.entry(stage.name()).or_insert(0.0) += t.secs(stage);
        }
    }

    /// Sets `total` and `other` from the run's wall time `total`.
    pub(crate) fn close(&mut self, total: f64) {
        let parts = self.setup
            + self.batch_wait
            + self.forward_backward
            + self.optimiser
            + self.recalibration
            + self.evaluation
            + self.saving;
        self.total = total;
        self.other = (total - parts).max(0.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_add_up_to_the_total() {
        let mut t = StageTimes::default();
        let x = t.time(Stage::Optimiser, || {
            std::thread::sleep(std::time::Duration::from_millis(5));
            7
        });
        assert_eq!(x, 7);
        assert!(t.optimiser >= 0.005 && t.setup == 0.0);
        t.setup = 1.0;
        t.close(2.0);
        assert_eq!(t.total, 2.0);
        assert!((t.other - (1.0 - t.optimiser)).abs() < 1e-12);
        t.close(0.5);
        assert_eq!(t.other, 0.0, "never negative");
    }

    #[test]
    fn model_stages_accumulate_by_name() {
        let mut t = StageTimes::default();
        t.add_model_stages(&ModelStageTimes::default());
        assert_eq!(t.forward_backward_stages.len(), ModelStage::ALL.len());
        assert!(t.forward_backward_stages.values().all(|&s| s == 0.0));
        assert!(t.forward_backward_stages.contains_key("extractor"));
    }
}
