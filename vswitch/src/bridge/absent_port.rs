//! The I/O of a port whose interface does not exist (yet): a saved port whose interface was
//! deleted while the switch was down. It receives nothing and drops what is sent to it as
//! `LinkDown`; the interface watcher opens the real port once an interface of that name
//! appears (`Switch::reattach_changed_interfaces`).

use std::io;
use std::os::fd::RawFd;

use tap_io::{Batch, Port, PortStats, TxDropReason, TxReport};

pub struct AbsentPort {
    name: String,
}

impl AbsentPort {
    pub fn new(name: &str) -> AbsentPort {
        AbsentPort {
            name: name.to_string(),
        }
    }
}

impl Port for AbsentPort {
    fn name(&self) -> &str {
        &self.name
    }

    fn rx_batch(&mut self, _: &mut Batch) -> io::Result<usize> {
        Ok(0)
    }

    fn tx_batch(&mut self, batch: &mut Batch) -> TxReport {
        let mut r = TxReport::default();
        r.dropped.add(TxDropReason::LinkDown, batch.len() as u64);
        batch.clear();
        r
    }

    fn fd(&self) -> Option<RawFd> {
        None
    }

    /// Another thread's handle is as absent as this one.
    fn try_clone_tx(&self) -> Option<io::Result<Box<dyn Port + Send>>> {
        Some(Ok(Box::new(AbsentPort::new(&self.name))))
    }

    fn stats(&self) -> PortStats {
        PortStats::default()
    }

    fn mtu(&self) -> usize {
        1500
    }
}
