//! SVG plots of training runs against the iteration, one colour per run,
//! in three panels of comparable quantities: the target loss (training
//! running mean as a line, validation logloss as dots, test logloss as
//! crosses: all the log loss of the click label), the auxiliary loss of the
//! models that have one, and the AUC (validation as a line with dots, test
//! as a line with crosses: a curve when the test file is scored at every
//! evaluation, else the final point).

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::error::TrainError;
use crate::record::LogRecord;

fn err(path: &Path, e: impl std::fmt::Display) -> TrainError {
    TrainError::Config(format!("plot {}: {e}", path.display()))
}

const PALETTE: [&RGBColor; 6] = [&BLUE, &RED, &GREEN, &MAGENTA, &CYAN, &BLACK];

/// The value a series takes from a record, if it has one.
type Value = fn(&LogRecord) -> Option<f64>;

/// How a series is marked at its points.
#[derive(Clone, Copy, PartialEq)]
enum Mark {
    None,
    Dot,
    Cross,
}

/// One series of a panel: its value of a record, its legend suffix, and
/// whether its points are joined by a line and how they are marked.
struct Series<'a> {
    value: Value,
    suffix: &'a str,
    line: bool,
    mark: Mark,
}

/// One panel: its series, drawn for every run.
struct Panel<'a> {
    caption: &'a str,
    series: Vec<Series<'a>>,
    /// Margin added around the data's range, as a fraction of the values
    /// (`false`) or as an absolute AUC margin clamped to [0, 1] (`true`).
    unit_range: bool,
}

/// Writes `path` (SVG) with the three panels for the named runs.
pub fn write_curves(path: &Path, runs: &[(String, &[LogRecord])]) -> Result<(), TrainError> {
    let root = SVGBackend::new(path, (1500, 420)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(path, e))?;
    let areas = root.split_evenly((1, 3));
    let max_step = runs.iter().flat_map(|(_, h)| h.iter().map(|r| r.step)).max().unwrap_or(1).max(1) as f64;
    let s = |value: Value, suffix, line, mark| Series { value, suffix, line, mark };
    let panels = [
        Panel {
            caption: "target loss",
            series: vec![
                s(|r| r.train_loss_target, "train", true, Mark::None),
                s(|r| r.valid.as_ref()?.logloss, "valid", false, Mark::Dot),
                s(|r| r.test.as_ref()?.logloss, "test", false, Mark::Cross),
            ],
            unit_range: false,
        },
        Panel {
            caption: "auxiliary loss (train)",
            series: vec![s(|r| r.train_loss_aux, "", true, Mark::None)],
            unit_range: false,
        },
        Panel {
            caption: "AUC",
            series: vec![
                s(|r| r.valid.as_ref()?.auc, "valid", true, Mark::Dot),
                s(|r| r.test.as_ref()?.auc, "test", true, Mark::Cross),
            ],
            unit_range: true,
        },
    ];
    for (area, panel) in areas.iter().zip(&panels) {
        draw_panel(area, panel, runs, max_step).map_err(|e| err(path, e))?;
    }
    root.present().map_err(|e| err(path, e))?;
    Ok(())
}

type DrawResult = Result<(), DrawingAreaErrorKind<<SVGBackend<'static> as DrawingBackend>::ErrorType>>;

fn draw_panel(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    p: &Panel<'_>,
    runs: &[(String, &[LogRecord])],
    max_step: f64,
) -> DrawResult {
    let points = |f: Value, h: &[LogRecord]| -> Vec<(f64, f64)> {
        h.iter().filter_map(|r| Some((r.step as f64, f(r)?))).filter(|(_, v)| v.is_finite()).collect()
    };
    let values: Vec<f64> = runs
        .iter()
        .flat_map(|(_, h)| p.series.iter().flat_map(|s| points(s.value, h)).map(|(_, y)| y).collect::<Vec<_>>())
        .collect();
    let (lo, hi) = values.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
    let (lo, hi) = match (lo.is_finite(), p.unit_range) {
        (false, true) => (0.4, 1.0),
        (false, false) => (0.0, 1.0),
        (true, true) => ((lo - 0.02).max(0.0), (hi + 0.02).min(1.0)),
        (true, false) => (lo * 0.95, hi * 1.05),
    };
    let caption =
        if values.is_empty() && !p.unit_range { format!("{} (none)", p.caption) } else { p.caption.to_string() };
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..max_step, lo..hi.max(lo + 1e-3))?;
    chart.configure_mesh().x_desc("iteration").draw()?;
    let label =
        |name: &str, suffix: &str| if suffix.is_empty() { name.to_string() } else { format!("{name} {suffix}") };
    for (i, (name, h)) in runs.iter().enumerate() {
        let c = PALETTE[i % PALETTE.len()];
        for s in &p.series {
            let pts = points(s.value, h);
            if pts.is_empty() {
                continue;
            }
            let name = label(name, s.suffix);
            // One legend entry per series, on its marks when it has them.
            let mut legend = Some(name);
            if s.line {
                let drawn = chart.draw_series(LineSeries::new(pts.clone(), c))?;
                if s.mark == Mark::None
                    && let Some(l) = legend.take()
                {
                    drawn.label(l).legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], c));
                }
            }
            match s.mark {
                Mark::None => {}
                Mark::Dot => {
                    let drawn = chart.draw_series(pts.iter().map(|&pt| Circle::new(pt, 4, c.filled())))?;
                    if let Some(l) = legend.take() {
                        drawn.label(l).legend(move |(x, y)| Circle::new((x + 8, y), 4, c.filled()));
                    }
                }
                Mark::Cross => {
                    let drawn = chart.draw_series(pts.iter().map(|&pt| Cross::new(pt, 5, c.stroke_width(2))))?;
                    if let Some(l) = legend.take() {
                        drawn.label(l).legend(move |(x, y)| Cross::new((x + 8, y), 5, c.stroke_width(2)));
                    }
                }
            }
        }
    }
    chart.configure_series_labels().border_style(BLACK).background_style(WHITE).draw()?;
    Ok(())
}
