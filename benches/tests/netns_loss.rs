//! `ftfw-lab netns loss` run tiny (root): the lab's TCP loss model and
//! kernel TCP under nftables loss, the same crash scenario.

use std::process::Command;

#[test]
#[ignore = "needs root: a network namespace and nftables"]
fn kernel_tcp_recovers_every_flow_without_loss_and_nftables_drops_with_loss() {
    let out = Command::new(env!("CARGO_BIN_EXE_ftfw-lab"))
        .args([
            "netns",
            "loss",
            "--losses",
            "0,0.2",
            "--sizes",
            "1000",
            "--seeds",
            "3",
            "--transfers",
            "400",
            "--concurrency",
            "50",
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
    let points = j["points"].as_array().expect("points");
    assert_eq!(points.len(), 2, "{j}");
    for p in points {
        assert_eq!(p["transport"], "tcp", "{p}");
        for side in ["model", "kernel"] {
            let runs = p[side]["spread"]["runs"].as_array().expect("runs");
            assert_eq!(runs.len(), 3, "{side}: {p}");
            for r in runs {
                assert!(r["established"].as_u64().unwrap() > 0, "{side}: {r}");
                assert!(r["crash_at_ms"].is_number(), "{side}: {r}");
            }
        }
    }
    // Without loss, kernel TCP loses nothing it carried: every flow fw2
    // held at the crash recovers. (Replication is asynchronous: with
    // 1000-byte objects the crash comes a few ms after the first SYN, and a
    // flow established in the last moment before it may not have reached
    // fw2 yet, more so on a loaded machine, so `established` is not the
    // bound. The model's relay is one more thread hop, so only its having
    // run is checked above.) Over the three runs fw2 held some flows.
    let clean = &points[0];
    assert_eq!(clean["loss"], 0.0);
    let mut held = 0;
    for r in clean["kernel"]["spread"]["runs"].as_array().unwrap() {
        let replicated = r["replicated"].as_u64().expect("replicated");
        assert!(
            replicated <= r["established"].as_u64().unwrap(),
            "kernel: {r}"
        );
        assert!(
            r["recovered"].as_u64().unwrap() >= replicated,
            "a flow fw2 held broke: {r}"
        );
        held += replicated;
    }
    assert!(held > 0, "fw2 held no flow at any crash: {clean}");
    for side in ["model", "kernel"] {
        assert_eq!(clean[side]["sync_lost"], 0, "{side}: {clean}");
    }
    // With loss, nftables did drop sync packets of the kernel run.
    let lossy = &points[1];
    assert_eq!(lossy["loss"], 0.2);
    assert!(
        lossy["kernel"]["sync_lost"].as_u64().unwrap() > 0,
        "nftables dropped nothing: {lossy}"
    );
}
