//! Giving memory back to the system after a large transient use.

/// Returns to the system the allocator's free memory, wherever it lies: after a
/// large import, the document, its checks and the records it built (their bodies
/// now in the store, see `store::Shelf`) leave free pages all through the heap,
/// which glibc's `free` keeps, counted as resident, until told.
pub fn give_back() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` only releases pages the allocator holds free; it takes
    // no pointer and may be called at any time from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}
