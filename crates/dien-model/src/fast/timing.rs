//! Optional per-stage wall-clock timing of [`Model`](super::Model) steps:
//! where a step's time goes, and which stages scale with threads.
//!
//! Off by default; [`Model::time_stages`](super::Model::time_stages) turns
//! it on. A step then reads the clock once per stage boundary (tens of
//! nanoseconds against milliseconds of work) and adds each stage's time to
//! the totals.

use std::time::Instant;

/// The stages of one step, in the order they run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Validation, weight repacking, workspace sizing, embedding gather.
    Input,
    /// The interest extractor GRU.
    Extractor,
    /// The auxiliary loss (batches with negatives). It runs beside the
    /// evolution, the head and the interest backward, on the threads they
    /// leave idle: this is the time the step waits for it once they are
    /// done (on one thread, all of it).
    AuxLoss,
    /// Attention and the interest-evolving GRU (or the pooling of DIN and
    /// Embedding&MLP).
    Interest,
    /// The head's forward pass and loss.
    Head,
    /// The head's backward pass.
    HeadBackward,
    /// Backward of the interest stage.
    InterestBackward,
    /// Backward of the extractor, with the auxiliary gradients reduced.
    ExtractorBackward,
    /// Embedding-row gradients.
    Scatter,
}

impl Stage {
    /// Every stage, in order.
    pub const ALL: [Stage; 9] = [
        Stage::Input,
        Stage::Extractor,
        Stage::AuxLoss,
        Stage::Interest,
        Stage::Head,
        Stage::HeadBackward,
        Stage::InterestBackward,
        Stage::ExtractorBackward,
        Stage::Scatter,
    ];

    /// A short name for tables.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Input => "input",
            Stage::Extractor => "extractor",
            Stage::AuxLoss => "aux loss",
            Stage::Interest => "interest",
            Stage::Head => "head",
            Stage::HeadBackward => "head backward",
            Stage::InterestBackward => "interest backward",
            Stage::ExtractorBackward => "extractor backward",
            Stage::Scatter => "embedding scatter",
        }
    }
}

/// Seconds spent in each [`Stage`] over the steps timed so far.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StageTimes {
    secs: [f64; Stage::ALL.len()],
    steps: u64,
}

impl StageTimes {
    /// Total seconds of `stage`.
    pub fn secs(&self, stage: Stage) -> f64 {
        self.secs[stage as usize]
    }
    /// Steps timed.
    pub fn steps(&self) -> u64 {
        self.steps
    }
    /// Forgets everything timed so far.
    pub fn clear(&mut self) {
        *self = Self::default();
    }
}

/// The clock of one step: [`Laps::lap`] charges the time since the previous
/// lap to a stage.
pub(crate) struct Laps {
    last: Option<Instant>,
    secs: [f64; Stage::ALL.len()],
}

impl Laps {
    /// A running clock when `on`, else one that does nothing.
    pub fn start(on: bool) -> Self {
        Self { last: on.then(Instant::now), secs: [0.0; Stage::ALL.len()] }
    }
    /// Charges the time since the previous lap to `stage`.
    pub fn lap(&mut self, stage: Stage) {
        if let Some(t0) = self.last {
            let now = Instant::now();
            self.secs[stage as usize] += (now - t0).as_secs_f64();
            self.last = Some(now);
        }
    }
    /// Adds this step to `total` (when the clock ran).
    pub fn finish(self, total: &mut Option<StageTimes>) {
        if let (Some(_), Some(t)) = (self.last, total.as_mut()) {
            for (a, b) in t.secs.iter_mut().zip(self.secs) {
                *a += b;
            }
            t.steps += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn laps_charge_their_stage_and_an_idle_clock_records_nothing() {
        let mut total = Some(StageTimes::default());
        let mut l = Laps::start(true);
        std::thread::sleep(std::time::Duration::from_millis(3));
        l.lap(Stage::Head);
        l.lap(Stage::Scatter);
        l.finish(&mut total);
        let t = total.as_ref().unwrap();
        assert_eq!(t.steps(), 1);
        assert!(t.secs(Stage::Head) >= 0.003);
        assert!(t.secs(Stage::Scatter) < t.secs(Stage::Head));
        assert_eq!(t.secs(Stage::Input), 0.0);
        let mut off = Laps::start(false);
        off.lap(Stage::Head);
        off.finish(&mut total);
        assert_eq!(total.unwrap().steps(), 1, "a clock that was off adds no step");
    }
}
