//! Conformance against the 411 OpenFlow messages recorded between ovs-ofctl 3.1 and
//! ovs-vswitchd 3.1 (openflow/tests/data/of13_messages.tsv): all decode and 271 of those
//! re-encode to the same bytes; the other 140 are ovs-vswitchd's version-6 HELLOs (decoded
//! only: we never send one).

use openflow::{ErrorCode, Match, Message, OfError, decode, encode, error_reply};

struct Recorded {
    source: String,
    dir: String,
    name: String,
    bytes: Vec<u8>,
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex"))
        .collect()
}

fn recorded() -> Vec<Recorded> {
    let text = include_str!("data/of13_messages.tsv");
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let mut it = l.split('\t');
            let (source, dir, name, hex) = (it.next(), it.next(), it.next(), it.next());
            Recorded {
                source: source.expect("source").to_string(),
                dir: dir.expect("dir").to_string(),
                name: name.expect("name").to_string(),
                bytes: unhex(hex.expect("hex")),
            }
        })
        .collect()
}

/// Vectors this codec refuses by design (none since `bundle` is executed).
fn expected_refusal(_r: &Recorded) -> Option<ErrorCode> {
    None
}

#[test]
fn recorded_messages_decode_and_reencode_identically() {
    let all = recorded();
    // Exact counts, so that docs/openflow.md's figures are the ones checked here.
    assert_eq!(all.len(), 411, "test data changed: {} messages", all.len());
    let (mut decoded, mut refused, mut decode_only, mut reencoded) = (0, 0, 0, 0);
    for r in &all {
        let res = decode(&r.bytes);
        if let Some(code) = expected_refusal(r) {
            let e = res.expect_err(&format!("{} {} should be refused", r.source, r.name));
            assert_eq!(e.code, code, "{} {}: {e}", r.source, r.name);
            refused += 1;
            continue;
        }
        let (h, msg) = res.unwrap_or_else(|e| panic!("{} {} {}: {e}", r.source, r.dir, r.name));
        decoded += 1;
        // ovs-vswitchd answers HELLO with a bare version-6 HELLO; we only ever send 1.3.
        if matches!(msg, Message::Hello(_)) && h.version != 4 {
            decode_only += 1;
            continue;
        }
        let again = encode(&msg, h.xid).expect("encode");
        assert_eq!(
            hex(&again),
            hex(&r.bytes),
            "{} {} {}: re-encode differs",
            r.source,
            r.dir,
            r.name
        );
        reencoded += 1;
    }
    assert_eq!(
        (decoded, refused, decode_only, reencoded),
        (411, 0, 140, 271),
        "(decoded, refused, decoded only, re-encoded identically)"
    );
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn matches_in(msg: &Message) -> Vec<Match> {
    use openflow::{MultipartReply, MultipartRequest};
    match msg {
        Message::FlowMod(f) => vec![f.match_.clone()],
        Message::MultipartReply {
            body: MultipartReply::Flow(list),
            ..
        } => list.iter().map(|f| f.match_.clone()).collect(),
        Message::MultipartRequest {
            body: MultipartRequest::Flow(f) | MultipartRequest::Aggregate(f),
            ..
        } => {
            vec![f.match_.clone()]
        }
        Message::BundleAdd(b) => matches_in(&b.inner),
        _ => Vec::new(),
    }
}

/// The switch builds flow-stats matches from FlowKey value+mask; they must come out in the
/// same field order and form that ovs-ofctl and ovs-vswitchd use.
#[test]
fn flowkey_round_trip_reproduces_canonical_match_order() {
    let mut checked = 0;
    for r in recorded() {
        let Ok((_, msg)) = decode(&r.bytes) else {
            continue;
        };
        for m in matches_in(&msg) {
            let (value, mask) = m.to_flow().unwrap_or_else(|e| panic!("{}: {e}", r.source));
            let back = Match::from_flow(&value, &mask);
            assert_eq!(
                back, m,
                "{} {}: canonical re-encoding differs",
                r.source, r.name
            );
            checked += 1;
        }
    }
    assert!(checked > 100, "only {checked} matches checked");
}

/// The recorded OFPT_ERROR for `actions=group:99` is what `error_reply` builds.
#[test]
fn error_reply_matches_recorded_bad_out_group() {
    let all = recorded();
    let find = |name: &str| {
        all.iter()
            .find(|r| r.source == "flow/err-group-missing/of13" && r.name == name)
            .map(|r| r.bytes.clone())
            .expect("vector present")
    };
    let request = find("OFPT_FLOW_MOD");
    let recorded_error = find("OFPT_ERROR");
    let err = OfError::new(ErrorCode::BadActionBadOutGroup, "group 99 does not exist");
    assert_eq!(hex(&error_reply(&request, &err)), hex(&recorded_error));
    let (h, msg) = decode(&recorded_error).expect("decode error");
    assert_eq!(h.xid, 6);
    match msg {
        Message::Error(e) => {
            assert_eq!((e.err_type, e.code), (2, 9));
            assert_eq!(e.data, request);
        }
        other => panic!("not an error: {other:?}"),
    }
}
