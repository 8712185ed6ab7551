//! The node switch: the datapath, the bridges' control side, the OpenFlow server and client,
//! the node agent and the management socket.
//!
//! Layers, each calling only downwards (see `docs/architecture.md`):
//! - `datapath`: forwarding threads, caches, the slow path (`xlate`), actions, conntrack glue;
//! - `pipeline`: the immutable snapshot a bridge publishes for the datapath;
//! - `bridge`: one bridge's tables and ports, its one `transaction`, publish, expiry;
//! - `switch`: the bridges and their lifecycle; `events`: asynchronous OpenFlow events;
//! - `ofserver` (OpenFlow sessions) and `agent` (node configuration) call the switch;
//! - `command` (the typed management commands), `control` (runs them), `mgmt` (the socket),
//!   `ctlserver` (the bounded event loop serving the sockets),
//!   `daemon` (vswitchd's main loop); `ofclient` is vswitchctl's OpenFlow side;
//! - `views` (typed results of the dump/list commands, `--format json`), `megaflow_text`
//!   (a megaflow in dpctl style), `sd_notify` (readiness for systemd), `heap_huge_pages`
//!   (vswitchd and the benches execute themselves again with THP for the heap);
//! - `trace` explains the slow path.

#![forbid(unsafe_code)]

pub mod agent;
pub mod bridge;
pub mod cli_doc;
pub mod command;
pub mod control;
pub mod ctlserver;
pub mod daemon;
pub mod datapath;
pub mod events;
pub mod heap_huge_pages;
pub mod http_endpoint;
pub mod logging;
pub mod megaflow_text;
pub mod mgmt;
pub mod observe;
pub mod ofclient;
pub mod ofserver;
pub mod persist;
pub mod pipeline;
pub mod port_vlan;
pub mod portspec;
pub mod ratelimit;
pub mod rundir;
pub mod sd_notify;
pub mod switch;
pub mod trace;
pub mod views;
