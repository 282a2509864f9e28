//! A counting global allocator: the heap bytes a piece of code allocates at its peak and keeps
//! at its end ([`counted`]), so that the budget of a run (`experiment::budget`) is calibrated on
//! what this code allocates, not on a guess. The `gradlab` binary installs it; where it is not
//! installed (tests of the library), [`installed`] says so.
//!
//! It counts only inside [`counted`], which runs at a quiet moment (before a sweep, on one
//! thread); otherwise an allocation costs one relaxed load of a flag that never changes, and the
//! sweeps run as fast as with the system allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicIsize, Ordering::Relaxed};

/// The system allocator, counting when asked.
pub struct Counting;

static ARMED: AtomicBool = AtomicBool::new(false);
/// Bytes allocated minus freed since counting started (negative if older blocks are freed).
static LIVE: AtomicIsize = AtomicIsize::new(0);
static PEAK: AtomicIsize = AtomicIsize::new(0);

fn grew(by: usize) {
    if ARMED.load(Relaxed) {
        let by = by as isize;
        let now = LIVE.fetch_add(by, Relaxed) + by;
        PEAK.fetch_max(now, Relaxed);
    }
}

fn shrank(by: usize) {
    if ARMED.load(Relaxed) {
        LIVE.fetch_sub(by as isize, Relaxed);
    }
}

// SAFETY: every call is forwarded to `System` unchanged; only counters are updated beside it.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc` is passed on as is.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` with `layout` (through this allocator).
        unsafe { System.dealloc(ptr, layout) };
        shrank(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as for `dealloc`, and `new_size` is the caller's valid size.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                grew(new_size - layout.size());
            } else {
                shrank(layout.size() - new_size);
            }
        }
        p
    }
}

/// Runs `f` with counting on; returns its value, the peak of the heap bytes it allocated
/// beyond the start, and the bytes still allocated at its end (its value's, mostly). Counts
/// every thread's allocations: call it when nothing else runs.
pub fn counted<T>(f: impl FnOnce() -> T) -> (T, usize, usize) {
    LIVE.store(0, Relaxed);
    PEAK.store(0, Relaxed);
    ARMED.store(true, Relaxed);
    let value = f();
    ARMED.store(false, Relaxed);
    (value, PEAK.load(Relaxed).max(0) as usize, LIVE.load(Relaxed).max(0) as usize)
}

/// Whether the counting allocator is the global one: a counted allocation was seen.
pub fn installed() -> bool {
    let (_, peak, _) = counted(|| std::hint::black_box(vec![0u8; 64]));
    peak >= 64
}
