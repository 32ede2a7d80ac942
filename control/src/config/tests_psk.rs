//! `[sync] psk` and `psk_file`: accepted forms and refused ones, each
//! naming its field (and the key file's line).

use super::*;

const BASE: &str = "\
[[port]]
name = \"outside\"
backend = \"mem\"
[[port]]
name = \"inside\"
backend = \"mem\"
[[bridge]]
ports = [\"outside\", \"inside\"]
[sync]
local = \"192.0.2.1\"
peer = \"192.0.2.2\"
";

const HEX32: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

fn errors(text: &str) -> Vec<String> {
    match parse(text, "ftfw.toml") {
        Ok(_) => panic!("expected errors"),
        Err(e) => e.diagnostics().iter().map(ToString::to_string).collect(),
    }
}

fn key_file(name: &str, text: &str) -> std::path::PathBuf {
    let p = std::env::temp_dir().join(format!("ftfw-psk-{name}-{}", std::process::id()));
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn plain_is_the_default_and_psk_gives_key_id_1() {
    let c = parse(BASE, "ftfw.toml").unwrap();
    assert!(c.sync.unwrap().psk.is_none());
    let c = parse(&format!("{BASE}psk = \"{HEX32}\"\n"), "ftfw.toml").unwrap();
    let p = c.sync.unwrap().psk.unwrap();
    assert_eq!((p.keys.ids(), p.file), (vec![1], None));
}

#[test]
fn psk_file_holds_several_keys_by_id() {
    let f = key_file("ok", &format!("# keys\n3 {HEX32}\n4 {HEX32}\n"));
    let text = format!("{BASE}psk_file = \"{}\"\n", f.display());
    let p = parse(&text, "ftfw.toml")
        .unwrap()
        .sync
        .unwrap()
        .psk
        .unwrap();
    assert_eq!(p.keys.ids(), vec![3, 4]);
    assert_eq!(p.keys.newest().0, 4);
    assert_eq!(p.file.as_deref(), Some(f.as_path()));
    std::fs::remove_file(f).unwrap();
}

#[test]
fn bad_keys_are_refused_with_their_field_and_line() {
    let e = errors(&format!("{BASE}psk = \"00ff\"\n"));
    assert!(
        e.iter()
            .any(|d| d.contains("sync.psk") && d.contains("2 bytes")),
        "{e:?}"
    );
    let e = errors(&format!("{BASE}psk = \"xyz\"\n"));
    assert!(
        e.iter()
            .any(|d| d.contains("sync.psk") && d.contains("not hex")),
        "{e:?}"
    );
    let f = key_file("bad", &format!("1 {HEX32}\n2 abcd\n"));
    let e = errors(&format!("{BASE}psk_file = \"{}\"\n", f.display()));
    assert!(
        e.iter()
            .any(|d| d.contains("sync.psk_file") && d.contains("line 2")),
        "{e:?}"
    );
    std::fs::remove_file(&f).unwrap();
    let e = errors(&format!("{BASE}psk_file = \"{}\"\n", f.display()));
    assert!(e.iter().any(|d| d.contains("sync.psk_file")), "{e:?}");
    let e = errors(&format!("{BASE}psk = \"{HEX32}\"\npsk_file = \"k\"\n"));
    assert!(e.iter().any(|d| d.contains("not both")), "{e:?}");
    let e = errors(&format!("{BASE}psk = \"{HEX32}\"\ntransport = \"tcp\"\n"));
    assert!(
        e.iter()
            .any(|d| d.contains("sync.psk") && d.contains("UDP")),
        "{e:?}"
    );
}

/// `[failover] key_file` (and `[cluster] key_file`, the same code) written
/// as a key ring: the newest key is the one used, the file is kept for
/// the driver to watch; a raw key file still works; a bad ring names the
/// file's line.
#[test]
fn election_key_files_take_a_key_ring() {
    let election = |file: &std::path::Path| {
        format!(
            "{BASE}[failover]\nmode = \"election\"\nnode = 1\nkey_file = \"{}\"\n\
             [[failover.peer]]\nnode = 2\naddress = \"192.0.2.2\"\n",
            file.display()
        )
    };
    let newest = "ff".repeat(16);
    let ring = key_file("ring", &format!("# election keys\n1 {HEX32}\n2 {newest}\n"));
    let e = parse(&election(&ring), "ftfw.toml")
        .unwrap()
        .failover
        .election
        .unwrap();
    assert_eq!(e.key, vec![0xff; 16]);
    assert_eq!(e.key_ring_file.as_deref(), Some(ring.as_path()));
    let raw = key_file("raw", "a raw key of more than sixteen bytes\n");
    let e = parse(&election(&raw), "ftfw.toml")
        .unwrap()
        .failover
        .election
        .unwrap();
    assert_eq!(e.key, b"a raw key of more than sixteen bytes".to_vec());
    assert_eq!(e.key_ring_file, None);
    let bad = key_file("badring", &format!("1 {HEX32}\n\n2 xyz\n"));
    let err = errors(&election(&bad));
    assert_eq!(
        err,
        [format!(
            "ftfw.toml:15: failover.key_file: {}:3: the key is not hex (two digits per byte)",
            bad.display()
        )],
        "{err:?}"
    );
    for f in [ring, raw, bad] {
        std::fs::remove_file(f).unwrap();
    }
}
