//! `selection_method=hash,fields(..)` on select groups: parsed into `Group::selection`,
//! printed back by `print_group_full`, left out by the OpenFlow 1.3 `print_group`.

use flowtable::FieldId;
use flowtable::group::{GroupModCommand, GroupType, Selection};
use flowtable::text::{ParseError, parse_group, parse_group_mod, print_group, print_group_full};

const BUCKETS: &str = "bucket=actions=output:1,bucket=weight:2,actions=output:2";

#[test]
fn hash_fields_round_trip_through_text() {
    for (input, fields, printed) in [
        (
            format!("group_id=7,type=select,selection_method=hash,fields(ip_src),{BUCKETS}"),
            vec![FieldId::Ipv4Src],
            " group_id=7,type=select,selection_method=hash,fields=ip_src,",
        ),
        (
            format!("group_id=7,type=select,selection_method=hash,fields=nw_src,{BUCKETS}"),
            vec![FieldId::Ipv4Src],
            " group_id=7,type=select,selection_method=hash,fields=ip_src,",
        ),
        (
            format!(
                "group_id=7,type=select,selection_method=hash,fields(ip_src,nw_proto),{BUCKETS}"
            ),
            vec![FieldId::Ipv4Src, FieldId::IpProto],
            " group_id=7,type=select,selection_method=hash,fields(ip_src,nw_proto),",
        ),
    ] {
        let g = parse_group(&input).unwrap();
        assert_eq!(g.group_type, GroupType::Select);
        assert_eq!(g.selection, Selection::Hash(fields.clone()), "{input}");
        assert_eq!(g.selection.hash_fields(), Some(fields.as_slice()));
        assert_eq!(g.buckets.len(), 2);
        let full = print_group_full(&g);
        assert_eq!(
            full,
            format!("{printed}bucket=actions=output:1,bucket=weight:2,actions=output:2")
        );
        assert_eq!(parse_group(&full).unwrap(), g, "{full}");
        // OpenFlow 1.3 cannot carry the selection method: the 1.3 dump line leaves it out.
        let of13 = print_group(&g);
        assert!(!of13.contains("selection_method"), "{of13}");
        assert_eq!(parse_group(&of13).unwrap().selection, Selection::Default);
    }
}

#[test]
fn default_and_dp_hash_select_the_five_tuple() {
    let plain = parse_group(&format!("group_id=1,type=select,{BUCKETS}")).unwrap();
    assert_eq!(plain.selection, Selection::Default);
    assert_eq!(print_group_full(&plain), print_group(&plain));
    let dp = parse_group(&format!(
        "group_id=1,type=select,selection_method=dp_hash,{BUCKETS}"
    ))
    .unwrap();
    assert_eq!(dp, plain);
    let bare = parse_group(&format!(
        "group_id=1,type=select,selection_method=hash,{BUCKETS}"
    ))
    .unwrap();
    assert_eq!(bare.selection, Selection::Hash(vec![]));
    assert_eq!(
        bare.selection.hash_fields(),
        None,
        "hash alone is the default hash"
    );
    assert_eq!(parse_group(&print_group_full(&bare)).unwrap(), bare);
}

#[test]
fn bad_selections_are_refused_with_the_reason() {
    let cases = [
        (
            format!("group_id=1,type=select,fields(ip_src),{BUCKETS}"),
            "without selection_method=hash",
        ),
        (
            format!("group_id=1,type=select,selection_method=dp_hash,fields(ip_src),{BUCKETS}"),
            "without selection_method=hash",
        ),
        (
            "group_id=1,type=all,selection_method=hash,fields(ip_src),bucket=actions=output:1"
                .to_string(),
            "not type=select",
        ),
        (
            format!("group_id=1,type=select,selection_method=hash,fields(ip_srcc),{BUCKETS}"),
            "unknown field 'ip_srcc'",
        ),
        (
            format!("group_id=1,type=select,selection_method=hash,fields(ip_src,nw_src),{BUCKETS}"),
            "more than once",
        ),
        (
            format!(
                "group_id=1,type=select,selection_method=hash,fields(ip_src=255.255.0.0),{BUCKETS}"
            ),
            "without masks",
        ),
        (
            format!("group_id=1,type=select,selection_method=random,{BUCKETS}"),
            "hash or dp_hash",
        ),
    ];
    for (input, want) in cases {
        let e: ParseError = parse_group(&input).unwrap_err();
        assert!(e.to_string().contains(want), "{input}: {e}");
    }
}

#[test]
fn delete_ignores_nothing_it_should_read() {
    let gm = parse_group_mod("group_id=3", GroupModCommand::Delete).unwrap();
    assert_eq!(gm.group.id, 3);
    assert_eq!(gm.group.selection, Selection::Default);
}

#[test]
fn affinity_timeout_round_trips_and_needs_a_select_group() {
    let input = format!(
        "group_id=9,type=select,selection_method=hash,fields(ip_src),affinity_timeout=10800,{BUCKETS}"
    );
    let g = parse_group(&input).unwrap();
    assert_eq!(g.affinity_timeout, Some(10800));
    let full = print_group_full(&g);
    assert!(
        full.starts_with(" group_id=9,type=select,selection_method=hash,fields=ip_src,affinity_timeout=10800,bucket="),
        "{full}"
    );
    assert_eq!(parse_group(full.trim()).unwrap(), g);
    assert!(
        !print_group(&g).contains("affinity"),
        "OpenFlow 1.3 cannot carry it"
    );
    let bad = parse_group(&format!("group_id=9,type=all,affinity_timeout=5,{BUCKETS}"));
    assert!(matches!(bad, Err(ParseError::NotAllowed(_))), "{bad:?}");
    for v in ["0", "x", "-1"] {
        assert!(
            parse_group(&format!(
                "group_id=9,type=select,affinity_timeout={v},{BUCKETS}"
            ))
            .is_err(),
            "{v}"
        );
    }
}
