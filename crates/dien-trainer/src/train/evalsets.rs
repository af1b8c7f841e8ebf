//! The batches a run's evaluations read, prepared once.
//!
//! Every evaluation of a run reads the same batches: recalibration's
//! seeded draw of whole batches from the training side of the split, the
//! validation split and the test file. None of them has negatives, and the
//! draw depends on the run's seed alone, so they do not change from one
//! evaluation to the next. A background thread started with the run builds
//! them once, in the order evaluations need them (recalibration, validation,
//! test), while the first epoch trains, and keeps each set in memory when
//! it fits what is left of [`CACHE_BYTES`]. A set that does not fit, or
//! whose reading failed, is read from its file again at every evaluation,
//! exactly as without the cache, so that errors surface where they did.
//! Either way an evaluation sees the same batches in the same order.

use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, channel};
use std::thread::JoinHandle;

use dien_model::ModelConfig;

use super::eval::{RecalSource, evaluation_batcher, recalibration_batcher, recalibration_draw};
use crate::data::{Batcher, BatcherConfig, DataSet, LoadedBatch, Shard, UserFilter};
use crate::error::TrainError;

/// The most memory the prepared sets of one run may take together
/// (estimated by [`batch_bytes`]): 256 MiB.
pub const CACHE_BYTES: usize = 256 << 20;

/// One of the sets an evaluation reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Set {
    /// Recalibration's draw from the training side.
    Recal = 0,
    /// The validation split of the training file.
    Valid = 1,
    /// The test file.
    Test = 2,
}

/// What the background thread made of a set.
enum State {
    /// Not received yet.
    Pending,
    /// Not kept: read from the file at each use.
    Stream,
    /// Every batch of the set, in order.
    Kept(Vec<LoadedBatch>),
}

/// How to build one set: the file, its batcher and, for recalibration,
/// the draw.
pub(super) struct Plan {
    /// Which set.
    pub(super) set: Set,
    /// The file read.
    pub(super) file: PathBuf,
    /// How it is batched.
    pub(super) batcher: BatcherConfig,
    /// Recalibration's draw (`lines`, `samples`, `seed` of a
    /// [`RecalSource`]); `None` for the sets scored whole.
    pub(super) draw: Option<(u64, usize, u64)>,
}

impl Plan {
    /// The recalibration set of `src`.
    pub(super) fn recal(cfg: &ModelConfig, src: &RecalSource<'_>, shard: Option<Shard>) -> Self {
        Self {
            set: Set::Recal,
            file: src.train_file.to_path_buf(),
            batcher: recalibration_batcher(cfg, src, shard),
            draw: Some((src.lines, src.samples, src.seed)),
        }
    }

    /// A set scored whole: the lines of `users` in `file` (every line when
    /// `None`).
    pub(super) fn scored(
        set: Set,
        cfg: &ModelConfig,
        file: PathBuf,
        batch_size: usize,
        skip_bad_lines: bool,
        shard: Option<Shard>,
        users: Option<UserFilter>,
    ) -> Self {
        Self { set, file, batcher: evaluation_batcher(cfg, batch_size, skip_bad_lines, shard, users), draw: None }
    }

    /// The recalibration source the plan was made from (`None` for the
    /// sets scored whole).
    fn recal_source(&self) -> Option<RecalSource<'_>> {
        self.draw.map(|(lines, samples, seed)| RecalSource {
            train_file: &self.file,
            lines,
            users: self.batcher.users,
            samples,
            seed,
            batch_size: self.batcher.batch_size,
            skip_bad_lines: self.batcher.skip_bad_lines,
        })
    }

    /// Every batch of the set, or `None` when they would take more than
    /// `budget` bytes, when the reading failed, or when `cancel` was set.
    fn build(&self, data: &Arc<DataSet>, budget: usize, cancel: &AtomicBool) -> Option<Vec<LoadedBatch>> {
        let batcher = Batcher::open(&self.file, data.clone(), self.batcher.clone(), 0).ok()?;
        let batches: Box<dyn Iterator<Item = Result<LoadedBatch, TrainError>>> = match self.recal_source() {
            Some(src) => Box::new(recalibration_draw(batcher, &src)),
            None => Box::new(batcher),
        };
        let mut kept = Vec::new();
        let mut bytes = 0usize;
        for lb in batches {
            let lb = lb.ok()?;
            bytes += batch_bytes(&lb);
            if bytes > budget || cancel.load(Ordering::Relaxed) {
                return None;
            }
            kept.push(lb);
        }
        Some(kept)
    }
}

/// About how many bytes a batch holds (its arrays and strings).
pub(super) fn batch_bytes(lb: &LoadedBatch) -> usize {
    let b = &lb.batch;
    let ids = b.uid.len() + b.mid.len() + b.cat.len() + b.hist_mid.len() + b.hist_cat.len();
    let neg = b.neg_mid.as_ref().map_or(0, Vec::len) + b.neg_cat.as_ref().map_or(0, Vec::len);
    let strings: usize = lb.raw_uid.iter().map(|u| u.len() + size_of::<String>()).sum();
    4 * (ids + neg + b.label.len()) + 8 * (b.lengths.len() + lb.lines.len()) + strings + size_of::<LoadedBatch>()
}

/// The sets of a run: built on a background thread, handed out as
/// iterators of batches.
pub(super) struct EvalSets {
    states: [State; 3],
    /// How each set is read from its file (`None`: the run never reads it).
    plans: [Option<Arc<Plan>>; 3],
    data: Arc<DataSet>,
    rx: Option<Receiver<(Set, Option<Vec<LoadedBatch>>)>>,
    cancel: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

/// Batches handed out by [`EvalSets::batches`].
pub(super) type Batches<'a> = Box<dyn Iterator<Item = Result<Cow<'a, LoadedBatch>, TrainError>> + 'a>;

impl EvalSets {
    /// Starts building the sets of `plans` (each set at most once), in
    /// their order, on a background thread.
    pub(super) fn start(data: &Arc<DataSet>, plans: Vec<Plan>) -> Result<Self, TrainError> {
        Self::start_within(data, plans, CACHE_BYTES)
    }

    /// [`EvalSets::start`] keeping at most `budget` bytes.
    fn start_within(data: &Arc<DataSet>, plans: Vec<Plan>, budget: usize) -> Result<Self, TrainError> {
        let plans: Vec<Arc<Plan>> = plans.into_iter().map(Arc::new).collect();
        let mut by_set: [Option<Arc<Plan>>; 3] = [None, None, None];
        for p in &plans {
            by_set[p.set as usize] = Some(p.clone());
        }
        let (tx, rx) = channel();
        let cancel = Arc::new(AtomicBool::new(false));
        let (stop, shared) = (cancel.clone(), data.clone());
        let handle = std::thread::Builder::new()
            .name("dien-evalsets".into())
            .spawn(move || {
                let mut budget = budget;
                for p in plans {
                    let kept = p.build(&shared, budget, &stop);
                    budget -= kept.as_ref().map_or(0, |v| v.iter().map(batch_bytes).sum());
                    if tx.send((p.set, kept)).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| TrainError::Loader(format!("starting the evaluation-set thread: {e}")))?;
        Ok(Self {
            states: [State::Pending, State::Pending, State::Pending],
            plans: by_set,
            data: data.clone(),
            rx: Some(rx),
            cancel,
            handle: Some(handle),
        })
    }

    /// The batches of `set` (waiting for the thread to build it): from
    /// memory when kept, else read from the file again. The samples they
    /// hold when known (0 otherwise).
    ///
    /// # Panics
    /// If `set` was not among the plans the sets were started with.
    pub(super) fn batches(&mut self, set: Set) -> Result<(Batches<'_>, usize), TrainError> {
        let i = set as usize;
        let plan = self.plans[i].clone().unwrap_or_else(|| panic!("evaluation set {set:?} was not planned"));
        while matches!(self.states[i], State::Pending) {
            match self.rx.as_ref().map(Receiver::recv) {
                Some(Ok((s, kept))) => self.states[s as usize] = kept.map_or(State::Stream, State::Kept),
                // The thread ended early (it panicked): read every set left.
                _ => {
                    self.rx = None;
                    for st in &mut self.states {
                        if matches!(st, State::Pending) {
                            *st = State::Stream;
                        }
                    }
                }
            }
        }
        if let State::Kept(v) = &self.states[i] {
            let n = v.iter().map(|lb| lb.batch.batch).sum();
            return Ok((Box::new(v.iter().map(|lb| Ok(Cow::Borrowed(lb)))), n));
        }
        let stream = Batcher::open(&plan.file, self.data.clone(), plan.batcher.clone(), 0)?.spawn(4);
        let batches: Batches<'_> = match plan.recal_source() {
            Some(src) => Box::new(recalibration_draw(stream, &src).map(|lb| lb.map(Cow::Owned))),
            None => Box::new(stream.map(|lb| lb.map(Cow::Owned))),
        };
        Ok((batches, 0))
    }
}

impl Drop for EvalSets {
    fn drop(&mut self) {
        self.cancel.store(true, Ordering::Relaxed);
        self.rx = None;
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use dien_model::{ModelConfig, ModelKind};

    use super::*;
    use crate::data::{Side, UserSplit};
    use crate::generate::{GenerateConfig, generate};

    struct Fixture {
        data: Arc<DataSet>,
        mc: ModelConfig,
        dir: PathBuf,
    }

    fn fixture(tag: &str) -> Fixture {
        let dir = std::env::temp_dir().join(format!("dien-evalsets-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        generate(&dir, &GenerateConfig { users: 300, seed: 3, max_len: 12, ..GenerateConfig::default() }).unwrap();
        let (data, _) = DataSet::open(&dir, None, false).unwrap();
        let s = data.vocabs.table_sizes();
        let mut mc = ModelConfig::new(ModelKind::Din, s.uid, s.mid, s.cat);
        mc.max_len = 12;
        Fixture { data: Arc::new(data), mc, dir }
    }

    fn users(side: Side) -> Option<UserFilter> {
        Some(UserFilter { split: UserSplit::new(0.2, 9).unwrap(), side })
    }

    fn plans(f: &Fixture, test_file: &Path) -> Vec<Plan> {
        let train = DataSet::train_file(&f.dir);
        let src = RecalSource {
            train_file: &train,
            lines: 400,
            users: users(Side::Train),
            samples: 150,
            seed: 5,
            batch_size: 16,
            skip_bad_lines: false,
        };
        vec![
            Plan::recal(&f.mc, &src, None),
            Plan::scored(Set::Valid, &f.mc, train.clone(), 16, false, None, users(Side::Valid)),
            Plan::scored(Set::Test, &f.mc, test_file.to_path_buf(), 16, false, None, None),
        ]
    }

    /// The batches of `set` read straight from the file, as evaluations
    /// read them without prepared sets.
    fn streamed(f: &Fixture, plan: &Plan) -> Vec<LoadedBatch> {
        let b = Batcher::open(&plan.file, f.data.clone(), plan.batcher.clone(), 0).unwrap();
        match plan.recal_source() {
            Some(src) => recalibration_draw(b, &src).map(Result::unwrap).collect(),
            None => b.map(Result::unwrap).collect(),
        }
    }

    fn taken(sets: &mut EvalSets, set: Set) -> (Vec<LoadedBatch>, usize) {
        let (batches, n) = sets.batches(set).unwrap();
        (batches.map(|b| b.unwrap().into_owned()).collect(), n)
    }

    #[test]
    fn kept_or_streamed_the_sets_are_the_files_batches() {
        let f = fixture("same");
        let test = DataSet::test_file(&f.dir);
        let want: Vec<Vec<LoadedBatch>> = plans(&f, &test).iter().map(|p| streamed(&f, p)).collect();
        assert!(want.iter().all(|w| w.len() > 1), "every set has several batches");
        // Every budget: all kept, the first only, none.
        let first = want[0].iter().map(batch_bytes).sum::<usize>();
        for budget in [CACHE_BYTES, first, 0] {
            let mut sets = EvalSets::start_within(&f.data, plans(&f, &test), budget).unwrap();
            for _ in 0..2 {
                for (set, w) in [Set::Recal, Set::Valid, Set::Test].into_iter().zip(&want) {
                    let (got, n) = taken(&mut sets, set);
                    assert_eq!(&got, w, "{set:?} with a budget of {budget} bytes");
                    let kept = budget == CACHE_BYTES || (budget == first && set == Set::Recal);
                    let samples: usize = w.iter().map(|b| b.batch.batch).sum();
                    assert_eq!(n, if kept { samples } else { 0 }, "{set:?}: samples known when kept");
                }
            }
        }
        let _ = std::fs::remove_dir_all(&f.dir);
    }

    #[test]
    fn a_set_that_cannot_be_read_fails_where_the_file_fails() {
        let f = fixture("missing");
        let missing = f.dir.join("no-such-test-file");
        let mut sets = EvalSets::start(&f.data, plans(&f, &missing)).unwrap();
        assert!(taken(&mut sets, Set::Valid).0.len() > 1);
        let e = sets.batches(Set::Test).err().expect("the test file is missing").to_string();
        assert!(e.contains("no-such-test-file"), "{e}");
        let _ = std::fs::remove_dir_all(&f.dir);
    }
}
