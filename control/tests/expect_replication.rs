//! Replication of confirmed expectations (`[sync] expectations`, issue
//! 14 item 2) between two appliances in one process over loopback UDP
//! (127.0.0.1 and 127.0.0.2), both under `policy drop` with
//! `accept ct established,related` and the FTP helper: the expectation a
//! PASV reply creates on A reaches B's external expectation cache, leaves
//! it when the data connection uses it on A, and after a takeover (commit)
//! lets the data connection of an announce made before the failover
//! through B. With the option off on the receiver, EXP messages are
//! counted and skipped and flows still replicate. No root needed.

use std::time::Duration;

use ftfw_control::console::proto::{ExpectJson, NotifyState, Payload, Request, SyncStatusInfo};
use ftfw_control::console::ConsoleHandler;
use ftfw_dataplane::meta::tcp_flags as f;
use ftfw_dataplane::packet::{FrameSpec, L4Spec};
use ftfw_testkit::mem::{
    external, free_port, ok, recv, send, start_mem, tcp, through, MemNode, MEM_BRIDGE,
};

const WAIT: Duration = Duration::from_secs(10);
const CLIENT: &str = "192.0.2.10";
const SERVER: &str = "198.51.100.20";

fn wait_until(what: &str, f: impl FnMut() -> bool) {
    ftfw_testkit::wait_until(what, WAIT, f);
}

fn node(name: &str, local: &str, peer: &str, port: u16, extra: &str) -> MemNode {
    let dir =
        std::env::temp_dir().join(format!("ftfw-exprepl-{name}-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("rules.conf"),
        "policy drop\naccept ct established,related\n\
         accept in outside proto tcp dport 21 helper ftp\n",
    )
    .unwrap();
    let text = format!(
        "[daemon]\nconsole_socket = \"ftfwd.sock\"\n\n\
         [dataplane]\nworkers = 2\n\n\
         {MEM_BRIDGE}[rules]\nfile = \"rules.conf\"\n\n\
         [sync]\nlocal = \"{local}\"\npeer = \"{peer}\"\nport = {port}\n\
         alive_interval_ms = 50\nstartup_resync = false\n{extra}\n"
    );
    start_mem(name, dir, &text)
}

fn with_data(src: &str, dst: &str, sp: u16, dp: u16, seq: u32, ack: u32, data: &[u8]) -> Vec<u8> {
    let spec = FrameSpec {
        src_ip: src.parse().unwrap(),
        dst_ip: dst.parse().unwrap(),
        l4: L4Spec::tcp(sp, dp, f::ACK | f::PSH, seq, ack),
        ..FrameSpec::default()
    };
    let mut v = vec![0u8; 2048];
    let n = spec.write_with_payload(data, &mut v).unwrap();
    v.truncate(n);
    v
}

/// An FTP control connection from `cport` through `n` and the server's
/// PASV answer announcing `data_port`.
fn pasv(n: &mut MemNode, cport: u16, data_port: u16) {
    through(n, true, &tcp(CLIENT, SERVER, cport, 21, f::SYN, 100, 0));
    through(
        n,
        false,
        &tcp(SERVER, CLIENT, 21, cport, f::SYN | f::ACK, 500, 101),
    );
    through(n, true, &tcp(CLIENT, SERVER, cport, 21, f::ACK, 101, 501));
    through(
        n,
        true,
        &with_data(CLIENT, SERVER, cport, 21, 101, 501, b"PASV\r\n"),
    );
    let reply = format!(
        "227 Entering Passive Mode (198,51,100,20,{},{}).\r\n",
        data_port >> 8,
        data_port & 0xff
    );
    through(
        n,
        false,
        &with_data(SERVER, CLIENT, 21, cport, 501, 107, reply.as_bytes()),
    );
}

fn listing(n: &mut MemNode, req: Request) -> Vec<ExpectJson> {
    let Payload::Expectations(l) = ok(n.app.handle(req)) else {
        panic!("not an expectation listing")
    };
    l.expectations
}

fn sync_status(n: &mut MemNode) -> SyncStatusInfo {
    let Payload::SyncStatus(s) = ok(n.app.handle(Request::SyncStatus)) else {
        panic!("not sync status")
    };
    s
}

fn has_data_port(l: &[ExpectJson], port: u16) -> bool {
    l.iter()
        .any(|e| e.expected.dport == Some(port) && e.helper == "ftp")
}

#[test]
fn an_ftp_data_connection_announced_before_a_takeover_opens_after_it() {
    let port = free_port();
    let mut a = node("a", "127.0.0.1", "127.0.0.2", port, "expectations = true\n");
    let mut b = node(
        "b",
        "127.0.0.2",
        "127.0.0.1",
        port,
        "expectations = true\n\n[failover]\nmode = \"keepalived\"\n",
    );
    // Announce 1 is used on A; announce 2 waits for a failover.
    pasv(&mut a, 40001, 50001);
    pasv(&mut a, 40002, 50002);
    wait_until("both expectations in B's external cache", || {
        let l = listing(&mut b, Request::ExpectExternal);
        has_data_port(&l, 50001) && has_data_port(&l, 50002)
    });
    let l = listing(&mut b, Request::ExpectExternal);
    let e = l.iter().find(|e| e.expected.dport == Some(50002)).unwrap();
    assert_eq!(e.expected.sport, None, "any source port, as announced");
    assert_eq!(e.expected.dst.to_string(), SERVER);
    assert_eq!(e.master.original.sport, Some(40002));
    assert!(e.timeout > 200 && e.timeout <= 300, "{}", e.timeout);
    // B holds them only in its external cache, not in its table yet.
    assert!(listing(&mut b, Request::ExpectList).is_empty());

    // The data connection of announce 1 opens on A: EXP_DEL to B.
    through(
        &mut a,
        true,
        &tcp(CLIENT, SERVER, 41001, 50001, f::SYN, 9, 0),
    );
    wait_until("the used expectation gone from B's external cache", || {
        let l = listing(&mut b, Request::ExpectExternal);
        !has_data_port(&l, 50001) && has_data_port(&l, 50002)
    });
    let sa = sync_status(&mut a);
    assert!(sa.expectations);
    assert!(sa.expectations_sent >= 3, "{sa:?}");
    let sb = sync_status(&mut b);
    assert!(sb.expectations_received >= 3, "{sb:?}");
    assert_eq!(sb.expectations_external, 1);
    assert_eq!(sb.expectations_ignored, 0);
    // The control connection of announce 2 is on B too.
    wait_until("the control connection in B's external cache", || {
        external(&mut b)
            .flows
            .iter()
            .any(|f| f.original.sport == Some(40002))
    });

    // A fails; B takes over (commit), then the data connection opens.
    drop(a);
    let Payload::Notified(change) = ok(b.app.handle(Request::Notify {
        state: NotifyState::Master,
    })) else {
        panic!("not a role change")
    };
    assert_eq!(change.role, "active");
    let l = listing(&mut b, Request::ExpectList);
    assert!(has_data_port(&l, 50002), "{l:?}");
    assert_eq!(sync_status(&mut b).expectations_committed, 1);
    through(
        &mut b,
        true,
        &tcp(CLIENT, SERVER, 41002, 50002, f::SYN, 9, 0),
    );
    through(
        &mut b,
        false,
        &tcp(SERVER, CLIENT, 50002, 41002, f::SYN | f::ACK, 70, 10),
    );
    assert!(listing(&mut b, Request::ExpectList).is_empty(), "used up");
    // A data connection nobody announced is still dropped.
    send(
        &mut b.client,
        &tcp(CLIENT, SERVER, 41003, 50003, f::SYN, 9, 0),
    );
    assert!(recv(&mut b.server, Duration::from_millis(300)).is_none());
}

#[test]
fn with_the_option_off_exp_messages_are_counted_and_skipped() {
    let port = free_port();
    let mut a = node(
        "oa",
        "127.0.0.1",
        "127.0.0.2",
        port,
        "expectations = true\n",
    );
    let mut b = node("ob", "127.0.0.2", "127.0.0.1", port, "");
    pasv(&mut a, 40005, 50005);
    wait_until("B counted the EXP_NEW it skipped", || {
        sync_status(&mut b).expectations_ignored >= 1
    });
    let sb = sync_status(&mut b);
    assert!(!sb.expectations);
    assert_eq!(sb.expectations_received, 0);
    assert_eq!(sb.malformed_payload, 0, "skipped, not malformed");
    assert!(listing(&mut b, Request::ExpectExternal).is_empty());
    // Flows replicate as before, after the EXP message.
    wait_until("the control connection in B's external cache", || {
        external(&mut b)
            .flows
            .iter()
            .any(|f| f.original.sport == Some(40005))
    });
    // B, with the option off, sends none of its own: a marker flow that
    // B's sync thread took after the expectation existed (it looks at the
    // table in the iteration that takes a delta) reaches A, no EXP_NEW.
    pasv(&mut b, 40006, 50006);
    assert_eq!(listing(&mut b, Request::ExpectList).len(), 1);
    through(&mut b, true, &tcp(CLIENT, SERVER, 40007, 21, f::SYN, 5, 0));
    wait_until("A has B's marker flow", || {
        external(&mut a)
            .flows
            .iter()
            .any(|f| f.original.sport == Some(40007))
    });
    assert_eq!(sync_status(&mut b).expectations_sent, 0);
    assert_eq!(sync_status(&mut a).expectations_received, 0);
    assert!(listing(&mut a, Request::ExpectExternal).is_empty());
}
