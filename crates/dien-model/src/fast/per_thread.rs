//! Scratch buffers kept per thread and lent to the chunk a thread works on.
//!
//! A chunk's transient buffers (what its forward or backward writes and
//! reads back within the same call) need not be the chunk's own: with one
//! set per chunk, every chunk starts on buffers last touched a whole stage
//! earlier, far out of cache, and a step touches megabytes that no other
//! step part reuses. Lent from the thread instead, the buffers the previous
//! chunk of the same thread left are still in its L2. Only the buffers move
//! (a swap of their handles), never their contents, so nothing a chunk
//! computes depends on which thread ran it.

use std::sync::Mutex;

/// One `T` per thread of the pool that runs the chunks, and one for callers
/// outside a pool.
#[derive(Debug, Default)]
pub(crate) struct PerThread<T> {
    slots: Vec<Mutex<T>>,
}

impl<T: Default> PerThread<T> {
    /// Has a slot for every thread of the current pool (grows only) and
    /// sizes every slot's scratch with `size`: a thread that runs its first
    /// chunk only in a later step (which thread takes which chunk is up to
    /// the scheduler) then finds its buffers ready rather than growing them
    /// inside that step.
    pub fn fit(&mut self, size: impl Fn(&mut T)) {
        let n = rayon::current_num_threads() + 1;
        while self.slots.len() < n {
            self.slots.push(Mutex::new(T::default()));
        }
        for slot in &mut self.slots {
            // A poisoned slot only means a chunk panicked while holding it;
            // its buffers are scratch, so they are resized all the same.
            size(slot.get_mut().unwrap_or_else(|e| e.into_inner()));
        }
    }

    /// Runs `f` on `ch` with the calling thread's scratch in place of the
    /// chunk's own: swapped in before, back after (no lock is held in
    /// between).
    pub fn lend<C: Scratch<T>, R>(&self, ch: &mut C, f: impl FnOnce(&mut C) -> R) -> R {
        self.swap(ch.scratch());
        let r = f(ch);
        self.swap(ch.scratch());
        r
    }

    /// Exchanges `own` with the calling thread's `T`. Every buffer is
    /// scratch, so a swap that cannot happen (a thread without a slot, the
    /// one slot of callers outside a pool in use by another) only leaves
    /// the chunk on other buffers: slower, never wrong.
    fn swap(&self, own: &mut T) {
        let i = rayon::current_thread_index().unwrap_or(self.slots.len().saturating_sub(1));
        if let Some(Ok(mut slot)) = self.slots.get(i).map(Mutex::try_lock) {
            std::mem::swap(own, &mut *slot);
        }
    }
}

/// A chunk whose transient buffers (`T`) a thread lends it ([`PerThread::lend`]).
pub(crate) trait Scratch<T> {
    /// The chunk's place for the lent buffers.
    fn scratch(&mut self) -> &mut T;
}

/// A stage's chunks of a batch (`C`, their caches) and the scratch (`S`)
/// their threads lend them; derefs to the chunks.
#[derive(Debug, Default)]
pub(crate) struct Chunks<C, S> {
    pub chunks: Vec<C>,
    pub scr: PerThread<S>,
}

impl<C, S> std::ops::Deref for Chunks<C, S> {
    type Target = Vec<C>;
    fn deref(&self) -> &Vec<C> {
        &self.chunks
    }
}

impl<C, S> std::ops::DerefMut for Chunks<C, S> {
    fn deref_mut(&mut self) -> &mut Vec<C> {
        &mut self.chunks
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_lends_its_buffers_and_takes_them_back() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        pool.install(|| {
            let mut p: PerThread<Vec<f32>> = PerThread::default();
            p.fit(|v| v.resize(2, 0.0));
            assert_eq!(p.slots.len(), 3);
            // Every slot is sized up front, whichever thread uses it first.
            assert!(p.slots.iter().all(|s| s.lock().unwrap().len() == 2));
            let mut own = vec![1.0];
            p.swap(&mut own);
            // The chunk now holds the thread's buffer and grows it.
            assert_eq!(own, vec![0.0; 2]);
            own.resize(4, 2.0);
            own[..2].fill(2.0);
            p.swap(&mut own);
            assert_eq!(own, vec![1.0]);
            // The next chunk on this thread gets the grown buffer back.
            let mut next = Vec::new();
            p.swap(&mut next);
            assert_eq!(next, vec![2.0; 4]);
        });
    }
}
