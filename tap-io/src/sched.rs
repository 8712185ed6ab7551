//! Scheduling knobs of the calling thread.

use std::io;

/// Sets the calling thread's timer slack (how late the kernel may fire its sleeps, to batch
/// wake-ups; 50 µs by default): a forwarding thread that sleeps for a few tens of
/// microseconds to gather a batch needs it small.
pub fn set_timer_slack(ns: u64) -> io::Result<()> {
    // SAFETY: PR_SET_TIMERSLACK takes one integer argument and only changes this thread.
    let rc = unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, ns as libc::c_ulong, 0, 0, 0) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Asks the fair scheduler (EEVDF, Linux ≥ 6.12) for time slices of `ns` (clamped by the
/// kernel to 0.1–100 ms) for the calling thread. A thread with a short slice gets an early
/// deadline when it wakes, so it preempts a CPU-bound task on its CPU at once instead of
/// waiting for that task's slice (1.5 ms or more) to run out; its share of the CPU is unchanged
/// (that is its weight). Only a `SCHED_OTHER` thread is changed (its nice value kept): returns
/// whether it was. Older kernels accept the call and ignore the slice.
pub fn set_slice(ns: u64) -> io::Result<bool> {
    let size = std::mem::size_of::<libc::sched_attr>() as u32;
    // SAFETY: all-zero is a valid sched_attr (plain integers).
    let mut attr: libc::sched_attr = unsafe { std::mem::zeroed() };
    // SAFETY: sched_getattr writes at most `size` bytes into `attr`, which is that large.
    let rc = unsafe { libc::syscall(libc::SYS_sched_getattr, 0, &mut attr, size, 0) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    if attr.sched_policy != libc::SCHED_OTHER as u32 {
        return Ok(false); // real-time, batch or idle: as the operator set it
    }
    attr.size = size;
    attr.sched_flags &= libc::SCHED_FLAG_RESET_ON_FORK as u64;
    attr.sched_runtime = ns;
    // SAFETY: `attr` is a valid sched_attr of `size` bytes; pid 0 is the calling thread.
    let rc = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr, 0) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The slice the kernel reports for the calling thread (`se.slice`, CONFIG_SCHED_DEBUG).
    fn reported_slice() -> Option<u64> {
        let s = std::fs::read_to_string("/proc/thread-self/sched").ok()?;
        let line = s.lines().find(|l| l.starts_with("se.slice"))?;
        line.split(':').nth(1)?.trim().parse().ok()
    }

    /// Custom slices exist since Linux 6.12.
    fn kernel_has_custom_slices() -> bool {
        let r = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let mut v = r
            .trim()
            .split(['.', '-'])
            .map(|x| x.parse::<u32>().unwrap_or(0));
        (v.next().unwrap_or(0), v.next().unwrap_or(0)) >= (6, 12)
    }

    #[test]
    fn slice_is_set_for_this_thread_only() {
        std::thread::spawn(|| {
            let before = reported_slice();
            // SAFETY: getpriority only reads the calling thread's nice value.
            let nice = || unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
            let before_nice = nice();
            assert!(set_slice(200_000).expect("sched_setattr"));
            assert_eq!(nice(), before_nice, "nice kept");
            let Some(after) = reported_slice() else {
                eprintln!("no se.slice in /proc/thread-self/sched (CONFIG_SCHED_DEBUG off)");
                return;
            };
            if kernel_has_custom_slices() {
                assert_eq!(after, 200_000, "slice before: {before:?}");
            }
        })
        .join()
        .unwrap();
        // The test thread itself was not touched.
        if kernel_has_custom_slices()
            && let Some(s) = reported_slice()
        {
            assert_ne!(s, 200_000);
        }
    }
}
