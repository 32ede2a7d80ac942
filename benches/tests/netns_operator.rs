//! Root test: the operator's view of a real ftfwd between two namespaces:
//! the `[metrics]` endpoint (scraped from inside the firewall's namespace)
//! agrees with `ftfwctl stats --json` and passes `promtool check metrics`,
//! `ftfwctl top --once` shows the workers and the traffic, and
//! `--log-format json` writes one JSON object per line with the spans of
//! a rule reload.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ftfw_testkit::netns::{self, sibling_bin, NetnsLab};

fn bin(name: &str) -> PathBuf {
    sibling_bin(Path::new(env!("CARGO_BIN_EXE_ftfw-lab")), name).unwrap()
}

/// `series -> value` of every sample line of a scrape.
fn samples(page: &str) -> std::collections::BTreeMap<String, f64> {
    page.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (series, v) = l.rsplit_once(' ')?;
            Some((series.to_string(), v.parse().ok()?))
        })
        .collect()
}

#[test]
#[ignore = "needs root: network namespaces, veth, AF_PACKET; promtool and python3 (.ci/run installs them)"]
fn metrics_top_and_json_logs_of_a_running_ftfwd() {
    let mut lab = NetnsLab::client_firewall_server("ftfwop", "a").unwrap();
    lab.ip(&lab.ns("c"), &["addr", "add", "192.0.2.1/24", "dev", "c0"])
        .unwrap();
    lab.ip(&lab.ns("s"), &["addr", "add", "192.0.2.2/24", "dev", "s0"])
        .unwrap();
    let sock = lab.dir().join("ftfwd.sock");
    let config = lab.dir().join("ftfwd.toml");
    std::fs::write(
        &config,
        format!(
            "[daemon]\nconsole_socket = \"{}\"\nstate_file = \"\"\n\n[dataplane]\nworkers = 2\n\n\
             [[port]]\nname = \"outside\"\nbackend = \"af_packet\"\ninterface = \"c1\"\n\n\
             [[port]]\nname = \"inside\"\nbackend = \"af_packet\"\ninterface = \"s1\"\n\n\
             [[bridge]]\nports = [\"outside\", \"inside\"]\n\n\
             [rules]\npolicy = \"accept\"\n\n[metrics]\nlisten = \"127.0.0.1:9779\"\n",
            sock.display()
        ),
    )
    .unwrap();
    let fw = lab.ns("f");
    let cfg = config.to_str().unwrap().to_string();
    lab.spawn(
        &fw,
        bin("ftfwd"),
        &["--config", &cfg, "--log-format", "json"],
        Some("ftfwd.log"),
    )
    .unwrap();
    lab.wait_console(&bin("ftfwctl"), &sock, Duration::from_secs(20))
        .unwrap();
    let srv = lab.ns("s");
    lab.spawn(
        &srv,
        bin("ftfw-lab"),
        &["serve", "--listen", "192.0.2.2:8080"],
        None,
    )
    .unwrap();
    let mut last = serde_json::Value::Null;
    let fetched =
        ftfw_testkit::wait::try_wait_until("a first fetch", Duration::from_secs(10), || {
            last = lab
                .probe_fetch(
                    &lab.ns("c"),
                    &bin("ftfw-lab"),
                    "192.0.2.2:8080",
                    1_000_000,
                    3000,
                    &[],
                )
                .unwrap();
            last["ok"] == true
        });
    assert!(fetched.is_ok(), "fetch never worked: {last}");

    // The scrape, then the console: counters only grow in between.
    let scrape = |lab: &NetnsLab| {
        let out = lab
            .exec(
                &fw,
                "python3",
                &[
                    "-c",
                    "import urllib.request,sys;sys.stdout.write(urllib.request.urlopen('http://127.0.0.1:9779/metrics',timeout=10).read().decode())",
                ],
            )
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let page = scrape(&lab);
    let stats = netns::ctl_json(&bin("ftfwctl"), &sock, &["stats"]).unwrap();
    let got = samples(&page);
    for (i, w) in stats["workers"].as_array().unwrap().iter().enumerate() {
        for field in ["rx", "tx", "accepted", "flows_created"] {
            let m = ftfw_control::metrics::worker_metric(field);
            let series = format!("{}{{worker=\"{i}\"}}", m.name);
            let scraped = got[&series];
            let now = w[field].as_u64().unwrap() as f64;
            assert!(
                scraped <= now,
                "{series}: scraped {scraped} > console {now}"
            );
        }
    }
    let total_rx: f64 = (0..2)
        .map(|i| got[&format!("ftfw_worker_rx_frames_total{{worker=\"{i}\"}}")])
        .sum();
    assert!(
        total_rx > 500.0,
        "a 1 MB transfer is hundreds of frames: {total_rx}"
    );
    assert!(got["ftfw_port_rx_bytes_total{port=\"outside\"}"] > 0.0);

    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (apt-get install prometheus)");
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), page.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // `top --once` at 80x24.
    let out = std::process::Command::new(bin("ftfwctl"))
        .arg("--socket")
        .arg(&sock)
        .args(["top", "--once"])
        .output()
        .unwrap();
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(screen.contains("role active"), "{screen}");
    assert!(
        screen.contains("worker 0") && screen.contains("worker 1"),
        "{screen}"
    );
    assert!(screen.lines().count() <= 24, "{screen}");

    // JSON logs: a reload logs inside its span.
    let out = netns::ctl(&bin("ftfwctl"), &sock, &["rules", "reload"]).unwrap();
    assert!(out.status.success());
    let log = lab.dir().join("ftfwd.log");
    let mut lines = Vec::new();
    ftfw_testkit::wait_until("the reload logged", Duration::from_secs(10), || {
        lines = std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|e| panic!("{e}: {l}"))
            })
            .collect();
        lines.iter().any(|v| v["span"]["name"] == "rule_reload")
    });
    assert!(
        lines
            .iter()
            .any(|v| v["fields"]["message"] == "metrics served at /metrics"),
        "{lines:?}"
    );
}
