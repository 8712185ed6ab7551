//! The control plane's sockets — the management socket, every bridge's OpenFlow socket and the
//! optional OpenFlow TCP listener — served by one event-loop thread (mio) and a small worker
//! pool, with bounds on everything a client can make the daemon hold:
//! - connections per socket (beyond the cap a client is refused at once);
//! - bytes buffered per connection (an over-long management request gets an error reply and
//!   is closed; OpenFlow input beyond [`limits::OF_INPUT_MAX`] stays in the kernel);
//! - time: a client that sends nothing, trickles a request or reads none of its replies is
//!   dropped after the idle timeout (OpenFlow peers are first probed with an echo request);
//! - accept errors (EMFILE, ENFILE, ENOBUFS) pause that listener with a growing back-off
//!   instead of retrying in a loop.
//!
//! The loop owns all I/O and never runs a command itself: a command or an OpenFlow request
//! goes to a worker, one at a time per connection (replies stay in order), so a long `apply`
//! occupies one worker while other clients are still accepted and answered.

pub mod bind;
mod conn;
pub mod limits;
mod workers;

use std::collections::HashMap;
use std::io::ErrorKind;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use mio::{Events, Interest, Poll, Token, Waker};
use tracing::{debug, info, warn};

use crate::command::MgmtCommand;
use crate::control::ControlError;
use crate::ofserver::session::{IDLE_PUBLISH, Session};
use crate::switch::Switch;
use crate::views::OutputFormat;
use conn::{Conn, Kind, ReadEnd, Stream};
pub use limits::Limits;
use workers::{Done, Job, Pool, Work};

/// Runs one management command.
pub type MgmtHandler =
    Arc<dyn Fn(MgmtCommand, OutputFormat) -> Result<String, ControlError> + Send + Sync>;

/// What a listening socket serves.
#[derive(Clone)]
pub enum Service {
    Mgmt(MgmtHandler),
    OpenFlow {
        switch: Weak<Switch>,
        bridge: String,
    },
}

/// A bound listening socket (blocking or not: the server makes it nonblocking).
pub enum Listener {
    Unix(std::os::unix::net::UnixListener),
    Tcp(std::net::TcpListener),
}

/// Identifies a listener for [`ServerHandle::unlisten`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ListenerId(Token);

const WAKER: Token = Token(0);
/// First accept back-off after an error; doubled up to [`BACKOFF_MAX`] while errors persist.
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// At most one warning per listener this often (a flood must not flood the log too).
const WARN_EVERY: Duration = Duration::from_secs(10);

enum Ctl {
    Listen(Token, Listener, Service),
    Unlisten(Token),
}

/// Adds and removes listeners of the running server (any thread).
#[derive(Clone)]
pub struct ServerHandle {
    tx: Sender<Ctl>,
    waker: Arc<Waker>,
    ids: Arc<AtomicUsize>,
}

impl ServerHandle {
    /// Serves `listener` from now on.
    pub fn listen(&self, listener: Listener, service: Service) -> std::io::Result<ListenerId> {
        match &listener {
            Listener::Unix(l) => l.set_nonblocking(true)?,
            Listener::Tcp(l) => l.set_nonblocking(true)?,
        }
        let token = Token(self.ids.fetch_add(1, Ordering::Relaxed));
        self.send(Ctl::Listen(token, listener, service))?;
        Ok(ListenerId(token))
    }

    /// Stops accepting on a listener (its open connections stay).
    pub fn unlisten(&self, id: ListenerId) {
        let _ = self.send(Ctl::Unlisten(id.0));
    }

    fn send(&self, ctl: Ctl) -> std::io::Result<()> {
        self.tx
            .send(ctl)
            .map_err(|_| std::io::Error::other("the control-plane server stopped"))?;
        self.waker.wake()
    }
}

/// Starts the event loop and its workers.
pub fn spawn(limits: Limits) -> std::io::Result<ServerHandle> {
    let poll = Poll::new()?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
    let (ctl_tx, ctl_rx) = crossbeam_channel::unbounded();
    let (done_tx, done_rx) = crossbeam_channel::unbounded();
    let pool = Pool::spawn(limits.workers, done_tx, waker.clone())?;
    let ids = Arc::new(AtomicUsize::new(1));
    let mut server = EventLoop {
        poll,
        limits,
        ctl_rx,
        done_rx,
        pool,
        ids: ids.clone(),
        listeners: HashMap::new(),
        conns: HashMap::new(),
        mgmt_buffered: 0,
        next_sweep: None,
    };
    std::thread::Builder::new()
        .name("ctl-loop".into())
        .spawn(move || server.run())?;
    Ok(ServerHandle {
        tx: ctl_tx,
        waker,
        ids,
    })
}

enum MioListener {
    Unix(mio::net::UnixListener),
    Tcp(mio::net::TcpListener),
}

impl MioListener {
    fn accept(&self) -> std::io::Result<Stream> {
        match self {
            MioListener::Unix(l) => l.accept().map(|(s, _)| Stream::Unix(s)),
            MioListener::Tcp(l) => l.accept().map(|(s, _)| {
                let _ = s.set_nodelay(true);
                Stream::Tcp(s)
            }),
        }
    }
}

struct ListenerState {
    sock: MioListener,
    service: Service,
    open: usize,
    paused_until: Option<Instant>,
    backoff: Duration,
    last_warn: Option<Instant>,
}

impl ListenerState {
    fn max_conns(&self, limits: &Limits) -> usize {
        match self.service {
            Service::Mgmt(_) => limits.mgmt_max_conns,
            Service::OpenFlow { .. } => limits.of_max_conns,
        }
    }

    fn may_warn(&mut self, now: Instant) -> bool {
        let due = self.last_warn.is_none_or(|t| now - t >= WARN_EVERY);
        if due {
            self.last_warn = Some(now);
        }
        due
    }
}

struct EventLoop {
    poll: Poll,
    limits: Limits,
    ctl_rx: Receiver<Ctl>,
    done_rx: Receiver<(Token, Done)>,
    pool: Pool,
    ids: Arc<AtomicUsize>,
    listeners: HashMap<Token, ListenerState>,
    conns: HashMap<Token, Conn>,
    /// Bytes buffered by all management connections together.
    mgmt_buffered: usize,
    /// When the timeouts need looking at next.
    next_sweep: Option<Instant>,
}

impl EventLoop {
    fn run(&mut self) {
        let mut events = Events::with_capacity(256);
        loop {
            let timeout = self
                .next_sweep
                .map(|t| t.saturating_duration_since(Instant::now()));
            if let Err(e) = self.poll.poll(&mut events, timeout)
                && e.kind() != ErrorKind::Interrupted
            {
                warn!("control-plane poll failed: {e}");
                std::thread::sleep(BACKOFF_MAX);
            }
            for ev in events.iter() {
                let token = ev.token();
                if token == WAKER {
                    continue;
                }
                if self.listeners.contains_key(&token) {
                    self.accept_all(token);
                } else if let Some(c) = self.conns.get_mut(&token) {
                    if ev.is_writable() && !c.flush(Instant::now()) {
                        self.close(token);
                        continue;
                    }
                    self.progress(token);
                }
            }
            self.take_control();
            self.take_done();
            if self.next_sweep.is_none_or(|t| Instant::now() >= t) {
                self.sweep();
            }
        }
    }

    fn take_control(&mut self) {
        while let Ok(ctl) = self.ctl_rx.try_recv() {
            match ctl {
                Ctl::Listen(token, listener, service) => {
                    let mut sock = match listener {
                        Listener::Unix(l) => MioListener::Unix(mio::net::UnixListener::from_std(l)),
                        Listener::Tcp(l) => MioListener::Tcp(mio::net::TcpListener::from_std(l)),
                    };
                    let registered = match &mut sock {
                        MioListener::Unix(l) => {
                            self.poll.registry().register(l, token, Interest::READABLE)
                        }
                        MioListener::Tcp(l) => {
                            self.poll.registry().register(l, token, Interest::READABLE)
                        }
                    };
                    if let Err(e) = registered {
                        warn!("cannot watch a control-plane listener: {e}");
                        continue;
                    }
                    self.listeners.insert(
                        token,
                        ListenerState {
                            sock,
                            service,
                            open: 0,
                            paused_until: None,
                            backoff: BACKOFF_MIN,
                            last_warn: None,
                        },
                    );
                    // Clients may have queued before it was watched.
                    self.accept_all(token);
                }
                Ctl::Unlisten(token) => {
                    if let Some(mut l) = self.listeners.remove(&token) {
                        let _ = match &mut l.sock {
                            MioListener::Unix(s) => self.poll.registry().deregister(s),
                            MioListener::Tcp(s) => self.poll.registry().deregister(s),
                        };
                    }
                }
            }
        }
    }

    /// Accepts until the backlog is empty, the listener is paused, or accept fails.
    fn accept_all(&mut self, token: Token) {
        loop {
            let now = Instant::now();
            let Some(l) = self.listeners.get_mut(&token) else {
                return;
            };
            if l.paused_until.is_some() {
                return;
            }
            let stream = match l.sock.accept() {
                Ok(s) => {
                    l.backoff = BACKOFF_MIN;
                    s
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    // EMFILE and friends: retrying now would fail again, and again.
                    let resume = now + l.backoff;
                    if l.may_warn(now) {
                        warn!(
                            "control-plane accept failed ({e}); not accepting for {:?}",
                            l.backoff
                        );
                    }
                    l.paused_until = Some(resume);
                    l.backoff = (l.backoff * 2).min(BACKOFF_MAX);
                    self.wake_by(resume);
                    return;
                }
            };
            let max = l.max_conns(&self.limits);
            if l.open >= max {
                if l.may_warn(now) {
                    warn!("control-plane socket at its limit of {max} connections: refusing");
                }
                refuse(stream, &l.service, max);
                continue;
            }
            l.open += 1;
            let kind = match &l.service {
                Service::Mgmt(h) => Kind::Mgmt {
                    handler: h.clone(),
                    requested: false,
                    scanned: 0,
                },
                Service::OpenFlow { switch, bridge } => Kind::Of {
                    session: Some(Box::new(Session::new(switch.clone(), bridge.clone()))),
                    wants_tick: false,
                    partial_since: None,
                    probe_sent: None,
                },
            };
            let greeting = matches!(kind, Kind::Of { .. }).then(Session::greeting);
            let id = Token(self.ids.fetch_add(1, Ordering::Relaxed));
            let mut c = Conn::new(stream, token, kind, now);
            if let Some(hello) = greeting {
                c.queue(&hello);
            }
            if let Err(e) = self.poll.registry().register(
                &mut c.stream,
                id,
                Interest::READABLE | Interest::WRITABLE,
            ) {
                debug!("cannot watch a control-plane connection: {e}");
                if let Some(l) = self.listeners.get_mut(&token) {
                    l.open -= 1;
                }
                continue;
            }
            self.conns.insert(id, c);
            self.wake_by(now + self.limits.idle_timeout);
            self.progress(id);
        }
    }

    /// Moves a connection along: reads what it may, hands complete input to a worker, writes,
    /// and closes it when it is done.
    fn progress(&mut self, token: Token) {
        let now = Instant::now();
        let max_request = self.limits.mgmt_max_request;
        let budget = self.limits.mgmt_budget();
        let Some(c) = self.conns.get_mut(&token) else {
            return;
        };
        // Read.
        let limit = match &c.kind {
            Kind::Mgmt { requested, .. } if *requested || c.closing => 0,
            // One byte more than allowed tells an over-long request from a maximal one.
            Kind::Mgmt { .. } => max_request.saturating_add(1),
            Kind::Of { .. } if c.closing => 0,
            Kind::Of { .. } => limits::OF_INPUT_MAX,
        };
        let before = c.inbuf.len();
        if limit > 0
            && let ReadEnd::Broken = c.read_into_buffer(limit, now)
        {
            return self.close(token);
        }
        let grew = c.inbuf.len() - before;
        // Hand input to a worker.
        let unsent = c.unsent();
        let (has_input, eof) = (!c.inbuf.is_empty(), c.eof);
        if !c.busy {
            match &mut c.kind {
                Kind::Mgmt {
                    handler,
                    requested,
                    scanned,
                } if !*requested && !c.closing => {
                    self.mgmt_buffered += grew;
                    let newline = c.inbuf[*scanned..].iter().position(|&b| b == b'\n');
                    *scanned = c.inbuf.len();
                    if newline.is_some() || (c.eof && !c.inbuf.is_empty()) {
                        let line = std::mem::take(&mut c.inbuf);
                        self.mgmt_buffered -= line.len();
                        *requested = true;
                        c.busy = true;
                        self.pool.submit(Job {
                            token,
                            work: Work::Mgmt {
                                line,
                                handler: handler.clone(),
                            },
                        });
                    } else if c.inbuf.len() > max_request {
                        c.queue(&crate::mgmt::error_reply(&format!(
                            "request longer than {max_request} bytes (--mgmt-max-request-bytes)"
                        )));
                        c.closing = true;
                    } else if self.mgmt_buffered > budget {
                        c.queue(&crate::mgmt::error_reply(&format!(
                            "management requests in flight exceed {budget} bytes; try again"
                        )));
                        c.closing = true;
                    } else if c.eof {
                        c.closing = true;
                    }
                    if c.closing {
                        self.mgmt_buffered -= c.inbuf.len();
                        c.inbuf = Vec::new();
                    }
                }
                Kind::Mgmt { .. } => {}
                Kind::Of {
                    session,
                    probe_sent,
                    ..
                } => {
                    if grew > 0 {
                        *probe_sent = None;
                    }
                    if unsent < limits::OUTPUT_HIGH
                        && let Some(s) = session.take_if(|_| has_input || eof)
                    {
                        c.busy = true;
                        let work = if c.inbuf.is_empty() {
                            c.closing = true;
                            Work::OfClose { session: s }
                        } else {
                            Work::OfInput {
                                session: s,
                                bytes: std::mem::take(&mut c.inbuf),
                            }
                        };
                        // A closing session's job reports nothing back.
                        if matches!(work, Work::OfClose { .. }) {
                            c.busy = false;
                        }
                        self.pool.submit(Job { token, work });
                    }
                }
            }
        }
        // Write, and close when done.
        if !c.flush(now) {
            return self.close(token);
        }
        if c.closing && !c.busy && c.unsent() == 0 {
            self.close(token);
        }
    }

    fn take_done(&mut self) {
        while let Ok((token, done)) = self.done_rx.try_recv() {
            let Some(c) = self.conns.get_mut(&token) else {
                continue;
            };
            c.busy = false;
            match done {
                Done::Mgmt { reply } => {
                    c.queue(&reply);
                    c.closing = true;
                }
                Done::Of {
                    session: s,
                    out,
                    open,
                    partial,
                    progressed,
                } => {
                    c.queue(&out);
                    if let Kind::Of {
                        session,
                        wants_tick,
                        partial_since,
                        ..
                    } = &mut c.kind
                    {
                        *wants_tick = s.wants_tick();
                        if !partial {
                            *partial_since = None;
                        } else if progressed || partial_since.is_none() {
                            *partial_since = Some(Instant::now());
                        }
                        if *wants_tick {
                            self.next_sweep =
                                Some(self.next_sweep.map_or(Instant::now() + IDLE_PUBLISH, |t| {
                                    t.min(Instant::now() + IDLE_PUBLISH)
                                }));
                        }
                        if open {
                            *session = Some(s);
                        } else {
                            c.closing = true;
                            self.pool.submit(Job {
                                token,
                                work: Work::OfClose { session: s },
                            });
                        }
                    }
                }
                Done::Failed => c.closing = true,
            }
            self.progress(token);
        }
    }

    /// Enforces the timeouts, resumes paused listeners and runs the sessions' ticks; sets when
    /// to look again.
    fn sweep(&mut self) {
        let now = Instant::now();
        let idle = self.limits.idle_timeout;
        let mut next: Option<Instant> = None;
        let mut at = |t: Instant| next = Some(next.map_or(t, |n: Instant| n.min(t)));
        let mut resume = Vec::new();
        for (token, l) in &mut self.listeners {
            match l.paused_until {
                Some(t) if t <= now => {
                    l.paused_until = None;
                    resume.push(*token);
                }
                Some(t) => at(t),
                None => {}
            }
        }
        let mut expired = Vec::new();
        let mut touched = Vec::new();
        for (&token, c) in &mut self.conns {
            if c.busy {
                continue;
            }
            let unsent = c.unsent();
            let mut probe = false;
            // A client that reads none of its replies.
            if c.unsent() > 0 {
                if now - c.last_write >= idle {
                    expired.push(token);
                    continue;
                }
                at(c.last_write + idle);
            }
            match &mut c.kind {
                Kind::Mgmt { requested, .. } => {
                    if !*requested && !c.closing {
                        if now - c.accepted >= idle {
                            c.queue(&crate::mgmt::error_reply(&format!(
                                "no complete request within {}s (--ctl-idle-timeout)",
                                idle.as_secs()
                            )));
                            c.closing = true;
                            touched.push(token);
                        } else {
                            at(c.accepted + idle);
                        }
                    }
                }
                Kind::Of {
                    session,
                    wants_tick,
                    partial_since,
                    probe_sent,
                } => {
                    if c.closing {
                        continue;
                    }
                    if let Some(t) = *partial_since {
                        if now - t >= idle {
                            debug!("closing an OpenFlow connection: message unfinished");
                            expired.push(token);
                            continue;
                        }
                        at(t + idle);
                    }
                    match *probe_sent {
                        Some(t) if now - t >= idle => {
                            debug!("closing an OpenFlow connection: no echo reply");
                            expired.push(token);
                            continue;
                        }
                        Some(t) => at(t + idle),
                        None if now - c.last_read >= idle => {
                            probe = true;
                            *probe_sent = Some(now);
                            touched.push(token);
                            at(now + idle);
                        }
                        None => at(c.last_read + idle),
                    }
                    if *wants_tick && unsent < limits::OUTPUT_HIGH {
                        if let Some(s) = session.take() {
                            c.busy = true;
                            let quiet = now - c.last_read >= IDLE_PUBLISH;
                            self.pool.submit(Job {
                                token,
                                work: Work::OfTick { session: s, quiet },
                            });
                        }
                        at(now + IDLE_PUBLISH);
                    }
                }
            }
            if probe
                && let Ok(echo) = openflow::encode(&openflow::Message::EchoRequest(Vec::new()), 0)
            {
                c.queue(&echo);
            }
        }
        self.next_sweep = next;
        for token in expired {
            self.close(token);
        }
        for token in touched {
            self.progress(token);
        }
        for token in resume {
            self.accept_all(token);
        }
    }

    /// Makes sure the loop looks at the timers by `t`.
    fn wake_by(&mut self, t: Instant) {
        self.next_sweep = Some(self.next_sweep.map_or(t, |n| n.min(t)));
    }

    fn close(&mut self, token: Token) {
        let Some(mut c) = self.conns.remove(&token) else {
            return;
        };
        let _ = self.poll.registry().deregister(&mut c.stream);
        if let Some(l) = self.listeners.get_mut(&c.listener) {
            l.open = l.open.saturating_sub(1);
        } else {
            // Its listener is gone (bridge deleted): nothing to count.
        }
        match c.kind {
            Kind::Mgmt { requested, .. } if !requested => {
                self.mgmt_buffered -= c.inbuf.len();
            }
            Kind::Of {
                session: Some(s), ..
            } => self.pool.submit(Job {
                token,
                work: Work::OfClose { session: s },
            }),
            _ => {}
        }
    }
}

/// Turns away a client beyond the connection cap (management clients learn why).
fn refuse(mut stream: Stream, service: &Service, max: usize) {
    if let Service::Mgmt(_) = service {
        let reply = crate::mgmt::error_reply(&format!(
            "vswitchd is serving its limit of {max} management connections (--mgmt-max-conns)"
        ));
        let _ = std::io::Write::write(&mut stream, &reply);
    }
}

/// Logs once that the server is up.
pub fn log_limits(limits: &Limits) {
    info!(
        mgmt_max_conns = limits.mgmt_max_conns,
        of_max_conns = limits.of_max_conns,
        mgmt_max_request = limits.mgmt_max_request,
        idle_timeout_s = limits.idle_timeout.as_secs(),
        workers = limits.workers,
        "control plane limits"
    );
}
