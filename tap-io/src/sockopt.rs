//! The socket calls every socket-backed port makes (options in and out, the kernel's rings
//! mapped), written once for AF_PACKET and AF_XDP.

use std::io;
use std::os::fd::AsRawFd;

use crate::rxring::Mapping;

/// `setsockopt(fd, level, opt)` with `val` and its size.
pub(crate) fn set<T>(fd: &impl AsRawFd, level: i32, opt: i32, val: &T) -> io::Result<()> {
    // SAFETY: `val` points to a live T of size_of::<T>() bytes for the call.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            opt,
            (val as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `getsockopt(fd, level, opt)` into `out`, a plain-data value the kernel fills.
pub(crate) fn get_into<T>(fd: &impl AsRawFd, level: i32, opt: i32, out: &mut T) -> io::Result<()> {
    let mut len = std::mem::size_of::<T>() as libc::socklen_t;
    // SAFETY: `out` and `len` are valid for writes of the stated size for the call.
    let rc =
        unsafe { libc::getsockopt(fd.as_raw_fd(), level, opt, (out as *mut T).cast(), &mut len) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Maps the `len` bytes of ring the kernel allocated for socket `fd` at offset `pgoff`,
/// shared and populated; the mapping is unmapped when the `Mapping` drops.
pub(crate) fn map_shared(fd: &impl AsRawFd, len: usize, pgoff: i64) -> io::Result<Mapping> {
    // SAFETY: maps memory the kernel owns for this socket; the result is checked before use.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_POPULATE,
            fd.as_raw_fd(),
            pgoff,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    Ok(Mapping {
        ptr: ptr.cast(),
        len,
    })
}
