//! Flow timeouts (OpenFlow 1.3 §6.5): flows whose idle or hard timeout has passed are deleted
//! like any flow-mod, and reported with their real reason.

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use flowtable::flow::FlowModCommand;
use flowtable::{FlowEntry, FlowMod};

use super::{BridgeCtl, Commit, OFPRR_HARD_TIMEOUT, OFPRR_IDLE_TIMEOUT, report_removed};

impl BridgeCtl {
    /// Deletes the flows that timed out by `now` (`dp_now_ns`: the same instant on the
    /// datapath's clock, which stamps each rule's last use). Returns how many went.
    pub fn expire_flows(&mut self, now: Instant, dp_now_ns: u64) -> usize {
        let mut expiring: Vec<(FlowEntry, u8)> = Vec::new();
        // Once a second under the switch lock: only tables holding timed flows are read.
        for e in self.tables.timed_flows() {
            let age = now.duration_since(e.created);
            let hard = e.hard_timeout != 0
                && now.duration_since(e.modified).as_secs() >= e.hard_timeout as u64;
            let idle = e.idle_timeout != 0 && {
                let used = self
                    .flow_stats(e)
                    .map(|s| s.used_ns.load(Relaxed))
                    .unwrap_or(0);
                let idle_for = if used == 0 {
                    age
                } else {
                    Duration::from_nanos(dp_now_ns.saturating_sub(used)).min(age)
                };
                idle_for.as_secs() >= e.idle_timeout as u64
            };
            if hard || idle {
                let reason = if hard {
                    OFPRR_HARD_TIMEOUT
                } else {
                    OFPRR_IDLE_TIMEOUT
                };
                expiring.push((e.clone(), reason));
            }
        }
        if expiring.is_empty() {
            return 0;
        }
        // Changes made before are published (and reported to flow monitors) on their own:
        // the reasons noted below are for these deletes only.
        self.publish_pending();
        for (e, reason) in &expiring {
            report_removed(self, vec![e.clone()], *reason);
            self.note_removal_reasons(std::iter::once(e), *reason);
        }
        // The deletes are not reported again as `delete` FLOW_REMOVED (`quiet`), and flow
        // monitors hear of them with their real reason; the learned flows a
        // `delete_learned` takes with them are reported as any delete.
        let _ = self.transaction(Commit::Atomic, |tx| {
            tx.quiet();
            for (e, _) in &expiring {
                tx.flow_mod(&FlowMod {
                    command: FlowModCommand::DeleteStrict,
                    table_id: e.table_id,
                    priority: e.priority,
                    match_: e.match_,
                    ..FlowMod::default()
                })?;
            }
            Ok::<(), flowtable::table::TableError>(())
        });
        self.removal_reasons.clear();
        expiring.len()
    }
}
