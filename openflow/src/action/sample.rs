//! The Nicira actions of issue 15 that carry their own small wire structs: `sample`
//! (NXAST_SAMPLE, SAMPLE2, SAMPLE3) and `dec_ttl(ids)` (NXAST_DEC_TTL_CNT_IDS), decoded and
//! encoded as Open vSwitch 3.1's `ofp-actions.c` does.

use super::Action;
use crate::buf::{Put, Reader};
use crate::error::{ErrorCode, OfError, err};

/// NXAST_SAMPLE (24 bytes).
pub const SAMPLE: u16 = 29;
/// NXAST_SAMPLE2 (32 bytes: adds `sampling_port`).
pub const SAMPLE2: u16 = 38;
/// NXAST_SAMPLE3 (32 bytes: adds `direction`).
pub const SAMPLE3: u16 = 41;
/// NXAST_DEC_TTL_CNT_IDS.
pub const DEC_TTL_CNT_IDS: u16 = 21;

/// `sampling_port` meaning "none" (OpenFlow 1.0's OFPP_NONE).
pub const SAMPLE_NO_PORT: u16 = 0xffff;

/// `sample(...)`, wire-faithful: `subtype` keeps which of the three structs carried it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SampleAction {
    pub subtype: u16,
    /// Packets out of 65535 (never 0).
    pub probability: u16,
    pub collector_set_id: u32,
    pub obs_domain_id: u32,
    pub obs_point_id: u32,
    /// OpenFlow 1.0 port number, [`SAMPLE_NO_PORT`] for none (SAMPLE2/3 only).
    pub sampling_port: u16,
    /// 0 default, 1 ingress, 2 egress (SAMPLE3 only).
    pub direction: u8,
}

impl SampleAction {
    /// The struct Open vSwitch's `encode_SAMPLE` picks for these fields when none was given.
    pub fn subtype_for(sampling_port: u16, direction: u8) -> u16 {
        if direction != 0 {
            SAMPLE3
        } else if sampling_port != SAMPLE_NO_PORT {
            SAMPLE2
        } else {
            SAMPLE
        }
    }
}

/// Decodes the body after the Nicira subtype of NXAST_SAMPLE/2/3 (`len`: the whole action).
pub(super) fn decode_sample(b: &mut Reader<'_>, sub: u16, len: usize) -> Result<Action, OfError> {
    let want = if sub == SAMPLE { 24 } else { 32 };
    if len != want {
        return err(
            ErrorCode::BadActionBadLen,
            format!("NXAST {sub}: length {len}, want {want}"),
        );
    }
    let mut s = SampleAction {
        subtype: sub,
        probability: b.u16("sample probability")?,
        collector_set_id: b.u32("sample collector_set_id")?,
        obs_domain_id: b.u32("sample obs_domain_id")?,
        obs_point_id: b.u32("sample obs_point_id")?,
        sampling_port: SAMPLE_NO_PORT,
        direction: 0,
    };
    if sub != SAMPLE {
        s.sampling_port = b.u16("sample sampling_port")?;
        let direction = b.u8("sample direction")?;
        // SAMPLE2 ignores the direction byte and the padding; SAMPLE3 checks both.
        if sub == SAMPLE3 {
            if b.take_rest().iter().any(|&x| x != 0) {
                return err(ErrorCode::BadActionBadArgument, "sample3: non-zero padding");
            }
            if direction > 2 {
                return err(
                    ErrorCode::BadActionBadArgument,
                    format!("invalid sample direction {direction}"),
                );
            }
            s.direction = direction;
        }
    }
    if s.probability == 0 {
        return err(ErrorCode::BadActionBadArgument, "sample: probability 0");
    }
    Ok(Action::Sample(s))
}

pub(super) fn encode_sample(s: &SampleAction, out: &mut Vec<u8>) {
    out.put_u16(s.probability);
    out.put_u32(s.collector_set_id);
    out.put_u32(s.obs_domain_id);
    out.put_u32(s.obs_point_id);
    if s.subtype != SAMPLE {
        out.put_u16(s.sampling_port);
        out.put_u8(if s.subtype == SAMPLE3 { s.direction } else { 0 });
    }
}

/// NXAST_DEC_TTL_CNT_IDS: `n_controllers`, 4 zero bytes, then the ids padded to 8.
pub(super) fn decode_dec_ttl_cnt_ids(b: &mut Reader<'_>) -> Result<Action, OfError> {
    let n = usize::from(b.u16("dec_ttl_cnt_ids n_controllers")?);
    if b.bytes(4, "dec_ttl_cnt_ids zeros")?.iter().any(|&x| x != 0) {
        return err(
            ErrorCode::BadActionBadArgument,
            "dec_ttl_cnt_ids: non-zero reserved bytes",
        );
    }
    if b.remaining() < 2 * n {
        return err(
            ErrorCode::BadActionBadLen,
            format!(
                "dec_ttl_cnt_ids: {} bytes for {n} controller ids",
                b.remaining()
            ),
        );
    }
    let ids = (0..n)
        .map(|_| b.u16("dec_ttl_cnt_ids id"))
        .collect::<Result<Vec<u16>, OfError>>()?;
    Ok(Action::DecTtlCntIds(ids))
}

pub(super) fn encode_dec_ttl_cnt_ids(ids: &[u16], out: &mut Vec<u8>) {
    out.put_u16(ids.len() as u16);
    out.put_zeros(4);
    for id in ids {
        out.put_u16(*id);
    }
}

#[cfg(test)]
mod tests {
    use super::super::{decode_actions, encode_actions};
    use super::*;
    use crate::error::ErrorCode;

    fn unhex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn round_trip(hex: &str) -> Action {
        let bytes = unhex(hex);
        let got = decode_actions(&bytes).unwrap();
        assert_eq!(got.len(), 1);
        let mut again = Vec::new();
        encode_actions(&got, &mut again);
        assert_eq!(again, bytes, "re-encoded as the same struct");
        got.into_iter().next().unwrap()
    }

    // Layouts of `struct nx_action_sample` / `nx_action_sample2` / `nx_action_cnt_ids` in
    // Open vSwitch 3.1's lib/ofp-actions.c.
    #[test]
    fn sample_structs_decode_and_encode_as_open_vswitch() {
        // NXAST_SAMPLE: probability 100, collector set 1, domain 2, point 3.
        let a = round_trip("ffff 0018 00002320 001d 0064 00000001 00000002 00000003");
        assert_eq!(
            a,
            Action::Sample(SampleAction {
                subtype: SAMPLE,
                probability: 100,
                collector_set_id: 1,
                obs_domain_id: 2,
                obs_point_id: 3,
                sampling_port: SAMPLE_NO_PORT,
                direction: 0,
            })
        );
        // NXAST_SAMPLE2 with sampling_port 5.
        let a = round_trip(
            "ffff 0020 00002320 0026 ffff ffffffff 00000002 00000003 0005 00 0000000000",
        );
        let Action::Sample(s) = a else { panic!() };
        assert_eq!((s.subtype, s.sampling_port, s.direction), (SAMPLE2, 5, 0));
        // NXAST_SAMPLE3, egress, sampling port LOCAL (0xfffe).
        let a = round_trip(
            "ffff 0020 00002320 0029 0007 00000001 00000002 00000003 fffe 02 0000000000",
        );
        let Action::Sample(s) = a else { panic!() };
        assert_eq!(
            (s.subtype, s.sampling_port, s.direction),
            (SAMPLE3, 0xfffe, 2)
        );
        assert_eq!(SampleAction::subtype_for(SAMPLE_NO_PORT, 0), SAMPLE);
        assert_eq!(SampleAction::subtype_for(5, 0), SAMPLE2);
        assert_eq!(SampleAction::subtype_for(SAMPLE_NO_PORT, 1), SAMPLE3);
    }

    #[test]
    fn bad_samples_are_refused_with_open_vswitch_codes() {
        let bad = |hex: &str| decode_actions(&unhex(hex)).unwrap_err().code;
        // Probability 0.
        assert_eq!(
            bad("ffff 0018 00002320 001d 0000 00000001 00000002 00000003"),
            ErrorCode::BadActionBadArgument
        );
        // A direction that is neither default, ingress nor egress.
        assert_eq!(
            bad("ffff 0020 00002320 0029 0007 00000001 00000002 00000003 fffe 03 0000000000"),
            ErrorCode::BadActionBadArgument
        );
        // SAMPLE3 padding must be zero (SAMPLE2 ignores it).
        assert_eq!(
            bad("ffff 0020 00002320 0029 0007 00000001 00000002 00000003 fffe 00 0000000100"),
            ErrorCode::BadActionBadArgument
        );
        assert!(
            decode_actions(&unhex(
                "ffff 0020 00002320 0026 0007 00000001 00000002 00000003 fffe 07 0000000100"
            ))
            .is_ok()
        );
        // Wrong lengths.
        assert_eq!(
            bad("ffff 0020 00002320 001d 0064 00000001 00000002 00000003 0000000000000000"),
            ErrorCode::BadActionBadLen
        );
        assert_eq!(
            bad("ffff 0018 00002320 0029 0064 00000001 00000002 00000003"),
            ErrorCode::BadActionBadLen
        );
    }

    #[test]
    fn dec_ttl_cnt_ids_as_open_vswitch() {
        // Three ids, padded to 8 bytes.
        let a = round_trip("ffff 0018 00002320 0015 0003 00000000 0001 0002 0003 0000");
        assert_eq!(a, Action::DecTtlCntIds(vec![1, 2, 3]));
        let a = round_trip("ffff 0018 00002320 0015 0001 00000000 0000 000000000000");
        assert_eq!(a, Action::DecTtlCntIds(vec![0]));
        let bad = |hex: &str| decode_actions(&unhex(hex)).unwrap_err().code;
        // More ids than bytes.
        assert_eq!(
            bad("ffff 0018 00002320 0015 0005 00000000 0001 0002 0003 0000"),
            ErrorCode::BadActionBadLen
        );
        // Non-zero reserved bytes.
        assert_eq!(
            bad("ffff 0018 00002320 0015 0001 00000100 0001 000000000000"),
            ErrorCode::BadActionBadArgument
        );
    }

    #[test]
    fn resubmit_table_ct_as_open_vswitch() {
        let a = round_trip("ffff 0010 00002320 002c fff8 02 000000");
        assert_eq!(
            a,
            Action::ResubmitCt {
                in_port: 0xfff8,
                table: 2
            }
        );
    }
}
