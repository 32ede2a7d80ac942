//! `ftfw-lab failover` run small: two appliances in this process, the
//! primary crashed mid-run with a healthy sync link. Checks what survives,
//! never how fast.

use std::process::Command;
use std::time::Duration;

use std::sync::{Mutex, MutexGuard};

use ftfw_lab::failover::{run, FailoverOpts, Transport};
use ftfw_lab::synclink::LinkParams;

/// One lab at a time: each run is two appliances, their sync threads and
/// the hosts on a 2-core machine, and several at once (the test harness
/// runs tests in parallel) starve each other's timers, which measures the
/// machine, not the protocol.
static LAB: Mutex<()> = Mutex::new(());

fn one_lab_at_a_time() -> MutexGuard<'static, ()> {
    LAB.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[test]
fn every_established_transfer_survives_the_crash_of_the_primary() {
    let _lab = one_lab_at_a_time();
    let out = Command::new(env!("CARGO_BIN_EXE_ftfw-lab"))
        .args([
            "failover",
            "--experiments",
            "crash",
            "--transfers",
            "20",
            "--object-size",
            "50000",
            "--seed",
            "3",
            "--json",
        ])
        .output()
        .expect("ftfw-lab runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    for k in [
        "flows_established_at_crash",
        "flows_recovered",
        "recovery_ratio",
        "broken_transfers",
        "time_to_recover_ms",
        "sync_msgs",
        "sync_bytes",
        "transfers_completed",
        "run_ms",
    ] {
        assert!(j.get(k).is_some(), "no {k} in {j}");
    }
    assert_eq!(j["crashed"], true, "{j}");
    // The crash came mid-run: transfers were under way, and fw1 had
    // replicated them.
    let est = j["flows_established_at_crash"].as_u64().unwrap();
    assert!(est > 0, "{j}");
    assert!(j["sync_msgs"].as_u64().unwrap() > 0, "{j}");
    assert!(j["sync_bytes"].as_u64().unwrap() > 0, "{j}");
    // All of them completed through fw2, and nothing broke at all.
    assert_eq!(j["flows_recovered"].as_u64(), Some(est), "{j}");
    assert_eq!(j["recovery_ratio"].as_f64(), Some(1.0), "{j}");
    assert_eq!(j["broken_transfers"], 0, "{j}");
    assert_eq!(j["transfers_completed"], 20, "{j}");
    // fw2 forwarded a data segment of a pre-crash transfer.
    assert!(j["time_to_recover_ms"].is_number(), "{j}");
    assert!(j["fw2_forwarded"].as_u64().unwrap() > 0, "{j}");
    // The virtual hosts' sequence numbers passed strict window tracking.
    assert_eq!(j["invalid"], 0, "{j}");
}

#[test]
fn without_a_crash_only_the_primary_forwards_and_every_transfer_completes() {
    let _lab = one_lab_at_a_time();
    let r = run(
        &FailoverOpts {
            transfers: 10,
            object_size: 20_000,
            no_crash: true,
            seed: 5,
            ..FailoverOpts::default()
        },
        |_| {},
    )
    .expect("failover run");
    assert!(!r.crashed, "{r:#?}");
    assert_eq!(r.transfers_completed, 10, "{r:#?}");
    assert_eq!(r.broken_transfers, 0, "{r:#?}");
    assert_eq!(r.fw2_forwarded, 0, "{r:#?}");
    // The backup saw the same frames and dropped them.
    assert!(r.fw2_standby_dropped > 0, "{r:#?}");
    assert!(r.fw1_forwarded > 0, "{r:#?}");
    assert_eq!(r.invalid, 0, "{r:#?}");
    assert_eq!(r.retransmit_timeouts, 0, "{r:#?}");
}

#[test]
fn without_the_replicated_flows_the_established_transfers_break() {
    let _lab = one_lab_at_a_time();
    // The negative control: the same crash, with fw2's external cache
    // flushed right after it. Mid-stream segments are then invalid at fw2
    // (no mid-stream pickup), so recovery above really is replication's.
    let r = run(
        &FailoverOpts {
            transfers: 10,
            object_size: 50_000,
            flush_backup_at_crash: true,
            stall: Duration::from_secs(1),
            seed: 9,
            ..FailoverOpts::default()
        },
        |_| {},
    )
    .expect("failover run");
    assert!(r.crashed && r.flushed_backup, "{r:#?}");
    assert!(r.flows_established_at_crash > 0, "{r:#?}");
    assert_eq!(r.flows_recovered, 0, "{r:#?}");
    assert_eq!(r.broken_transfers, r.flows_established_at_crash, "{r:#?}");
    assert_eq!(r.reset_transfers, 0, "{r:#?}");
    assert!(r.invalid > 0, "{r:#?}");
    assert!(r.time_to_recover_ms.is_none(), "{r:#?}");
}

#[test]
fn the_paper_suite_prints_figures_targets_plots_and_a_report() {
    let _lab = one_lab_at_a_time();
    let dir = std::env::temp_dir().join(format!("ftfw-lab-suite-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let report = dir.join("lab.md");
    let plots = dir.join("plots");
    let out = Command::new(env!("CARGO_BIN_EXE_ftfw-lab"))
        .args([
            "failover",
            "--experiments",
            "fig9,fig13",
            "--sizes",
            "2000,60000",
            "--seed",
            "4",
            "--json",
            "--plot",
        ])
        .arg(&plots)
        .arg("--report")
        .arg(&report)
        .output()
        .expect("ftfw-lab runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    // One object keyed by figure id, each figure's data beside its text.
    let figs = j["figures"].as_object().expect("figures");
    let mut ids: Vec<&str> = figs.keys().map(String::as_str).collect();
    ids.sort_unstable();
    assert_eq!(ids, ["fig13", "fig9"], "{j}");
    assert!(figs.iter().all(|(id, f)| f["id"] == id.as_str()), "{j}");
    // Figure 9: one crash run per object size, FT-FW, every established
    // transfer recovered.
    let fig9 = figs["fig9"]["points"].as_array().unwrap();
    assert_eq!(fig9.len(), 2, "{j}");
    for p in fig9 {
        assert_eq!(p["transport"], "ftfw", "{p}");
        assert_eq!(p["recovered"], p["established"], "{p}");
    }
    // Figure 13: one run per transport, each with the paper's text beside.
    let fig13 = figs["fig13"]["points"].as_array().unwrap();
    let transports: Vec<&str> = fig13
        .iter()
        .filter_map(|p| p["transport"].as_str())
        .collect();
    assert_eq!(transports, ["ftfw", "udp-best-effort", "tcp"], "{j}");
    assert!(
        figs["fig13"]["paper"].as_str().unwrap().contains("6-7 s"),
        "{j}"
    );
    for p in fig13 {
        assert!(p["established"].as_u64().unwrap() > 0, "{p}");
        assert!(p["takeover_ms"].is_number(), "{p}");
    }
    // Targets are checked against what ran.
    let targets = j["targets"].as_array().unwrap();
    assert!(
        targets.iter().any(|t| t["measure"]
            .as_str()
            .unwrap()
            .starts_with("recovery, healthy link")),
        "{j}"
    );
    for id in ["fig9", "fig13"] {
        let svg = std::fs::read_to_string(plots.join(format!("{id}.svg"))).expect("a plot");
        assert!(svg.contains("<svg") && svg.contains("</svg>"), "{id}");
    }
    let md = std::fs::read_to_string(&report).expect("a report");
    assert!(
        md.contains("| measure | paper | ftfw | target | met |"),
        "{md}"
    );
    assert!(md.contains("Time to recover"), "{md}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn ftfw_recovers_more_flows_than_best_effort_udp_at_20_percent_loss() {
    let _lab = one_lab_at_a_time();
    // The same crash and seeds (so the same loss decisions on the link),
    // with FT-FW and with best-effort UDP as the sync transport.
    let with = |transport, seed| {
        run(
            &FailoverOpts {
                transfers: 4000,
                object_size: 1000,
                concurrency: 1000,
                transport,
                link: LinkParams {
                    loss: 0.2,
                    ..LinkParams::default()
                },
                stall: Duration::from_secs(1),
                seed,
                // What is checked is that no established flow is unknown to
                // the backup, not how fast: a loaded 2-core machine must not
                // release a first packet by the timeout before its ACK.
                defer_timeout: Duration::from_millis(500),
                ..FailoverOpts::default()
            },
            |_| {},
        )
        .expect("failover run")
    };
    let ftfw = with(Transport::Ftfw, 11);
    assert!(
        ftfw.crashed && ftfw.flows_established_at_crash > 0,
        "{ftfw:#?}"
    );
    assert!(
        ftfw.sync_link.lost > 0,
        "the link lost datagrams: {ftfw:#?}"
    );
    // FT-FW (with defer, its default here) loses nothing: every lost
    // message was NACKed and resent before the flow could be established.
    assert!(ftfw.defer, "{ftfw:#?}");
    assert_eq!(ftfw.recovery_ratio, 1.0, "{ftfw:#?}");
    assert_eq!(
        ftfw.flows_replicated_at_crash,
        Some(ftfw.flows_established_at_crash),
        "{ftfw:#?}"
    );
    // Best effort never learns what the link dropped. But a flow is lost
    // only if every message of it was, and on these in-process links a
    // handshake completes within one sync batch: a flow's messages share
    // one datagram, and the flows still established at the crash sit in a
    // handful of datagrams. So one run is lucky when none of those few was
    // lost: 2 of 6 debug-build runs here (0 of 6 release), and a CI run saw
    // three in a row. Twelve seeds at most (most runs stop at the first):
    // twelve lucky runs in a row are about one in 500,000.
    let mut broken = 0;
    let mut runs = Vec::new();
    for seed in 11..=22 {
        let udp = with(Transport::UdpBestEffort, seed);
        assert!(
            udp.crashed && udp.flows_established_at_crash > 0,
            "{udp:#?}"
        );
        assert!(udp.sync_link.lost > 0, "the link lost datagrams: {udp:#?}");
        assert!(!udp.defer, "{udp:#?}");
        broken += udp.broken_transfers;
        runs.push((udp.recovery_ratio, udp.broken_transfers));
        if broken > 0 {
            break;
        }
    }
    assert!(
        broken > 0,
        "best effort lost no established flow in {} runs (recovery, broken): {runs:?}",
        runs.len()
    );
}

#[test]
fn udp_transfers_survive_the_crash_too() {
    let _lab = one_lab_at_a_time();
    let r = run(
        &FailoverOpts {
            transfers: 40,
            object_size: 60_000,
            udp_share: 0.5,
            seed: 6,
            ..FailoverOpts::default()
        },
        |_| {},
    )
    .expect("failover run");
    assert_eq!(r.udp_transfers, 20, "{r:#?}");
    assert!(r.crashed && r.udp_established_at_crash > 0, "{r:#?}");
    assert_eq!(r.udp_recovered, r.udp_established_at_crash, "{r:#?}");
    assert_eq!(r.flows_recovered, r.flows_established_at_crash, "{r:#?}");
    assert_eq!(r.broken_transfers, 0, "{r:#?}");
    assert_eq!(r.transfers_completed, 40, "{r:#?}");
}

/// Bayes lazy replication in the lab: the same short transfers without a
/// crash, replicated eagerly and lazily. Once fw1 has learned that the
/// service's connections are short, their handshakes and closes are not
/// sent: fewer messages for the same traffic.
#[test]
fn lazy_replication_sends_fewer_messages_for_short_transfers() {
    let _lab = one_lab_at_a_time();
    let base = FailoverOpts {
        transfers: 300,
        object_size: 1000,
        concurrency: 32,
        no_crash: true,
        seed: 5,
        defer: false,
        ..FailoverOpts::default()
    };
    let eager = run(&base, |_| {}).expect("eager run");
    let lazy = run(
        &FailoverOpts {
            lazy_barrier: Some(Duration::from_millis(200)),
            ..base.clone()
        },
        |_| {},
    )
    .expect("lazy run");
    assert_eq!(eager.transfers_completed, 300);
    assert_eq!(lazy.transfers_completed, 300);
    assert!(eager.lazy.is_none());
    let l = lazy.lazy.expect("fw1's lazy counters");
    assert!(l.predicted_transitional > 0 && l.saved_msgs > 0, "{l:?}");
    assert!(
        lazy.sync_msgs < eager.sync_msgs,
        "lazy {} msgs, eager {} msgs: {l:?}",
        lazy.sync_msgs,
        eager.sync_msgs
    );
    eprintln!(
        "eager {} msgs, lazy {} msgs ({:.0}% fewer); {l:?}",
        eager.sync_msgs,
        lazy.sync_msgs,
        100.0 * (1.0 - lazy.sync_msgs as f64 / eager.sync_msgs as f64)
    );
}
