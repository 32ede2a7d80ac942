//! The FT-FW dissector (`ftfwctl wire decode`): hex vectors and hand-built
//! pcap files decode to the same messages.

use std::path::PathBuf;
use std::process::Command;

use ftfw_control::wire_dump::{decode_all, read_capture, record_json};
use ftfw_sync::wire::DecodeStats;
use serde_json::Value;

fn vector(name: &str) -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../sync/tests/vectors/conntrackd-1.4.7"
    ))
    .join(format!("{name}.hex"))
}

fn payload(name: &str) -> Vec<u8> {
    let text = std::fs::read_to_string(vector(name)).unwrap();
    ftfw_sync::wire::hex::parse_hex(&text).unwrap()
}

fn json_of(bytes: &[u8], port: Option<u16>) -> Vec<Value> {
    let cap = read_capture(bytes, port).unwrap();
    let mut st = DecodeStats::default();
    decode_all(&cap, &mut st).iter().map(record_json).collect()
}

/// A UDP datagram 192.168.77.1:33493 -> 192.168.77.2:3780 (IPv4) or
/// 2001:db8::1 -> 2001:db8::2 (IPv6) carrying `data`, as an IP packet.
fn ip_packet(v6: bool, dport: u16, data: &[u8]) -> Vec<u8> {
    let ulen = u16::try_from(8 + data.len()).unwrap();
    let mut udp = Vec::new();
    udp.extend_from_slice(&33493u16.to_be_bytes());
    udp.extend_from_slice(&dport.to_be_bytes());
    udp.extend_from_slice(&ulen.to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(data);
    let mut ip = Vec::new();
    if v6 {
        ip.extend_from_slice(&[0x60, 0, 0, 0]);
        ip.extend_from_slice(&ulen.to_be_bytes());
        ip.extend_from_slice(&[17, 64]);
        let mut a = [0u8; 16];
        a[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
        a[15] = 1;
        ip.extend_from_slice(&a);
        a[15] = 2;
        ip.extend_from_slice(&a);
    } else {
        let total = u16::try_from(20 + udp.len()).unwrap();
        ip.extend_from_slice(&[0x45, 0]);
        ip.extend_from_slice(&total.to_be_bytes());
        ip.extend_from_slice(&[0, 1, 0x40, 0, 1, 17, 0, 0]);
        ip.extend_from_slice(&[192, 168, 77, 1, 192, 168, 77, 2]);
    }
    ip.extend_from_slice(&udp);
    ip
}

/// A classic pcap: `be` big-endian header, `nsec` nanosecond magic.
fn pcap(be: bool, nsec: bool, link: u32, frames: &[Vec<u8>]) -> Vec<u8> {
    let w32 = |v: u32| if be { v.to_be_bytes() } else { v.to_le_bytes() };
    let w16 = |v: u16| if be { v.to_be_bytes() } else { v.to_le_bytes() };
    let mut f = Vec::new();
    f.extend_from_slice(&w32(if nsec { 0xa1b2_3c4d } else { 0xa1b2_c3d4 }));
    f.extend_from_slice(&w16(2));
    f.extend_from_slice(&w16(4));
    f.extend_from_slice(&w32(0));
    f.extend_from_slice(&w32(0));
    f.extend_from_slice(&w32(65535));
    f.extend_from_slice(&w32(link));
    for (i, fr) in frames.iter().enumerate() {
        let n = u32::try_from(fr.len()).unwrap();
        f.extend_from_slice(&w32(1_700_000_000 + u32::try_from(i).unwrap()));
        f.extend_from_slice(&w32(0));
        f.extend_from_slice(&w32(n));
        f.extend_from_slice(&w32(n));
        f.extend_from_slice(fr);
    }
    f
}

fn ethernet(ip: &[u8], v6: bool) -> Vec<u8> {
    let mut e = vec![0x01, 0x00, 0x5e, 0x00, 0x00, 0x32, 2, 0, 0, 0, 0, 1];
    e.extend_from_slice(if v6 { &[0x86, 0xdd] } else { &[0x08, 0x00] });
    e.extend_from_slice(ip);
    e
}

fn sll(ip: &[u8]) -> Vec<u8> {
    let mut s = vec![0, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0];
    s.extend_from_slice(&[0x08, 0x00]);
    s.extend_from_slice(ip);
    s
}

fn check_c4(j: &Value) {
    assert_eq!(j["type"], "CT_NEW");
    assert_eq!(j["flags"], serde_json::json!([]));
    assert_eq!(j["seq"], 0x6b02_61d5u32);
    assert_eq!(j["len"], 100);
    assert_eq!(j["proto"], "tcp");
    assert_eq!(j["state"], "ESTABLISHED");
    assert_eq!(j["status"], 0x19e);
    assert_eq!(j["timeout"], 300);
    assert_eq!(j["orig"]["src"], "10.0.0.2");
    assert_eq!(j["orig"]["dst"], "198.51.100.10");
    assert_eq!(j["orig"]["sport"], 40001);
    assert_eq!(j["orig"]["dport"], 443);
    assert_eq!(j["reply"]["dst"], "203.0.113.5");
    assert_eq!(j["reply"]["dport"], 61000);
    assert_eq!(
        j["nat"],
        serde_json::json!(["snat=203.0.113.5", "spat=61000"])
    );
}

#[test]
fn hex_vector_to_json() {
    let text = std::fs::read(vector("C4")).unwrap();
    let v = json_of(&text, None);
    assert_eq!(v.len(), 1);
    check_c4(&v[0]);
    let v = json_of(
        &std::fs::read(vector("C14-ack-hello-helloback")).unwrap(),
        None,
    );
    assert_eq!(v[0]["type"], "CTL");
    assert_eq!(
        v[0]["flags"],
        serde_json::json!(["ACK", "HELLO", "HELLO_BACK"])
    );
    assert_eq!(
        (v[0]["control"].clone(), v[0]["from"].clone()),
        ("ACK".into(), 1000.into())
    );
}

#[test]
fn pcap_holds_the_same_message() {
    let c4 = payload("C4");
    let hex = json_of(&std::fs::read(vector("C4")).unwrap(), None);
    // Ethernet, little-endian microsecond pcap, plus a non-sync datagram.
    let other = ethernet(&ip_packet(false, 53, b"\x12\x34"), false);
    let f = pcap(
        false,
        false,
        1,
        &[other, ethernet(&ip_packet(false, 3780, &c4), false)],
    );
    let all = json_of(&f, None);
    assert_eq!(all.len(), 2, "every UDP payload is decoded by default");
    assert!(all[0]["error"].is_string());
    let v = json_of(&f, Some(3780));
    assert_eq!(v.len(), 1);
    check_c4(&v[0]);
    assert_eq!(v[0]["packet"], 2);
    assert_eq!(v[0]["src_addr"], "192.168.77.1:33493");
    assert_eq!(v[0]["dst_addr"], "192.168.77.2:3780");
    for k in [
        "type", "flags", "seq", "len", "orig", "reply", "status", "attrs",
    ] {
        assert_eq!(v[0][k], hex[0][k], "{k}");
    }
    // Big-endian nanosecond pcap, raw IPv6, and Linux cooked SLL.
    let f = pcap(true, true, 101, &[ip_packet(true, 3780, &c4)]);
    check_c4(&json_of(&f, Some(3780))[0]);
    let f = pcap(false, true, 113, &[sll(&ip_packet(false, 3780, &c4))]);
    check_c4(&json_of(&f, None)[0]);
    // Truncated pcap: earlier packets still decode.
    let mut f = pcap(
        false,
        false,
        1,
        &[ethernet(&ip_packet(false, 3780, &c4), false)],
    );
    f.extend_from_slice(&[1, 2, 3]);
    let cap = read_capture(&f, None).unwrap();
    assert_eq!((cap.payloads.len(), cap.notes.len()), (1, 1));
}

#[test]
fn binary_decodes_and_rejects_garbage() {
    let exe = env!("CARGO_BIN_EXE_ftfwctl");
    let out = Command::new(exe)
        .args(["wire", "decode", "--json"])
        .arg(vector("C13"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1]["zone"], 7);
    assert_eq!(lines[1]["orig"]["sport"], 1000);
    let out = Command::new(exe)
        .args(["wire", "decode"])
        .arg(vector("E1"))
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("CT_NEW v1 flags=- seq=1000"), "{text}");
    assert!(text.contains("ESTABLISHED src=10.0.0.1 dst=10.0.1.1 sport=40000 dport=80"));
    let dir = std::env::temp_dir().join(format!("ftfw-wire-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let junk = dir.join("junk.bin");
    std::fs::write(&junk, [0xffu8, 0x00, 0x13, 0x37, 0xde, 0xad]).unwrap();
    let out = Command::new(exe)
        .args(["wire", "decode"])
        .arg(&junk)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(!out.stderr.is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

/// `ftfwctl ... | head`: the reader goes away; ftfwctl stops quietly with
/// success instead of panicking on the broken pipe.
#[test]
fn a_closed_pipe_ends_the_output_quietly() {
    use std::io::Read as _;
    let text = std::fs::read_to_string(vector("E1")).unwrap();
    let msg: String = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .collect::<Vec<_>>()
        .join(" ");
    // One datagram of 900 messages: far more text than a pipe holds.
    let dir = std::env::temp_dir().join(format!("ftfw-pipe-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let big = dir.join("big.hex");
    std::fs::write(&big, vec![msg.as_str(); 900].join(" ")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ftfwctl"))
        .args(["wire", "decode"])
        .arg(&big)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 64];
    stdout.read_exact(&mut first).unwrap();
    assert!(String::from_utf8_lossy(&first).contains("CT_NEW"));
    drop(stdout);
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}: {err}", out.status);
    assert!(!err.contains("panicked"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
