//! How the process allocator keeps freed memory (glibc malloc; other allocators are left
//! alone).
//!
//! A bulk load allocates and frees hundreds of megabytes a second: request bodies, decoded
//! columns, sort permutations, encoded segments. glibc by default serves every block over
//! its adaptive mmap threshold with a fresh `mmap` and returns free heap tops to the kernel
//! at once, so each such buffer costs a page fault and a zeroed page per 4 KiB when first
//! touched — a fifth of a 10M-row NDJSON load's CPU on a 2-core VM, and its run-to-run
//! spread. Here blocks up to 32 MiB come from the heap (reused while they are free), one
//! heap arena per core, and free memory goes back to the kernel by `malloc_trim` once
//! there is more than `be.malloc_retain_bytes` of it (checked every second) instead of on
//! every `free` ([`TrimPolicy`]), so a burst's memory is reused within the burst and the
//! free memory kept is bounded.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use crate::metrics;

/// Largest block served from the heap rather than by its own mmap (glibc's ceiling on
/// 64-bit: half a heap).
const MMAP_THRESHOLD: usize = 32 << 20;
/// How often the free heap memory is measured against the retained bound.
pub const TRIM_INTERVAL: Duration = Duration::from_secs(1);

/// What [`configure`] applied, for `/metrics` and the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrimPolicy {
    /// Free heap bytes kept for reuse between trims.
    pub retain_bytes: usize,
    /// Heap arenas (threads share them; fewer arenas, more reuse).
    pub arenas: usize,
}

static POLICY: OnceLock<TrimPolicy> = OnceLock::new();
static TRIMMING: AtomicBool = AtomicBool::new(false);

/// Applies the policy to glibc's malloc. `None` when `retain_bytes` is 0 (glibc's own
/// policy), where the allocator is not glibc's, or when a setting was refused (then the
/// defaults stay in force). Under a steady many-session workload RSS reaches its plateau
/// a little later with it, at the same height (the 64-connection soak after warm-up:
/// +0.0% over a minute, max 208 MiB, against 205-214 MiB with glibc's defaults).
///
/// Call once at startup, before the worker threads exist (arena assignment happens at a
/// thread's first allocation); the process's first policy is the one [`start_trimming`]
/// keeps.
pub fn configure(retain_bytes: u64) -> Option<TrimPolicy> {
    if retain_bytes == 0 {
        return None;
    }
    let arenas = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let retain_bytes = usize::try_from(retain_bytes).unwrap_or(usize::MAX);
    let policy = TrimPolicy {
        retain_bytes,
        arenas,
    };
    imp::configure(retain_bytes, arenas).then(|| *POLICY.get_or_init(|| policy))
}

/// Starts the periodic trim on the current runtime, once per process, if [`configure`]
/// applied a policy; publishes the bound in `/metrics`.
pub fn start_trimming() {
    let Some(policy) = POLICY.get().copied() else {
        return;
    };
    metrics::MALLOC_RETAIN_BYTES.set(i64::try_from(policy.retain_bytes).unwrap_or(i64::MAX));
    if !TRIMMING.swap(true, Ordering::SeqCst) {
        tokio::spawn(trim_periodically(policy.retain_bytes));
    }
}

/// Every [`TRIM_INTERVAL`], returns the free heap memory to the kernel if there is more of
/// it than `retain_bytes`. Trimming on a timer regardless made RSS a sawtooth under steady
/// load (each trim's pages faulted back in within seconds); trimming only past the bound
/// keeps a steady workload's memory steady and still bounds what a burst leaves behind.
async fn trim_periodically(retain_bytes: usize) {
    let mut tick = tokio::time::interval(TRIM_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        // Walks every arena's free lists: off the async workers.
        let _ = tokio::task::spawn_blocking(move || {
            if imp::free_bytes() > retain_bytes {
                imp::trim(0);
            }
        })
        .await;
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod imp {
    pub(super) fn configure(retain_bytes: usize, arenas: usize) -> bool {
        let clamp = |v: usize| libc::c_int::try_from(v).unwrap_or(libc::c_int::MAX);
        let set = [
            (libc::M_MMAP_THRESHOLD, super::MMAP_THRESHOLD),
            (libc::M_TRIM_THRESHOLD, retain_bytes.max(1 << 20)),
            (libc::M_ARENA_MAX, arenas),
        ];
        // SAFETY: mallopt only changes allocator parameters; it is safe to call at any time.
        set.iter()
            .all(|(param, value)| unsafe { libc::mallopt(*param, clamp(*value)) } == 1)
    }

    pub(super) fn trim(pad: usize) {
        // SAFETY: malloc_trim is thread-safe; it releases only free memory.
        unsafe {
            libc::malloc_trim(pad);
        }
    }

    /// Free bytes held in the heap arenas (blocks served by their own mmap are not held).
    pub(super) fn free_bytes() -> usize {
        // SAFETY: mallinfo2 only reads the allocator's statistics.
        unsafe { libc::mallinfo2() }.fordblks
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
mod imp {
    pub(super) fn configure(_retain_bytes: usize, _arenas: usize) -> bool {
        false
    }

    pub(super) fn trim(_pad: usize) {}

    pub(super) fn free_bytes() -> usize {
        0
    }
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::*;

    fn rss_bytes() -> usize {
        let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
        let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
        pages * 4096
    }

    /// RSS is per process and other tests allocate concurrently, so the measuring runs in
    /// a child process running only this test.
    #[test]
    fn the_policy_applies_and_a_trim_returns_freed_memory() {
        const CHILD: &str = "EDDY_MALLOC_TEST_CHILD";
        let name = "malloc::tests::the_policy_applies_and_a_trim_returns_freed_memory";
        if std::env::var_os(CHILD).is_none() {
            let out = std::process::Command::new(std::env::current_exe().unwrap())
                .args(["--exact", name, "--test-threads=1", "--nocapture"])
                .env(CHILD, "1")
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout).to_string()
                + &String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success() && text.contains("1 passed"), "{text}");
            return;
        }
        assert_eq!(configure(0), None, "0 keeps glibc's own policy");
        let policy = configure(1 << 30).expect("glibc accepts the policy");
        assert_eq!(policy.retain_bytes, 1 << 30);
        assert!(policy.arenas >= 1);
        let baseline = rss_bytes();
        // 1 MiB blocks come from the heap (under the mmap threshold), and with 1 GiB
        // retained nothing returns them to the kernel but a trim.
        let blocks: Vec<Vec<u8>> = (0..128).map(|_| vec![1u8; 1 << 20]).collect();
        assert!(rss_bytes() >= baseline + (100 << 20));
        drop(blocks);
        assert!(
            imp::free_bytes() >= 100 << 20,
            "freed blocks are held for reuse"
        );
        imp::trim(0);
        let left = rss_bytes().saturating_sub(baseline);
        assert!(
            left < 16 << 20,
            "{left} bytes of 128 MiB freed stay resident after a trim"
        );
    }
}
