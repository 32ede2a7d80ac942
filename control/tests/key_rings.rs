//! Key rotation of the built-in election and of the cluster coordinator,
//! end to end (issue 16): two appliances in one process, each with its
//! election (or cluster) driver and a `key_file` written as a key ring,
//! over loopback UDP. The key files are rewritten while the drivers run:
//! the status (`ftfwctl status`, `ftfwctl cluster status`) shows each
//! reload (`driver.key_reloads`) and the ring in use (`keys`), the peer's
//! messages are refused while only one side has the new key and taken
//! again once both have it, and a bad file is counted
//! (`driver.key_reload_errors`) and leaves the keys in use. No root needed.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ftfw_control::cluster_driver::ClusterDriver;
use ftfw_control::console::proto::{Payload, Request};
use ftfw_control::console::{render, ConsoleHandler};
use ftfw_control::election_driver::ElectionDriver;
use ftfw_testkit::mem::{free_port, ok, start_mem, MemNode, MEM_BRIDGE};
use serde_json::Value;

const K1: &str = "000102030405060708090a0b0c0d0e0f";
const K2: &str = "f0e1d2c3b4a5968778695a4b3c2d1e0f";

/// An appliance and the driver under test.
trait Driven {
    /// Runs the driver once.
    fn poll(&mut self);
    /// The driver's status as the console shows it.
    fn status(&mut self) -> Value;
    /// The key ring file.
    fn keys_path(&self) -> &Path;
    /// Where the codec's counters are in [`Driven::status`].
    fn codec(v: &Value) -> &Value;
}

struct Election {
    mem: MemNode,
    driver: ElectionDriver,
    keys: PathBuf,
}

impl Driven for Election {
    fn poll(&mut self) {
        self.driver.poll(Instant::now(), &mut self.mem.app);
    }
    fn status(&mut self) -> Value {
        let Payload::Status(s) = ok(self.mem.app.handle(Request::Status)) else {
            panic!("a status")
        };
        s.election.expect("an election status")
    }
    fn keys_path(&self) -> &Path {
        &self.keys
    }
    fn codec(v: &Value) -> &Value {
        &v["codec"]
    }
}

struct Cluster {
    mem: MemNode,
    driver: ClusterDriver,
    keys: PathBuf,
}

impl Driven for Cluster {
    fn poll(&mut self) {
        self.driver.poll(Instant::now(), &mut self.mem.app);
    }
    fn status(&mut self) -> Value {
        let Payload::Cluster(c) = ok(self.mem.app.handle(Request::ClusterStatus)) else {
            panic!("a cluster status")
        };
        c.coordinator
    }
    fn keys_path(&self) -> &Path {
        &self.keys
    }
    fn codec(v: &Value) -> &Value {
        &v["counters"]["codec"]
    }
}

/// Node `id` (1 or 2, at 127.0.0.`id`) with `section` (its driver's
/// configuration, `KEYS` standing for the key file's path).
fn start(root: &Path, kind: &str, id: u32, sync_port: u16, section: &str) -> (MemNode, PathBuf) {
    let dir = root.join(format!("{kind}{id}"));
    std::fs::create_dir_all(&dir).unwrap();
    let keys = dir.join("keys");
    std::fs::write(&keys, format!("1 {K1}\n")).unwrap();
    let peer = 3 - id;
    let text = format!(
        "[daemon]\nconsole_socket = \"ftfwd.sock\"\n\n\
         {MEM_BRIDGE}[conntrack]\ncapacity = 1024\n\n\
         [rules]\npolicy = \"drop\"\nrules = [\"accept ct established,related\"]\n\n\
         [sync]\nlocal = \"127.0.0.{id}\"\n{}port = {sync_port}\nalive_interval_ms = 50\n\n{}",
        if kind == "election" {
            format!("peer = \"127.0.0.{peer}\"\n")
        } else {
            String::new()
        },
        section.replace("KEYS", &keys.display().to_string()),
    );
    (start_mem(&format!("kr{kind}{id}"), dir, &text), keys)
}

fn election_node(root: &Path, id: u32, sync_port: u16, port: u16) -> Election {
    let section = format!(
        "[failover]\nmode = \"election\"\nnode = {id}\npriority = {}\nkey_file = \"KEYS\"\n\
         port = {port}\ncheck_interval_ms = 50\n\n\
         [[failover.peer]]\nnode = {}\naddress = \"127.0.0.{}\"\n",
        300 - id * 100,
        3 - id,
        3 - id,
    );
    let (mem, keys) = start(root, "election", id, sync_port, &section);
    let driver = ElectionDriver::new(mem.app.config(), Instant::now()).unwrap();
    Election { mem, driver, keys }
}

fn cluster_node(root: &Path, id: u32, sync_port: u16, port: u16) -> Cluster {
    let section = format!(
        "[cluster]\nnode = {id}\nbuckets = 16\nport = {port}\nkey_file = \"KEYS\"\n\
         [[cluster.member]]\nid = 1\naddress = \"127.0.0.1\"\n\
         [[cluster.member]]\nid = 2\naddress = \"127.0.0.2\"\n"
    );
    let (mem, keys) = start(root, "cluster", id, sync_port, &section);
    let driver = ClusterDriver::new(mem.app.config(), Instant::now()).unwrap();
    Cluster { mem, driver, keys }
}

fn num(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("{v} is no number"))
}

/// (key_reloads, key_reload_errors, ids in use, sending id)
fn keys(n: &mut impl Driven) -> (u64, u64, Value, Value) {
    let e = n.status();
    (
        num(&e["driver"]["key_reloads"]),
        num(&e["driver"]["key_reload_errors"]),
        e["keys"]["ids"].clone(),
        e["keys"]["sending"].clone(),
    )
}

/// (accepted, unauthenticated) datagrams.
fn codec<N: Driven>(n: &mut N) -> (u64, u64) {
    let v = n.status();
    let c = N::codec(&v);
    (num(&c["accepted"]), num(&c["unauthenticated"]))
}

/// Runs both drivers until `f` holds (panics after 10 s, naming `what`).
fn pump_until<N: Driven>(ns: &mut [N; 2], what: &str, mut f: impl FnMut(&mut [N; 2]) -> bool) {
    ftfw_testkit::wait_until(what, Duration::from_secs(10), || {
        for n in ns.iter_mut() {
            n.poll();
        }
        f(ns)
    });
}

/// Both nodes take new authentic messages from each other.
fn both_accept<N: Driven>(ns: &mut [N; 2], what: &str) {
    pump_until(ns, "a status", |_| true);
    let before = [codec(&mut ns[0]).0, codec(&mut ns[1]).0];
    pump_until(ns, what, |ns| {
        codec(&mut ns[0]).0 > before[0] + 2 && codec(&mut ns[1]).0 > before[1] + 2
    });
}

/// The rotation, as the module documentation tells; returns the status
/// of node 2 at the end.
fn rotate<N: Driven>(ns: &mut [N; 2]) -> Value {
    let one = serde_json::json!([1]);
    both_accept(ns, "both nodes to hear each other with key 1");
    // The reading at start is no reload.
    for n in ns.iter_mut() {
        assert_eq!(keys(n), (0, 0, one.clone(), 1.into()));
    }

    // Node 2 gets key 2 first: it seals with it, node 1 (key 1 only)
    // refuses its messages.
    std::fs::write(ns[1].keys_path(), format!("1 {K1}\n2 {K2}\n")).unwrap();
    pump_until(ns, "node 2 to take key 2", |ns| keys(&mut ns[1]).0 == 1);
    assert_eq!(
        keys(&mut ns[1]),
        (1, 0, serde_json::json!([1, 2]), 2.into())
    );
    let refused = codec(&mut ns[0]).1;
    pump_until(ns, "node 1 to refuse node 2's key-2 messages", |ns| {
        codec(&mut ns[0]).1 > refused + 2
    });
    assert_eq!(keys(&mut ns[0]).0, 0, "node 1's file did not change");

    // Node 1 gets key 2 as well: it takes node 2's messages again.
    std::fs::write(ns[0].keys_path(), format!("1 {K1}\n2 {K2}\n")).unwrap();
    pump_until(ns, "node 1 to take key 2", |ns| keys(&mut ns[0]).0 == 1);
    both_accept(ns, "both nodes to take each other's key-2 messages");

    // A bad file: counted, refused, the ring in use stays (and works).
    std::fs::write(ns[1].keys_path(), format!("1 {K1}\n2 not-hex\n")).unwrap();
    pump_until(ns, "node 2 to refuse the bad file", |ns| {
        keys(&mut ns[1]).1 == 1
    });
    assert_eq!(
        keys(&mut ns[1]),
        (1, 1, serde_json::json!([1, 2]), 2.into())
    );
    both_accept(ns, "both nodes to go on with key 2");

    // Key 1 retired on both: only key 2 left, still talking.
    for n in ns.iter_mut() {
        std::fs::write(n.keys_path(), format!("2 {K2}\n")).unwrap();
    }
    pump_until(ns, "both nodes to drop key 1", |ns| {
        keys(&mut ns[0]).0 == 2 && keys(&mut ns[1]).0 == 2
    });
    assert_eq!(keys(&mut ns[0]), (2, 0, serde_json::json!([2]), 2.into()));
    assert_eq!(keys(&mut ns[1]), (2, 1, serde_json::json!([2]), 2.into()));
    both_accept(ns, "both nodes to talk with key 2 alone");
    ns[1].status()
}

fn root(what: &str) -> PathBuf {
    let root = std::env::temp_dir().join(format!("ftfw-key-rings-{what}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    root
}

#[test]
fn the_election_takes_rewritten_key_rings_counts_them_and_refuses_bad_ones() {
    let root = root("election");
    let (sp, ep) = (free_port(), free_port());
    let mut ns = [
        election_node(&root, 1, sp, ep),
        election_node(&root, 2, sp, ep),
    ];
    let status = rotate(&mut ns);
    // What `ftfwctl status` prints.
    let text = render::election(&status);
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

#[test]
fn the_cluster_takes_rewritten_key_rings_counts_them_and_refuses_bad_ones() {
    let root = root("cluster");
    let (sp, cp) = (free_port(), free_port());
    let mut ns = [
        cluster_node(&root, 1, sp, cp),
        cluster_node(&root, 2, sp, cp),
    ];
    rotate(&mut ns);
    // What `ftfwctl cluster status` prints.
    let text = render::payload(&ok(ns[1].mem.app.handle(Request::ClusterStatus)));
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
