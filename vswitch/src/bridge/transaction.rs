//! The one way to change a bridge's tables.
//!
//! A transaction applies flow-mods and group-mods to the tables (each one validates before it
//! changes anything), collects the flows they delete, and ends the same way for every caller:
//! - [`Commit::Atomic`]: changes not yet published are published first, so that a rollback
//!   undoes this batch and nothing else; the first error rolls the tables' journal back and
//!   nothing changes; success publishes at once.
//! - [`Commit::Deferred`]: each change stands on its own (an OpenFlow session answers a refused
//!   one with its error and goes on) and the caller publishes later
//!   ([`BridgeCtl::publish_pending`]), so streaming 100k flow-mods is not 100k publishes.
//!
//! Either way, deleted flows that asked for it (`send_flow_rem`) are reported as FLOW_REMOVED
//! with reason `delete` (`group_delete` for the flows a group deletion took), with their
//! final counters.

use std::sync::Arc;
use std::time::Instant;

use flowtable::flow::FlowModCommand;
use flowtable::group::GroupMod;
use flowtable::meter::MeterMod;
use flowtable::table::{Pipeline as FlowTables, TableError};
use flowtable::{FlowEntry, FlowMod, Instructions};

use super::{BridgeCtl, OFPRR_DELETE, OFPRR_GROUP_DELETE, report_removed};

/// How a transaction ends (see the module comment).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commit {
    Atomic,
    Deferred,
}

/// The changes of one transaction, applied to the tables as they are made.
pub struct Transaction<'a> {
    tables: &'a mut FlowTables,
    now: Instant,
    removed: Vec<FlowEntry>,
    /// Flows deleted with the group they send to (reason `group_delete`).
    group_removed: Vec<FlowEntry>,
    /// Former instructions (with a `delete_learned` learn) of flows replaced or modified.
    replaced_learning: Vec<Arc<Instructions>>,
    /// Deleted flows are not reported as FLOW_REMOVED/`delete` (expiry reports its own reason).
    quiet: bool,
    /// Flow-mods that applied, by command; they count as rolled back if the batch is undone.
    applied: [u64; FlowModCounts::COMMANDS],
    refused: [u64; FlowModCounts::COMMANDS],
}

/// Flow-mods a bridge's tables took, by command and outcome, for metrics.
#[derive(Debug, Default, Clone)]
pub struct FlowModCounts {
    /// `[command][outcome]`, in the order of [`FlowModCounts::COMMAND_NAMES`] and
    /// [`FlowModCounts::OUTCOME_NAMES`].
    pub counts: [[u64; 3]; FlowModCounts::COMMANDS],
}

impl FlowModCounts {
    const COMMANDS: usize = 5;
    pub const COMMAND_NAMES: [&'static str; 5] =
        ["add", "modify", "modify_strict", "delete", "delete_strict"];
    /// Applied; refused (the tables' error, e.g. a bad group); rolled back (applied, then
    /// undone because another change of its all-or-nothing batch was refused).
    pub const OUTCOME_NAMES: [&'static str; 3] = ["applied", "refused", "rolled_back"];

    fn index(c: FlowModCommand) -> usize {
        match c {
            FlowModCommand::Add => 0,
            FlowModCommand::Modify => 1,
            FlowModCommand::ModifyStrict => 2,
            FlowModCommand::Delete => 3,
            FlowModCommand::DeleteStrict => 4,
        }
    }
}

impl Transaction<'_> {
    pub fn flow_mod(&mut self, fm: &FlowMod) -> Result<(), TableError> {
        let c = FlowModCounts::index(fm.command);
        let r = match self.tables.flow_mod(fm, self.now) {
            Ok(r) => r,
            Err(e) => {
                self.refused[c] += 1;
                return Err(e);
            }
        };
        self.applied[c] += 1;
        self.removed.extend(r.removed);
        self.replaced_learning.extend(r.replaced_learning);
        Ok(())
    }

    /// A flow-mod built by a `learn` action (see `FlowTables::flow_mod_learned`).
    pub fn learned_flow_mod(&mut self, fm: &FlowMod) -> Result<(), TableError> {
        let c = FlowModCounts::index(fm.command);
        let r = match self.tables.flow_mod_learned(fm, self.now) {
            Ok(r) => r,
            Err(e) => {
                self.refused[c] += 1;
                return Err(e);
            }
        };
        self.applied[c] += 1;
        self.removed.extend(r.removed);
        self.replaced_learning.extend(r.replaced_learning);
        Ok(())
    }

    pub fn group_mod(&mut self, gm: &GroupMod) -> Result<(), TableError> {
        let removed = self.tables.group_mod(gm)?;
        self.group_removed.extend(removed);
        Ok(())
    }

    /// Applies a meter-mod; a deleted meter's flows go with it.
    pub fn meter_mod(&mut self, mm: &MeterMod) -> Result<(), TableError> {
        let removed = self.tables.meter_mod(mm)?;
        self.removed.extend(removed);
        Ok(())
    }

    /// Sizes table `table` and the journal for `n` more flows (large batches of adds).
    pub fn reserve(&mut self, table: u8, n: usize) {
        self.tables.reserve(table, n);
    }

    /// Replaces every flow and group with `next` (`replace-flows`). Counters move to the new
    /// rules with the same (table, match, priority), as in Open vSwitch.
    pub fn replace_all(&mut self, next: FlowTables) {
        *self.tables = next;
    }

    /// The tables as changed so far.
    pub fn tables(&self) -> &FlowTables {
        self.tables
    }

    /// Leaves deleted flows unreported (the caller reports them with their own reason).
    pub fn quiet(&mut self) {
        self.quiet = true;
    }
}

/// The (cookie, table) of every `learn(..., delete_learned)` of `e`.
fn learned_cookies(e: &FlowEntry) -> impl Iterator<Item = (u64, u8)> + '_ {
    ins_learned_cookies(&e.instructions)
}

fn ins_learned_cookies(ins: &Instructions) -> impl Iterator<Item = (u64, u8)> + '_ {
    ins.actions().filter_map(|a| match a {
        flowtable::Action::Learn(l) if l.delete_learned => Some((l.cookie, l.table)),
        _ => None,
    })
}

/// `delete_learned` (Open vSwitch's learned cookies): when the last flow holding a
/// `learn(..., delete_learned)` with a given cookie and table is gone (deleted, or replaced
/// or modified into one without it), every flow of that table with that cookie goes too (and
/// so on, for learned flows that learn). Returns the flows deleted this way.
fn flush_learned<'a>(
    tables: &mut FlowTables,
    removed: impl Iterator<Item = &'a FlowEntry>,
    replaced: &[Arc<Instructions>],
) -> Vec<FlowEntry> {
    let mut dead: Vec<(u64, u8)> = removed.flat_map(learned_cookies).collect();
    dead.extend(replaced.iter().flat_map(|ins| ins_learned_cookies(ins)));
    // A modify of many learning flows names the same few cookies many times: each is
    // looked for once.
    dead.sort_unstable();
    dead.dedup();
    let mut flushed = Vec::new();
    let now = Instant::now();
    while let Some((cookie, table)) = dead.pop() {
        if tables.any_flow(|e| learned_cookies(e).any(|c| c == (cookie, table))) {
            continue;
        }
        let fm = FlowMod {
            command: FlowModCommand::Delete,
            table_id: table,
            cookie,
            cookie_mask: u64::MAX,
            ..FlowMod::default()
        };
        if let Ok(r) = tables.flow_mod(&fm, now) {
            dead.extend(r.removed.iter().flat_map(learned_cookies));
            flushed.extend(r.removed);
        }
    }
    flushed
}

impl BridgeCtl {
    /// Runs `f` as one transaction on this bridge's tables (see the module comment).
    pub fn transaction<T, E>(
        &mut self,
        commit: Commit,
        f: impl FnOnce(&mut Transaction<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        if commit == Commit::Atomic {
            self.publish_pending();
        }
        let mut tx = Transaction {
            tables: &mut self.tables,
            now: Instant::now(),
            removed: Vec::new(),
            group_removed: Vec::new(),
            replaced_learning: Vec::new(),
            quiet: false,
            applied: [0; FlowModCounts::COMMANDS],
            refused: [0; FlowModCounts::COMMANDS],
        };
        let result = f(&mut tx);
        let (removed, quiet, replaced) = (tx.removed, tx.quiet, tx.replaced_learning);
        let group_removed = tx.group_removed;
        let rolled_back = result.is_err() && commit == Commit::Atomic;
        for (c, counts) in self.flow_mod_counts.counts.iter_mut().enumerate() {
            counts[if rolled_back { 2 } else { 0 }] += tx.applied[c];
            counts[1] += tx.refused[c];
        }
        if rolled_back {
            self.tables.rollback();
            return result;
        }
        let flushed = flush_learned(
            &mut self.tables,
            removed.iter().chain(&group_removed),
            &replaced,
        );
        // Deferred changes that did apply stand, and so do their deletions.
        if !quiet {
            report_removed(self, removed, OFPRR_DELETE);
        }
        self.note_removal_reasons(group_removed.iter(), OFPRR_GROUP_DELETE);
        report_removed(self, group_removed, OFPRR_GROUP_DELETE);
        report_removed(self, flushed, OFPRR_DELETE);
        if commit == Commit::Atomic {
            self.publish();
        }
        result
    }
}
