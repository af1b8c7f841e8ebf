//! Ranks as threads of one process: a [`Collective`] over shared memory.
//! It runs the distributed training loop without MPI (the tests of the
//! default build use it) and behaves as the MPI transport does: the same
//! calls, the same bytes, the parts in rank order.

use std::sync::{Arc, Barrier, Mutex};

use super::{Collective, CommError};

/// What the ranks of a group share: one slot per rank and a barrier.
struct Shared {
    slots: Mutex<Vec<Vec<u8>>>,
    barrier: Barrier,
}

/// One rank of an in-process group; see [`ThreadGroup::new`].
pub struct ThreadGroup {
    rank: usize,
    size: usize,
    shared: Arc<Shared>,
}

impl ThreadGroup {
    /// A group of `size` ranks (at least 1): give one to each thread. Every
    /// rank must make the same collective calls, as with MPI; a rank that
    /// stops calling leaves the others waiting.
    pub fn new(size: usize) -> Vec<ThreadGroup> {
        let size = size.max(1);
        let shared = Arc::new(Shared { slots: Mutex::new(vec![Vec::new(); size]), barrier: Barrier::new(size) });
        (0..size).map(|rank| ThreadGroup { rank, size, shared: shared.clone() }).collect()
    }

    /// Puts `bytes` in this rank's slot, lets `read` see every slot once all
    /// ranks have written theirs, and returns when all ranks have read.
    fn exchange(&self, bytes: Vec<u8>, read: impl FnOnce(&[Vec<u8>])) -> Result<(), CommError> {
        let poisoned = |_| CommError { rank: self.rank, op: "thread exchange", msg: "another rank panicked".into() };
        self.shared.slots.lock().map_err(poisoned)?[self.rank] = bytes;
        self.shared.barrier.wait();
        read(&self.shared.slots.lock().map_err(poisoned)?);
        self.shared.barrier.wait();
        Ok(())
    }
}

impl Collective for ThreadGroup {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.size
    }

    fn all_gather(&mut self, mine: &[u8], out: &mut Vec<u8>, counts: &mut Vec<usize>) -> Result<(), CommError> {
        self.exchange(mine.to_vec(), |slots| {
            out.clear();
            counts.clear();
            for s in slots {
                out.extend_from_slice(s);
                counts.push(s.len());
            }
        })
    }

    fn all_gather_equal(&mut self, mine: &[u8], out: &mut Vec<u8>) -> Result<(), CommError> {
        let (me, len) = (self.rank, mine.len());
        let mut err = None;
        self.exchange(mine.to_vec(), |slots| {
            out.clear();
            for (r, s) in slots.iter().enumerate() {
                if s.len() != len {
                    err = Some(CommError {
                        rank: me,
                        op: "thread all-gather",
                        msg: format!("rank {r} sends {} bytes, {len} expected", s.len()),
                    });
                    return;
                }
                out.extend_from_slice(s);
            }
        })?;
        err.map_or(Ok(()), Err)
    }

    fn all_to_all(
        &mut self,
        send: &[u8],
        send_counts: &[usize],
        recv_counts: &[usize],
        out: &mut Vec<u8>,
    ) -> Result<(), CommError> {
        // Each slot holds the rank's counts (8 bytes each) and its data.
        let mut mine = Vec::with_capacity(8 * self.size + send.len());
        for &c in send_counts {
            mine.extend_from_slice(&(c as u64).to_le_bytes());
        }
        mine.extend_from_slice(send);
        let me = self.rank;
        let mut err = None;
        self.exchange(mine, |slots| {
            out.clear();
            for (r, s) in slots.iter().enumerate() {
                let count = |i: usize| u64::from_le_bytes(s[8 * i..8 * i + 8].try_into().expect("8 bytes")) as usize;
                let start = 8 * slots.len() + (0..me).map(count).sum::<usize>();
                let len = count(me);
                if len != recv_counts[r] {
                    err = Some(CommError {
                        rank: me,
                        op: "thread all-to-all",
                        msg: format!("rank {r} sends {len} bytes, {} expected", recv_counts[r]),
                    });
                    return;
                }
                out.extend_from_slice(&s[start..start + len]);
            }
        })?;
        err.map_or(Ok(()), Err)
    }

    fn describe(&self) -> String {
        "threads of one process".into()
    }
}
