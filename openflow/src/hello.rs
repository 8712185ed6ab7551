//! HELLO elements and version negotiation (OpenFlow 1.3 §6.3.1).

use super::buf::{Put, Reader};
use super::error::{ErrorCode, OfError, err};
use super::header::OFP13_VERSION;

/// `OFPHET_VERSIONBITMAP`.
pub const HELLO_ELEM_VERSIONBITMAP: u16 = 1;

/// A HELLO body: the version bitmap (if sent) plus any other elements kept raw.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Hello {
    /// Bitmap words of `OFPHET_VERSIONBITMAP` (bit n of word 0 = version n).
    pub version_bitmap: Option<Vec<u32>>,
    /// Other elements `(type, payload)`, which receivers must ignore.
    pub other: Vec<(u16, Vec<u8>)>,
}

impl Hello {
    /// The HELLO this switch sends: version 4 with a bitmap announcing only 1.3, exactly
    /// what ovs-ofctl -O OpenFlow13 sends.
    pub fn ours() -> Hello {
        Hello {
            version_bitmap: Some(vec![1 << OFP13_VERSION]),
            other: Vec::new(),
        }
    }

    pub fn decode(body: &[u8]) -> Result<Hello, OfError> {
        let mut r = Reader::new(body, ErrorCode::BadRequestBadLen);
        let mut h = Hello::default();
        // Elements are 8-byte aligned; trailing bytes too short for an element are ignored
        // (older peers pad HELLO arbitrarily).
        while r.remaining() >= 4 {
            let ty = r.u16("hello element type")?;
            let len = usize::from(r.u16("hello element length")?);
            if len < 4 || len - 4 > r.remaining() {
                return err(
                    ErrorCode::BadRequestBadLen,
                    format!("hello element length {len}"),
                );
            }
            let payload = r.bytes(len - 4, "hello element")?;
            let pad = len.next_multiple_of(8) - len;
            r.skip(pad.min(r.remaining()), "hello element padding")?;
            if ty == HELLO_ELEM_VERSIONBITMAP && h.version_bitmap.is_none() {
                let words = payload
                    .chunks_exact(4)
                    .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                    .collect();
                h.version_bitmap = Some(words);
            } else {
                h.other.push((ty, payload.to_vec()));
            }
        }
        Ok(h)
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        if let Some(words) = &self.version_bitmap {
            let start = out.len();
            out.put_u16(HELLO_ELEM_VERSIONBITMAP);
            out.put_u16((4 + 4 * words.len()) as u16);
            for w in words {
                out.put_u32(*w);
            }
            out.pad_to_8_from(start);
        }
        for (ty, payload) in &self.other {
            let start = out.len();
            out.put_u16(*ty);
            out.put_u16((4 + payload.len()) as u16);
            out.extend_from_slice(payload);
            out.pad_to_8_from(start);
        }
    }

    /// True when the peer's bitmap (or, without one, its header version) admits 1.3.
    pub fn supports(&self, header_version: u8, version: u8) -> bool {
        match &self.version_bitmap {
            Some(words) => {
                let (w, b) = (usize::from(version / 32), version % 32);
                words.get(w).is_some_and(|word| word & (1 << b) != 0)
            }
            // Without a bitmap the peer speaks every version up to its header's.
            None => header_version >= version,
        }
    }
}

/// Negotiates OpenFlow 1.3 against a peer HELLO. On failure the switch must send
/// `OFPET_HELLO_FAILED/OFPHFC_INCOMPATIBLE` and close.
pub fn negotiate(header_version: u8, hello: &Hello) -> Result<u8, OfError> {
    if hello.supports(header_version, OFP13_VERSION) {
        Ok(OFP13_VERSION)
    } else {
        err(
            ErrorCode::HelloIncompatible,
            format!("peer HELLO (version {header_version}) does not offer OpenFlow 1.3"),
        )
    }
}
