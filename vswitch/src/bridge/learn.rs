//! The control side of `learn` and `fin_timeout`: requests the datapath queues (see
//! `datapath::actions::LearnRequest`) applied to the bridge's tables like any flow-mod.

use std::time::Instant;

use flowtable::flow::FlowModCommand;
use flowtable::{FlowMod, Match};

use super::{BridgeCtl, Commit};

impl BridgeCtl {
    /// Installs the flow a `learn` built, or refreshes it when an identical flow (same
    /// match, priority, cookie, timeouts, flags and actions) is there already: then only its
    /// hard timeout restarts and nothing is published (Open vSwitch's
    /// `ofproto_flow_mod_learn`). Otherwise the flow is added, replacing a flow with the same
    /// match and priority. With `limit` (`learn(limit=N)`), a new flow is not added while the
    /// table holds `limit` flows with its cookie (the datapath checked too, on the snapshot
    /// it had; this settles a race between two packets). Returns whether the tables changed.
    pub fn apply_learned(&mut self, fm: &FlowMod, limit: u32) -> Result<bool, String> {
        let now = Instant::now();
        if let Some(e) = self.tables.get(fm.table_id, &fm.match_, fm.priority)
            && e.is_learned_as(fm)
        {
            self.tables
                .refresh(fm.table_id, &fm.match_, fm.priority, now);
            return Ok(false);
        }
        if limit != 0 && self.tables.count_cookie(fm.table_id, fm.cookie) >= limit as usize {
            tracing::debug!(bridge = %self.name, cookie = fm.cookie, limit, "learn limit reached");
            return Ok(false);
        }
        let add = FlowMod {
            command: FlowModCommand::Add,
            ..fm.clone()
        };
        self.transaction(Commit::Atomic, |tx| tx.learned_flow_mod(&add))
            .map_err(|e| e.to_string())?;
        Ok(true)
    }

    /// `fin_timeout` saw a FIN or RST on the flow (table, match, priority): lowers its
    /// timeouts (no publish: the datapath does not read them).
    pub fn apply_fin_timeout(
        &mut self,
        table: u8,
        m: &Match,
        priority: u16,
        idle: u16,
        hard: u16,
    ) -> bool {
        self.tables.reduce_timeouts(table, m, priority, idle, hard)
    }
}
