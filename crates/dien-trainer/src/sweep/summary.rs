//! Mean and sample standard deviation over the seeds of each cell, as a
//! Markdown table and as JSON.

use serde::Serialize;
use serde_json::{Map, Value};

use super::grid::Cell;
use super::runs::RunRecord;

/// Mean and sample standard deviation of the values a metric took over the
/// seeds of a cell (those where it was defined).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Stat {
    /// Mean (`None` when no seed gave a value).
    pub mean: Option<f64>,
    /// Sample standard deviation, n − 1 in the denominator (`None` below
    /// two values).
    pub sd: Option<f64>,
    /// Values it is computed from.
    pub n: usize,
}

impl Stat {
    /// The statistic of `values`.
    pub fn of(values: &[f64]) -> Self {
        let n = values.len();
        let mean = (n > 0).then(|| values.iter().sum::<f64>() / n as f64);
        let sd = mean.filter(|_| n > 1).map(|m| {
            let ss: f64 = values.iter().map(|v| (v - m) * (v - m)).sum();
            (ss / (n - 1) as f64).sqrt()
        });
        Self { mean, sd, n }
    }

    /// `mean ± sd` with `digits` decimals (`–` for no value).
    fn show(&self, digits: usize) -> String {
        match (self.mean, self.sd) {
            (Some(m), Some(s)) => format!("{m:.digits$} ± {s:.digits$}"),
            (Some(m), None) => format!("{m:.digits$}"),
            _ => "–".into(),
        }
    }
}

/// One row of the summary: a cell over its seeds.
#[derive(Clone, Debug, Serialize)]
pub struct CellSummary {
    /// The cell's folder name.
    pub cell: String,
    /// The model.
    pub model: String,
    /// The swept settings of the cell.
    pub set: Map<String, Value>,
    /// Seeds summarised.
    pub n: usize,
    /// Those seeds.
    pub seeds: Vec<u64>,
    /// Final test AUC.
    pub auc: Stat,
    /// Final test GAUC.
    pub gauc: Stat,
    /// Final test logloss.
    pub logloss: Stat,
    /// Final test accuracy.
    pub accuracy: Stat,
    /// Test AUC of the best checkpoint.
    pub best_auc: Stat,
    /// The metrics log's `epoch` of the best evaluation.
    pub best_epoch: Stat,
    /// Step of the best checkpoint.
    pub best_step: Stat,
    /// Wall time of a run.
    pub seconds: Stat,
}

/// The summary of every cell over the runs recorded for it, in cell order.
pub fn summarise(cells: &[Cell], runs: &[RunRecord]) -> Vec<CellSummary> {
    cells
        .iter()
        .map(|cell| {
            let rs: Vec<&RunRecord> = runs.iter().filter(|r| r.cell == cell.name).collect();
            let stat = |f: &dyn Fn(&RunRecord) -> Option<f64>| {
                Stat::of(&rs.iter().filter_map(|r| f(r)).filter(|v| v.is_finite()).collect::<Vec<_>>())
            };
            let best = |f: fn(&super::runs::Evaluation) -> Option<f64>| stat(&move |r| r.best.as_ref().and_then(f));
            CellSummary {
                cell: cell.name.clone(),
                model: cell.model.name().to_string(),
                set: cell.set.iter().map(|(k, v)| (k.clone(), super::runs::typed(v))).collect(),
                n: rs.len(),
                seeds: rs.iter().map(|r| r.seed).collect(),
                auc: stat(&|r| r.test.auc),
                gauc: stat(&|r| r.test.gauc),
                logloss: stat(&|r| r.test.logloss),
                accuracy: stat(&|r| r.test.accuracy),
                best_auc: best(|e| e.test.as_ref()?.auc),
                best_epoch: best(|e| Some(e.epoch as f64)),
                best_step: best(|e| Some(e.step as f64)),
                seconds: stat(&|r| Some(r.seconds)),
            }
        })
        .collect()
}

/// The summary as a Markdown table: mean ± sample sd over the seeds of the
/// final model's test AUC, GAUC and logloss, and of the best checkpoint's
/// test AUC and epoch (the best chosen by validation when the runs hold a
/// validation split out).
pub fn markdown(rows: &[CellSummary]) -> String {
    let header = ["cell", "n", "AUC", "GAUC", "logloss", "best AUC", "best epoch"];
    let body: Vec<[String; 7]> = rows
        .iter()
        .map(|r| {
            [
                r.cell.clone(),
                r.n.to_string(),
                r.auc.show(4),
                r.gauc.show(4),
                r.logloss.show(4),
                r.best_auc.show(4),
                r.best_epoch.show(1),
            ]
        })
        .collect();
    let widths: Vec<usize> = (0..header.len())
        .map(|i| body.iter().map(|row| row[i].chars().count()).chain([header[i].len()]).max().unwrap_or(0))
        .collect();
    let line = |cells: &[String]| {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        format!("| {} |\n", padded.join(" | "))
    };
    let mut out = line(&header.map(String::from));
    out.push_str(&line(&widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>()));
    for row in &body {
        out.push_str(&line(row));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_sd_divides_by_n_minus_one() {
        let s = Stat::of(&[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(s.mean, Some(2.5));
        assert!((s.sd.unwrap() - (5.0f64 / 3.0).sqrt()).abs() < 1e-15);
        assert_eq!(Stat::of(&[0.7]).sd, None);
        assert_eq!(Stat::of(&[]).mean, None);
        assert_eq!(Stat::of(&[0.5, 0.7]).show(2), "0.60 ± 0.14");
    }
}
