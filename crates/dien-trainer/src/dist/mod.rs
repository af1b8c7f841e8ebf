//! Synchronous data-parallel training (docs/DISTRIBUTED.md): N ranks run
//! the same training loop, each on its share of every global batch, and
//! exchange what makes them one model:
//!
//! - in the forward and backward passes, the statistics that couple the
//!   samples (BatchNorm and Dice batch statistics, loss normalisers,
//!   losses): [`Replicas`] is the model's [`StatSync`], summing short f64
//!   vectors in rank order;
//! - after the backward pass, the gradients
//!   ([`Replicas::all_reduce_gradients`]): the dense ones by a
//!   reduce-scatter (each rank receives one slice of every rank's gradient
//!   and adds them in rank order) followed by an all-gather of the summed
//!   slices; the sparse embedding rows as `(row, values)` lists gathered to
//!   every rank and merged in rank order;
//! - every few steps, a hash of the parameters ([`Replicas::check_replicas`]):
//!   every rank applies the same update to the same parameters, so the
//!   replicas stay bit-identical, and a difference stops the run;
//! - for evaluation, every rank's (logit, label, user) triples, so that the
//!   metrics are computed over the whole test set in the order of one
//!   process ([`Replicas::gather_scores`]).
//!
//! No sum is left to the communication library: a [`Collective`] only moves
//! bytes (all-gather, all-to-all), and every addition happens here in rank
//! order. The results therefore do not depend on message timing, and every
//! rank gets the same bits.
//!
//! The transport is a [`Collective`]: MPI processes (`mpi`, with the
//! `mpi` feature) or threads of one process ([`threads::ThreadGroup`], for
//! tests and for running replicas without MPI).

mod counters;
mod fault;
#[cfg(feature = "mpi")]
pub mod mpi;
pub mod scaling;
pub mod threads;

use std::fmt;
use std::time::Instant;

use dien_model::fast::Gradients;
use dien_model::{ModelError, ParamStore, StatSync};

use crate::error::TrainError;

pub use self::counters::{CommCounters, DistSummary};

pub(crate) use self::fault::{Fault, injected_fault};

/// A communication failure: the rank it happened on, the operation and
/// what the transport said.
#[derive(Clone, Debug)]
pub struct CommError {
    /// The rank that saw the failure.
    pub rank: usize,
    /// The operation (`MPI_Allgatherv`, ...).
    pub op: &'static str,
    /// The transport's message.
    pub msg: String,
}

impl fmt::Display for CommError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rank {}: {} failed: {}", self.rank, self.op, self.msg)
    }
}

impl std::error::Error for CommError {}

impl From<CommError> for TrainError {
    fn from(e: CommError) -> Self {
        TrainError::Comm(e.to_string())
    }
}

/// Moves bytes between the ranks of a group. Every rank must make the same
/// calls in the same order (they are collective), with the counts the
/// methods describe. Implementations do no arithmetic on the data.
pub trait Collective: Send {
    /// This rank, `0 ≤ rank < size`.
    fn rank(&self) -> usize;

    /// Number of ranks.
    fn size(&self) -> usize;

    /// Gathers `mine` from every rank: `out` becomes the parts of ranks
    /// `0..size` one after another, and `counts[r]` the length of rank
    /// `r`'s part. The parts may differ in length.
    fn all_gather(&mut self, mine: &[u8], out: &mut Vec<u8>, counts: &mut Vec<usize>) -> Result<(), CommError>;

    /// [`Collective::all_gather`] of parts that have the same length on
    /// every rank (one operation fewer: no counts to exchange): `out`
    /// becomes `size × mine.len()` bytes, rank `r`'s part at
    /// `r × mine.len()`.
    fn all_gather_equal(&mut self, mine: &[u8], out: &mut Vec<u8>) -> Result<(), CommError>;

    /// Personalised exchange: `send` holds, one after another, the
    /// `send_counts[r]` bytes for each rank `r`; `out` becomes the
    /// `recv_counts[r]` bytes from each rank `r`, in rank order. The counts
    /// must pair up (what `r` sends to `s` is what `s` expects from `r`).
    fn all_to_all(
        &mut self,
        send: &[u8],
        send_counts: &[usize],
        recv_counts: &[usize],
        out: &mut Vec<u8>,
    ) -> Result<(), CommError>;

    /// What the transport is, for the run's summary (`MPI (Open MPI
    /// v4.1.4)`, `threads`).
    fn describe(&self) -> String;
}

/// Dense gradient floats of rank `r`'s slice when `m` floats are cut into
/// `n` slices: `[r·m/n, (r+1)·m/n)`.
fn slice(m: usize, n: usize, r: usize) -> std::ops::Range<usize> {
    r * m / n..(r + 1) * m / n
}

/// A deterministic 64-bit hash of every value (bit pattern) of `params`,
/// buffers included, in canonical order.
pub fn params_hash(params: &ParamStore<f32>) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (spec, values) in params.iter() {
        for b in spec.name.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        for v in values {
            h = (h ^ u64::from(v.to_bits())).wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(29);
        }
    }
    h
}

/// What the counters attribute an exchange to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Part {
    Stats,
    Dense,
    Other,
}

/// One rank of a data-parallel group, as the training loop uses it: the
/// transport, the counters and reused buffers. It is the model's
/// [`StatSync`].
pub struct Replicas<'c> {
    comm: &'c mut dyn Collective,
    rank: usize,
    size: usize,
    counters: CommCounters,
    /// Bytes sent by part: statistics, dense, sparse.
    part_bytes: [u64; 3],
    send: Vec<u8>,
    recv: Vec<u8>,
    counts: Vec<usize>,
    send_counts: Vec<usize>,
    recv_counts: Vec<usize>,
    flat: Vec<f32>,
    rows: Vec<u32>,
    values: Vec<f32>,
}

impl<'c> Replicas<'c> {
    /// Wraps the transport of this rank.
    pub fn new(comm: &'c mut dyn Collective) -> Self {
        let (rank, size) = (comm.rank(), comm.size());
        Self {
            comm,
            rank,
            size,
            counters: CommCounters::default(),
            part_bytes: [0; 3],
            send: Vec::new(),
            recv: Vec::new(),
            counts: Vec::new(),
            send_counts: Vec::new(),
            recv_counts: Vec::new(),
            flat: Vec::new(),
            rows: Vec::new(),
            values: Vec::new(),
        }
    }

    /// This rank.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// Number of ranks.
    pub fn size(&self) -> usize {
        self.size
    }

    /// The transport, in words.
    pub fn describe(&self) -> String {
        self.comm.describe()
    }

    /// The counters so far.
    pub fn counters(&self) -> CommCounters {
        self.counters
    }

    /// Bytes sent so far by the statistics, the dense gradients and the
    /// sparse rows.
    pub fn part_bytes(&self) -> [u64; 3] {
        self.part_bytes
    }

    fn count(&mut self, part: Part, sent: u64, received: u64, t0: Instant) {
        self.counters.bytes_sent += sent;
        self.counters.bytes_received += received;
        self.counters.exchanges += 1;
        self.counters.seconds += t0.elapsed().as_secs_f64();
        match part {
            Part::Stats => self.part_bytes[0] += sent,
            Part::Dense => self.part_bytes[1] += sent,
            Part::Other => {}
        }
    }

    /// All-gather of `self.send` (the same length on every rank) into
    /// `self.recv`, counted.
    fn gather_send(&mut self, part: Part) -> Result<(), CommError> {
        let t0 = Instant::now();
        self.comm.all_gather_equal(&self.send, &mut self.recv)?;
        let mine = self.send.len() as u64;
        self.count(part, mine * (self.size as u64 - 1), self.recv.len() as u64 - mine, t0);
        Ok(())
    }

    /// Gathers `mine` from every rank (for callers of this crate).
    pub fn all_gather(&mut self, mine: &[u8], out: &mut Vec<u8>, counts: &mut Vec<usize>) -> Result<(), TrainError> {
        let t0 = Instant::now();
        self.comm.all_gather(mine, out, counts)?;
        let m = mine.len() as u64;
        self.count(Part::Other, m * (self.size as u64 - 1), out.len() as u64 - m, t0);
        Ok(())
    }

    /// Sums `values` over the ranks, in rank order (every rank gets the
    /// same bits).
    fn sum_f64(&mut self, values: &mut [f64]) -> Result<(), CommError> {
        if self.size == 1 {
            return Ok(());
        }
        self.send.clear();
        for v in values.iter() {
            self.send.extend_from_slice(&v.to_le_bytes());
        }
        self.gather_send(Part::Stats)?;
        let n = values.len();
        for (j, v) in values.iter_mut().enumerate() {
            let at = |r: usize| {
                let o = (r * n + j) * 8;
                f64::from_le_bytes(self.recv[o..o + 8].try_into().expect("8 bytes"))
            };
            let mut s = at(0);
            for r in 1..self.size {
                s += at(r);
            }
            *v = s;
        }
        Ok(())
    }

    /// Replaces this rank's gradients by their sum over the ranks: the
    /// dense gradients by a reduce-scatter (rank `s` receives slice `s` of
    /// every rank's gradient and adds them in rank order) and an
    /// all-gather of the summed slices; the sparse rows of each embedding
    /// table gathered from every rank and merged in rank order
    /// ([`dien_model::fast::SparseRows::set_sum`]). Two collective
    /// operations; every rank ends with the same bits.
    pub fn all_reduce_gradients(&mut self, g: &mut Gradients) -> Result<(), TrainError> {
        let n = self.size;
        if n == 1 {
            return Ok(());
        }
        // Reduce-scatter of the dense gradients.
        self.flat.clear();
        g.write_dense(&mut self.flat);
        let m = self.flat.len();
        self.send.clear();
        for v in &self.flat {
            self.send.extend_from_slice(&v.to_le_bytes());
        }
        self.send_counts.clear();
        self.send_counts.extend((0..n).map(|r| 4 * slice(m, n, r).len()));
        let mine = slice(m, n, self.rank);
        self.recv_counts.clear();
        self.recv_counts.resize(n, 4 * mine.len());
        let t0 = Instant::now();
        self.comm.all_to_all(&self.send, &self.send_counts, &self.recv_counts, &mut self.recv)?;
        let sent: usize = self.send_counts.iter().enumerate().filter(|&(r, _)| r != self.rank).map(|(_, c)| c).sum();
        let received = 4 * mine.len() * (n - 1);
        self.count(Part::Dense, sent as u64, received as u64, t0);
        let k = mine.len();
        let mut reduced = std::mem::take(&mut self.values);
        reduced.clear();
        for j in 0..k {
            let at = |r: usize| {
                let o = (r * k + j) * 4;
                f32::from_le_bytes(self.recv[o..o + 4].try_into().expect("4 bytes"))
            };
            let mut s = at(0);
            for r in 1..n {
                s += at(r);
            }
            reduced.push(s);
        }
        // All-gather of the summed slices with every rank's sparse rows.
        self.send.clear();
        for v in &reduced {
            self.send.extend_from_slice(&v.to_le_bytes());
        }
        self.values = reduced;
        let dense_bytes = self.send.len() as u64;
        for table in &g.emb {
            self.send.extend_from_slice(&(table.rows.len() as u32).to_le_bytes());
            for r in &table.rows {
                self.send.extend_from_slice(&r.to_le_bytes());
            }
            for v in &table.values {
                self.send.extend_from_slice(&v.to_le_bytes());
            }
        }
        let t0 = Instant::now();
        self.comm.all_gather(&self.send, &mut self.recv, &mut self.counts)?;
        let mine_len = self.send.len() as u64;
        self.count(Part::Other, mine_len * (n as u64 - 1), self.recv.len() as u64 - mine_len, t0);
        self.part_bytes[1] += dense_bytes * (n as u64 - 1);
        self.part_bytes[2] += (mine_len - dense_bytes) * (n as u64 - 1);
        // Rank r's part: its summed dense slice, then its sparse rows.
        let bad = |msg: String| TrainError::Comm(format!("rank {}: gradient exchange: {msg}", self.rank));
        let mut cursor = Vec::with_capacity(n);
        let mut ends = Vec::with_capacity(n);
        let mut at = 0usize;
        self.flat.clear();
        for r in 0..n {
            let k = slice(m, n, r).len();
            if self.counts[r] < 4 * k {
                return Err(bad(format!("rank {r} sent {} bytes, fewer than its dense slice", self.counts[r])));
            }
            for c in self.recv[at..at + 4 * k].chunks_exact(4) {
                self.flat.push(f32::from_le_bytes(c.try_into().expect("4 bytes")));
            }
            cursor.push(at + 4 * k);
            at += self.counts[r];
            ends.push(at);
        }
        g.read_dense(&self.flat)?;
        // The sparse rows of each table: every rank's list, merged in rank
        // order.
        let d = g.emb[0].width;
        for t in 0..g.emb.len() {
            self.rows.clear();
            self.values.clear();
            let mut spans = Vec::with_capacity(n);
            for r in 0..n {
                let short = || bad(format!("rank {r}'s sparse rows are cut short"));
                let c = cursor[r];
                let head = self.recv.get(c..c + 4).filter(|_| c + 4 <= ends[r]).ok_or_else(short)?;
                let rows = u32::from_le_bytes(head.try_into().expect("4 bytes")) as usize;
                let (rows_at, values_at) = (c + 4, c + 4 + 4 * rows);
                let next = values_at + 4 * rows * d;
                if next > ends[r] {
                    return Err(short());
                }
                let (r0, v0) = (self.rows.len(), self.values.len());
                for b in self.recv[rows_at..values_at].chunks_exact(4) {
                    self.rows.push(u32::from_le_bytes(b.try_into().expect("4 bytes")));
                }
                for b in self.recv[values_at..next].chunks_exact(4) {
                    self.values.push(f32::from_le_bytes(b.try_into().expect("4 bytes")));
                }
                spans.push((r0..self.rows.len(), v0..self.values.len()));
                cursor[r] = next;
            }
            let (rows, values) = (&self.rows, &self.values);
            g.emb[t].set_sum(spans.iter().map(|(rs, vs)| (&rows[rs.clone()], &values[vs.clone()])))?;
        }
        Ok(())
    }

    /// Compares a hash of `params` across the ranks: an error (the same on
    /// every rank) naming the ranks whose parameters differ from rank 0's
    /// after `step`.
    pub fn check_replicas(&mut self, params: &ParamStore<f32>, step: u64) -> Result<(), TrainError> {
        if self.size == 1 {
            return Ok(());
        }
        let h = params_hash(params);
        self.send.clear();
        self.send.extend_from_slice(&h.to_le_bytes());
        self.gather_send(Part::Other)?;
        let hashes: Vec<u64> =
            self.recv.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes"))).collect();
        let differ: Vec<String> =
            hashes.iter().enumerate().filter(|&(_, &x)| x != hashes[0]).map(|(r, _)| r.to_string()).collect();
        if differ.is_empty() {
            return Ok(());
        }
        let when = if step == 0 { "before the first step".to_string() } else { format!("after step {step}") };
        Err(TrainError::Replicas(format!(
            "the replicas diverged: {when} the parameters of rank{} {} differ from rank 0's (parameter hashes {}). \
             Every rank applies the same update to the same parameters, so this is a fault of a rank (its files, \
             memory or network), not of the data. The run stops; checkpoints already written hold rank 0's \
             parameters",
            if differ.len() > 1 { "s" } else { "" },
            differ.join(", "),
            hashes.iter().map(|h| format!("{h:016x}")).collect::<Vec<_>>().join(" ")
        )))
    }

    /// Gathers every rank's evaluation scores and returns the global
    /// batches in the order of one process: `batches[i]` of this rank is
    /// its share of global batch `i` (`(users, logits, labels)`); the
    /// result holds, per global batch, the shares of ranks `0..size`
    /// concatenated. Every rank must pass the same number of batches.
    pub fn gather_scores(&mut self, batches: &[ScoreShare]) -> Result<Vec<ScoreShare>, TrainError> {
        if self.size == 1 {
            return Ok(batches.to_vec());
        }
        let mut mine = Vec::new();
        mine.extend_from_slice(&(batches.len() as u64).to_le_bytes());
        for b in batches {
            mine.extend_from_slice(&(b.logits.len() as u32).to_le_bytes());
            for ((u, z), y) in b.users.iter().zip(&b.logits).zip(&b.labels) {
                mine.extend_from_slice(&z.to_le_bytes());
                mine.extend_from_slice(&y.to_le_bytes());
                mine.extend_from_slice(&(u.len() as u32).to_le_bytes());
                mine.extend_from_slice(u.as_bytes());
            }
        }
        let (mut all, mut counts) = (Vec::new(), Vec::new());
        self.all_gather(&mine, &mut all, &mut counts)?;
        let bad = |r: usize| TrainError::Comm(format!("rank {}: the scores of rank {r} are malformed", self.rank));
        let mut per_rank: Vec<Vec<ScoreShare>> = Vec::with_capacity(self.size);
        let mut start = 0;
        for (r, &c) in counts.iter().enumerate() {
            let part = &all[start..start + c];
            start += c;
            let mut at = 0usize;
            let mut take = |k: usize| -> Result<&[u8], TrainError> {
                let s = part.get(at..at + k).ok_or_else(|| bad(r))?;
                at += k;
                Ok(s)
            };
            let nb = u64::from_le_bytes(take(8)?.try_into().expect("8 bytes")) as usize;
            let mut list = Vec::with_capacity(nb.min(1 << 20));
            for _ in 0..nb {
                let k = u32::from_le_bytes(take(4)?.try_into().expect("4 bytes")) as usize;
                let mut s = ScoreShare::default();
                for _ in 0..k {
                    s.logits.push(f32::from_le_bytes(take(4)?.try_into().expect("4 bytes")));
                    s.labels.push(f32::from_le_bytes(take(4)?.try_into().expect("4 bytes")));
                    let len = u32::from_le_bytes(take(4)?.try_into().expect("4 bytes")) as usize;
                    s.users.push(String::from_utf8_lossy(take(len)?).into_owned());
                }
                list.push(s);
            }
            per_rank.push(list);
        }
        let nb = per_rank[0].len();
        if let Some(r) = per_rank.iter().position(|l| l.len() != nb) {
            return Err(TrainError::Comm(format!(
                "rank {}: rank {r} scored {} batches, rank 0 {nb}: the ranks read different files",
                self.rank,
                per_rank[r].len()
            )));
        }
        let mut out = vec![ScoreShare::default(); nb];
        for list in per_rank {
            for (o, s) in out.iter_mut().zip(list) {
                o.users.extend(s.users);
                o.logits.extend(s.logits);
                o.labels.extend(s.labels);
            }
        }
        Ok(out)
    }

    /// The run's [`DistSummary`] from this rank's step counters: gathers
    /// every rank's, so that every rank returns the same summary.
    pub fn summary(
        &mut self,
        steps: u64,
        step_comm: &CommCounters,
        step_parts: [u64; 3],
        step_seconds: f64,
    ) -> Result<DistSummary, TrainError> {
        let mine = [
            step_comm.bytes_sent as f64,
            step_comm.exchanges as f64,
            step_comm.seconds,
            step_seconds,
            step_parts[0] as f64,
            step_parts[1] as f64,
            step_parts[2] as f64,
        ];
        let mut bytes = Vec::new();
        for v in mine {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        let (mut all, mut counts) = (Vec::new(), Vec::new());
        self.all_gather(&bytes, &mut all, &mut counts)?;
        let ranks: Vec<[f64; 7]> = all
            .chunks_exact(56)
            .map(|c| std::array::from_fn(|i| f64::from_le_bytes(c[i * 8..i * 8 + 8].try_into().expect("8 bytes"))))
            .collect();
        let s = steps.max(1) as f64;
        let n = ranks.len() as f64;
        let share = |r: &[f64; 7]| if r[3] > 0.0 { r[2] / r[3] } else { 0.0 };
        Ok(DistSummary {
            ranks: self.size,
            transport: self.comm.describe(),
            steps,
            bytes_sent_per_step: ranks.iter().map(|r| r[0]).sum::<f64>() / s,
            stat_bytes_per_step: ranks.iter().map(|r| r[4]).sum::<f64>() / s,
            dense_bytes_per_step: ranks.iter().map(|r| r[5]).sum::<f64>() / s,
            sparse_bytes_per_step: ranks.iter().map(|r| r[6]).sum::<f64>() / s,
            max_rank_bytes_sent_per_step: ranks.iter().map(|r| r[0]).fold(0.0, f64::max) / s,
            exchanges_per_step: ranks[0][1] / s,
            comm_share: ranks.iter().map(share).sum::<f64>() / n,
            max_comm_share: ranks.iter().map(share).fold(0.0, f64::max),
            step_seconds: ranks.iter().map(|r| r[3]).sum::<f64>() / n / s,
        })
    }
}

/// One rank's share of an evaluation batch: users (raw id strings), logits
/// and labels, sample by sample.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ScoreShare {
    /// Raw user ids.
    pub users: Vec<String>,
    /// Logits.
    pub logits: Vec<f32>,
    /// Labels (0 or 1).
    pub labels: Vec<f32>,
}

impl StatSync for Replicas<'_> {
    fn replicas(&self) -> usize {
        self.size
    }

    fn sum(&mut self, values: &mut [f64]) -> Result<(), ModelError> {
        self.sum_f64(values).map_err(|e| ModelError::Sync(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_cover_the_gradient_once() {
        for m in [0usize, 1, 5, 93_000] {
            for n in 1..9 {
                let mut next = 0;
                for r in 0..n {
                    let s = slice(m, n, r);
                    assert_eq!(s.start, next);
                    next = s.end;
                }
                assert_eq!(next, m);
            }
        }
    }

    #[test]
    fn the_hash_sees_one_bit() {
        let cfg = dien_model::ModelConfig::new(dien_model::ModelKind::Base, 3, 4, 2);
        let mut p = ParamStore::init(&cfg, 1);
        let h = params_hash(&p);
        assert_eq!(h, params_hash(&p.clone()));
        let v = &mut p.get_mut("head.fc3.b")[0];
        *v = f32::from_bits(v.to_bits() ^ 1);
        assert_ne!(h, params_hash(&p));
    }
}
