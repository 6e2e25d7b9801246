//! Allocator tuning shared by every service. All of them use mimalloc as the global
//! allocator; by default it returns freed memory to the OS shortly after it is freed. The
//! stages allocate and free message-sized buffers (request bodies, ~1 MB batches) many times a
//! second, so the kernel zeroed fresh pages for nearly every message: the ingest benchmark
//! counted 70 k page faults in 20 s and `clear_page` as the largest single cost in a profile.
//! Keeping freed memory for reuse cut the faults 3.4x. The memory a service holds is then its
//! peak working set, which its limits are sized for anyway.
//!
//! librdkafka allocates with the C library's `malloc`: it copies every produced message into a
//! fresh buffer and frees it once the broker acknowledged it. glibc serves blocks of that size
//! with `mmap` and gives them back on `free` (or trims its thread arenas with `MADV_DONTNEED`),
//! so each copy faulted in zeroed pages: 9 % of the enricher's profile. `tune` keeps those
//! blocks in glibc's arenas too.

/// Blocks glibc serves from its arenas rather than `mmap`: above any message we produce.
const MMAP_THRESHOLD: i32 = 8 << 20;
/// Free memory glibc keeps at the top of an arena before it returns it to the OS.
const TRIM_THRESHOLD: i32 = 256 << 20;

/// Keeps freed memory for reuse (mimalloc `purge_delay = -1`; glibc's thresholds above for
/// librdkafka), unless the operator chose otherwise with `MIMALLOC_PURGE_DELAY` or glibc's
/// `MALLOC_MMAP_THRESHOLD_` / `MALLOC_TRIM_THRESHOLD_`. Call once, first thing in `main`.
pub fn tune() {
    tune_glibc();
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    // mimalloc v3's option index of `purge_delay` (`mi_option_t` in mimalloc.h; the sys
    // crate does not name it).
    const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    // SAFETY: `mi_option_set` only stores an integer in mimalloc's option table; it is
    // thread-safe and valid at any time.
    #[allow(unsafe_code)]
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1);
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune_glibc() {
    let operator = |var: &str| std::env::var_os(var).is_some();
    // SAFETY: `mallopt` only sets malloc parameters; glibc serialises it with its own locks.
    #[allow(unsafe_code)]
    unsafe {
        if !operator("MALLOC_MMAP_THRESHOLD_") {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        }
        if !operator("MALLOC_TRIM_THRESHOLD_") {
            libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_glibc() {}

#[cfg(test)]
mod tests {
    /// Option 15 is `purge_delay` (its default, 1000 ms in mimalloc v3, identifies it), and
    /// `tune` sets it to "never".
    #[test]
    fn tune_sets_the_purge_delay() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            return; // the operator's choice wins; nothing of ours to check
        }
        // SAFETY: reading an option is always valid.
        #[allow(unsafe_code)]
        let get = || unsafe { libmimalloc_sys::mi_option_get(15) };
        assert_eq!(get(), 1000, "option 15 is not mimalloc's purge_delay");
        super::tune();
        assert_eq!(get(), -1);
    }
}
