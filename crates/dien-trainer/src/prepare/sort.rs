//! The external sort of `dien prepare`: events are collected in chunks of
//! at most `chunk_events`, each chunk sorted by (user, time, input order) and
//! written to a run file, and the runs merged (in several passes when there
//! are more than [`MAX_FAN_IN`]). A log that fits in one chunk is sorted in
//! memory and never touches the disk. Either way the stream of events is
//! the same.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use crate::data::writer::{create, finish};
use crate::error::TrainError;

/// Runs merged at once (each holds an open file and one event in memory);
/// more runs are first merged in groups of this many.
pub(super) const MAX_FAN_IN: usize = 64;

/// One event: the user, the timestamp as written and the rating in one
/// string (`user \t time \t rating`, one allocation), the time as a number,
/// the 0-based position in the input and the item index.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Event {
    text: Box<str>,
    user_end: u32,
    time_end: u32,
    /// The timestamp (sort key).
    pub(super) time: f64,
    /// Position among the events of the input (ties of time keep this order).
    pub(super) seq: u64,
    /// Index in the item table.
    pub(super) item: u32,
}

impl Event {
    /// An event; none of the strings may hold a tab or a line break.
    pub(super) fn new(user: &str, time_text: &str, rating: &str, time: f64, seq: u64, item: u32) -> Self {
        let text = format!("{user}\t{time_text}\t{rating}").into_boxed_str();
        let user_end = user.len() as u32;
        let time_end = user_end + 1 + time_text.len() as u32;
        Self { text, user_end, time_end, time, seq, item }
    }

    /// The user id.
    pub(super) fn user(&self) -> &str {
        &self.text[..self.user_end as usize]
    }

    /// The timestamp as written.
    pub(super) fn time_text(&self) -> &str {
        &self.text[self.user_end as usize + 1..self.time_end as usize]
    }

    /// The rating as written.
    pub(super) fn rating(&self) -> &str {
        &self.text[self.time_end as usize + 1..]
    }

    /// The sort order: user, then time, then input position.
    fn order(&self, other: &Self) -> Ordering {
        self.user()
            .cmp(other.user())
            .then_with(|| self.time.total_cmp(&other.time))
            .then_with(|| self.seq.cmp(&other.seq))
    }

    /// Writes the event as one line of a run file.
    fn write_to(&self, w: &mut impl Write) -> std::io::Result<()> {
        writeln!(w, "{}\t{}\t{}", self.text, self.seq, self.item)
    }

    /// Reads a line written by [`write_to`](Self::write_to) (without its `\n`).
    fn read_from(line: &str) -> Option<Self> {
        let mut back = line.rsplitn(3, '\t');
        let item = back.next()?.parse().ok()?;
        let seq = back.next()?.parse().ok()?;
        let text = back.next()?;
        let mut parts = text.splitn(3, '\t');
        let (user, time_text, rating) = (parts.next()?, parts.next()?, parts.next()?);
        let time = time_text.parse().ok()?;
        Some(Self::new(user, time_text, rating, time, seq, item))
    }
}

/// Collects events and spills sorted runs.
pub(super) struct Sorter {
    dir: PathBuf,
    chunk_events: usize,
    chunk: Vec<Event>,
    runs: Vec<PathBuf>,
    next_run: usize,
    /// Runs merged at once ([`MAX_FAN_IN`]; smaller in tests).
    fan_in: usize,
}

impl Sorter {
    /// A sorter writing its runs into `dir`.
    pub(super) fn new(dir: &Path, chunk_events: usize) -> Self {
        Self { dir: dir.to_owned(), chunk_events, chunk: Vec::new(), runs: Vec::new(), next_run: 0, fan_in: MAX_FAN_IN }
    }

    /// Adds an event; spills the chunk when it is full.
    pub(super) fn push(&mut self, e: Event) -> Result<(), TrainError> {
        self.chunk.push(e);
        if self.chunk.len() >= self.chunk_events {
            self.spill()?;
        }
        Ok(())
    }

    fn new_run(&mut self) -> PathBuf {
        self.next_run += 1;
        self.dir.join(format!("run-{:06}", self.next_run))
    }

    fn spill(&mut self) -> Result<(), TrainError> {
        self.chunk.sort_unstable_by(Event::order);
        let path = self.new_run();
        let mut w = create(&path)?;
        for e in &self.chunk {
            e.write_to(&mut w).map_err(|err| TrainError::io(&path, err))?;
        }
        finish(w, &path)?;
        self.chunk.clear();
        self.runs.push(path);
        Ok(())
    }

    /// Every event pushed, sorted.
    pub(super) fn finish(mut self) -> Result<EventStream, TrainError> {
        if self.runs.is_empty() {
            self.chunk.sort_unstable_by(Event::order);
            let events = std::mem::take(&mut self.chunk);
            return Ok(EventStream { runs: 0, source: Source::Memory(events.into_iter()) });
        }
        if !self.chunk.is_empty() {
            self.spill()?;
        }
        self.chunk = Vec::new();
        let runs = self.runs.len();
        // Merge groups of runs into longer runs until one merge can take them all.
        while self.runs.len() > self.fan_in {
            let groups: Vec<Vec<PathBuf>> = self.runs.chunks(self.fan_in).map(<[PathBuf]>::to_vec).collect();
            self.runs.clear();
            for group in groups {
                let path = self.new_run();
                let mut merger = Merger::open(group)?;
                let mut w = create(&path)?;
                while let Some(e) = merger.next()? {
                    e.write_to(&mut w).map_err(|err| TrainError::io(&path, err))?;
                }
                finish(w, &path)?;
                self.runs.push(path);
            }
        }
        Ok(EventStream { runs, source: Source::Merge(Merger::open(std::mem::take(&mut self.runs))?) })
    }
}

/// The sorted events.
pub(super) struct EventStream {
    runs: usize,
    source: Source,
}

enum Source {
    Memory(std::vec::IntoIter<Event>),
    Merge(Merger),
}

impl EventStream {
    /// The next event in (user, time, input order).
    pub(super) fn next(&mut self) -> Result<Option<Event>, TrainError> {
        match &mut self.source {
            Source::Memory(it) => Ok(it.next()),
            Source::Merge(m) => m.next(),
        }
    }

    /// Runs spilled to disk (0 when sorted in memory).
    pub(super) fn runs(&self) -> usize {
        self.runs
    }
}

/// One run being read.
struct RunReader {
    path: PathBuf,
    reader: BufReader<File>,
    line: String,
}

impl RunReader {
    fn open(path: PathBuf) -> Result<Self, TrainError> {
        let file = File::open(&path).map_err(|e| TrainError::io(&path, e))?;
        Ok(Self { path, reader: BufReader::with_capacity(1 << 16, file), line: String::new() })
    }

    fn next(&mut self) -> Result<Option<Event>, TrainError> {
        self.line.clear();
        let n = self.reader.read_line(&mut self.line).map_err(|e| TrainError::io(&self.path, e))?;
        if n == 0 {
            return Ok(None);
        }
        let line = self.line.strip_suffix('\n').unwrap_or(&self.line);
        Event::read_from(line).map(Some).ok_or_else(|| {
            TrainError::io(&self.path, std::io::Error::new(std::io::ErrorKind::InvalidData, "corrupt run file"))
        })
    }
}

/// The head of one run in the merge heap (ordered so that the heap's top is
/// the smallest event).
struct Head {
    event: Event,
    run: usize,
}

impl PartialEq for Head {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Head {}

impl PartialOrd for Head {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Head {
    fn cmp(&self, other: &Self) -> Ordering {
        other.event.order(&self.event)
    }
}

/// A k-way merge of sorted runs; each run file is deleted once read.
struct Merger {
    readers: Vec<Option<RunReader>>,
    heap: BinaryHeap<Head>,
}

impl Merger {
    fn open(paths: Vec<PathBuf>) -> Result<Self, TrainError> {
        let mut readers = Vec::with_capacity(paths.len());
        let mut heap = BinaryHeap::with_capacity(paths.len());
        for (run, path) in paths.into_iter().enumerate() {
            let mut r = RunReader::open(path)?;
            if let Some(event) = r.next()? {
                heap.push(Head { event, run });
            }
            readers.push(Some(r));
        }
        Ok(Self { readers, heap })
    }

    fn next(&mut self) -> Result<Option<Event>, TrainError> {
        let Some(Head { event, run }) = self.heap.pop() else { return Ok(None) };
        let reader = self.readers[run].as_mut().expect("a run with an event in the heap is open");
        match reader.next()? {
            Some(next) => self.heap.push(Head { event: next, run }),
            None => {
                let done = self.readers[run].take().expect("open");
                let path = done.path.clone();
                drop(done);
                std::fs::remove_file(&path).map_err(|e| TrainError::io(&path, e))?;
            }
        }
        Ok(Some(event))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events() -> Vec<Event> {
        let spec = [("b", 3.0), ("a", 5.0), ("b", 1.0), ("a", 5.0), ("c", 0.5), ("a", -1.0), ("b", 1.0)];
        spec.iter()
            .enumerate()
            .map(|(i, &(u, t))| Event::new(u, &t.to_string(), "0.0", t, i as u64, i as u32))
            .collect()
    }

    fn sorted(chunk: usize, fan_in: usize, dir: &Path) -> (Vec<Event>, usize) {
        let mut s = Sorter::new(dir, chunk);
        s.fan_in = fan_in;
        for e in events() {
            s.push(e).unwrap();
        }
        let mut stream = s.finish().unwrap();
        let mut out = vec![];
        while let Some(e) = stream.next().unwrap() {
            out.push(e);
        }
        (out, stream.runs())
    }

    #[test]
    fn external_merge_equals_the_in_memory_sort() {
        let dir = std::env::temp_dir().join(format!("dien-prepare-sort-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (mem, runs) = sorted(100, MAX_FAN_IN, &dir);
        assert_eq!(runs, 0);
        let order: Vec<u64> = mem.iter().map(|e| e.seq).collect();
        assert_eq!(order, [5, 1, 3, 2, 6, 0, 4]);
        // Fan-in 2 merges 7 runs of one event in three passes.
        for (chunk, fan_in) in [(1, MAX_FAN_IN), (2, MAX_FAN_IN), (3, MAX_FAN_IN), (1, 2), (2, 3)] {
            let (ext, runs) = sorted(chunk, fan_in, &dir);
            assert_eq!(runs, 7_usize.div_ceil(chunk));
            assert_eq!(ext, mem, "chunk {chunk}, fan-in {fan_in}");
        }
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "run files are removed once merged");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn event_fields_round_trip() {
        let e = Event::new("user 1", "1511544070", "4.5", 1511544070.0, 9, 3);
        assert_eq!((e.user(), e.time_text(), e.rating()), ("user 1", "1511544070", "4.5"));
        let mut buf = Vec::new();
        e.write_to(&mut buf).unwrap();
        let line = String::from_utf8(buf).unwrap();
        assert_eq!(Event::read_from(line.trim_end_matches('\n')), Some(e));
    }
}
