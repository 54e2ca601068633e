//! How the daemon uses the C heap (glibc malloc): few arenas, and freed
//! memory returned to the system after the work that peaks.

/// Heap arenas the daemon's threads share. glibc gives threads up to eight
/// arenas per core, each keeping its own freed memory: with health checks
/// allocating on both worker threads and scrapes and reloads on blocking
/// threads, that was several megabytes resident at 100,000 checked
/// backends. The daemon's allocations are not its bottleneck (the packets
/// never reach it), so two arenas are enough.
const ARENAS: libc::c_int = 2;

/// Limits the heap to [`ARENAS`] arenas; called before any thread starts.
/// An operator's `MALLOC_ARENA_MAX` in the environment wins.
pub fn limit_arenas() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
        return;
    }
    // SAFETY: mallopt has no preconditions; M_ARENA_MAX only bounds the
    // arenas created from now on.
    if unsafe { libc::mallopt(libc::M_ARENA_MAX, ARENAS) } == 0 {
        tracing::warn!("could not limit the heap's arenas");
    }
}

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
