//! Bounds for the property tests of the parsers (`parse_props.rs` of
//! dien-model and dien-trainer include this file with `#[path]`): a
//! counting global allocator that tracks the bytes live on each thread and
//! their peak, and `bounded`, which runs a parse under a time and memory
//! bound.
//!
//! The allocator is the test binary's global allocator: include this file
//! once per binary.
#![allow(dead_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::{Duration, Instant};

use proptest::prelude::ProptestConfig;

struct Counting;

thread_local! {
    // Const-initialised without destructors: safe to touch inside the allocator.
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn note(delta: isize) {
    let _ = LIVE.try_with(|live| {
        let now = live.get() + delta;
        live.set(now);
        let _ = PEAK.try_with(|p| p.set(p.get().max(now)));
    });
}

// SAFETY: every method forwards to `System` with the caller's arguments;
// the bookkeeping only touches const-initialised thread-locals.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size() as isize);
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size() as isize);
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note(-(layout.size() as isize));
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size as isize - layout.size() as isize);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Runs `f`; fails if it takes longer than `time` or holds more than
/// `bytes` bytes at once (above what this thread held before).
pub fn bounded<T>(time: Duration, bytes: usize, f: impl FnOnce() -> T) -> T {
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));
    let start = Instant::now();
    let out = f();
    let (took, peak) = (start.elapsed(), (PEAK.with(Cell::get) - base).max(0) as usize);
    assert!(took <= time, "took {took:?} (bound {time:?})");
    assert!(peak <= bytes, "held {peak} bytes at once (bound {bytes})");
    out
}

/// The bounds of one parse of `n` input bytes: a second, and a small
/// multiple of the input (values are 4-byte floats or ints parsed from
/// text, each at least one byte long) plus a fixed allowance (a line
/// reader's 64 KiB buffer, hash tables).
pub fn parse_bounded<T>(n: usize, f: impl FnOnce() -> T) -> T {
    bounded(Duration::from_secs(1), 64 * n + (1 << 20), f)
}

/// 256 cases, no failure files written into the source tree.
pub fn config() -> ProptestConfig {
    ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() }
}
