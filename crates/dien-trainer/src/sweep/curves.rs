//! The sweep's curves (`curves.svg`): per evaluation, the mean over seeds
//! of each cell's AUC and logloss on the validation split (the test file
//! for runs without one), with a band of ± one sample sd.

use std::collections::BTreeMap;
use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use super::runs::{Evaluation, Metrics};
use super::summary::Stat;
use crate::error::TrainError;

const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(23, 190, 207),
    RGBColor(140, 86, 75),
    RGBColor(0, 0, 0),
];

/// One cell's curve of a metric: per step, the statistic over its seeds.
type Curve = Vec<(f64, Stat)>;

/// The metric a panel shows.
type Metric = fn(&Metrics) -> Option<f64>;

/// The curve of metric `f` over the seeds' evaluations: the seeds that
/// evaluated at a step (all of them, when they ran alike) make its point.
fn curve(seeds: &[Vec<Evaluation>], f: Metric) -> Curve {
    let mut at: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
    for e in seeds.iter().flatten() {
        if let Some(v) = e.selection().and_then(f).filter(|v| v.is_finite()) {
            at.entry(e.step).or_default().push(v);
        }
    }
    at.into_iter().map(|(step, v)| (step as f64, Stat::of(&v))).collect()
}

/// Writes `path`: an AUC and a logloss panel, one line per cell (the mean
/// over its seeds) with its ± sd band. `cells` pairs each cell's name with
/// the evaluations of each of its seeds.
pub fn write_sweep_curves(path: &Path, cells: &[(String, Vec<Vec<Evaluation>>)]) -> Result<(), TrainError> {
    let err = |e: &dyn std::fmt::Display| TrainError::Config(format!("plot {}: {e}", path.display()));
    let split = if cells.iter().flat_map(|(_, s)| s.iter().flatten()).any(|e| e.valid.is_some()) {
        "validation"
    } else {
        "test"
    };
    let root = SVGBackend::new(path, (1200, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let areas = root.split_evenly((1, 2));
    // The legend goes where the curves usually are not: below a rising
    // AUC, above a falling logloss.
    let panels: [(String, Metric, SeriesLabelPosition); 2] = [
        (format!("{split} AUC"), |m| m.auc, SeriesLabelPosition::LowerRight),
        (format!("{split} logloss"), |m| m.logloss, SeriesLabelPosition::UpperRight),
    ];
    for (area, (caption, f, legend)) in areas.iter().zip(panels) {
        let curves: Vec<(&str, Curve)> = cells.iter().map(|(name, seeds)| (name.as_str(), curve(seeds, f))).collect();
        draw(area, &caption, &curves, legend).map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

type DrawResult = Result<(), DrawingAreaErrorKind<<SVGBackend<'static> as DrawingBackend>::ErrorType>>;

fn draw(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    caption: &str,
    curves: &[(&str, Curve)],
    legend: SeriesLabelPosition,
) -> DrawResult {
    let band = |s: &Stat| {
        let m = s.mean.unwrap_or(f64::NAN);
        let sd = s.sd.unwrap_or(0.0);
        (m - sd, m + sd)
    };
    let points = curves.iter().flat_map(|(_, c)| c.iter());
    let (x_max, lo, hi) = points.fold((1.0f64, f64::INFINITY, f64::NEG_INFINITY), |(x, lo, hi), (step, s)| {
        let (a, b) = band(s);
        (x.max(*step), lo.min(a), hi.max(b))
    });
    let (lo, hi) = if lo.is_finite() { (lo, hi) } else { (0.0, 1.0) };
    let pad = ((hi - lo) * 0.05).max(1e-3);
    let mut chart = ChartBuilder::on(area)
        .caption(format!("{caption} (mean over seeds, band ± 1 sd)"), ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(55)
        .build_cartesian_2d(0.0..x_max, (lo - pad)..(hi + pad))?;
    chart.configure_mesh().x_desc("iteration").draw()?;
    for (i, (name, c)) in curves.iter().enumerate() {
        let colour = PALETTE[i % PALETTE.len()];
        // The band: upper edge forward, lower edge back.
        let mut outline: Vec<(f64, f64)> = c.iter().map(|(x, s)| (*x, band(s).1)).collect();
        outline.extend(c.iter().rev().map(|(x, s)| (*x, band(s).0)));
        if c.iter().any(|(_, s)| s.sd.is_some()) {
            chart.draw_series(std::iter::once(Polygon::new(outline, colour.mix(0.15).filled())))?;
        }
        let mean: Vec<(f64, f64)> = c.iter().filter_map(|(x, s)| Some((*x, s.mean?))).collect();
        chart
            .draw_series(LineSeries::new(mean.clone(), colour.stroke_width(2)))?
            .label(*name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], colour.stroke_width(2)));
        // Dots mark the evaluations: with one evaluation a run has no line.
        chart.draw_series(mean.into_iter().map(|p| Circle::new(p, 3, colour.filled())))?;
    }
    chart.configure_series_labels().position(legend).border_style(BLACK).background_style(WHITE.mix(0.8)).draw()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_curve_averages_the_seeds_per_step() {
        let e = |step, auc| Evaluation {
            step,
            epoch: 0,
            test: Some(Metrics { auc: Some(auc), ..Metrics::default() }),
            valid: None,
        };
        let c = curve(&[vec![e(10, 0.6), e(20, 0.7)], vec![e(10, 0.8), e(20, 0.7)]], |m| m.auc);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].0, 10.0);
        assert!((c[0].1.mean.unwrap() - 0.7).abs() < 1e-12);
        assert_eq!(c[1].1.n, 2);
    }
}
