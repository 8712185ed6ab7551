//! `sample(probability=P,collector_set_id=C,obs_domain_id=D,obs_point_id=O[,sampling_port=N]
//! [,ingress|egress])`, parsed and printed as ovs-ofctl 3.1 does (`parse_SAMPLE`,
//! `format_SAMPLE`).

use std::fmt::Write as _;

use crate::action::{Action, Sample, SampleDirection};
use crate::port::OfPort;

use super::ParseError;
use super::actions::{bad, paren_args};
use super::value::{parse_port, parse_uint_bits};

pub(super) fn parse_sample(tok: &str) -> Result<Action, ParseError> {
    const NAME: &str = "sample";
    let mut s = Sample {
        probability: 0,
        collector_set_id: 0,
        obs_domain_id: 0,
        obs_point_id: 0,
        sampling_port: None,
        direction: SampleDirection::Default,
    };
    for arg in super::split_top(paren_args(tok, NAME)?, &[','])? {
        let (k, v) = arg
            .split_once('=')
            .or_else(|| arg.split_once(':'))
            .map_or((arg, ""), |(k, v)| (k.trim(), v.trim()));
        let u32_of = |v: &str| {
            parse_uint_bits(v, 32)
                .map(|x| x as u32)
                .ok_or_else(|| bad(NAME, tok, format!("{k} must be 0..4294967295")))
        };
        match k {
            "probability" => {
                let p = parse_uint_bits(v, 16)
                    .ok_or_else(|| bad(NAME, tok, "probability must be 1..65535"))?;
                if p == 0 {
                    return Err(bad(NAME, tok, format!("invalid probability value \"{v}\"")));
                }
                s.probability = p as u16;
            }
            "collector_set_id" => s.collector_set_id = u32_of(v)?,
            "obs_domain_id" => s.obs_domain_id = u32_of(v)?,
            "obs_point_id" => s.obs_point_id = u32_of(v)?,
            "sampling_port" => {
                let p =
                    parse_port(v).ok_or_else(|| bad(NAME, tok, format!("{v}: unknown port")))?;
                // The wire field is an OpenFlow 1.0 port: a number above 0xff00 that is not a
                // reserved port has no 16-bit form.
                if p.0 >= 0xff00 && p.0 < OfPort::MAX.0 {
                    return Err(bad(NAME, tok, format!("{v}: port out of range")));
                }
                s.sampling_port = (p != OfPort::ANY).then_some(p);
            }
            "ingress" if v.is_empty() => s.direction = SampleDirection::Ingress,
            "egress" if v.is_empty() => s.direction = SampleDirection::Egress,
            _ => {
                return Err(bad(
                    NAME,
                    tok,
                    format!("invalid key \"{k}\" in \"sample\" argument"),
                ));
            }
        }
    }
    if s.probability == 0 {
        return Err(bad(
            NAME,
            tok,
            "non-zero \"probability\" must be specified on sample",
        ));
    }
    Ok(Action::Sample(s))
}

/// `format_SAMPLE`; `port` prints a port as the rest of the flow does (numbers or names).
pub(super) fn sample_text(s: &Sample, port: impl Fn(OfPort) -> String) -> String {
    let mut out = format!(
        "sample(probability={},collector_set_id={},obs_domain_id={},obs_point_id={}",
        s.probability, s.collector_set_id, s.obs_domain_id, s.obs_point_id
    );
    if let Some(p) = s.sampling_port {
        let _ = write!(out, ",sampling_port={}", port(p));
    }
    match s.direction {
        SampleDirection::Ingress => out.push_str(",ingress"),
        SampleDirection::Egress => out.push_str(",egress"),
        SampleDirection::Default => {}
    }
    out.push(')');
    out
}

/// `dec_ttl(1,2)`: the controller ids of NXAST_DEC_TTL_CNT_IDS (ovs-ofctl splits on commas
/// and spaces; at least one id).
pub(super) fn parse_dec_ttl_ids(tok: &str) -> Result<Action, ParseError> {
    let args = paren_args(tok, "dec_ttl")?;
    let mut ids = Vec::new();
    for id in args.split([',', ' ']).filter(|x| !x.is_empty()) {
        let v = parse_uint_bits(id, 16)
            .ok_or_else(|| bad("dec_ttl", tok, format!("bad controller id '{id}'")))?;
        ids.push(v as u16);
    }
    if ids.is_empty() {
        return Err(bad(
            "dec_ttl",
            tok,
            "dec_ttl_cnt_ids: expected at least one controller id.",
        ));
    }
    Ok(Action::DecTtlIds(ids))
}

pub(super) fn dec_ttl_ids_text(ids: &[u16]) -> String {
    let ids: Vec<String> = ids.iter().map(u16::to_string).collect();
    format!("dec_ttl({})", ids.join(","))
}
