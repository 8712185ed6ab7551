//! A few threads that run what may take long (a management command, an OpenFlow request
//! under the switch lock), so the event loop keeps accepting, reading and timing out clients
//! meanwhile. One job per connection at a time keeps each client's replies in order.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};
use mio::{Token, Waker};
use tracing::{error, warn};

use super::MgmtHandler;
use crate::ofserver::session::Session;

pub(super) enum Work {
    /// One management request line.
    Mgmt { line: Vec<u8>, handler: MgmtHandler },
    /// Bytes an OpenFlow peer sent.
    OfInput {
        session: Box<Session>,
        bytes: Vec<u8>,
    },
    /// Periodic: publish a quiet session's changes, deliver its asynchronous messages.
    OfTick { session: Box<Session>, quiet: bool },
    /// The connection closed: publish what it changed.
    OfClose { session: Box<Session> },
}

pub(super) struct Job {
    pub token: Token,
    pub work: Work,
}

pub(super) enum Done {
    Mgmt {
        reply: Vec<u8>,
    },
    Of {
        session: Box<Session>,
        out: Vec<u8>,
        open: bool,
        /// A message is still incomplete; `progressed`: at least one was complete.
        partial: bool,
        progressed: bool,
    },
    /// The job panicked: the connection is closed.
    Failed,
}

pub(super) struct Pool {
    tx: Sender<Job>,
}

impl Pool {
    pub fn spawn(
        n: usize,
        done: Sender<(Token, Done)>,
        waker: Arc<Waker>,
    ) -> std::io::Result<Pool> {
        let (tx, rx) = crossbeam_channel::unbounded::<Job>();
        for i in 0..n.max(1) {
            let (rx, done, waker) = (rx.clone(), done.clone(), waker.clone());
            std::thread::Builder::new()
                .name(format!("ctl-worker-{i}"))
                .spawn(move || work_loop(&rx, &done, &waker))?;
        }
        Ok(Pool { tx })
    }

    pub fn submit(&self, job: Job) {
        // The workers live as long as the process; a send cannot fail while they do.
        if self.tx.send(job).is_err() {
            error!("control-plane workers are gone");
        }
    }
}

fn work_loop(rx: &Receiver<Job>, done: &Sender<(Token, Done)>, waker: &Waker) {
    for job in rx {
        let token = job.token;
        // A bug in one command must not take a worker (and every later command) with it.
        let result =
            std::panic::catch_unwind(AssertUnwindSafe(|| run(job.work))).unwrap_or_else(|_| {
                warn!("a control-plane request panicked; its connection is closed");
                Some(Done::Failed)
            });
        if let Some(d) = result {
            let _ = done.send((token, d));
            let _ = waker.wake();
        }
    }
}

fn run(work: Work) -> Option<Done> {
    match work {
        Work::Mgmt { line, handler } => Some(Done::Mgmt {
            reply: crate::mgmt::answer(&line, |cmd, format| handler(cmd, format)),
        }),
        Work::OfInput { mut session, bytes } => {
            let mut out = Vec::new();
            let step = session.input(&bytes, &mut out);
            Some(Done::Of {
                partial: session.partial(),
                session,
                out,
                open: step.open,
                progressed: step.progressed,
            })
        }
        Work::OfTick { mut session, quiet } => {
            let mut out = Vec::new();
            session.tick(quiet, &mut out);
            Some(Done::Of {
                partial: session.partial(),
                session,
                out,
                open: true,
                progressed: false,
            })
        }
        Work::OfClose { mut session } => {
            session.finish();
            None
        }
    }
}
