//! The connection table handed to another process: NAT bindings, TCP state, marks and the
//! time left survive a snapshot, a JSON round trip and a restore into a fresh table.

use conntrack::snapshot::SavedConn;
use conntrack::tcp::{TCP_ACK, TCP_SYN};
use conntrack::*;
use encap::flowkey::{CT_DNAT, CT_EST, CT_RPL, CT_SNAT, CT_TRK};
mod common;

use common::*;

fn table(seed: u64) -> Conntrack {
    table_with(16, seed)
}

/// A `ct_label` with bits in both 64-bit halves.
const LABEL: u128 = 0x8000_0000_0000_0001_0000_0000_0000_00ff;

/// An established Service connection (DNAT to a backend, mark 7, label [`LABEL`]) in zone 1.
fn established_service_connection(ct: &mut Conntrack, now: u64) {
    let spec =
        NatSpec::dnat(NatRange::new(addr("172.16.1.5"), addr("172.16.1.5"), 8080, 8080).unwrap());
    let act = CtAction {
        zone: 1,
        commit: true,
        nat: Some(&spec),
        mark: Some((7, u32::MAX)),
        label: Some((LABEL, u128::MAX)),
        ..CtAction::default()
    };
    let syn = tcp("172.16.1.2", 40000, "10.247.0.10", 80, TCP_SYN);
    ct.process(&syn, &seg(1, 0), &act, now);
    let plain = NatSpec::default();
    let un = CtAction {
        zone: 1,
        nat: Some(&plain),
        ..CtAction::default()
    };
    let synack = tcp("172.16.1.5", 8080, "172.16.1.2", 40000, TCP_SYN | TCP_ACK);
    ct.process(&synack, &seg(500, 2), &un, now);
    let ack = tcp("172.16.1.2", 40000, "10.247.0.10", 80, TCP_ACK);
    let r = ct.process(&ack, &seg(2, 501), &un, now);
    assert_eq!(r.ct_state, CT_TRK | CT_EST | CT_DNAT);
}

#[test]
fn a_restored_table_keeps_nat_state_mark_and_time_left() {
    let mut old = table(1);
    established_service_connection(&mut old, 100 * SEC);
    let saved = old.snapshot(130 * SEC);
    assert_eq!(saved.len(), 1);
    let text = serde_json::to_string(&saved).unwrap();
    let back: Vec<SavedConn> = serde_json::from_str(&text).unwrap();
    assert_eq!(back, saved);
    // The state file is read through serde_json::Value, whose numbers stop at 64 bits.
    let via_value: Vec<SavedConn> =
        serde_json::from_value(serde_json::from_str::<serde_json::Value>(&text).unwrap()).unwrap();
    assert_eq!(via_value, saved);

    // Another process: another hash seed, another clock.
    let mut new = table(2);
    let r = new.restore(&back, 5 * SEC);
    assert_eq!((r.restored, r.skipped), (1, 0));
    assert_eq!(dump_lines(&new, 5 * SEC), dump_lines(&old, 130 * SEC));

    // The backend's next segment is un-NATed as before, established, with the mark.
    let plain = NatSpec::default();
    let un = CtAction {
        zone: 1,
        nat: Some(&plain),
        ..CtAction::default()
    };
    let data = tcp("172.16.1.5", 8080, "172.16.1.2", 40000, TCP_ACK);
    let r = new.process(&data, &seg(501, 2), &un, 6 * SEC);
    assert_eq!(r.ct_state, CT_TRK | CT_EST | CT_RPL | CT_SNAT);
    assert_eq!(r.ct_mark, 7);
    assert_eq!(r.ct_label, LABEL);
    let rw = r.rewrite.unwrap();
    assert_eq!((rw.src, rw.sport), (addr("10.247.0.10"), 80));

    // The time left carried over: established connections idle for the whole timeout expire
    // then, not earlier.
    let est = Timeouts::default().get(TimeoutClass::TcpEstablished);
    let est_ns = u64::try_from(est.as_nanos()).unwrap();
    assert_eq!(new.expire(6 * SEC + est_ns - 1, 100), 0);
    assert_eq!(new.expire(6 * SEC + est_ns + 1, 100), 1);
}

#[test]
fn clashing_or_overflowing_entries_are_skipped() {
    let mut old = table(1);
    established_service_connection(&mut old, 0);
    let saved = old.snapshot(0);
    let mut new = table(3);
    established_service_connection(&mut new, 0);
    let r = new.restore(&saved, 0);
    assert_eq!((r.restored, r.skipped), (0, 1));

    let mut tiny = Conntrack::new(Config {
        max_conns: 1,
        hash_seed: Some(4),
        ..Config::default()
    })
    .unwrap();
    let mut two = saved.clone();
    two.extend(saved.iter().copied());
    let r = tiny.restore(&two, 0);
    assert_eq!((r.restored, r.skipped), (1, 1));
    assert_eq!(tiny.len(), 1);
}

#[test]
fn expired_connections_are_not_saved() {
    let mut old = table(1);
    established_service_connection(&mut old, 0);
    assert!(old.snapshot(1_000_000 * SEC).is_empty());
}

#[test]
fn a_checkpoint_relearns_tcp_windows_that_moved_on_since() {
    let mut old = table(1);
    established_service_connection(&mut old, 0);
    let saved = old.snapshot(SEC);
    let plain = NatSpec::default();
    let un = CtAction {
        zone: 1,
        nat: Some(&plain),
        ..CtAction::default()
    };
    // Megabytes later (the checkpoint is seconds old): far beyond the saved windows.
    let far = 2 + 50_000_000;
    let data = tcp("172.16.1.2", 40000, "10.247.0.10", 80, TCP_ACK);
    let reply = tcp("172.16.1.5", 8080, "172.16.1.2", 40000, TCP_ACK);

    // A handover is exact: such a segment is out of window.
    let mut exact = table(2);
    exact.restore(&saved, 0);
    let r = exact.process(&data, &seg(far, 501 + 9_000_000), &un, SEC);
    assert_eq!(r.ct_state & CT_EST, 0, "{:#x}", r.ct_state);

    // A checkpoint relearns: both directions continue established, still un-NATed.
    let mut ck = table(3);
    let r = ck.restore_checkpoint(&saved, 0, 3 * SEC);
    assert_eq!((r.restored, r.skipped), (1, 0));
    let r = ck.process(&data, &seg(far, 501 + 9_000_000), &un, SEC);
    assert_eq!(r.ct_state, CT_TRK | CT_EST | CT_DNAT, "{:#x}", r.ct_state);
    let r = ck.process(&reply, &seg(501 + 9_000_000, far + 100), &un, SEC);
    assert_eq!(r.ct_state, CT_TRK | CT_EST | CT_RPL | CT_SNAT);
    assert_eq!(r.ct_mark, 7);
    // And the windows are tracked again from there on.
    let r = ck.process(
        &data,
        &seg(far.wrapping_add(1 << 30), 501 + 9_000_000),
        &un,
        SEC,
    );
    assert_eq!(r.ct_state & CT_EST, 0, "{:#x}", r.ct_state);
}

#[test]
fn a_reset_connection_is_saved_as_ended() {
    let mut ct = table(1);
    established_service_connection(&mut ct, 0);
    let saved = ct.snapshot(SEC);
    assert_eq!(saved.len(), 1);
    assert!(
        !saved[0].tcp_ended(),
        "an established connection has not ended"
    );
    let plain = NatSpec::default();
    let un = CtAction {
        zone: 1,
        nat: Some(&plain),
        ..CtAction::default()
    };
    let rst = tcp(
        "172.16.1.2",
        40000,
        "10.247.0.10",
        80,
        conntrack::tcp::TCP_RST | TCP_ACK,
    );
    ct.process(&rst, &seg(2, 501), &un, SEC);
    let saved = ct.snapshot(2 * SEC);
    assert_eq!(saved.len(), 1, "a reset connection waits out its timeout");
    assert!(saved[0].tcp_ended());
}

/// An established TCP connection 10.0.0.1:`sport` → 10.0.0.2:80 (zone 0, no NAT) at `now`.
fn established(ct: &mut Conntrack, sport: u16, now: u64) {
    let (c, s) = ("10.0.0.1", "10.0.0.2");
    ct.process(&tcp(c, sport, s, 80, TCP_SYN), &seg(1, 0), &commit(0), now);
    let synack = tcp(s, 80, c, sport, TCP_SYN | TCP_ACK);
    ct.process(&synack, &seg(500, 2), &commit(0), now);
    let r = ct.process(
        &tcp(c, sport, s, 80, TCP_ACK),
        &seg(2, 501),
        &commit(0),
        now,
    );
    assert_eq!(r.ct_state, CT_TRK | CT_EST);
}

#[test]
fn restored_connections_expire_in_order_whatever_the_snapshot_order() {
    // The expiry lists are sorted by deadline and `expire` stops at the first head not yet
    // due: restored connections must be linked in deadline order, not in the snapshot's.
    let est = u64::try_from(Timeouts::default().tcp_established.as_nanos()).unwrap();
    let mut old = table(1);
    established(&mut old, 1000, 0); // expires at `est`
    established(&mut old, 2000, est - 3600 * SEC - 10 * SEC); // 23 h later
    let mut saved = old.snapshot(est - 10 * SEC); // 10 s and 23 h left
    assert_eq!(saved.len(), 2);
    // The long-lived one first (snapshots follow slab slots, which get reused in any order).
    saved.sort_by_key(|s| s.orig().sport != 2000);
    let mut new = table(2);
    let r = new.restore(&saved, 0);
    assert_eq!((r.restored, r.skipped), (2, 0));
    // 20 s later the one that had 10 s left is reaped, the other (23 h left) stays.
    assert_eq!(new.expire(20 * SEC, 100), 1);
    let left: Vec<u16> = new.dump(20 * SEC).map(|e| e.orig.sport).collect();
    assert_eq!(left, [2000]);
    assert_eq!(new.expire(23 * 3600 * SEC - 20 * SEC, 100), 0);
    assert_eq!(new.expire(23 * 3600 * SEC, 100), 1);
    assert!(new.is_empty());

    // Restored into a table that already has connections of the class: each goes to its
    // place among them too.
    let mut busy = table(3);
    established(&mut busy, 3000, 0); // expires at `est`
    let r = busy.restore(&saved, est - 3600 * SEC); // 10 s and 23 h left
    assert_eq!((r.restored, r.skipped), (2, 0));
    assert_eq!(busy.expire(est - 3600 * SEC + 20 * SEC, 100), 1);
    assert_eq!(busy.expire(est + SEC, 100), 1, "the one of the table's own");
    assert_eq!(busy.len(), 1);
}
