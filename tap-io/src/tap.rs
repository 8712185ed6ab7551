//! TAP ports: `/dev/net/tun` with `IFF_TAP | IFF_NO_PI`, nonblocking.
//!
//! Opening a name that does not exist creates the device (it disappears when the last queue
//! closes unless made persistent); opening the name of an existing persistent TAP attaches to
//! it. With `multi_queue`, every open of the same name adds a queue (`IFF_MULTI_QUEUE`), and
//! the flag must match how the device was created. The kernel has no batched TAP read or
//! write without vnet headers, so a batch costs one syscall per frame.
//!
//! With `vnet_hdr` (`IFF_VNET_HDR` + `TUNSETOFFLOAD`), every read and write carries a
//! virtio-net header ([`crate::vnet`]): the kernel hands us TSO/USO super-frames and partial
//! checksums (`meta.gso`, `meta.csum_*`) and takes them back whole, so batches need
//! [`crate::GSO_FRAME_ROOM`] buffers.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use thiserror::Error;

use crate::buf::Batch;
use crate::iface::{self, IfaceError};
use crate::port::{Offloads, Port, PortStats, TxDropReason, TxReport, impl_mio_source};
use crate::vnet::{VNET_HDR_LEN, VnetHdr};

/// `_IOW('T', 208, unsigned int)`: which offloads user space accepts on reads.
const TUNSETOFFLOAD: libc::c_ulong = 0x4004_54d0;
/// `_IOW('T', 216, int)`: the virtio-net header size.
const TUNSETVNETHDRSZ: libc::c_ulong = 0x4004_54d8;
const IFF_VNET_HDR: libc::c_int = 0x4000;
const TUN_F_CSUM: libc::c_uint = 0x01;
const TUN_F_TSO4: libc::c_uint = 0x02;
const TUN_F_TSO6: libc::c_uint = 0x04;
const TUN_F_TSO_ECN: libc::c_uint = 0x08;
const TUN_F_USO4: libc::c_uint = 0x20;
const TUN_F_USO6: libc::c_uint = 0x40;

/// Errors of opening a TAP port.
#[derive(Debug, Error)]
pub enum TapError {
    /// `/dev/net/tun` could not be opened (missing module/device node, or not root).
    #[error("cannot open /dev/net/tun: {0}")]
    OpenTun(#[source] io::Error),
    /// The kernel refused to create or attach the device (name taken by a non-TAP device,
    /// flags not matching an existing device, or no permission).
    #[error("TUNSETIFF for {name:?} failed: {source}")]
    SetIff {
        name: String,
        #[source]
        source: io::Error,
    },
    /// Making the device persistent failed.
    #[error("TUNSETPERSIST for {name:?} failed: {source}")]
    Persist {
        name: String,
        #[source]
        source: io::Error,
    },
    /// Setting up virtio-net headers or offloads failed.
    #[error("{what} for {name:?} failed: {source}")]
    Vnet {
        what: &'static str,
        name: String,
        #[source]
        source: io::Error,
    },
    /// An interface request (name check, MTU, bringing it up) failed.
    #[error(transparent)]
    Iface(#[from] IfaceError),
}

/// How to open a TAP port.
#[derive(Debug, Clone)]
pub struct TapConfig {
    /// Device name (at most 15 bytes).
    pub name: String,
    /// Open one queue of a multi-queue device.
    pub multi_queue: bool,
    /// Keep the device after the port closes.
    pub persist: bool,
    /// Set the device administratively up after opening.
    pub bring_up: bool,
    /// Exchange a virtio-net header with every frame and accept checksum, TSO (and, where
    /// the kernel has it, USO) offloads: super-frames up to 64 KiB pass whole.
    pub vnet_hdr: bool,
}

impl TapConfig {
    /// A single-queue, non-persistent TAP brought up on open.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            multi_queue: false,
            persist: false,
            bring_up: true,
            vnet_hdr: false,
        }
    }
}

/// A TAP port.
#[derive(Debug)]
pub struct TapPort {
    fd: OwnedFd,
    name: String,
    mtu: usize,
    vnet_hdr: bool,
    stats: PortStats,
}

/// An ioctl with an integer argument passed by pointer; the errno as an `io::Error`.
fn ioctl_int(fd: &OwnedFd, req: libc::c_ulong, val: libc::c_int) -> io::Result<()> {
    // SAFETY: both requests used here read one int through the pointer, which lives across
    // the call.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), req, &val) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Tells the kernel which offloads we take on reads: checksum and TSO always, USO where the
/// kernel knows it (6.2+), falling back without it.
fn set_offloads(fd: &OwnedFd) -> io::Result<()> {
    let base = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN;
    let set = |flags: libc::c_uint| {
        // SAFETY: TUNSETOFFLOAD takes the flags as the integer argument itself.
        let rc = unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETOFFLOAD, flags as libc::c_ulong) };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    };
    set(base | TUN_F_USO4 | TUN_F_USO6).or_else(|_| set(base))
}

impl TapPort {
    /// Creates or attaches to the TAP device described by `cfg`.
    pub fn open(cfg: &TapConfig) -> Result<Self, TapError> {
        let mut req = iface::ifreq_for(&cfg.name)?;
        let mut flags = libc::IFF_TAP | libc::IFF_NO_PI;
        if cfg.multi_queue {
            flags |= libc::IFF_MULTI_QUEUE;
        }
        if cfg.vnet_hdr {
            flags |= IFF_VNET_HDR;
        }
        req.ifr_ifru.ifru_flags = flags as libc::c_short;
        // SAFETY: the path is a NUL-terminated literal; the result is checked.
        let raw = unsafe {
            libc::open(
                c"/dev/net/tun".as_ptr(),
                libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
            )
        };
        if raw < 0 {
            return Err(TapError::OpenTun(io::Error::last_os_error()));
        }
        // SAFETY: raw was just returned by open(2) and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // A device of that name whose last descriptor closed a moment ago (its port deleted
        // and added again at once) is still being torn down and answers EBUSY: retried for
        // at most 100 ms.
        let mut busy_retries = 20;
        loop {
            // SAFETY: TUNSETIFF reads and writes one ifreq, which lives across the call.
            let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF, &mut req) };
            if rc >= 0 {
                break;
            }
            let source = io::Error::last_os_error();
            if source.raw_os_error() == Some(libc::EBUSY) && busy_retries > 0 {
                busy_retries -= 1;
                std::thread::sleep(std::time::Duration::from_millis(5));
                continue;
            }
            return Err(TapError::SetIff {
                name: cfg.name.clone(),
                source,
            });
        }
        if cfg.vnet_hdr {
            let vnet = |what| {
                let name = cfg.name.clone();
                move |source| TapError::Vnet { what, name, source }
            };
            ioctl_int(&fd, TUNSETVNETHDRSZ, VNET_HDR_LEN as libc::c_int)
                .map_err(vnet("TUNSETVNETHDRSZ"))?;
            set_offloads(&fd).map_err(vnet("TUNSETOFFLOAD"))?;
        }
        if cfg.persist {
            // SAFETY: TUNSETPERSIST takes an integer argument, not a pointer.
            let rc =
                unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETPERSIST, 1 as libc::c_ulong) };
            if rc < 0 {
                return Err(TapError::Persist {
                    name: cfg.name.clone(),
                    source: io::Error::last_os_error(),
                });
            }
        }
        let name: String = req
            .ifr_name
            .iter()
            .take_while(|c| **c != 0)
            .map(|c| *c as u8 as char)
            .collect();
        if cfg.bring_up {
            iface::set_up(&name, true)?;
        }
        let mtu = iface::mtu(&name)?;
        Ok(Self {
            fd,
            name,
            mtu,
            vnet_hdr: cfg.vnet_hdr,
            stats: PortStats::default(),
        })
    }

    /// A second handle on the same queue (a duplicated descriptor) for another thread to
    /// write to; reading stays with the original.
    pub fn try_clone_tx(&self) -> io::Result<TapPort> {
        Ok(TapPort {
            fd: self.fd.try_clone()?,
            name: self.name.clone(),
            mtu: self.mtu,
            vnet_hdr: self.vnet_hdr,
            stats: PortStats::default(),
        })
    }

    /// The descriptor (for `mio` and `poll`).
    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Makes the device outlive (`true`) or die with (`false`) its last open descriptor.
    pub fn set_persist(&self, on: bool) -> Result<(), TapError> {
        // SAFETY: TUNSETPERSIST takes an integer argument, not a pointer.
        let rc = unsafe {
            libc::ioctl(
                self.fd.as_raw_fd(),
                libc::TUNSETPERSIST,
                libc::c_ulong::from(on),
            )
        };
        if rc < 0 {
            return Err(TapError::Persist {
                name: self.name.clone(),
                source: io::Error::last_os_error(),
            });
        }
        Ok(())
    }

    /// Where the device is now: its network namespace and its name there. Both can change
    /// under an open descriptor (`ip link set TAP netns POD`, `ip link set TAP name eth0`).
    pub fn whereabouts(&self) -> io::Result<TapWhereabouts> {
        // SAFETY: TUNGETDEVNETNS takes no argument and returns a new descriptor (or -1).
        let raw = unsafe { libc::ioctl(self.fd.as_raw_fd(), TUNGETDEVNETNS) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: raw was just returned by the kernel and is owned by nobody else.
        let ns = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(raw) });
        let netns = NetnsId::of(&ns.metadata()?);
        // SAFETY: an all-zero ifreq is a valid value (a C struct of integers and arrays).
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        // SAFETY: TUNGETIFF writes one ifreq, which lives across the call.
        let rc = unsafe { libc::ioctl(self.fd.as_raw_fd(), libc::TUNGETIFF, &mut req) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        let name = req
            .ifr_name
            .iter()
            .take_while(|c| **c != 0)
            .map(|c| *c as u8 as char)
            .collect();
        Ok(TapWhereabouts { netns, name })
    }

    /// Re-reads the MTU from the kernel (after it was changed).
    pub fn refresh_mtu(&mut self) -> Result<usize, TapError> {
        self.mtu = iface::mtu(&self.name)?;
        Ok(self.mtu)
    }
}

impl_mio_source!(TapPort);

/// `_IO('T', 227)`: a descriptor of the network namespace the device is in (Linux 5.2+).
const TUNGETDEVNETNS: libc::c_ulong = 0x54e3;

/// A network namespace, as the device and inode numbers of its nsfs file (what `stat` of
/// `/proc/PID/ns/net` or of a `/run/netns/NAME` bind mount shows).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NetnsId {
    pub dev: u64,
    pub ino: u64,
}

impl NetnsId {
    fn of(meta: &std::fs::Metadata) -> NetnsId {
        use std::os::unix::fs::MetadataExt;
        NetnsId {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }

    /// The namespace of the calling thread.
    pub fn current() -> io::Result<NetnsId> {
        std::fs::metadata("/proc/thread-self/ns/net").map(|m| NetnsId::of(&m))
    }

    /// The namespace a file names (`/run/netns/NAME`, `/proc/PID/ns/net`).
    pub fn of_path(path: &std::path::Path) -> io::Result<NetnsId> {
        std::fs::metadata(path).map(|m| NetnsId::of(&m))
    }

    /// A file that names this namespace: the bind mounts of `/run/netns` (`ip netns`, and
    /// container runtimes pin pods' namespaces there), `None` when it has none.
    pub fn named_path(&self) -> Option<std::path::PathBuf> {
        let dir = std::fs::read_dir("/run/netns").ok()?;
        dir.flatten()
            .map(|e| e.path())
            .find(|p| NetnsId::of_path(p).is_ok_and(|id| id == *self))
    }
}

/// Where a TAP device is: its namespace and its name there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TapWhereabouts {
    pub netns: NetnsId,
    pub name: String,
}

/// Runs `f` on a thread of its own inside the network namespace the file `netns` names
/// (`/run/netns/NAME`); descriptors it opens (a TAP's `/dev/net/tun`, sockets) stay bound to
/// that namespace. Entering another namespace needs CAP_SYS_ADMIN.
pub fn in_netns<T: Send>(netns: &std::path::Path, f: impl FnOnce() -> T + Send) -> io::Result<T> {
    let ns = std::fs::File::open(netns)?;
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: setns takes a descriptor we hold open and a flag; it changes only the
            // calling thread's namespace, and this thread ends after `f`.
            let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
            if rc < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(f())
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("the namespace thread panicked")))
    })
}

/// Deletes the persistent TAP device `name` of this namespace: attaches to it, clears its
/// persistence and closes it (no device of that name: nothing changes). The device must have
/// no other open descriptor.
pub fn remove_persistent(name: &str) -> Result<(), TapError> {
    let cfg = TapConfig {
        bring_up: false,
        ..TapConfig::new(name)
    };
    TapPort::open(&cfg)?.set_persist(false)
}

impl Port for TapPort {
    fn name(&self) -> &str {
        &self.name
    }

    fn rx_batch(&mut self, batch: &mut Batch) -> io::Result<usize> {
        let fd = self.fd.as_raw_fd();
        let mut n = 0;
        while let Some(buf) = batch.spare() {
            let space = buf.rx_space();
            let room = space.len();
            let mut vh = [0u8; VNET_HDR_LEN];
            let r = if self.vnet_hdr {
                // The TAP driver silently cuts a frame to the buffer it is given; one spill
                // byte behind the buffer tells a cut frame (n > room) from one that fits.
                let mut spill = 0u8;
                let iov = [
                    libc::iovec {
                        iov_base: vh.as_mut_ptr().cast(),
                        iov_len: VNET_HDR_LEN,
                    },
                    libc::iovec {
                        iov_base: space.as_mut_ptr().cast(),
                        iov_len: room,
                    },
                    libc::iovec {
                        iov_base: (&mut spill as *mut u8).cast(),
                        iov_len: 1,
                    },
                ];
                // SAFETY: all iovecs point to writable memory of the stated lengths that
                // lives across the call.
                unsafe { libc::readv(fd, iov.as_ptr(), 3) }
            } else {
                // One plain buffer, no iovec array for the kernel to import. A read that
                // fills it may be cut: counted as truncated below. A buffer's frame room (at
                // least MTU + 22) is above the largest frame the interface sends (MTU + 18,
                // tagged).
                // SAFETY: space is writable memory of room bytes that lives across the call.
                unsafe { libc::read(fd, space.as_mut_ptr().cast(), room) }
            };
            if r < 0 {
                let e = io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EAGAIN) => break,
                    Some(libc::EINTR) => continue,
                    _ => {
                        self.stats.rx_errors += 1;
                        if n > 0 {
                            break;
                        }
                        return Err(e);
                    }
                }
            }
            let len = if self.vnet_hdr {
                let Some(len) = (r as usize).checked_sub(VNET_HDR_LEN) else {
                    self.stats.rx_errors += 1;
                    continue;
                };
                if len > room {
                    self.stats.rx_truncated += 1;
                    continue;
                }
                len
            } else {
                let len = r as usize;
                if len >= room {
                    self.stats.rx_truncated += 1;
                    continue;
                }
                len
            };
            // len <= room == frame room, so set_len cannot fail.
            let _ = buf.set_len(len);
            buf.meta.wire_len = len as u32;
            if self.vnet_hdr {
                if VnetHdr::parse(&vh).to_meta(&mut buf.meta, 0).is_err() {
                    self.stats.rx_bad_vnet += 1;
                    continue;
                }
                self.stats.rx_gso += u64::from(buf.meta.gso.is_some());
                self.stats.rx_csum_not_ready += u64::from(buf.meta.csum_not_ready);
            }
            self.stats.rx_packets += 1;
            self.stats.rx_bytes += len as u64;
            batch.commit();
            n += 1;
        }
        Ok(n)
    }

    fn tx_batch(&mut self, batch: &mut Batch) -> TxReport {
        let fd = self.fd.as_raw_fd();
        let mut r = TxReport::default();
        for p in batch.iter() {
            let d = p.data();
            let vh = if self.vnet_hdr {
                VnetHdr::from_meta(&p.meta).emit()
            } else {
                [0; VNET_HDR_LEN]
            };
            let hdr_len = if self.vnet_hdr { VNET_HDR_LEN } else { 0 };
            let iov = [
                libc::iovec {
                    iov_base: vh.as_ptr().cast_mut().cast(),
                    iov_len: hdr_len,
                },
                libc::iovec {
                    iov_base: d.as_ptr().cast_mut().cast(),
                    iov_len: d.len(),
                },
            ];
            loop {
                // SAFETY: both iovecs point to readable memory of the stated lengths for the
                // whole call; the kernel only reads them. Without vnet headers a plain write
                // of the frame (the kernel's single-segment path).
                let w = unsafe {
                    if self.vnet_hdr {
                        libc::writev(fd, iov.as_ptr(), 2)
                    } else {
                        libc::write(fd, d.as_ptr().cast(), d.len())
                    }
                };
                if w >= 0 {
                    r.sent += 1;
                    r.bytes += d.len() as u64;
                    if self.vnet_hdr && p.meta.gso.is_some() {
                        self.stats.tx_gso += 1;
                    }
                    break;
                }
                let errno = io::Error::last_os_error().raw_os_error().unwrap_or(0);
                if errno == libc::EINTR {
                    continue;
                }
                r.dropped.add(TxDropReason::from_errno(errno), 1);
                break;
            }
        }
        batch.clear();
        self.stats.account_tx(&r);
        r
    }

    fn fd(&self) -> Option<RawFd> {
        Some(self.fd.as_raw_fd())
    }

    fn stats(&self) -> PortStats {
        self.stats
    }

    fn mtu(&self) -> usize {
        self.mtu
    }

    fn offloads(&self) -> Offloads {
        Offloads::virtio(self.vnet_hdr)
    }

    fn try_clone_tx(&self) -> Option<io::Result<Box<dyn Port + Send>>> {
        Some(TapPort::try_clone_tx(self).map(|t| Box::new(t) as Box<dyn Port + Send>))
    }
}
