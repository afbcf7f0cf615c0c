//! Handing freed heap memory back to the operating system.
//!
//! glibc's malloc keeps what a program frees inside its arenas (one per
//! thread that allocated, up to eight per core) and returns only the top of
//! the main heap to the system. The stores free memory in large waves — a
//! head flush drops hours of chunks, a compaction its merge buffers — spread
//! over pages still shared with live allocations, so without help the
//! resident size stays at the high-water mark of the last wave. The
//! maintenance loops call [`release_free_memory`] after such a wave.

/// Returns every whole free page of every malloc arena to the system
/// (glibc's `malloc_trim(0)`; it walks the free lists, ~1 ms per 100 MB of
/// heap). Does nothing on other C libraries, which return memory on their own.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` only takes the allocator's own locks and
    // releases pages that hold no allocation; it is safe to call from any
    // thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}
