//! Writes the seed corpus of every fuzz target into fuzz/corpus/TARGET/:
//! datagrams from the election and cluster encoders, console request
//! lines, the example configuration files. Run from fuzz/:
//! `cargo run --release --example seeds` (it replaces the seed files; the
//! committed corpus is its output).

use std::path::Path;

use ftfw_control::cluster::msg::{Body as CBody, Heartbeat, NodeState, Request as CRequest};
use ftfw_control::cluster::{plan, wire as cwire, Balance};
use ftfw_control::console::proto::Request;
use ftfw_control::election::{
    wire as ewire, Body, Entry, Freshness, NodeId, Role, SelfReport, StatusTable,
};
use ftfw_dataplane::buckets::BucketSet;

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), bytes).unwrap();
}

fn election() {
    let report = SelfReport {
        priority: 100,
        freshness: Freshness {
            synced: true,
            seq: 42,
        },
        role: Role::Backup,
    };
    let mut table = StatusTable::bootstrap([(NodeId(1), 100), (NodeId(2), 50), (NodeId(3), 10)]);
    table.upsert(Entry {
        role: Role::Primary,
        ..Entry::configured(NodeId(1), 100)
    });
    table.set_master(Some(NodeId(1)));
    let bodies = [
        Body::SvcCheck { nonce: 7, report },
        Body::SvcCheckReply {
            nonce: 7,
            ok: true,
            table: table.clone(),
        },
        Body::SvcShutdown {
            table: table.clone(),
        },
        Body::DnstrTakeover { attempt: 3, report },
        Body::DnstrTakeoverDeny { attempt: 3 },
        Body::UpstrTakeover { attempt: 4, report },
        Body::UpstrTakeoverDeny { attempt: 4 },
        Body::SvcTakeover { table },
    ];
    // Sealed with the fuzz target's key (decoded whole) ...
    let mut codec = ewire::Codec::new(NodeId(1), b"fuzz-election-key-0123456789", 0).unwrap();
    let mut out = Vec::new();
    for (i, body) in bodies.iter().enumerate() {
        codec.encode(body, &mut out);
        write(
            "election_wire",
            &format!("sealed-{i}-{}", body.name()),
            &out,
        );
        // ... and without the tag (parse_unsigned, and the target's
        // re-sealed path).
        ewire::encode_unsigned(NodeId(2), 9 + i as u64, body, &mut out);
        write(
            "election_wire",
            &format!("unsigned-{i}-{}", body.name()),
            &out,
        );
    }
}

fn cluster() {
    let m = plan(None, &[1, 2, 3], 1, Balance::Full, 16).unwrap();
    let mut nodes = m.nodes().to_vec();
    nodes[2].dead = true;
    nodes[1].incarnation = 77;
    let map = m.stamped(9, 1, nodes).unwrap();
    let two = plan(None, &[1, 2], 0, Balance::Full, 8).unwrap();
    let bodies = [
        CBody::Heartbeat(Heartbeat {
            incarnation: 5,
            state: NodeState::Ready,
            map_version: 9,
            applied_version: 8,
            flows: 1234,
            owned: 5,
            release_ack: 7,
        }),
        CBody::Map(map),
        CBody::Map(two),
        CBody::Released {
            version: 9,
            buckets: BucketSet::from_iter_in(16, [0, 7, 8, 15]),
        },
        CBody::Request(CRequest::Drain(3)),
        CBody::Request(CRequest::Undrain(2)),
        CBody::Request(CRequest::Rebalance),
    ];
    let mut codec = cwire::Codec::new(1, &[1, 2, 3], b"fuzz-cluster-key-0123456789", 0).unwrap();
    let mut out = Vec::new();
    for (i, body) in bodies.iter().enumerate() {
        codec.encode(body, &mut out);
        write("cluster_wire", &format!("sealed-{i}"), &out);
        cwire::encode_unsigned(2, 9 + i as u64, body, &mut out);
        write("cluster_wire", &format!("unsigned-{i}"), &out);
    }
}

fn console() {
    let lines = [
        r#"{"cmd":"status"}"#,
        r#"{"cmd":"stats"}"#,
        r#"{"cmd":"flows_list","filter":{"proto":"tcp","src":"192.0.2.1","dport":443,"state":"ESTABLISHED"},"limit":10}"#,
        r#"{"cmd":"flows_list","filter":{"proto":17,"dst":"2001:db8::1","zone":3,"mark":7}}"#,
        r#"{"cmd":"flows_delete","filter":{}}"#,
        r#"{"cmd":"flows_add","flow":{"proto":"tcp","original":{"src":"192.0.2.9","dst":"198.51.100.9","sport":41000,"dport":443},"state":"ESTABLISHED","status":14,"timeout":600}}"#,
        r#"{"cmd":"flows_add","flow":{"proto":"icmp","original":{"src":"192.0.2.9","dst":"198.51.100.9","type":8,"code":0,"id":77}}}"#,
        r#"{"cmd":"rules_show"}"#,
        r#"{"cmd":"rules_reload"}"#,
        r#"{"cmd":"sync_status"}"#,
        r#"{"cmd":"external_list","limit":5}"#,
        r#"{"cmd":"commit"}"#,
        r#"{"cmd":"resync"}"#,
        r#"{"cmd":"flush_external"}"#,
        r#"{"cmd":"notify","state":"master"}"#,
        r#"{"cmd":"neighbors"}"#,
        r#"{"cmd":"routes"}"#,
        r#"{"cmd":"migrate","to":2}"#,
        r#"{"cmd":"restart"}"#,
        r#"{"cmd":"cluster_status"}"#,
        r#"{"cmd":"cluster_change","change":{"op":"drain","node":2}}"#,
        r#"{"cmd":"cluster_change","change":{"op":"rebalance"}}"#,
    ];
    for (i, l) in lines.iter().enumerate() {
        if let Err(e) = serde_json::from_str::<Request>(l) {
            eprintln!("console seed {l} does not parse: {e}");
        }
        write("console_request", &format!("line-{i:02}"), l.as_bytes());
    }
}

fn configs() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs");
    for (i, name) in ["standalone", "replicated", "routed", "cluster"]
        .iter()
        .enumerate()
    {
        let text = std::fs::read_to_string(dir.join(format!("{name}.toml"))).unwrap();
        let file = dir.join("fuzz.toml");
        if let Err(e) = ftfw_control::config::parse(&text, &file.to_string_lossy()) {
            eprintln!("{name}.toml does not parse: {e}");
        }
        write("config", name, text.as_bytes());
        // config_mutate: the base alone, and with one value replaced.
        write("config_mutate", name, &[i as u8]);
        write(
            "config_mutate",
            &format!("{name}-edit"),
            &[&[i as u8][..], b"\x03\x00 7\n\x05\x02[x]"].concat(),
        );
    }
    // rules: the example rule file.
    write(
        "rules",
        "rules.conf",
        &std::fs::read(dir.join("rules.conf")).unwrap(),
    );
}

/// Datagrams sealed as the `sync_auth` target's peer would (its keys,
/// address and start), and plain conntrackd ones for the sealed path.
fn sync_auth() {
    use ftfw_control::keyring::Keyring;
    use ftfw_control::replication::auth::SyncAuth;
    use ftfw_sync::wire::{flags, Header, MsgType};
    let keys = "1 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n\
                2 f0e0d0c0b0a090807060504030201000f1e1d1c1b1a191817161514131211101\n";
    let start = 1_800_000_000_000_000;
    let mut peer = SyncAuth::new(
        Keyring::parse(keys).unwrap(),
        "192.0.2.1".parse().unwrap(),
        start,
    );
    let alive = Header::new(MsgType::Ctl, flags::ALIVE, 8, 7).to_bytes();
    let mut nack = Header::new(MsgType::Ctl, flags::NACK, 16, 8).to_bytes().to_vec();
    nack.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 9]);
    let mut out = Vec::new();
    for (i, plain) in [&alive[..], &nack[..], &[][..]].into_iter().enumerate() {
        write("sync_auth", &format!("plain-{i}"), plain);
        peer.seal(plain, start + 1000 + i as u64, &mut out);
        write("sync_auth", &format!("sealed-{i}"), &out);
    }
}

fn main() {
    sync_auth();
    election();
    cluster();
    console();
    configs();
}
