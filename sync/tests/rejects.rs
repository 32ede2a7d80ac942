//! What the decoder rejects, skips or ignores, and how it counts it
//! (ftfw-wire.md 2 and 7.8).

use ftfw_sync::wire::attr;
use ftfw_sync::wire::ct::id;
use ftfw_sync::wire::{
    decode_datagram, encode_control, Body, ControlMsg, DecodeStats, Header, MsgType, WireError,
};

/// A CT_NEW with IPV4, L4PROTO (UDP), PORT plus `extra` raw attributes.
fn ct_msg(seq: u32, extra: &[(u16, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    attr::emit(&mut body, id::IPV4, &[10, 0, 0, 1, 10, 0, 0, 2]);
    attr::emit(&mut body, id::L4PROTO, &[17]);
    attr::emit(&mut body, id::PORT, &[0, 1, 0, 2]);
    for (i, p) in extra {
        attr::emit(&mut body, *i, p);
    }
    let len = u16::try_from(8 + body.len()).unwrap();
    let mut m = Header::new(MsgType::CtNew, 0, len, seq).to_bytes().to_vec();
    m.extend_from_slice(&body);
    m
}

fn one(msg: &[u8]) -> (Result<Body, WireError>, DecodeStats) {
    // Followed by an ALIVE: the walk must go on after a rejected message.
    let mut d = msg.to_vec();
    encode_control(&mut d, &ControlMsg::Alive, 0, 99);
    let mut st = DecodeStats::default();
    let v = decode_datagram(&d, &mut st);
    assert_eq!(v.len(), 2, "{v:?}");
    assert!(v[1].is_ok(), "walk continued");
    let r = v[0].clone().map(|m| m.body).map_err(|e| e.kind);
    (r, st)
}

#[test]
fn wrong_fixed_size_rejects_the_message() {
    // STATUS with nta_len 7 (live-tested: conntrackd drops it).
    let (r, st) = one(&ct_msg(1, &[(id::STATUS, &[0, 0, 0])]));
    assert_eq!(
        r,
        Err(WireError::AttrSize {
            at: 36,
            id: id::STATUS,
            len: 7
        })
    );
    assert_eq!((st.bad_attr, st.ok), (1, 1));
}

#[test]
fn unknown_id_is_skipped_and_counted() {
    // conntrackd rejects id >= 33; we skip it by its length.
    let (r, st) = one(&ct_msg(1, &[(33, &[1, 2, 3]), (id::ZONE, &[0, 7])]));
    let Ok(Body::Ct(a)) = r else { panic!("{r:?}") };
    assert_eq!((a.zone, a.unknown), (Some(7), 1));
    assert!(!a.order.contains(&33));
    assert_eq!((st.unknown_attr, st.bad_attr, st.ok), (1, 0, 2));
}

#[test]
fn helper_and_labels_limits() {
    let (r, _) = one(&ct_msg(1, &[(id::HELPER_NAME, b"ftp\0")]));
    assert!(
        matches!(r, Ok(Body::Ct(ref a)) if a.to_flow().unwrap().extras.helper.as_deref() == Some("ftp"))
    );
    let (r, _) = one(&ct_msg(1, &[(id::HELPER_NAME, &[b'a'; 13])]));
    assert!(matches!(r, Err(WireError::AttrSize { len: 17, .. })));
    // LABELS not a multiple of 4: ignored, message kept.
    let (r, st) = one(&ct_msg(1, &[(id::LABELS, &[0, 0, 1])]));
    let Ok(Body::Ct(a)) = r else { panic!() };
    assert_eq!(a.labels, None);
    assert_eq!(st.bad_attr, 0);
    let (r, _) = one(&ct_msg(1, &[(id::LABELS, &[0; 1028])]));
    assert!(matches!(r, Err(WireError::AttrSize { len: 1032, .. })));
    let mut l = vec![0u8; 16];
    l[3] = 0x81;
    let (r, _) = one(&ct_msg(1, &[(id::LABELS, &l)]));
    let Ok(Body::Ct(a)) = r else { panic!() };
    assert_eq!(a.to_flow().unwrap().extras.labels, Some([0x81, 0, 0, 0]));
}

#[test]
fn attribute_overrun_rejects_the_message() {
    let mut m = ct_msg(1, &[(id::MARK, &[0, 0, 0, 7])]);
    // MARK claims 200 bytes.
    let at = m.len() - 8;
    m[at..at + 2].copy_from_slice(&200u16.to_be_bytes());
    let (r, st) = one(&m);
    assert!(
        matches!(r, Err(WireError::AttrLen { len: 200, .. })),
        "{r:?}"
    );
    assert_eq!(st.bad_attr, 1);
    // nta_len below 4.
    m[at..at + 2].copy_from_slice(&2u16.to_be_bytes());
    assert!(matches!(one(&m).0, Err(WireError::AttrLen { len: 2, .. })));
}

#[test]
fn header_rejections_do_not_stop_the_walk() {
    let mut m = ct_msg(1, &[]);
    m[1] = 0x08; // ACK on a data message
    assert_eq!(one(&m).0, Err(WireError::DataFlags { flags: 0x08 }));
    m[1] = 0x60;
    assert!(one(&m).0.is_ok());
    m[0] = 0x16; // type 6
    assert_eq!(one(&m).0, Err(WireError::UnknownType { ty: 6 }));
    m[0] = 0x00; // version 0
    let (r, st) = one(&m);
    assert_eq!(r, Err(WireError::BadVersion { version: 0 }));
    assert_eq!(st.bad_version, 1);
    // ACK with to before from.
    let ack = [0x1a, 0x08, 0, 16, 0, 0, 0, 1, 0, 0, 0, 5, 0, 0, 0, 4];
    let (r, st) = one(&ack);
    assert_eq!(r, Err(WireError::BadRange { from: 5, to: 4 }));
    assert_eq!(st.malformed_header, 1);
}

#[test]
fn framing_errors_drop_the_rest() {
    let mut d = Vec::new();
    encode_control(&mut d, &ControlMsg::Alive, 0, 1);
    let mut bad = ct_msg(2, &[]);
    bad[2..4].copy_from_slice(&500u16.to_be_bytes());
    d.extend_from_slice(&bad);
    encode_control(&mut d, &ControlMsg::Alive, 0, 3);
    let mut st = DecodeStats::default();
    let v = decode_datagram(&d, &mut st);
    assert_eq!(v.len(), 2);
    let e = v[1].clone().unwrap_err();
    assert_eq!(e.offset, 8);
    assert!(e.is_framing());
    assert!(e.to_string().contains("offset 8"), "{e}");
    assert_eq!((st.bad_size, st.messages, st.ok), (1, 1, 1));
}
