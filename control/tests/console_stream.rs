//! `flows list` and `external list` written as the client reads them
//! (issue 16): an appliance in this process with 20,000 flows, its console
//! server driven by this test's event loop; a pair replicating over
//! loopback UDP for the external cache. No root needed.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use ftfw_control::console::proto::{FlowFilter, Payload, Request, Response};
use ftfw_control::console::server::{ConsoleServer, MAX_CLIENTS};
use ftfw_control::console::ConsoleHandler;
use ftfw_dataplane::flow::FlowState;
use ftfw_testkit::flows::{flow, tuple};
use ftfw_testkit::mem::{start_mem, MemNode};
use mio::{Events, Poll};

const FLOWS: u16 = 20_000;

fn node(name: &str) -> MemNode {
    let dir = std::env::temp_dir().join(format!("ftfw-stream-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let text = format!(
        "[daemon]\nconsole_socket = \"ftfwd.sock\"\n\n{}[conntrack]\ncapacity = 65536\n\n\
         [rules]\npolicy = \"accept\"\n",
        ftfw_testkit::mem::MEM_BRIDGE
    );
    let n = start_mem(name, dir, &text);
    let states: Vec<FlowState> = (0..FLOWS)
        .map(|i| {
            let mut fj = flow(
                "tcp",
                tuple("192.0.2.60", "198.51.100.60", Some(20000 + i), Some(443)),
                Some("ESTABLISHED"),
            );
            fj.timeout = 600;
            FlowState::try_from(fj).unwrap()
        })
        .collect();
    assert_eq!(
        n.app.import_flows_with(states, false),
        Ok((usize::from(FLOWS), 0))
    );
    n
}

/// The whole streamed line.
fn streamed(n: &mut MemNode, req: &Request) -> Vec<u8> {
    let mut s = n.app.stream(req).expect("the listing is streamed");
    let mut out = Vec::new();
    for _ in 0..1_000_000 {
        if !s.fill(&mut out).unwrap() {
            return out;
        }
    }
    panic!("the stream never ended");
}

/// `"timeout":N` with the digits taken out.
fn mask_timeouts(line: &str) -> String {
    mask(line, "\"timeout\":")
}

/// The digits after every `key` taken out.
fn mask(line: &str, key: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(i) = rest.find(key) {
        out.push_str(&rest[..i + key.len()]);
        rest = rest[i + key.len()..].trim_start_matches(|c: char| c.is_ascii_digit());
    }
    out.push_str(rest);
    out
}

#[test]
fn the_streamed_line_is_the_whole_answer_byte_for_byte() {
    let mut n = node("same");
    for (filter, limit) in [
        (FlowFilter::default(), None),
        (FlowFilter::default(), Some(7)),
        (
            FlowFilter {
                sport: Some(20042),
                ..FlowFilter::default()
            },
            None,
        ),
    ] {
        let req = Request::FlowsList { filter, limit };
        let line = streamed(&mut n, &req);
        let whole = n.app.handle(req.clone());
        let Response::Ok(Payload::Flows(l)) = &whole else {
            panic!("{whole:?}")
        };
        assert!(l.total > 0);
        // The remaining timeouts may have ticked between the two.
        let (a, b) = (
            mask_timeouts(&String::from_utf8(line).unwrap()),
            mask_timeouts(&whole.to_line()),
        );
        let at = a.bytes().zip(b.bytes()).position(|(x, y)| x != y);
        assert!(
            a == b,
            "{req:?}: differ at {at:?}: {:?} / {:?}",
            at.map(|i| &a[i.saturating_sub(200)..(i + 100).min(a.len())]),
            at.map(|i| &b[i.saturating_sub(200)..(i + 100).min(b.len())])
        );
    }
}

/// 63 clients ask for the whole table and never read; one more reads its
/// answer. The server holds at most a piece per client (not the 20,000
/// flows each), and the reader gets every flow.
#[test]
fn clients_that_never_read_hold_a_bounded_piece_each() {
    let mut n = node("bound");
    let path = n.dir.join("console-test.sock");
    let mut server = ConsoleServer::bind(&path, 100).unwrap();
    let mut poll = Poll::new().unwrap();
    server.register(poll.registry()).unwrap();
    let mut events = Events::with_capacity(256);
    let req = format!(
        "{}\n",
        serde_json::to_string(&Request::FlowsList {
            filter: FlowFilter::default(),
            limit: None,
        })
        .unwrap()
    );
    let mut sleepers = Vec::new();
    for _ in 0..MAX_CLIENTS - 1 {
        let mut c = UnixStream::connect(&path).unwrap();
        c.write_all(req.as_bytes()).unwrap();
        sleepers.push(c);
    }
    let reader_path = path.clone();
    let reader_req = req.clone();
    let reader = std::thread::spawn(move || {
        let mut c = UnixStream::connect(&reader_path).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        c.write_all(reader_req.as_bytes()).unwrap();
        let mut line = String::new();
        BufReader::new(&mut c).read_line(&mut line).unwrap();
        line
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut most = 0;
    while !reader.is_finished() {
        assert!(Instant::now() < deadline, "the reader never got its answer");
        poll.poll(&mut events, Some(Duration::from_millis(10)))
            .unwrap();
        for ev in &events {
            if server.owns(ev.token()) {
                server.handle_event(poll.registry(), ev, &mut n.app);
            }
        }
        most = most.max(server.pending_total());
    }
    let line = reader.join().unwrap();
    let Response::Ok(Payload::Flows(l)) = serde_json::from_str::<Response>(&line).unwrap() else {
        panic!("not a flows listing")
    };
    assert_eq!(
        (l.flows.len(), l.total),
        (usize::from(FLOWS), u64::from(FLOWS))
    );
    // Each sleeper's answer would be the whole line (about 9 MB); the
    // server holds at most a refill (64 KiB) plus one piece (512 flows,
    // under 256 KiB) per client.
    let bound = MAX_CLIENTS * 320 * 1024;
    assert!(
        most <= bound,
        "the server held {most} bytes (bound {bound}, one answer is {} bytes)",
        line.len()
    );
    assert!(line.len() * (MAX_CLIENTS - 1) > 4 * bound);
    // The sleepers did get the start of their answers.
    let mut head = [0u8; 15];
    sleepers[0].read_exact(&mut head).unwrap();
    assert_eq!(&head, br#"{"ok":true,"kin"#);
}

/// A pair replicating over loopback UDP: node `id` at 127.0.0.`id`.
fn pair_node(id: u8, port: u16) -> MemNode {
    let dir =
        std::env::temp_dir().join(format!("ftfw-stream-ext{id}-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let text = format!(
        "[daemon]\nconsole_socket = \"ftfwd.sock\"\n\n{}[conntrack]\ncapacity = 65536\n\n\
         [rules]\npolicy = \"accept\"\n\n\
         [sync]\nlocal = \"127.0.0.{id}\"\npeer = \"127.0.0.{}\"\nport = {port}\nalive_interval_ms = 50\n",
        ftfw_testkit::mem::MEM_BRIDGE,
        3 - id
    );
    start_mem(&format!("ext{id}"), dir, &text)
}

/// `external list` of 5,000 replicated flows: the streamed line is the
/// whole answer byte for byte (up to the timeouts and ages, which tick),
/// with and without a limit and a filter.
#[test]
fn the_streamed_external_list_is_the_whole_answer_byte_for_byte() {
    const N: u16 = 5000;
    let port = ftfw_testkit::mem::free_port();
    let mut a = pair_node(1, port);
    let mut b = pair_node(2, port);
    let states: Vec<FlowState> = (0..N)
        .map(|i| {
            let fj = flow(
                "tcp",
                tuple("192.0.2.70", "198.51.100.70", Some(30000 + i), Some(443)),
                Some("ESTABLISHED"),
            );
            FlowState::try_from(fj).unwrap()
        })
        .collect();
    assert_eq!(
        a.app.import_flows_with(states, true),
        Ok((usize::from(N), 0))
    );
    ftfw_testkit::wait_until("the flows at node 2", Duration::from_secs(30), || {
        ftfw_testkit::mem::external(&mut b).total >= u64::from(N)
    });
    for (filter, limit) in [
        (FlowFilter::default(), None),
        (FlowFilter::default(), Some(7)),
        (FlowFilter::default(), Some(0)),
        (
            FlowFilter {
                sport: Some(30042),
                ..FlowFilter::default()
            },
            None,
        ),
    ] {
        let req = Request::ExternalList { filter, limit };
        let line = streamed(&mut b, &req);
        let whole = b.app.handle(req.clone());
        let Response::Ok(Payload::ExternalFlows(l)) = &whole else {
            panic!("{whole:?}")
        };
        assert!(l.total > 0);
        let masked = |s: &str| mask(&mask_timeouts(s), "\"active_secs\":");
        let (x, y) = (
            masked(&String::from_utf8(line).unwrap()),
            masked(&whole.to_line()),
        );
        let at = x.bytes().zip(y.bytes()).position(|(p, q)| p != q);
        assert!(
            x == y,
            "{req:?}: differ at {at:?}: {:?} / {:?}",
            at.map(|i| &x[i.saturating_sub(200)..(i + 100).min(x.len())]),
            at.map(|i| &y[i.saturating_sub(200)..(i + 100).min(y.len())])
        );
    }
    // Node 1 has no external flows: an empty listing, streamed as well.
    let req = Request::ExternalList {
        filter: FlowFilter::default(),
        limit: None,
    };
    assert_eq!(
        String::from_utf8(streamed(&mut a, &req)).unwrap(),
        a.app.handle(req).to_line()
    );
    a.app.stop();
    b.app.stop();
}
