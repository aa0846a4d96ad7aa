//! Scratch f32 buffers reused across calls: the activations of a forward pass are the same
//! sizes call after call, and a fresh allocation of a few MB costs a page fault per 4 KiB
//! (measured: 4–5 % of a MiniLM batch in `clear_page`/`exc_page_fault`). A buffer returns to its
//! thread's free list when dropped; each thread keeps at most `KEEP_BYTES` of them.

use std::cell::RefCell;
use std::ops::{Deref, DerefMut};

/// What a thread keeps for reuse, at most (buffers beyond it are freed).
const KEEP_BYTES: usize = 64 << 20;

thread_local! {
    static FREE: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
}

/// A buffer of f32 that goes back to its thread's free list when dropped.
pub struct Scratch(Vec<f32>);

impl Scratch {
    /// `len` zeros, in the smallest kept buffer that holds them (or a new one).
    pub fn zeroed(len: usize) -> Self {
        let reused = FREE.with_borrow_mut(|free| {
            let best = free
                .iter()
                .enumerate()
                .filter(|(_, b)| b.capacity() >= len)
                .min_by_key(|(_, b)| b.capacity())
                .map(|(i, _)| i);
            best.map(|i| free.swap_remove(i))
        });
        let mut v = reused.unwrap_or_default();
        v.clear();
        v.resize(len, 0.0);
        Self(v)
    }
}

impl Deref for Scratch {
    type Target = [f32];

    fn deref(&self) -> &[f32] {
        &self.0
    }
}

impl DerefMut for Scratch {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let v = std::mem::take(&mut self.0);
        // `try_with`: a buffer dropped while the thread exits is simply freed.
        let _ = FREE.try_with(|free| {
            let mut free = free.borrow_mut();
            let kept: usize = free.iter().map(|b| b.capacity() * 4).sum();
            if kept + v.capacity() * 4 <= KEEP_BYTES {
                free.push(v);
            }
        });
    }
}
