//! Returning freed heap to the system.

/// Gives memory the daemon used and freed back to the system, so that its
/// resident size reflects what it holds: glibc keeps freed heap otherwise.
/// Called after the work that peaks: parsing a config and building its
/// tables, and rendering a scrape of many backends.
pub fn release_free_memory() {
    // SAFETY: malloc_trim has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}
