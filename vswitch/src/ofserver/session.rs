//! One OpenFlow connection: HELLO negotiation, then requests answered strictly in order.
//!
//! Flow-mods are applied to the bridge's tables at once (so errors come back before the next
//! barrier reply) but the datapath snapshot is published lazily: before any other request
//! (a barrier, a dump), when the peer goes quiet (the server's tick,
//! [`IDLE_PUBLISH`]), and while flow-mods keep streaming at most every [`IDLE_PUBLISH`] or
//! four times the last publish's cost, whichever is longer. A publish snapshots every
//! touched table, so publishing per read made `add-flows` of 100 000 lines quadratic.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use flowtable::classifier::ClassifierBuilder;
use flowtable::table::TableError;
use tracing::debug;

use super::stats;
use crate::bridge::{BridgeCtl, Commit, Transaction, dpid};
use crate::pipeline::{FlowStats, Pipeline, RuleRef};
use crate::switch::Switch;
use openflow::convert;
use openflow::error::{ErrorCode, OfError};
use openflow::experimenter::bundle_ctrl;
use openflow::message::{ERROR_DATA_MAX, ErrorMsg};
use openflow::monitor::{
    FlowUpdate, MonitorRequest, event, flags, monitor_replies, monitor_request,
};
use openflow::{
    BundleControl, FeaturesReply, Framer, Hello, Message, MultipartReply, PacketOut, SwitchConfig,
    decode, encode, error_reply, negotiate,
};

/// How stale the datapath may be while flow-mods stream in (also how often the server ticks
/// a session, so a quiet peer's last changes are published this soon).
pub const IDLE_PUBLISH: Duration = Duration::from_millis(100);

/// Offset of the inner message in an ONFT_BUNDLE_ADD_MESSAGE.
const BUNDLE_INNER_OFFSET: usize = 24;

/// A change staged in a bundle, with what its error reply needs.
struct Staged {
    xid: u32,
    raw: Vec<u8>,
    op: Op,
}

/// An open bundle: its staged changes, and whether it was closed (a closed bundle takes no
/// more adds, only a commit or a discard).
#[derive(Default)]
struct Bundle {
    staged: Vec<Staged>,
    closed: bool,
}

enum Op {
    Flow(Box<flowtable::FlowMod>),
    Group(flowtable::group::GroupMod),
    Meter(flowtable::MeterMod),
}

pub struct Session {
    switch: Weak<Switch>,
    bridge: String,
    config: SwitchConfig,
    negotiated: bool,
    /// Tables changed since the last publish.
    dirty: bool,
    last_publish: Instant,
    /// How long the last publish took: streaming publishes are spaced so that they cost at
    /// most a fifth of the time (a publish snapshots every touched table, 100k rules ≈ 40 ms).
    publish_cost: Duration,
    bundles: HashMap<u32, Bundle>,
    /// Flow/group-mods outside bundles, applied together (one lock, one journal pass) before
    /// anything else is answered and at the end of each read.
    pending: Vec<Staged>,
    /// Asynchronous messages for this connection, once it asked for them (SET_CONFIG, a
    /// packet-in format, a controller id, flow monitors): plain one-shot ovs-ofctl commands
    /// never see one.
    packet_ins: Option<crate::events::Subscription>,
    /// The connection fell too far behind its asynchronous messages and lost some it may
    /// not lose (see `crate::events`): it is closed.
    cut_off: bool,
    /// NXT_SET_PACKET_IN_FORMAT: 0 standard OFPT_PACKET_IN, 2 NXT_PACKET_IN2.
    packet_in_format: u32,
    /// NXT_SET_CONTROLLER_ID (0 until set).
    controller_id: u16,
    /// ONF flow monitors this connection asked for (`ovs-ofctl monitor ... watch:`).
    monitors: Vec<MonitorRequest>,
    framer: Framer,
    /// This session in the per-bridge session counters (metrics), until it is dropped.
    counted: super::counters::OpenSession,
}

impl Drop for Session {
    fn drop(&mut self) {
        if !self.monitors.is_empty()
            && let Some(sw) = self.switch.upgrade()
        {
            sw.packet_ins.monitoring(false);
        }
    }
}

/// What handling a read's bytes ended with.
pub struct Step {
    /// `false`: the peer broke the protocol; close after sending `out`.
    pub open: bool,
    /// At least one complete message was handled.
    pub progressed: bool,
}

/// Why a session ends.
enum Close {
    /// The peer misbehaved or went away.
    Done,
}

impl Session {
    pub fn new(switch: Weak<Switch>, bridge: String) -> Session {
        let counted = super::counters::OpenSession::start(&bridge);
        Session {
            switch,
            bridge,
            config: SwitchConfig {
                flags: 0,
                miss_send_len: 0,
            },
            negotiated: false,
            dirty: false,
            last_publish: Instant::now(),
            publish_cost: Duration::ZERO,
            bundles: HashMap::new(),
            pending: Vec::new(),
            packet_ins: None,
            cut_off: false,
            packet_in_format: 0,
            controller_id: 0,
            monitors: Vec::new(),
            framer: Framer::new(),
            counted,
        }
    }

    /// Our HELLO, the first thing a connection gets.
    pub fn greeting() -> Vec<u8> {
        encode(&Message::Hello(Hello::ours()), 0).unwrap_or_default()
    }

    /// Handles the bytes the peer sent: every complete message is answered into `out`, in
    /// order; a trailing partial message waits for more.
    pub fn input(&mut self, bytes: &[u8], out: &mut Vec<u8>) -> Step {
        // Taken out while its messages are handled (they borrow it).
        let mut framer = std::mem::take(&mut self.framer);
        framer.push(bytes);
        let answered_from = out.len();
        let mut step = Step {
            open: true,
            progressed: false,
        };
        loop {
            let raw = match framer.next_message() {
                Ok(Some(m)) => m,
                Ok(None) => break,
                Err(e) => {
                    debug!("closing OpenFlow session: {e}");
                    step.open = false;
                    break;
                }
            };
            step.progressed = true;
            if let Err(Close::Done) = self.handle(raw, out) {
                step.open = false;
                break;
            }
        }
        self.framer = framer;
        self.flush_pending(out);
        if self.last_publish.elapsed() >= IDLE_PUBLISH.max(self.publish_cost * 4) {
            self.publish_if_dirty();
        }
        self.drain_packet_ins(out);
        for _ in 0..error_replies(out.get(answered_from..).unwrap_or_default()) {
            self.counted.error_sent();
        }
        if self.cut_off {
            step.open = false;
        }
        step
    }

    /// Called every [`IDLE_PUBLISH`] while [`Session::wants_tick`]: publishes once the peer
    /// is `quiet` (or the streaming interval passed) and delivers asynchronous messages.
    pub fn tick(&mut self, quiet: bool, out: &mut Vec<u8>) {
        if quiet || self.last_publish.elapsed() >= IDLE_PUBLISH.max(self.publish_cost * 4) {
            self.publish_if_dirty();
        }
        self.drain_packet_ins(out);
    }

    /// The session has unpublished changes or asked for asynchronous messages.
    pub fn wants_tick(&self) -> bool {
        self.dirty || self.packet_ins.is_some()
    }

    /// Part of a message is waiting for the rest.
    pub fn partial(&self) -> bool {
        self.framer.buffered() > 0
    }

    /// The connection is closed: publish what it changed.
    pub fn finish(&mut self) {
        self.publish_if_dirty();
    }

    fn handle(&mut self, raw: &[u8], out: &mut Vec<u8>) -> Result<(), Close> {
        let (h, msg) = match decode(raw) {
            Ok(x) => x,
            Err(e) => {
                debug!("bad OpenFlow request: {e}");
                self.flush_pending(out);
                out.extend(error_reply(raw, &e));
                // Before negotiation nothing can be trusted: close, as the spec asks.
                return if self.negotiated {
                    Ok(())
                } else {
                    Err(Close::Done)
                };
            }
        };
        let xid = h.xid;
        if let Message::Hello(hello) = &msg {
            return match negotiate(h.version, hello) {
                Ok(_) => {
                    self.negotiated = true;
                    Ok(())
                }
                Err(e) => {
                    out.extend(error_reply(raw, &e));
                    Err(Close::Done)
                }
            };
        }
        if !self.negotiated {
            // Nothing but HELLO before a version is agreed (OpenFlow 1.3 §6.3.1): Open vSwitch
            // answers anything else with HELLO_FAILED and closes, and so does this switch.
            out.extend(error_reply(
                raw,
                &OfError::new(
                    ErrorCode::HelloIncompatible,
                    "expected HELLO before any other message",
                ),
            ));
            return Err(Close::Done);
        }
        if !matches!(
            msg,
            Message::FlowMod(_) | Message::GroupMod(_) | Message::MeterMod(_)
        ) {
            self.flush_pending(out);
            self.publish_if_dirty();
        }
        let result = match msg {
            Message::EchoRequest(data) => self.send(out, &Message::EchoReply(data), xid),
            Message::EchoReply(_) | Message::Error(_) => Ok(()),
            Message::FeaturesRequest => {
                let reply = Message::FeaturesReply(FeaturesReply {
                    datapath_id: dpid(&self.bridge),
                    n_buffers: 0,
                    n_tables: 254,
                    auxiliary_id: 0,
                    capabilities: stats::CAPABILITIES,
                    reserved: 0,
                });
                self.send(out, &reply, xid)
            }
            Message::GetConfigRequest => self.send(out, &Message::GetConfigReply(self.config), xid),
            // Fragments are always handled as OFPC_FRAG_NORMAL: another mode (drop, reassemble,
            // or bits OpenFlow 1.3 does not define) would be stored and reported back undone.
            Message::SetConfig(c) if c.flags != 0 => Err(OfError::new(
                ErrorCode::SwitchConfigBadFlags,
                format!(
                    "config flags {:#06x}: only fragment handling \"normal\" (0) is supported",
                    c.flags
                ),
            )),
            Message::SetConfig(c) => {
                self.config = c;
                self.subscribe_packet_ins();
                Ok(())
            }
            Message::BarrierRequest => self.send(out, &Message::BarrierReply, xid),
            Message::FlowMod(fm) => {
                convert::flow_mod_in(&fm).map(|fm| self.queue(raw, xid, Op::Flow(Box::new(fm))))
            }
            Message::GroupMod(gm) => {
                convert::group_mod_in(&gm).map(|gm| self.queue(raw, xid, Op::Group(gm)))
            }
            Message::MeterMod(mm) => {
                self.queue(raw, xid, Op::Meter(convert::meter_mod_in(&mm)));
                Ok(())
            }
            Message::PacketOut(po) => self.packet_out(&po),
            Message::PortMod(pm) => self.port_mod(&pm),
            // Each request part is answered as it comes: one that says more parts follow would
            // be answered half (Open vSwitch reassembles them; this switch has no buffer).
            Message::MultipartRequest { flags, .. } if flags & openflow::multipart::MORE != 0 => {
                Err(OfError::new(
                    ErrorCode::BadRequestMultipartBufferOverflow,
                    "multipart requests in several parts (OFPMPF_REQ_MORE) are not reassembled",
                ))
            }
            Message::MultipartRequest { body, .. } => match monitor_request(&body) {
                Some(monitors) => monitors.and_then(|m| self.start_monitors(m, out, xid)),
                None => {
                    let replies = self.bridge_do(|b| stats::reply(b, &body))?;
                    replies.and_then(|r| self.send_multipart(out, r, xid))
                }
            },
            Message::BundleControl(bc) => self.bundle_control(xid, out, bc),
            Message::BundleAdd(add) => {
                let inner_raw = raw.get(BUNDLE_INNER_OFFSET..).unwrap_or_default().to_vec();
                let op = match *add.inner {
                    Message::FlowMod(fm) => {
                        convert::flow_mod_in(&fm).map(|f| Op::Flow(Box::new(f)))
                    }
                    Message::GroupMod(gm) => convert::group_mod_in(&gm).map(Op::Group),
                    _ => Err(OfError::new(
                        ErrorCode::BadRequestBadType,
                        "only flow-mods and group-mods can be bundled",
                    )),
                };
                match (op, self.bundles.get_mut(&add.bundle_id)) {
                    (Ok(_), Some(bundle)) if bundle.closed => Err(OfError::new(
                        ErrorCode::BadRequestBadExpType,
                        "bundle is closed: it takes only a commit or a discard",
                    )),
                    (Ok(op), Some(bundle)) => {
                        bundle.staged.push(Staged {
                            xid: add.inner_xid,
                            raw: inner_raw,
                            op,
                        });
                        Ok(())
                    }
                    (Ok(_), None) => Err(OfError::new(
                        ErrorCode::BadRequestBadExpType,
                        "bundle is not open",
                    )),
                    (Err(e), _) => Err(e),
                }
            }
            Message::Experimenter {
                experimenter,
                exp_type,
                ..
            } => Err(Message::unsupported_experimenter(experimenter, exp_type)),
            // Open vSwitch refuses formats it does not know with OFPBRC_EPERM; NXT_PACKET_IN
            // (1) is refused the same way, as this switch does not send it.
            Message::NxSetPacketInFormat(f) if f != PACKET_IN_STD && f != PACKET_IN_NXT2 => {
                Err(OfError::new(
                    ErrorCode::BadRequestEperm,
                    format!(
                        "packet-in format {f}: only standard (0) and nxt_packet_in2 (2) are \
                         supported"
                    ),
                ))
            }
            Message::NxSetPacketInFormat(f) => {
                self.packet_in_format = f;
                self.subscribe_packet_ins();
                Ok(())
            }
            Message::NxSetControllerId(id) => {
                self.controller_id = id;
                self.subscribe_packet_ins();
                if let Some(sub) = &self.packet_ins {
                    sub.set_controller_id(id);
                }
                Ok(())
            }
            Message::NxSetFlowFormat(_) | Message::NxFlowModTableId(_) => Err(OfError::new(
                ErrorCode::BadRequestBadExpType,
                "OpenFlow 1.0 session setting in a 1.3 session",
            )),
            other => Err(OfError::new(
                ErrorCode::BadRequestBadType,
                format!(
                    "message type {} is not a request a switch serves",
                    other.msg_type()
                ),
            )),
        };
        if let Err(e) = result {
            debug!(xid, "OpenFlow request refused: {e}");
            // Replies go out in request order: earlier queued changes answer first.
            self.flush_pending(out);
            out.extend(error_reply(raw, &e));
        }
        Ok(())
    }

    fn queue(&mut self, raw: &[u8], xid: u32, op: Op) {
        self.pending.push(Staged {
            xid,
            raw: raw.to_vec(),
            op,
        });
    }

    /// Applies the queued changes, each on its own (a refused one is answered with its
    /// OFPT_ERROR and the others still apply), under one lock.
    fn flush_pending(&mut self, out: &mut Vec<u8>) {
        if self.pending.is_empty() {
            return;
        }
        let staged = std::mem::take(&mut self.pending);
        match self.bridge_do(|b| apply_each(b, &staged, out)) {
            Ok(()) => self.dirty = true,
            Err(Close::Done) => {
                let gone = OfError::new(ErrorCode::BadRequestEperm, "the bridge no longer exists");
                for s in &staged {
                    out.extend(error_reply(&s.raw, &gone));
                }
            }
        }
        // Keep the allocation for the next batch.
        self.pending = staged;
        self.pending.clear();
    }

    fn send(&self, out: &mut Vec<u8>, msg: &Message, xid: u32) -> Result<(), OfError> {
        out.extend(encode(msg, xid)?);
        Ok(())
    }

    fn send_multipart(
        &self,
        out: &mut Vec<u8>,
        parts: Vec<MultipartReply>,
        xid: u32,
    ) -> Result<(), OfError> {
        let n = parts.len();
        for (i, body) in parts.into_iter().enumerate() {
            let flags = if i + 1 < n {
                openflow::multipart::MORE
            } else {
                0
            };
            self.send(out, &Message::MultipartReply { flags, body }, xid)?;
        }
        Ok(())
    }

    /// Runs `f` on this session's bridge under the switch lock; `Err(Close)` when the
    /// bridge (or the whole switch) is gone, which ends the session.
    fn subscribe_packet_ins(&mut self) {
        if self.packet_ins.is_none()
            && let Some(sw) = self.switch.upgrade()
        {
            let sub = sw.packet_ins.subscribe(&self.bridge);
            sub.set_controller_id(self.controller_id);
            self.packet_ins = Some(sub);
        }
    }

    /// Registers flow monitors, answers with the flows they select now (those with
    /// `INITIAL`), and from then on sends their flows' changes as they happen.
    fn start_monitors(
        &mut self,
        monitors: Vec<MonitorRequest>,
        out: &mut Vec<u8>,
        xid: u32,
    ) -> Result<(), OfError> {
        // Pending changes first: the initial dump shows them, later updates do not repeat them.
        self.publish_if_dirty();
        // Counted as monitoring before the initial dump (no change may fall between the two),
        // and no longer if the request fails or names no monitor: `Drop` only uncounts a
        // session that holds monitors.
        let hub = self.switch.upgrade().map(|sw| sw.packet_ins.clone());
        let starts = self.monitors.is_empty() && !monitors.is_empty();
        if starts && let Some(h) = &hub {
            h.monitoring(true);
        }
        let stop = |hub: &Option<Arc<crate::events::PacketInHub>>| {
            if starts && let Some(h) = hub {
                h.monitoring(false);
            }
        };
        self.subscribe_packet_ins();
        let initial = self
            .bridge_do(|b| {
                let mut ups = Vec::new();
                for e in b.tables().flows() {
                    if let Some(m) = monitors
                        .iter()
                        .find(|m| m.flags & flags::INITIAL != 0 && monitor_selects(m, e))
                    {
                        ups.push(flow_update(
                            event::ADDED,
                            0,
                            e,
                            m.flags & flags::ACTIONS != 0,
                        )?);
                    }
                }
                Ok::<_, OfError>(ups)
            })
            .map_err(|_| OfError::new(ErrorCode::BadRequestEperm, "the bridge no longer exists"))
            .and_then(|r| r)
            .inspect_err(|_| stop(&hub))?;
        self.monitors.extend(monitors);
        self.send_multipart(out, monitor_replies(&initial, MONITOR_BODY_MAX), xid)
    }

    /// Encodes waiting asynchronous messages into `out` (packet-ins in the format the peer
    /// asked for), at most [`DRAIN_MAX`] bytes of them per call: the rest waits in the
    /// compact queue for the next tick rather than in the output buffer. A subscription cut
    /// off for falling behind closes the connection.
    fn drain_packet_ins(&mut self, out: &mut Vec<u8>) {
        let Some(sub) = &self.packet_ins else { return };
        let start = out.len();
        while out.len() - start < DRAIN_MAX
            && let Some(event) = sub.try_recv()
        {
            match event {
                crate::events::AsyncEvent::PacketIn(ev) => {
                    if let Ok(bytes) = encode(&packet_in_message(*ev, self.packet_in_format), 0) {
                        out.extend(bytes);
                    }
                }
                crate::events::AsyncEvent::PortStatus { reason, port } => {
                    let msg = Message::PortStatus(openflow::switch::PortStatus { reason, port });
                    if let Ok(bytes) = encode(&msg, 0) {
                        out.extend(bytes);
                    }
                }
                crate::events::AsyncEvent::FlowUpdate {
                    event: ev,
                    reason,
                    entry,
                } => {
                    let want = match ev {
                        event::ADDED => flags::ADD,
                        event::DELETED => flags::DELETE,
                        _ => flags::MODIFY,
                    };
                    if let Some(m) = self
                        .monitors
                        .iter()
                        .find(|m| m.flags & want != 0 && monitor_selects(m, &entry))
                        && let Ok(update) =
                            flow_update(ev, reason, &entry, m.flags & flags::ACTIONS != 0)
                    {
                        for body in monitor_replies(&[update], MONITOR_BODY_MAX) {
                            let msg = Message::MultipartReply { flags: 0, body };
                            if let Ok(bytes) = encode(&msg, 0) {
                                out.extend(bytes);
                            }
                        }
                    }
                }
                crate::events::AsyncEvent::FlowRemoved(msg) => out.extend_from_slice(&msg),
            }
        }
        if sub.overrun() {
            self.cut_off = true;
        }
    }

    fn bridge_do<R>(&self, f: impl FnOnce(&mut BridgeCtl) -> R) -> Result<R, Close> {
        let switch = self.switch.upgrade().ok_or(Close::Done)?;
        let mut state = switch.lock();
        let b = state.get_mut(&self.bridge).ok_or(Close::Done)?;
        Ok(f(b))
    }

    fn publish_if_dirty(&mut self) {
        if self.dirty {
            self.dirty = false;
            let start = Instant::now();
            let _ = self.bridge_do(BridgeCtl::publish_pending);
            self.last_publish = Instant::now();
            self.publish_cost = self.last_publish - start;
        }
    }

    fn bundle_control(
        &mut self,
        xid: u32,
        out: &mut Vec<u8>,
        bc: BundleControl,
    ) -> Result<(), OfError> {
        let id = bc.bundle_id;
        let bad_id = |what: &str| {
            OfError::new(
                ErrorCode::BadRequestBadExpType,
                format!("bundle {id}: {what}"),
            )
        };
        match bc.ctrl_type {
            bundle_ctrl::OPEN_REQUEST => {
                if self.bundles.contains_key(&id) {
                    return Err(bad_id("already open"));
                }
                self.bundles.insert(id, Bundle::default());
            }
            bundle_ctrl::CLOSE_REQUEST => {
                let bundle = self
                    .bundles
                    .get_mut(&id)
                    .ok_or_else(|| bad_id("not open"))?;
                if std::mem::replace(&mut bundle.closed, true) {
                    return Err(bad_id("already closed"));
                }
            }
            bundle_ctrl::DISCARD_REQUEST => {
                self.bundles.remove(&id).ok_or_else(|| bad_id("not open"))?;
            }
            bundle_ctrl::COMMIT_REQUEST => {
                let staged = self
                    .bundles
                    .remove(&id)
                    .ok_or_else(|| bad_id("not open"))?
                    .staged;
                match self.bridge_do(|b| apply_bundle(b, &staged)) {
                    Err(Close::Done) => {
                        return Err(OfError::new(
                            ErrorCode::BadRequestEperm,
                            "the bridge no longer exists",
                        ));
                    }
                    Ok(Err((i, e))) => {
                        // The failing message's own error, then the commit's.
                        debug!(xid = staged[i].xid, "bundled OpenFlow change refused: {e}");
                        out.extend(table_error(&staged[i], &e));
                        return Err(bad_id("commit failed, nothing was applied"));
                    }
                    Ok(Ok(())) => {}
                }
            }
            other => return Err(bad_id(&format!("control type {other} is not a request"))),
        }
        self.send(out, &Message::BundleControl(bc.reply()), xid)
    }

    /// PACKET_OUT: the packet's walk starts at a one-rule pseudo-table holding the request's
    /// actions (`Pipeline::packet_out`; every table, table 0 included, and group stays the
    /// bridge's), in a pipeline of its own run on the datapath thread, so no other packet
    /// ever sees it.
    fn packet_out(&mut self, po: &PacketOut) -> Result<(), OfError> {
        if po.buffer_id != openflow::flow::NO_BUFFER {
            return Err(OfError::new(
                ErrorCode::BadRequestBufferUnknown,
                "this switch buffers no packets",
            ));
        }
        let actions = convert::actions_in(&po.actions)?;
        flowtable::table::check_controller_actions(actions.iter())
            .map_err(|e| OfError::new(ErrorCode::BadActionBadArgument, e.to_string()))?;
        let frame = po.data.clone();
        let in_port = po.in_port;
        check_packet_out(&actions, &frame, in_port)?;
        let switch = self
            .switch
            .upgrade()
            .ok_or_else(|| OfError::new(ErrorCode::BadRequestEperm, "switch stopped"))?;
        let state = switch.lock();
        let b = state.get(&self.bridge).ok_or_else(|| {
            OfError::new(ErrorCode::BadRequestEperm, "the bridge no longer exists")
        })?;
        for g in actions.iter().flat_map(|a| a.groups()) {
            if b.tables().group(g).is_none() {
                return Err(OfError::new(
                    ErrorCode::BadActionBadOutGroup,
                    format!("group {g} does not exist"),
                ));
            }
        }
        let idx = b.dp_index;
        // output:TABLE alone means "run the bridge's own tables": inject as is.
        if matches!(actions.as_slice(), [flowtable::Action::Output { port, .. }] if *port == flowtable::OfPort::TABLE)
        {
            switch.dp.call(move |dp| dp.inject(idx, in_port, &frame));
            return Ok(());
        }
        // Elsewhere in the list, output:TABLE would run the one-flow table below again.
        if actions
            .iter()
            .any(|a| a.outputs_to(flowtable::OfPort::TABLE))
        {
            return Err(OfError::new(
                ErrorCode::BadActionBadOutPort,
                "output:TABLE in a packet-out is supported only as its one action",
            ));
        }
        // The packet runs through a one-flow pipeline of its own, never published: the
        // forwarding threads keep using the bridge's pipeline meanwhile.
        let once = Arc::new(one_shot_pipeline(&b.pipeline.load_full(), actions));
        switch
            .dp
            .call(move |dp| dp.inject_with(idx, in_port, &frame, once));
        Ok(())
    }
}

impl Session {
    /// OFPT_PORT_MOD: down/up, no-receive, no-forward on every thread's copy of the port.
    /// What a port here cannot do is refused (OFPPMFC_BAD_CONFIG: no-packet-in and the OpenFlow
    /// 1.0 bits; OFPPMFC_BAD_ADVERTISE: features, which these ports do not negotiate).
    fn port_mod(&mut self, pm: &openflow::PortMod) -> Result<(), OfError> {
        use openflow::switch::port_config as pc;
        const SUPPORTED: u32 = pc::PORT_DOWN | pc::NO_RECV | pc::NO_FWD;
        let switch = self
            .switch
            .upgrade()
            .ok_or_else(|| OfError::new(ErrorCode::BadRequestEperm, "switch stopped"))?;
        let mut state = switch.lock();
        let b = state.get_mut(&self.bridge).ok_or_else(|| {
            OfError::new(ErrorCode::BadRequestEperm, "the bridge no longer exists")
        })?;
        let port = b.ports.get_mut(&pm.port_no).ok_or_else(|| {
            OfError::new(
                ErrorCode::PortModBadPort,
                format!("no port {} on this bridge", pm.port_no),
            )
        })?;
        if pm.hw_addr != port.mac {
            return Err(OfError::new(
                ErrorCode::PortModBadHwAddr,
                "hw_addr is not the port's address",
            ));
        }
        if pm.mask & !SUPPORTED != 0 {
            return Err(OfError::new(
                ErrorCode::PortModBadConfig,
                format!(
                    "config bits {:#x}: ports here support PORT_DOWN, NO_RECV and NO_FWD only",
                    pm.mask & !SUPPORTED
                ),
            ));
        }
        if pm.advertise != 0 {
            return Err(OfError::new(
                ErrorCode::PortModBadAdvertise,
                "ports here advertise no features",
            ));
        }
        let config = (port.config & !pm.mask) | (pm.config & pm.mask);
        if config != port.config {
            let liveness_changed = (config ^ port.config) & pc::PORT_DOWN != 0;
            port.config = config;
            let (dp_id, desc) = (port.dp_id, port.desc());
            if liveness_changed {
                // Fast-failover groups and bundles choose by liveness: a new pipeline makes
                // the datapath revalidate what it cached.
                b.publish();
            }
            drop(state);
            switch.dp.set_port_config(dp_id, config);
            switch.packet_ins.send(
                &self.bridge,
                crate::events::AsyncEvent::PortStatus {
                    reason: openflow::switch::port_reason::MODIFY,
                    port: desc,
                },
            );
            // Kept in the state file: the setting outlives a restart.
            switch.mark_changed();
            debug!(port = pm.port_no, config, "port-mod applied");
        }
        Ok(())
    }
}

/// As Open vSwitch's `handle_packet_out`: the actions are checked against the packet's own
/// flow (a `set_field:80->tcp_dst` on a UDP packet is `OFPBAC_MATCH_INCONSISTENT`).
fn check_packet_out(
    actions: &[flowtable::Action],
    frame: &[u8],
    in_port: u32,
) -> Result<(), OfError> {
    let mut key = encap::FlowKey {
        in_port,
        ..encap::FlowKey::default()
    };
    let _ = encap::extract(frame, &mut key);
    let flow = flowtable::Match {
        value: key,
        mask: encap::FlowKey::exact_mask(),
    };
    let ins = flowtable::Instructions::apply(actions.to_vec());
    flowtable::check::check_consistency(&ins, &flow).map_err(|e| {
        let code = match e {
            TableError::BadTag => ErrorCode::BadActionBadTag,
            _ => ErrorCode::BadActionMatchInconsistent,
        };
        OfError::new(code, e.to_string())
    })
}

fn one_shot_pipeline(current: &Pipeline, actions: Vec<flowtable::Action>) -> Pipeline {
    let fm = flowtable::FlowMod {
        instructions: flowtable::Instructions::apply(actions),
        priority: 0,
        ..flowtable::FlowMod::default()
    };
    let entry = flowtable::FlowEntry::from_mod(&fm, Instant::now());
    let mut builder: ClassifierBuilder<Arc<RuleRef>> = ClassifierBuilder::new();
    builder.insert(
        &entry.match_.value,
        &entry.match_.mask,
        0,
        Arc::new(RuleRef::new(entry.clone(), Arc::new(FlowStats::default()))),
    );
    Pipeline {
        // A version no real snapshot has, so cached walks are dropped both ways.
        version: current.version.wrapping_add(1 << 63),
        // The bridge's own tables, table 0 included: a resubmit or a recirculation of the
        // packet's walk meets them, not the packet-out's actions again.
        tables: current.tables.clone(),
        groups: current.groups.clone(),
        meters: current.meters.clone(),
        ports: current.ports.clone(),
        port_order: current.port_order.clone(),
        vlan_roles: current.vlan_roles,
        packet_out: Some(builder.snapshot()),
        table_counts: current.table_counts.clone(),
    }
}

/// Applies a bundle's staged changes: all or nothing, published at once.
fn apply_bundle(b: &mut BridgeCtl, staged: &[Staged]) -> Result<(), (usize, TableError)> {
    b.transaction(Commit::Atomic, |tx| {
        reserve_for_adds(tx, staged);
        for (i, s) in staged.iter().enumerate() {
            apply_op(tx, &s.op).map_err(|e| (i, e))?;
        }
        Ok(())
    })
}

/// Applies one staged change.
fn apply_op(tx: &mut Transaction<'_>, op: &Op) -> Result<(), TableError> {
    match op {
        Op::Flow(fm) => tx.flow_mod(fm),
        Op::Group(gm) => tx.group_mod(gm),
        Op::Meter(mm) => tx.meter_mod(mm),
    }
}

/// Applies staged changes one by one; a refusal is answered into `out` and does not stop
/// the others. Published lazily by the session.
fn apply_each(b: &mut BridgeCtl, staged: &[Staged], out: &mut Vec<u8>) {
    let _ = b.transaction(Commit::Deferred, |tx| {
        reserve_for_adds(tx, staged);
        for s in staged {
            if let Err(e) = apply_op(tx, &s.op) {
                debug!(xid = s.xid, "OpenFlow change refused: {e}");
                out.extend(table_error(s, &e));
            }
        }
        Ok::<(), ()>(())
    });
}

/// Sizes the tables and the journal for a large batch of adds up front.
fn reserve_for_adds(tx: &mut Transaction<'_>, staged: &[Staged]) {
    if staged.len() < 64 {
        return;
    }
    let mut per_table = [0usize; 256];
    for s in staged {
        if let Op::Flow(fm) = &s.op
            && fm.command == flowtable::FlowModCommand::Add
        {
            per_table[usize::from(fm.table_id)] += 1;
        }
    }
    for (t, &n) in per_table.iter().enumerate() {
        if n > 0 {
            tx.reserve(t as u8, n);
        }
    }
}

/// How many OFPT_ERROR messages `out` (whole messages, back to back) holds.
fn error_replies(out: &[u8]) -> usize {
    const OFPT_ERROR: u8 = 1;
    let mut n = 0;
    let mut rest = out;
    while rest.len() >= 8 {
        let len = usize::from(u16::from_be_bytes([rest[2], rest[3]])).max(8);
        n += usize::from(rest[1] == OFPT_ERROR);
        rest = rest.get(len..).unwrap_or_default();
    }
    n
}

/// The OFPT_ERROR for a table refusal: its type/code, the request's xid and bytes.
fn table_error(s: &Staged, e: &TableError) -> Vec<u8> {
    let (err_type, code) = e.ofp_error();
    let data = s.raw[..s.raw.len().min(ERROR_DATA_MAX)].to_vec();
    encode(
        &Message::Error(ErrorMsg {
            err_type,
            code,
            // Nicira-extension errors (NXBAC_*) are experimenter errors of vendor 0x2320.
            experimenter: (err_type == flowtable::table::OFPET_EXPERIMENTER)
                .then_some(openflow::action::NX_VENDOR_ID),
            data,
        }),
        s.xid,
    )
    .unwrap_or_default()
}

/// NXT_SET_PACKET_IN_FORMAT values this switch sends.
const PACKET_IN_STD: u32 = 0;
const PACKET_IN_NXT2: u32 = 2;

/// Bytes of asynchronous messages one drain writes to the output at most.
const DRAIN_MAX: usize = 1 << 20;

/// A packet-in as OFPT_PACKET_IN (OpenFlow 1.3) or NXT_PACKET_IN2, as Open vSwitch encodes
/// them for an OpenFlow 1.3 connection (`ofputil_encode_packet_in_private`): the pipeline
/// fields as match / metadata; the reasons OpenFlow 1.3 lacks (`action_set`, `group`,
/// `packet_out`) as `action`, in both formats (`encode_packet_in_reason`); FULL_LEN only
/// when the packet was cut; USERDATA only when the action has some.
fn packet_in_message(ev: crate::datapath::PacketInEvent, format: u32) -> Message {
    const OFPR_ACTION: u8 = 1;
    const OFPR_INVALID_TTL: u8 = 2;
    let a = &ev.action;
    let fields = openflow::oxm::Match::from_flow(&a.metadata.value, &a.metadata.mask);
    let reason = if a.reason > OFPR_INVALID_TTL {
        OFPR_ACTION
    } else {
        a.reason
    };
    if format == PACKET_IN_NXT2 {
        let cut = ev.frame.len() < ev.total_len as usize;
        Message::NxPacketIn2(openflow::experimenter::PacketIn2 {
            packet: ev.frame,
            full_len: cut.then_some(ev.total_len),
            buffer_id: None,
            table_id: a.table,
            cookie: a.cookie,
            reason,
            metadata: fields.fields,
            userdata: (!a.userdata.is_empty()).then(|| a.userdata.clone()),
        })
    } else {
        Message::PacketIn(openflow::flow::PacketIn {
            buffer_id: u32::MAX,
            total_len: ev.total_len.min(u32::from(u16::MAX)) as u16,
            reason,
            table_id: a.table,
            cookie: a.cookie,
            match_: fields,
            data: ev.frame,
        })
    }
}

/// Bytes of flow updates per flow-monitor reply (an OpenFlow message is at most 64 KiB).
const MONITOR_BODY_MAX: usize = 60 * 1024;

/// Whether a flow monitor covers `e`: its table (0xff: all), its match (the flow's match is
/// at least as specific, as with non-strict flow stats) and its out_port (OFPP_ANY: any).
fn monitor_selects(m: &MonitorRequest, e: &flowtable::FlowEntry) -> bool {
    if m.table_id != 0xff && m.table_id != e.table_id {
        return false;
    }
    if m.out_port != u32::MAX && !e.instructions.outputs_to(flowtable::OfPort(m.out_port)) {
        return false;
    }
    match convert::match_in(&m.match_) {
        Ok(want) => e.match_.is_subset_of(&want),
        Err(_) => false,
    }
}

/// A flow as a flow-monitor update (`ADDED`, `DELETED` with its `OFPRR_*` reason, `MODIFIED`).
fn flow_update(
    ev: u16,
    reason: u8,
    e: &flowtable::FlowEntry,
    actions: bool,
) -> Result<FlowUpdate, OfError> {
    Ok(FlowUpdate {
        event: ev,
        reason: if ev == event::DELETED {
            u16::from(reason)
        } else {
            0
        },
        priority: e.priority,
        idle_timeout: e.idle_timeout,
        hard_timeout: e.hard_timeout,
        table_id: e.table_id,
        cookie: e.cookie,
        match_: openflow::oxm::Match::from_flow(&e.match_.value, &e.match_.mask),
        instructions: if actions {
            convert::instructions_out(&e.instructions)?
        } else {
            Vec::new()
        },
    })
}
