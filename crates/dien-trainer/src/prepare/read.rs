//! Reading the inputs of `dien prepare`: the item file (Amazon metadata,
//! MovieLens `movies.csv`) into the item table, and the event log, line by
//! line, through the behaviour filter into the item counts and the sorter.
//! A malformed line is an error naming the file, the line and the field, or,
//! with `skip_bad_lines`, skipped and counted. Empty lines are ignored.

use std::borrow::Cow;
use std::io::Read;
use std::path::Path;

use serde_json::Value;

use super::catalogue::Items;
use super::format::{LineFormat, check_id, check_text, fault, parse_object, split};
use super::sort::{Event, Sorter};
use super::{EventFormat, PrepareConfig, PrepareSummary};
use crate::data::line::{BadLines, LineFault, LineReader};
use crate::error::TrainError;

/// A line as text: invalid UTF-8 is a fault of the whole line; a byte-order
/// mark at the start of the file is dropped.
fn decode(raw: &[u8], line_no: u64) -> Result<&str, LineFault> {
    let text = std::str::from_utf8(raw)
        .map_err(|e| fault("line", format!("invalid UTF-8 at byte {} of the line", e.valid_up_to())))?;
    Ok(if line_no == 1 { text.strip_prefix('\u{feff}').unwrap_or(text) } else { text })
}

/// Fails with `err`, or records it when skipping bad lines.
fn bad_line(err: TrainError, skip: bool, bad: &mut BadLines) -> Result<(), TrainError> {
    if !skip {
        return Err(err);
    }
    bad.record(&err);
    Ok(())
}

/// The category an Amazon metadata object gives its item: the last entry of
/// its first category path (`categories`, the 2014 files, as the reference
/// code takes it) or of its `category` list (the 2018 files).
fn amazon_category(obj: &serde_json::Map<String, Value>) -> Result<Option<String>, LineFault> {
    let last_string = |v: Option<&Value>| match v.and_then(Value::as_array).and_then(|a| a.last()) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(other.to_string()),
    };
    if let Some(c) = obj.get("categories") {
        let first_path = c.as_array().and_then(|paths| paths.first());
        return last_string(first_path).map_err(|v| fault("categories", format!("category {v} is not a string")));
    }
    last_string(obj.get("category")).map_err(|v| fault("category", format!("category {v} is not a string")))
}

/// Where `movieId` and `genres` are in `movies.csv`, and its fields per line.
#[derive(Clone, Copy, Debug)]
struct MovieColumns {
    item: usize,
    genres: usize,
    width: usize,
}

/// The item and category of one item-file line (`movies` is known for
/// MovieLens, past its header).
fn catalogue_entry(
    line: &str,
    movies: Option<MovieColumns>,
) -> Result<(Cow<'_, str>, Option<Cow<'_, str>>), LineFault> {
    match movies {
        Some(MovieColumns { item: item_col, genres: genres_col, width }) => {
            let fields = split(line, ',', true)?;
            if fields.len() != width {
                return Err(fault("line", format!("expected {width} comma-separated fields, found {}", fields.len())));
            }
            let item = check_id("movieId", fields[item_col].clone())?;
            let genre = fields[genres_col].split('|').next().unwrap_or("").to_owned();
            let cat = (genre != "(no genres listed)" && !genre.is_empty()).then_some(Cow::Owned(genre));
            Ok((item, cat.map(|c| check_text("genres", c)).transpose()?))
        }
        None => {
            let obj = parse_object(line)?;
            let item = match obj.get("asin") {
                Some(Value::String(s)) => check_id("asin", Cow::Owned(s.clone()))?,
                Some(other) => return Err(fault("asin", format!("expected a string, found {other}"))),
                None => return Err(fault("asin", "missing")),
            };
            let cat = amazon_category(&obj)?.map(|c| check_text("categories", Cow::Owned(c))).transpose()?;
            Ok((item, cat))
        }
    }
}

/// Reads the item file of `format` into `items` (which then takes its
/// categories from it); returns the malformed lines skipped.
pub(super) fn read_catalogue(
    path: &Path,
    format: EventFormat,
    skip: bool,
    items: &mut Items,
) -> Result<BadLines, TrainError> {
    scan_catalogue(LineReader::open(path)?, format, skip, items)
}

/// [`read_catalogue`] of any line source (the file, or bytes in memory).
pub(super) fn scan_catalogue<R: Read>(
    mut reader: LineReader<R>,
    format: EventFormat,
    skip: bool,
    items: &mut Items,
) -> Result<BadLines, TrainError> {
    items.use_catalogue();
    let path = &reader.path().to_path_buf();
    let mut bad = BadLines::default();
    // MovieLens: the positions of movieId and genres, from the header.
    let mut movies: Option<MovieColumns> = None;
    let mut n = 0u64;
    while let Some(raw) = reader.next_line()? {
        n += 1;
        let line = match decode(raw, n) {
            Ok(l) if l.trim().is_empty() => continue,
            Ok(l) => l,
            Err(f) => {
                bad_line(f.at(path, n), skip, &mut bad)?;
                continue;
            }
        };
        if format == EventFormat::Movielens && movies.is_none() {
            let names: Vec<String> =
                split(line, ',', true).map_err(|f| f.at(path, n))?.iter().map(|h| h.trim().to_lowercase()).collect();
            let col = |name: &str| names.iter().position(|h| h == name);
            let (Some(item), Some(genres)) = (col("movieid"), col("genres")) else {
                let msg = format!("the header `{line}` lacks `movieId` or `genres` (movies.csv: movieId,title,genres)");
                return Err(fault("header", msg).at(path, n));
            };
            movies = Some(MovieColumns { item, genres, width: names.len() });
            continue;
        }
        match catalogue_entry(line, movies) {
            Ok((item, cat)) => items.list(&item, cat.as_deref()),
            Err(f) => bad_line(f.at(path, n), skip, &mut bad)?,
        }
    }
    Ok(bad)
}

/// Reads the event log into `items` (counts, categories) and `sorter`,
/// filling the input counts of `summary` (lines, skipped and filtered lines,
/// category conflicts).
pub(super) fn read_events(
    cfg: &PrepareConfig,
    items: &mut Items,
    sorter: &mut Sorter,
    summary: &mut PrepareSummary,
) -> Result<(), TrainError> {
    let reader = LineReader::open(&cfg.events)?;
    let events = EventSource { format: cfg.format, keep: cfg.kept_behaviors(), skip_bad_lines: cfg.skip_bad_lines };
    scan_events(reader, &events, items, summary, |e| sorter.push(e))
}

/// How to read an event log: its format, the behaviours kept (`None`: all),
/// whether malformed lines are skipped.
pub(super) struct EventSource {
    pub(super) format: EventFormat,
    pub(super) keep: Option<Vec<String>>,
    pub(super) skip_bad_lines: bool,
}

/// [`read_events`] of any line source, handing each kept event to `push`.
pub(super) fn scan_events<R: Read>(
    mut reader: LineReader<R>,
    src: &EventSource,
    items: &mut Items,
    summary: &mut PrepareSummary,
    mut push: impl FnMut(Event) -> Result<(), TrainError>,
) -> Result<(), TrainError> {
    let path = &reader.path().to_path_buf();
    let keep = &src.keep;
    let mut parser = if LineFormat::has_header(src.format) {
        None
    } else {
        Some(LineFormat::new(src.format, None).map_err(|f| f.at(path, 0))?)
    };
    let mut seq = 0u64;
    let mut n = 0u64;
    while let Some(raw) = reader.next_line()? {
        n += 1;
        let line = match decode(raw, n) {
            Ok(l) if l.trim().is_empty() => continue,
            Ok(l) => l,
            Err(f) => {
                bad_line(f.at(path, n), src.skip_bad_lines, &mut summary.bad_lines)?;
                continue;
            }
        };
        let p = match &parser {
            Some(p) => p,
            None => {
                let p = LineFormat::new(src.format, Some(line)).map_err(|f| f.at(path, n))?;
                if keep.is_some() && !p.has_behavior() {
                    let msg = "--behavior filters on a `behavior` column, which the header does not name";
                    return Err(fault("header", msg).at(path, n));
                }
                parser = Some(p);
                continue;
            }
        };
        let ev = match p.parse(line) {
            Ok(ev) => ev,
            Err(f) => {
                bad_line(f.at(path, n), src.skip_bad_lines, &mut summary.bad_lines)?;
                continue;
            }
        };
        if let Some(keep) = &keep {
            let b = ev.behavior.as_deref().unwrap_or_default();
            if !keep.iter().any(|k| k == b) {
                summary.dropped_lines.behavior += 1;
                continue;
            }
        }
        let (item, conflict) = items.event(&ev.item, ev.category.as_deref());
        summary.category_conflicts += u64::from(conflict);
        push(Event::new(&ev.user, &ev.time_text, &ev.rating, ev.time, seq, item))?;
        seq += 1;
    }
    summary.input_lines = reader.lines_consumed();
    if seq == 0 {
        return Err(TrainError::Config(format!(
            "prepare: {} holds no event{}",
            path.display(),
            if summary.dropped_lines.behavior > 0 { " of the kept behaviours" } else { "" }
        )));
    }
    Ok(())
}
