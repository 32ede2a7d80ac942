//! Structured logging: a takeover, a stand-by and rule reloads log their
//! steps inside `takeover`, `commit`, `stand_by`, `resync` and
//! `rule_reload` spans, in the order they happen, in ftfwd's
//! `--log-format json` form (the same subscriber settings, writing to a
//! buffer). The appliance runs in-process on this thread.

use std::io::Write;
use std::sync::{Arc, Mutex};

use ftfw_control::console::proto::{NotifyState, Request, Response};
use ftfw_control::console::ConsoleHandler;
use ftfw_testkit::mem::{free_port, start_mem, MEM_BRIDGE};
use serde_json::Value;

#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `spans/…: message [step]` of every line.
fn story(buf: &Buf) -> Vec<String> {
    let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    text.lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            let spans: Vec<&str> = v["spans"]
                .as_array()
                .map(|a| a.iter().filter_map(|s| s["name"].as_str()).collect())
                .unwrap_or_default();
            let msg = v["fields"]["message"].as_str().unwrap_or_default();
            match v["fields"]["step"].as_str() {
                Some(step) => format!("{}: {msg} {step}", spans.join("/")),
                None => format!("{}: {msg}", spans.join("/")),
            }
        })
        .collect()
}

#[test]
fn takeover_stand_by_and_reloads_log_in_order_in_their_spans() {
    let dir = std::env::temp_dir().join(format!("ftfw-logspans-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("rules.conf"), "policy accept\n").unwrap();
    let text = format!(
        "[daemon]\nconsole_socket = \"ftfwd.sock\"\nstate_file = \"\"\n\n{MEM_BRIDGE}\
         [conntrack]\ncapacity = 65536\n\n[rules]\nfile = \"rules.conf\"\n\n\
         [sync]\nlocal = \"127.0.0.1\"\npeer = \"127.0.0.2\"\nport = {}\n\n\
         [failover]\nmode = \"keepalived\"\n",
        free_port()
    );
    let buf = Buf::default();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_current_span(true)
        .with_span_list(true)
        .with_writer({
            let buf = buf.clone();
            move || buf.clone()
        })
        .finish();
    let mut n = start_mem("logspans", dir.clone(), &text);
    tracing::subscriber::with_default(subscriber, || {
        let ok = |r: Response| assert!(matches!(r, Response::Ok(_)), "{r:?}");
        ok(n.app.handle(Request::Notify {
            state: NotifyState::Master,
        }));
        ok(n.app.handle(Request::Notify {
            state: NotifyState::Backup,
        }));
        ok(n.app.handle(Request::RulesReload));
        std::fs::write(dir.join("rules.conf"), "policy sideways\n").unwrap();
        assert!(matches!(
            n.app.handle(Request::RulesReload),
            Response::Error(_)
        ));
    });
    let got = story(&buf);
    let want = [
        "takeover/commit: external cache committed to the flow table",
        "takeover: step done commit",
        "takeover: step done forward",
        "takeover: step done announce",
        "takeover: step done export to peer",
        "takeover: role change: notify master",
        "stand_by: step done stop forwarding",
        "stand_by/resync: resync requested from the peer",
        "stand_by: step done resync request",
        "stand_by: role change: notify backup",
        "rule_reload: rules reloaded",
        "rule_reload: rules reload refused; the running rules stay",
    ];
    assert_eq!(got, want, "{:#?}", got);
    // The span fields a shipper filters on.
    let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    let first: Value = serde_json::from_str(text.lines().nth(1).unwrap()).unwrap();
    assert_eq!(first["span"]["name"], "takeover");
    assert_eq!(first["span"]["from"], "backup");
    assert_eq!(first["span"]["trigger"], "master");
    assert!(first["fields"]["micros"].is_u64(), "{first}");
}
