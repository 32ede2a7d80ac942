//! Key rotation of the built-in election, end to end (issue 16): two
//! appliances in one process, each with its election driver and a
//! `[failover] key_file` written as a key ring, over loopback UDP. The key
//! files are rewritten while the drivers run: `ftfwctl status` shows each
//! reload (`driver.key_reloads`) and the ring in use (`keys`), the peer's
//! messages are refused while only one side has the new key and taken
//! again once both have it, and a bad file is counted
//! (`driver.key_reload_errors`) and leaves the keys in use. No root needed.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ftfw_control::console::proto::{Payload, Request};
use ftfw_control::console::{render, ConsoleHandler};
use ftfw_control::election_driver::ElectionDriver;
use ftfw_testkit::mem::{free_port, ok, start_mem, MemNode, MEM_BRIDGE};
use serde_json::Value;

const K1: &str = "000102030405060708090a0b0c0d0e0f";
const K2: &str = "f0e1d2c3b4a5968778695a4b3c2d1e0f";

struct Node {
    mem: MemNode,
    driver: ElectionDriver,
    keys: PathBuf,
}

fn node(root: &Path, id: u32, local: &str, peer: &str, sync_port: u16, port: u16) -> Node {
    let dir = root.join(format!("n{id}"));
    std::fs::create_dir_all(&dir).unwrap();
    let keys = dir.join("election.keys");
    std::fs::write(&keys, format!("1 {K1}\n")).unwrap();
    let text = format!(
        "[daemon]\nconsole_socket = \"ftfwd.sock\"\n\n\
         {MEM_BRIDGE}[conntrack]\ncapacity = 1024\n\n\
         [rules]\npolicy = \"drop\"\nrules = [\"accept ct established,related\"]\n\n\
         [sync]\nlocal = \"{local}\"\npeer = \"{peer}\"\nport = {sync_port}\nalive_interval_ms = 50\n\n\
         [failover]\nmode = \"election\"\nnode = {id}\npriority = {}\nkey_file = \"{}\"\n\
         port = {port}\ncheck_interval_ms = 50\n\n\
         [[failover.peer]]\nnode = {}\naddress = \"{peer}\"\n",
        300 - id * 100,
        keys.display(),
        3 - id,
    );
    let mem = start_mem(&format!("ek{id}"), dir, &text);
    let driver = ElectionDriver::new(mem.app.config(), Instant::now()).unwrap();
    Node { mem, driver, keys }
}

/// The election part of `ftfwctl status`.
fn election(n: &mut Node) -> Value {
    let Payload::Status(s) = ok(n.mem.app.handle(Request::Status)) else {
        panic!("a status")
    };
    s.election.expect("an election status")
}

fn num(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("{v} is no number"))
}

/// (key_reloads, key_reload_errors, ids in use, sending id)
fn keys(n: &mut Node) -> (u64, u64, Value, Value) {
    let e = election(n);
    (
        num(&e["driver"]["key_reloads"]),
        num(&e["driver"]["key_reload_errors"]),
        e["keys"]["ids"].clone(),
        e["keys"]["sending"].clone(),
    )
}

/// (accepted, unauthenticated) election datagrams.
fn codec(n: &mut Node) -> (u64, u64) {
    let e = election(n);
    (
        num(&e["codec"]["accepted"]),
        num(&e["codec"]["unauthenticated"]),
    )
}

/// Runs both drivers until `f` holds (panics after 10 s, naming `what`).
fn pump_until(ns: &mut [Node; 2], what: &str, mut f: impl FnMut(&mut [Node; 2]) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        for n in ns.iter_mut() {
            n.driver.poll(Instant::now(), &mut n.mem.app);
        }
        if f(ns) {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Both nodes take new authentic messages from each other.
fn both_accept(ns: &mut [Node; 2], what: &str) {
    pump_until(ns, "a status", |_| true);
    let before = [codec(&mut ns[0]).0, codec(&mut ns[1]).0];
    pump_until(ns, what, |ns| {
        codec(&mut ns[0]).0 > before[0] + 2 && codec(&mut ns[1]).0 > before[1] + 2
    });
}

#[test]
fn rewritten_key_rings_are_taken_counted_and_used_and_bad_ones_refused() {
    let root = std::env::temp_dir().join(format!("ftfw-election-keys-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let (sp, ep) = (free_port(), free_port());
    let mut ns = [
        node(&root, 1, "127.0.0.1", "127.0.0.2", sp, ep),
        node(&root, 2, "127.0.0.2", "127.0.0.1", sp, ep),
    ];
    let one = serde_json::json!([1]);
    both_accept(&mut ns, "both nodes to hear each other with key 1");
    // The reading at start is no reload.
    for n in ns.iter_mut() {
        assert_eq!(keys(n), (0, 0, one.clone(), 1.into()));
    }

    // Node 2 gets key 2 first: it seals with it, node 1 (key 1 only)
    // refuses its messages.
    std::fs::write(&ns[1].keys, format!("1 {K1}\n2 {K2}\n")).unwrap();
    pump_until(&mut ns, "node 2 to take key 2", |ns| keys(&mut ns[1]).0 == 1);
    assert_eq!(
        keys(&mut ns[1]),
        (1, 0, serde_json::json!([1, 2]), 2.into())
    );
    let refused = codec(&mut ns[0]).1;
    pump_until(&mut ns, "node 1 to refuse node 2's key-2 messages", |ns| {
        codec(&mut ns[0]).1 > refused + 2
    });
    assert_eq!(keys(&mut ns[0]).0, 0, "node 1's file did not change");

    // Node 1 gets key 2 as well: it takes node 2's messages again.
    std::fs::write(&ns[0].keys, format!("1 {K1}\n2 {K2}\n")).unwrap();
    pump_until(&mut ns, "node 1 to take key 2", |ns| keys(&mut ns[0]).0 == 1);
    both_accept(&mut ns, "both nodes to take each other's key-2 messages");

    // A bad file: counted, refused, the ring in use stays (and works).
    std::fs::write(&ns[1].keys, format!("1 {K1}\n2 not-hex\n")).unwrap();
    pump_until(&mut ns, "node 2 to refuse the bad file", |ns| {
        keys(&mut ns[1]).1 == 1
    });
    assert_eq!(
        keys(&mut ns[1]),
        (1, 1, serde_json::json!([1, 2]), 2.into())
    );
    both_accept(&mut ns, "both nodes to go on with key 2");

    // Key 1 retired on both: only key 2 left, still talking.
    for n in ns.iter_mut() {
        std::fs::write(&n.keys, format!("2 {K2}\n")).unwrap();
    }
    pump_until(&mut ns, "both nodes to drop key 1", |ns| {
        keys(&mut ns[0]).0 == 2 && keys(&mut ns[1]).0 == 2
    });
    assert_eq!(keys(&mut ns[0]), (2, 0, serde_json::json!([2]), 2.into()));
    assert_eq!(keys(&mut ns[1]), (2, 1, serde_json::json!([2]), 2.into()));
    both_accept(&mut ns, "both nodes to talk with key 2 alone");

    // What `ftfwctl status` prints.
    let text = render::election(&election(&mut ns[1]));
    let line = format!(
        "key ring 2 from {}, sealing with 2; 2 reload(s), 1 refused",
        ns[1].keys.display()
    );
    assert!(text.contains(&line), "{text}");
    for n in &mut ns {
        n.mem.app.stop();
    }
    let _ = std::fs::remove_dir_all(&root);
}
