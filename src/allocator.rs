//! The daemon's memory allocator: jemalloc, set up to hold little memory
//! it does not use (measured in BENCHMARKS.md, "jemalloc, slimmer
//! per-agent state, the directory's first write in parts").
//!
//! At 50,000 agents the daemon's state is millions of small allocations
//! made by a few busy threads, and bursts (a start's load, a full
//! directory read, a registration wave) free much of what they took.
//! glibc's allocator keeps that freed memory in its arenas between blocks
//! still in use and adds a header to every block; jemalloc packs small
//! blocks by size class and gives freed pages back to the system itself.
//!
//! The options, compiled into the binary (the environment variable
//! `_RJEM_MALLOC_CONF` is read after them, so an operator can still
//! change any of them):
//! - `narenas:1`: one arena. The daemon's heavy work is one sync loop and
//!   the store's writer; more arenas only keep more free memory apart.
//! - `tcache:false`: no per-thread caches. Tokio's blocking threads come
//!   and go, and each cache holds freed blocks of its own; without them
//!   registration is a little slower (about 6,000 agents a second at
//!   50,000, three times its target: BENCHMARKS.md).
//! - `dirty_decay_ms:0`, `muzzy_decay_ms:0`: pages freed are returned to
//!   the system at once, so a burst's peak is not kept.
//! - `background_thread:true`: that purging runs on jemalloc's own thread
//!   where it can, not on the thread that freed.
//!
//! Linux with glibc only: elsewhere the system allocator is used.

#[cfg(all(target_os = "linux", not(target_env = "musl")))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// The options above, as jemalloc reads them: a C string.
#[cfg(all(target_os = "linux", not(target_env = "musl")))]
const OPTIONS: &[u8] =
    b"narenas:1,tcache:false,dirty_decay_ms:0,muzzy_decay_ms:0,background_thread:true\0";

/// A pointer to [`OPTIONS`], laid out as C's `const char *`.
#[cfg(all(target_os = "linux", not(target_env = "musl")))]
#[repr(transparent)]
pub struct Options(*const u8);

// SAFETY: the pointer is to a constant byte string that lives as long as the
// program and is never written; sharing it between threads is sharing a
// read-only constant.
#[cfg(all(target_os = "linux", not(target_env = "musl")))]
unsafe impl Sync for Options {}

/// jemalloc reads this symbol (its name carries the prefix the crate builds
/// jemalloc with) once, when the first allocation is made.
#[cfg(all(target_os = "linux", not(target_env = "musl")))]
// SAFETY: the only symbol of this name in the program; jemalloc declares it
// as `const char *malloc_conf`, which `Options` is laid out as, and reads it
// without writing.
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static MALLOC_CONF: Options = Options(OPTIONS.as_ptr());
