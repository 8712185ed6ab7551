//! Watching the switch from outside: `vswitchd --metrics-address` serves Prometheus metrics
//! at `/metrics` and readiness at `/healthz` on a thread of its own (never a forwarding
//! thread). Metrics are gathered at scrape time from the counters the datapath already keeps
//! (`gather`), so a scrape costs the forwarding threads nothing but one conntrack lock.
//! The metric names and labels are listed in `docs/operations.md`.

pub mod families;
pub mod gather;
pub mod http;
