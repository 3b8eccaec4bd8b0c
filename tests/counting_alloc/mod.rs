//! A global allocator that counts, shared by the zero-allocation tests. Each test
//! binary that declares `mod counting_alloc;` gets its own copy and its own counter.
#![allow(unsafe_code)] // a global allocator is unsafe to implement

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct Counting;

thread_local! {
    // Per thread: the test harness allocates on its own threads (output capture,
    // timing) whenever it likes, and those must not count against the code under test.
    // A const-initialised Cell needs no allocation and no destructor, so the allocator
    // can touch it.
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

fn count() {
    // A thread being torn down has no counter any more: not ours to count.
    let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
}

/// Heap allocations (alloc, alloc_zeroed and realloc: a growing `Vec` reallocates) made
/// by the calling thread since it started.
pub fn allocations() -> u64 {
    ALLOCS.with(Cell::get)
}

// SAFETY: forwards every call to System unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        count();
        // SAFETY: same contract as ours.
        unsafe { System.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        count();
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        count();
        // SAFETY: same contract as ours.
        unsafe { System.realloc(p, l, n) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;
