//! SVG plots of training runs: the training loss and test logloss, and the
//! test AUC, against the iteration, one colour per run.

use std::path::Path;

use plotters::prelude::*;

use crate::error::TrainError;
use crate::record::LogRecord;

fn err(path: &Path, e: impl std::fmt::Display) -> TrainError {
    TrainError::Config(format!("plot {}: {e}", path.display()))
}

/// Writes `path` (SVG) with two panels for the named runs.
pub fn write_curves(path: &Path, runs: &[(String, &[LogRecord])]) -> Result<(), TrainError> {
    let root = SVGBackend::new(path, (1100, 420)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(path, e))?;
    let (left, right) = root.split_horizontally(550);
    let max_step = runs.iter().flat_map(|(_, h)| h.iter().map(|r| r.step)).max().unwrap_or(1).max(1) as f64;
    let losses: Vec<f64> = runs
        .iter()
        .flat_map(|(_, h)| {
            h.iter().filter_map(|r| r.train_loss.or(r.test.as_ref().and_then(|t| t.logloss))).collect::<Vec<_>>()
        })
        .filter(|v| v.is_finite())
        .collect();
    let (lo, hi) = losses.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
    let (lo, hi) = if lo.is_finite() { (lo * 0.95, hi * 1.05) } else { (0.0, 1.0) };
    let palette = [&BLUE, &RED, &GREEN, &MAGENTA, &CYAN, &BLACK];

    let mut chart = ChartBuilder::on(&left)
        .caption("loss", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..max_step, lo..hi)
        .map_err(|e| err(path, e))?;
    chart.configure_mesh().x_desc("iteration").draw().map_err(|e| err(path, e))?;
    for (i, (name, h)) in runs.iter().enumerate() {
        let c = palette[i % palette.len()];
        let train: Vec<(f64, f64)> = h.iter().filter_map(|r| Some((r.step as f64, r.train_loss?))).collect();
        let test: Vec<(f64, f64)> = h.iter().filter_map(|r| Some((r.step as f64, r.test.as_ref()?.logloss?))).collect();
        chart
            .draw_series(LineSeries::new(train, c))
            .map_err(|e| err(path, e))?
            .label(format!("{name} train"))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], c));
        chart
            .draw_series(PointSeries::of_element(test, 4, c, &|p, s, st| Circle::new(p, s, st.filled())))
            .map_err(|e| err(path, e))?
            .label(format!("{name} test logloss"))
            .legend(move |(x, y)| Circle::new((x + 8, y), 4, c.filled()));
    }
    chart.configure_series_labels().border_style(BLACK).background_style(WHITE).draw().map_err(|e| err(path, e))?;

    let aucs: Vec<f64> =
        runs.iter().flat_map(|(_, h)| h.iter().filter_map(|r| r.test.as_ref()?.auc).collect::<Vec<_>>()).collect();
    let (alo, ahi) = aucs.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
    let (alo, ahi) = if alo.is_finite() { ((alo - 0.02).max(0.0), (ahi + 0.02).min(1.0)) } else { (0.4, 1.0) };
    let mut chart = ChartBuilder::on(&right)
        .caption("test AUC", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..max_step, alo..ahi.max(alo + 1e-3))
        .map_err(|e| err(path, e))?;
    chart.configure_mesh().x_desc("iteration").draw().map_err(|e| err(path, e))?;
    for (i, (name, h)) in runs.iter().enumerate() {
        let c = palette[i % palette.len()];
        let pts: Vec<(f64, f64)> = h.iter().filter_map(|r| Some((r.step as f64, r.test.as_ref()?.auc?))).collect();
        chart
            .draw_series(LineSeries::new(pts.clone(), c))
            .map_err(|e| err(path, e))?
            .label(name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], c));
        chart
            .draw_series(PointSeries::of_element(pts, 3, c, &|p, s, st| Circle::new(p, s, st.filled())))
            .map_err(|e| err(path, e))?;
    }
    chart.configure_series_labels().border_style(BLACK).background_style(WHITE).draw().map_err(|e| err(path, e))?;
    root.present().map_err(|e| err(path, e))?;
    Ok(())
}
