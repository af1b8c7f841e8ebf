//! SVG plots of training runs against the iteration, one colour per run,
//! in three panels of comparable quantities: the target loss (training
//! running mean as a line, test logloss as dots: both the log loss of the
//! click label), the auxiliary loss of the models that have one, and the
//! test AUC.

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

/// One panel: a line (and, when `dots`, a dotted series) per run.
struct Panel<'a> {
    caption: &'a str,
    /// The line's value of a record and its legend suffix.
    line: (Value, &'a str),
    /// The dots' value of a record and their legend suffix.
    dots: Option<(Value, &'a str)>,
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
    let panels = [
        Panel {
            caption: "target loss",
            line: (|r| r.train_loss_target, "train"),
            dots: Some((|r| r.test.as_ref()?.logloss, "test")),
            unit_range: false,
        },
        Panel { caption: "auxiliary loss (train)", line: (|r| r.train_loss_aux, ""), dots: None, unit_range: false },
        Panel {
            caption: "test AUC",
            line: (|r| r.test.as_ref()?.auc, ""),
            dots: Some((|r| r.test.as_ref()?.auc, "")),
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
    let series = |f: Value, h: &[LogRecord]| -> Vec<(f64, f64)> {
        h.iter().filter_map(|r| Some((r.step as f64, f(r)?))).filter(|(_, v)| v.is_finite()).collect()
    };
    let values: Vec<f64> = runs
        .iter()
        .flat_map(|(_, h)| {
            let mut v: Vec<f64> = series(p.line.0, h).into_iter().map(|(_, y)| y).collect();
            if let Some((f, _)) = p.dots {
                v.extend(series(f, h).into_iter().map(|(_, y)| y));
            }
            v
        })
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
        let line = series(p.line.0, h);
        if !line.is_empty() {
            chart
                .draw_series(LineSeries::new(line, c))?
                .label(label(name, p.line.1))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], c));
        }
        if let Some((f, suffix)) = p.dots {
            let dots = chart.draw_series(PointSeries::of_element(series(f, h), 4, c, &|pt, s, st| {
                Circle::new(pt, s, st.filled())
            }))?;
            // Dots of the line's own values need no second legend entry.
            if !suffix.is_empty() {
                dots.label(label(name, suffix)).legend(move |(x, y)| Circle::new((x + 8, y), 4, c.filled()));
            }
        }
    }
    chart.configure_series_labels().border_style(BLACK).background_style(WHITE).draw()?;
    Ok(())
}
