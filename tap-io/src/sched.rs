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
