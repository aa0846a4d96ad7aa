//! How a kernel call is split over the caller's rayon pool: whether it is worth a second thread,
//! how many work units to cut, and running them. Every kernel driver uses this, so the policy is
//! tuned in one place.

use std::cell::Cell;

use rayon::prelude::*;

/// Below this many multiply-accumulates a call runs inline: waking a second thread costs more.
pub(crate) const PARALLEL_MIN_MACS: usize = 1 << 18;
/// More work units than threads lets rayon rebalance when another process steals a core.
const UNITS_PER_THREAD: usize = 4;

thread_local! {
    /// Set while a caller has already split its work over the pool (a decoder running one
    /// sub-batch per thread): kernel calls on this thread then run inline instead of forking
    /// again, which for a decoder step's small matmuls costs more than it saves.
    static INLINE: Cell<bool> = const { Cell::new(false) };
}

/// Threads a kernel call on this thread may use: the current rayon pool's, or 1 inside
/// [`inline`].
pub(crate) fn pool_threads() -> usize {
    if INLINE.with(Cell::get) {
        1
    } else {
        rayon::current_num_threads()
    }
}

/// Runs `f` with every kernel call it makes on this thread inline (single-threaded). Results do
/// not change: no kernel's output depends on how it is split.
pub(crate) fn inline<R>(f: impl FnOnce() -> R) -> R {
    /// Restores the flag even if `f` panics (the thread is a pool thread that lives on).
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            INLINE.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(INLINE.with(|c| c.replace(true)));
    f()
}

/// The threads worth using for a call of `macs` multiply-accumulates: 1 for a small call, else
/// [`pool_threads`].
pub(crate) fn threads_for(macs: usize) -> usize {
    if macs < PARALLEL_MIN_MACS {
        1
    } else {
        pool_threads()
    }
}

/// How many work units to aim for with `threads` threads.
pub(crate) fn units_for(threads: usize) -> usize {
    threads * UNITS_PER_THREAD
}

/// Runs `unit(0..units)`: on the current rayon pool one unit per task when `threads > 1`, else in
/// order on the calling thread.
pub(crate) fn run_units(units: usize, threads: usize, unit: impl Fn(usize) + Sync + Send) {
    if threads <= 1 || units <= 1 {
        (0..units).for_each(unit);
    } else {
        (0..units).into_par_iter().with_max_len(1).for_each(unit);
    }
}

/// A raw output pointer shared by the units of one call.
#[derive(Clone, Copy)]
pub(crate) struct SendPtr<T>(pub(crate) *mut T);
// SAFETY: every work unit writes a disjoint set of output elements, and the kernel driver holds
// the `&mut` borrow of the buffer until all units are done.
unsafe impl<T> Send for SendPtr<T> {}
// SAFETY: as above.
unsafe impl<T> Sync for SendPtr<T> {}
