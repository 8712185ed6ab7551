use super::*;

/// A UDP payload as a tunnel port receives it: the VXLAN header, then the inner frame.
static PAYLOAD_BYTES: [u8; 22] = [
    0x08, // flags: I
    0x00, 0x00, 0x00, // reserved
    0x00, 0x10, 0x92, // VNI 4242
    0x00, // reserved
    0x02, 0x00, 0x00, 0x00, 0x00, 0x02, // inner Ethernet destination
    0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // inner Ethernet source
    0x08, 0x00, // inner EtherType IPv4
];

#[test]
fn test_deconstruct() {
    assert_eq!(check_header(&PAYLOAD_BYTES), Ok(4242));
    assert!(PAYLOAD_BYTES.len() - HEADER_LEN >= MIN_INNER_LEN);
}

#[test]
fn test_construct() {
    assert_eq!(Header::new(4242).as_bytes(), &PAYLOAD_BYTES[..HEADER_LEN]);
    // Only 24 bits of VNI exist.
    assert_eq!(Header::new(0x0100_0000 | 4242), Header::new(4242));
}

#[test]
fn refusals() {
    for n in 0..HEADER_LEN {
        assert_eq!(check_header(&PAYLOAD_BYTES[..n]), Err(VxlanError::Short));
    }
    let mut b = PAYLOAD_BYTES;
    for flags in [0x00, 0x0c, 0x88, 0x80, 0x09] {
        b[0] = flags;
        assert_eq!(check_header(&b), Err(VxlanError::BadFlags(flags)));
    }
    // Reserved bytes are ignored.
    let mut r = PAYLOAD_BYTES;
    r[1] = 0xff;
    r[7] = 0xff;
    assert_eq!(check_header(&r), Ok(4242));
    // The header alone is a valid header (the inner length is checked by the caller).
    assert_eq!(check_header(&PAYLOAD_BYTES[..HEADER_LEN]), Ok(4242));
}
