//! The Prometheus endpoint's content against the console's answers: every
//! `ftfwctl stats --json` counter is scraped with its value, the page is
//! valid for `promtool check metrics` (the counters nothing moves:
//! `metrics_coverage.rs`).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::time::Duration;

use ftfw_control::console::proto::{NotifyState, Request};
use ftfw_control::console::ConsoleHandler;
use ftfw_control::metrics::{self, port_metric, worker_metric};

#[path = "metrics/rig.rs"]
mod rig;

use rig::{drive, keepalived, rig, snapshot};

/// `series -> value` of every sample line.
fn samples(page: &str) -> BTreeMap<String, f64> {
    page.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, v) = l.rsplit_once(' ').unwrap();
            (series.to_string(), v.parse().unwrap())
        })
        .collect()
}

#[test]
fn every_stats_counter_is_scraped_with_its_value() {
    let mut n = rig("values", "");
    drive(&mut n);
    let snap = snapshot(&mut n);
    let page = metrics::encode(&snap);
    let got = samples(&page);
    // What `ftfwctl stats --json` prints is this payload.
    let json = serde_json::to_value(&snap.stats).unwrap();
    let workers = json["workers"].as_array().unwrap();
    assert_eq!(workers.len(), 2);
    let mut checked = 0;
    for (i, w) in workers.iter().enumerate() {
        for (field, v) in w.as_object().unwrap() {
            let m = worker_metric(field);
            let series = format!("{}{{worker=\"{i}\"}}", m.name);
            let scraped = got
                .get(&series)
                .unwrap_or_else(|| panic!("{series} not scraped"));
            let want = v.as_u64().unwrap() as f64 / m.divisor;
            assert!(
                (scraped - want).abs() <= want.abs() * 1e-12,
                "{series}: {scraped} != {want}"
            );
            checked += 1;
        }
    }
    for p in json["ports"].as_array().unwrap() {
        let name = p["name"].as_str().unwrap();
        for (field, v) in p.as_object().unwrap().iter().filter(|(k, _)| *k != "name") {
            let series = format!("{}{{port=\"{name}\"}}", port_metric(field).name);
            let scraped = got
                .get(&series)
                .unwrap_or_else(|| panic!("{series} not scraped"));
            assert_eq!(*scraped, v.as_u64().unwrap() as f64, "{series}");
            checked += 1;
        }
    }
    assert!(checked > 100, "{checked}");
    // Counters are typed as counters, with help.
    assert!(
        page.contains("# TYPE ftfw_worker_rx_frames_total counter"),
        "{page}"
    );
    assert!(page.contains("# HELP ftfw_worker_rx_frames_total Frames received from all ports."));
    assert!(page.contains("# TYPE ftfw_conntrack_flows gauge"));
    assert!(
        got["ftfw_worker_rejected_total{worker=\"0\"}"]
            + got["ftfw_worker_rejected_total{worker=\"1\"}"]
            >= 1.0
    );
}

/// The scrape over HTTP, from the endpoint's thread.
fn scrape(addr: std::net::SocketAddr) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.0 200 OK"), "{head}");
    body.to_string()
}

#[test]
#[ignore = "needs root: promtool from Debian's prometheus package (.ci/run installs it)"]
fn promtool_accepts_the_scrape() {
    let mut n = rig("promtool", &keepalived());
    // Role changes: the step histograms and the takeover gauges.
    n.app.handle(Request::Notify {
        state: NotifyState::Master,
    });
    n.app.handle(Request::Notify {
        state: NotifyState::Backup,
    });
    n.app.handle(Request::Notify {
        state: NotifyState::Master,
    });
    drive(&mut n);
    let snap = snapshot(&mut n);
    let server = metrics::server::MetricsServer::spawn(
        "127.0.0.1:0".parse().unwrap(),
        Box::new(move || Ok(metrics::encode(&snap))),
    )
    .unwrap();
    let page = scrape(server.local_addr());
    assert!(page.contains("step=\"commit\",le=\"0.0001\"}"), "{page}");
    assert!(
        page.contains("# TYPE ftfw_role_change_step_duration_seconds histogram"),
        "{page}"
    );
    assert!(
        page.contains(
            "ftfw_role_change_step_duration_seconds_count{role=\"active\",step=\"commit\"} 2"
        ),
        "{page}"
    );
    assert!(
        page.contains("ftfw_role_changes_total{role=\"backup\"} 1"),
        "{page}"
    );
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (apt-get install prometheus)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(page.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
