//! One sample line of the data layout (docs/MODEL.md#data-layout) and a streaming line reader.
//!
//! A line is `label \t uid \t mid \t cat \t mid_hist \t cat_hist`, the two
//! histories being ids joined by the byte 0x02, oldest first (an empty field
//! is an empty history). Lines end in `\n` or `\r\n`; a line that is empty
//! after removing the line ending holds no sample and is ignored.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

pub use dien_model::vocab::TableSizes;
use dien_model::vocab::Vocabs;

use crate::error::TrainError;

/// Separator of the ids inside a history field.
pub const HIST_SEP: u8 = 0x02;

/// Names of the six fields, in line order (used in error messages).
pub const FIELD_NAMES: [&str; 6] = ["label", "uid", "mid", "cat", "mid_hist", "cat_hist"];

/// What is wrong with one line, before the file and line number are known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineFault {
    /// The offending field (one of [`FIELD_NAMES`], or `line` for the whole line).
    pub field: &'static str,
    /// What is wrong with it.
    pub msg: String,
}

impl LineFault {
    fn new(field: &'static str, msg: impl Into<String>) -> Self {
        Self { field, msg: msg.into() }
    }

    /// Attaches the file and 1-based line number.
    pub fn at(self, path: &Path, line: u64) -> TrainError {
        TrainError::Line { path: path.to_path_buf(), line, field: self.field, msg: self.msg }
    }
}

/// The six fields of one line, borrowed from the line, histories still joined.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Fields<'a> {
    /// The label, 0.0 or 1.0.
    pub label: f32,
    /// User id string.
    pub uid: &'a str,
    /// Target item id string.
    pub mid: &'a str,
    /// Target category id string.
    pub cat: &'a str,
    /// History item ids joined by 0x02 (empty: no history).
    pub mid_hist: &'a str,
    /// History category ids joined by 0x02, as many as `mid_hist`.
    pub cat_hist: &'a str,
}

impl<'a> Fields<'a> {
    /// Number of history steps (untruncated).
    pub fn hist_len(&self) -> usize {
        hist_count(self.mid_hist.as_bytes())
    }

    /// The history item ids, oldest first.
    pub fn mid_tokens(&self) -> impl Iterator<Item = &'a str> + use<'a> {
        hist_tokens(self.mid_hist)
    }

    /// The history category ids, oldest first.
    pub fn cat_tokens(&self) -> impl Iterator<Item = &'a str> + use<'a> {
        hist_tokens(self.cat_hist)
    }
}

/// Number of ids in a 0x02-joined history field.
fn hist_count(field: &[u8]) -> usize {
    if field.is_empty() { 0 } else { 1 + field.iter().filter(|&&c| c == HIST_SEP).count() }
}

/// The ids of a 0x02-joined history field (none for an empty field).
pub fn hist_tokens(field: &str) -> impl Iterator<Item = &str> {
    // `split` on "" yields one empty token; an empty field is an empty history.
    field.split(HIST_SEP as char).filter(move |_| !field.is_empty())
}

/// Splits one line (without its line ending) into its six fields, checking
/// the field count, UTF-8 of each field, the label and that both histories
/// have the same number of entries.
pub fn split_fields(line: &[u8]) -> Result<Fields<'_>, LineFault> {
    split_fields_with(line, false)
}

/// [`split_fields`], also accepting a line without its label column (the
/// five fields `uid … cat_hist`, label taken as 0) when `label_optional`:
/// data to be scored has no label.
pub fn split_fields_with(line: &[u8], label_optional: bool) -> Result<Fields<'_>, LineFault> {
    let mut raw: [&[u8]; 6] = [b"0"; 6];
    let mut n = 0usize;
    let mut parts = [&line[..0]; 6];
    for part in line.split(|&c| c == b'\t') {
        if n < 6 {
            parts[n] = part;
        }
        n += 1;
    }
    match n {
        6 => raw = parts,
        5 if label_optional => raw[1..].copy_from_slice(&parts[..5]),
        _ if label_optional => {
            return Err(LineFault::new(
                "line",
                format!("expected 6 tab-separated fields (5 without the label), found {n}"),
            ));
        }
        _ => return Err(LineFault::new("line", format!("expected 6 tab-separated fields, found {n}"))),
    }
    let mut text: [&str; 6] = [""; 6];
    for (i, part) in raw.iter().enumerate() {
        text[i] = std::str::from_utf8(part).map_err(|e| {
            LineFault::new(FIELD_NAMES[i], format!("invalid UTF-8 at byte {} of the field", e.valid_up_to()))
        })?;
    }
    let label = match text[0].trim().parse::<f32>() {
        Ok(v) if v == 0.0 || v == 1.0 => v,
        _ => return Err(LineFault::new("label", format!("label `{}` is not 0 or 1", text[0]))),
    };
    let (nm, nc) = (hist_count(raw[4]), hist_count(raw[5]));
    if nm != nc {
        return Err(LineFault::new("cat_hist", format!("cat_hist has {nc} entries, mid_hist has {nm}")));
    }
    Ok(Fields { label, uid: text[1], mid: text[2], cat: text[3], mid_hist: text[4], cat_hist: text[5] })
}

/// The mapped scalar fields of one sample (its history goes to the caller's
/// buffers, see [`map_fields`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MappedHead {
    /// The label, 0.0 or 1.0.
    pub label: f32,
    /// User index.
    pub uid: u32,
    /// Target item index.
    pub mid: u32,
    /// Target category index.
    pub cat: u32,
}

fn check_range(field: &'static str, idx: u32, size: usize, token: &str) -> Result<u32, LineFault> {
    if (idx as usize) < size {
        Ok(idx)
    } else {
        Err(LineFault::new(field, format!("id `{token}` maps to index {idx}, but the table has {size} rows")))
    }
}

/// Maps the fields of one line through the vocabularies (unknown ids → 0),
/// appending the whole (untruncated) history to `hist_mid`/`hist_cat`, and
/// checks every index against `tables`. On error nothing is appended.
pub fn map_fields(
    f: &Fields<'_>,
    vocabs: &Vocabs,
    tables: &TableSizes,
    hist_mid: &mut Vec<u32>,
    hist_cat: &mut Vec<u32>,
) -> Result<MappedHead, LineFault> {
    let head = MappedHead {
        label: f.label,
        uid: check_range("uid", vocabs.uid.get(f.uid), tables.uid, f.uid)?,
        mid: check_range("mid", vocabs.mid.get(f.mid), tables.mid, f.mid)?,
        cat: check_range("cat", vocabs.cat.get(f.cat), tables.cat, f.cat)?,
    };
    let (m0, c0) = (hist_mid.len(), hist_cat.len());
    let mut push = || -> Result<(), LineFault> {
        for tok in f.mid_tokens() {
            hist_mid.push(check_range("mid_hist", vocabs.mid.get(tok), tables.mid, tok)?);
        }
        for tok in f.cat_tokens() {
            hist_cat.push(check_range("cat_hist", vocabs.cat.get(tok), tables.cat, tok)?);
        }
        Ok(())
    };
    let r = push();
    if r.is_err() {
        hist_mid.truncate(m0);
        hist_cat.truncate(c0);
    }
    r.map(|()| head)
}

/// One sample with its history mapped to indices (untruncated).
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// Label, scalar indices.
    pub head: MappedHead,
    /// History item indices, oldest first.
    pub hist_mid: Vec<u32>,
    /// History category indices, oldest first.
    pub hist_cat: Vec<u32>,
}

/// Parses and maps one line (without its line ending).
pub fn parse_sample(line: &[u8], vocabs: &Vocabs, tables: &TableSizes) -> Result<Sample, LineFault> {
    let f = split_fields(line)?;
    let (mut hist_mid, mut hist_cat) = (Vec::new(), Vec::new());
    let head = map_fields(&f, vocabs, tables, &mut hist_mid, &mut hist_cat)?;
    Ok(Sample { head, hist_mid, hist_cat })
}

/// Strips a trailing `\n` and then a trailing `\r`.
pub fn strip_line_end(mut line: &[u8]) -> &[u8] {
    if let [rest @ .., b'\n'] = line {
        line = rest;
    }
    if let [rest @ .., b'\r'] = line {
        line = rest;
    }
    line
}

/// The longest line a data file may have: a history of thousands of
/// behaviours fits many times over; a file without line breaks (or
/// `/dev/zero`) is refused instead of read into memory.
pub const MAX_LINE_BYTES: usize = 16 << 20;

/// Reads a file (or any byte source) line by line as bytes, counting lines
/// and bytes, without holding more than one line in memory.
pub struct LineReader<R = File> {
    path: PathBuf,
    reader: BufReader<R>,
    buf: Vec<u8>,
    line: u64,
    bytes: u64,
}

impl LineReader<File> {
    /// Opens `path`.
    pub fn open(path: &Path) -> Result<Self, TrainError> {
        let file = File::open(path).map_err(|e| TrainError::io(path, e))?;
        Ok(Self::from_reader(path, file))
    }
}

impl<R: Read> LineReader<R> {
    /// Reads the lines of `source` (bytes in memory, a pipe, …) exactly as
    /// [`open`](LineReader::open) reads a file; `path` names it in errors.
    pub fn from_reader(path: impl Into<PathBuf>, source: R) -> Self {
        Self {
            path: path.into(),
            reader: BufReader::with_capacity(1 << 16, source),
            buf: Vec::new(),
            line: 0,
            bytes: 0,
        }
    }

    /// The file being read.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Number of lines consumed so far (= 1-based number of the last line
    /// returned by [`next_line`](Self::next_line)).
    pub fn lines_consumed(&self) -> u64 {
        self.line
    }

    /// Bytes of the file consumed so far (line endings included).
    pub fn bytes_consumed(&self) -> u64 {
        self.bytes
    }

    /// The next line without its line ending, or `None` at the end of the
    /// file. A UTF-8 byte-order mark opening the file is dropped; a line
    /// longer than [`MAX_LINE_BYTES`] is an error (nothing longer is held in
    /// memory).
    pub fn next_line(&mut self) -> Result<Option<&[u8]>, TrainError> {
        let n = self.read_line()?;
        if n == 0 {
            return Ok(None);
        }
        let mut line = strip_line_end(&self.buf);
        if self.line == 1 {
            line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
        }
        Ok(Some(line))
    }

    /// Reads the next line into the buffer, at most [`MAX_LINE_BYTES`] of
    /// it; the bytes read (0 at the end of the file).
    fn read_line(&mut self) -> Result<usize, TrainError> {
        self.buf.clear();
        let limit = MAX_LINE_BYTES as u64 + 1;
        let n = std::io::Read::take(&mut self.reader, limit)
            .read_until(b'\n', &mut self.buf)
            .map_err(|e| TrainError::io(&self.path, e))?;
        if n == 0 {
            return Ok(0);
        }
        self.line += 1;
        self.bytes += n as u64;
        if n > MAX_LINE_BYTES && !self.buf.ends_with(b"\n") {
            return Err(TrainError::Line {
                path: self.path.clone(),
                line: self.line,
                field: "line",
                msg: format!("longer than {MAX_LINE_BYTES} bytes without a line break (not a data file?)"),
            });
        }
        Ok(n)
    }

    /// Whether the end of the file has been reached.
    pub fn at_eof(&mut self) -> Result<bool, TrainError> {
        self.reader.fill_buf().map(|b| b.is_empty()).map_err(|e| TrainError::io(&self.path, e))
    }

    /// Skips up to `n` lines without parsing them; returns how many were
    /// skipped (fewer only at the end of the file).
    pub fn skip_lines(&mut self, n: u64) -> Result<u64, TrainError> {
        let mut done = 0;
        while done < n {
            // `skip_until` would avoid the copy, but reading into the reused
            // buffer is as cheap and keeps one code path.
            if self.read_line()? == 0 {
                break;
            }
            done += 1;
        }
        Ok(done)
    }
}

/// Malformed lines skipped by a reader in `skip_bad_lines` mode.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct BadLines {
    /// How many lines were skipped.
    pub count: u64,
    /// The first few errors (at most [`BadLines::KEEP`]), as messages naming
    /// file, line and field.
    pub first: Vec<String>,
}

impl BadLines {
    /// How many error messages are kept.
    pub const KEEP: usize = 5;

    /// Records one skipped line.
    pub fn record(&mut self, err: &TrainError) {
        self.count += 1;
        if self.first.len() < Self::KEEP {
            self.first.push(err.to_string());
        }
    }

    /// Adds another record's counts (keeping at most [`BadLines::KEEP`] messages).
    pub fn merge(&mut self, other: &BadLines) {
        self.count += other.count;
        for m in &other.first {
            if self.first.len() < Self::KEEP {
                self.first.push(m.clone());
            }
        }
    }
}

impl std::fmt::Display for BadLines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} malformed line(s) skipped", self.count)?;
        for m in &self.first {
            write!(f, "\n  {m}")?;
        }
        if self.count > self.first.len() as u64 {
            write!(f, "\n  …")?;
        }
        Ok(())
    }
}
