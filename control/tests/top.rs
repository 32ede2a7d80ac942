//! `ftfwctl top` in a real terminal: tmux runs it at 80×24 against an
//! in-process appliance whose console this test serves; the screen shows
//! both workers and a nonzero packet rate while traffic flows, and `q`
//! ends it.

use std::process::Command;
use std::time::{Duration, Instant};

use ftfw_control::console::server::ConsoleServer;
use ftfw_dataplane::meta::tcp_flags as f;
use ftfw_testkit::mem::{handshake, recv, send, start_mem, tcp, MemNode, MEM_BRIDGE};
use mio::{Events, Poll};

fn tmux(sock: &str, args: &[&str]) -> std::process::Output {
    Command::new("tmux")
        .arg("-L")
        .arg(sock)
        .args(args)
        .output()
        .expect("tmux (apt-get install tmux)")
}

/// Kills the test's tmux server (its own socket) on the way out.
struct Session(String);

impl Drop for Session {
    fn drop(&mut self) {
        let _ = tmux(&self.0, &["kill-server"]);
    }
}

/// Serves console requests for up to `for_`.
fn serve(
    poll: &mut Poll,
    events: &mut Events,
    console: &mut ConsoleServer,
    n: &mut MemNode,
    for_: Duration,
) {
    let _ = poll.poll(events, Some(for_));
    for ev in events.iter() {
        if console.owns(ev.token()) {
            console.handle_event(poll.registry(), ev, &mut n.app);
        }
    }
}

/// The `total` row's rx pkt/s, if it is a number.
fn total_rate(screen: &str) -> Option<f64> {
    let row = screen
        .lines()
        .find(|l| l.trim_start().starts_with("total"))?;
    let cell = row.split_whitespace().nth(1)?;
    let (num, mult) = match cell.chars().last()? {
        'k' => (&cell[..cell.len() - 1], 1e3),
        'M' => (&cell[..cell.len() - 1], 1e6),
        _ => (cell, 1.0),
    };
    num.parse::<f64>().ok().map(|v| v * mult)
}

#[test]
#[ignore = "needs root: tmux (.ci/run installs it)"]
fn top_shows_workers_and_rates_in_80x24_and_quits_on_q() {
    let dir = std::env::temp_dir().join(format!("ftfw-top-{}", std::process::id()));
    let text = format!(
        "[daemon]\nconsole_socket = \"ftfwd.sock\"\nstate_file = \"\"\n\n[dataplane]\nworkers = 2\n\n\
         {MEM_BRIDGE}[conntrack]\ncapacity = 65536\n\n[rules]\npolicy = \"accept\"\n"
    );
    let mut n = start_mem("top", dir.clone(), &text);
    let socket = dir.join("ftfwd.sock");
    let mut console = ConsoleServer::bind(&socket, 16).unwrap();
    let mut poll = Poll::new().unwrap();
    console.register(poll.registry()).unwrap();
    let mut events = Events::with_capacity(16);
    let (c, s) = ("192.0.2.1", "198.51.100.2");
    handshake(&mut n, c, s, 40000, 80);

    let sock = format!("ftfw-top-{}", std::process::id());
    let session = Session(sock.clone());
    let cmd = format!(
        "{} --socket {} top",
        env!("CARGO_BIN_EXE_ftfwctl"),
        socket.display()
    );
    let out = tmux(
        &session.0,
        &[
            "new-session",
            "-d",
            "-s",
            "top",
            "-x",
            "80",
            "-y",
            "24",
            &cmd,
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Traffic and console answers until the screen shows a rate (bounded:
    // 20 s, at most 200 frames per round).
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seq = 101u32;
    let screen = loop {
        for _ in 0..200 {
            send(
                &mut n.client,
                &tcp(c, s, 40000, 80, f::ACK | f::PSH, seq, 501),
            );
            seq = seq.wrapping_add(1);
        }
        while recv(&mut n.server, Duration::ZERO).is_some() {}
        serve(
            &mut poll,
            &mut events,
            &mut console,
            &mut n,
            Duration::from_millis(50),
        );
        let screen =
            String::from_utf8_lossy(&tmux(&sock, &["capture-pane", "-p", "-t", "top"]).stdout)
                .into_owned();
        if screen.contains("worker 1") && total_rate(&screen).is_some_and(|r| r > 0.0) {
            break screen;
        }
        assert!(Instant::now() < deadline, "no rate on screen:\n{screen}");
    };
    eprintln!("{screen}");
    assert!(screen.contains("worker 0"), "{screen}");
    assert!(screen.contains("role active"), "{screen}");
    assert!(screen.contains("rx pkt/s"), "{screen}");
    assert!(screen.lines().count() <= 24, "{screen}");
    assert!(screen.lines().all(|l| l.chars().count() <= 80), "{screen}");

    // `q` quits: the session ends with its only command.
    let out = tmux(&sock, &["send-keys", "-t", "top", "q"]);
    assert!(out.status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while tmux(&sock, &["has-session", "-t", "top"]).status.success() {
        serve(
            &mut poll,
            &mut events,
            &mut console,
            &mut n,
            Duration::from_millis(50),
        );
        assert!(Instant::now() < deadline, "top did not quit on q");
    }
}
