//! The `DIEN_RANK_FAULT` hook of debug builds, for the failure tests of a
//! data-parallel run.

/// A fault injected into one rank by the `DIEN_RANK_FAULT` hook of debug
/// builds (`<rank>:<step>:<error|abort|perturb>`), for the tests of
/// docs/DISTRIBUTED.md#failures.
// Release builds construct only what they read: the hook is in debug builds.
#[cfg_attr(not(debug_assertions), allow(dead_code))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fault {
    /// The rank returns an error before the step.
    Error,
    /// The rank's process dies (abort signal) before the step.
    Abort,
    /// The rank changes one parameter after the step, so that the
    /// replicas diverge.
    Perturb,
}

/// The fault due on `rank` at `step` (1-based), if any.
#[cfg(debug_assertions)]
pub(crate) fn injected_fault(rank: usize, step: u64) -> Option<Fault> {
    let spec = std::env::var("DIEN_RANK_FAULT").ok()?;
    let mut f = spec.splitn(3, ':');
    let (r, s, what) = (f.next()?.parse::<usize>().ok()?, f.next()?.parse::<u64>().ok()?, f.next()?);
    if r != rank || s != step {
        return None;
    }
    match what {
        "error" => Some(Fault::Error),
        "abort" => Some(Fault::Abort),
        "perturb" => Some(Fault::Perturb),
        _ => None,
    }
}

/// Release builds have no fault hook.
#[cfg(not(debug_assertions))]
pub(crate) fn injected_fault(_rank: usize, _step: u64) -> Option<Fault> {
    None
}
