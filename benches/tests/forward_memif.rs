//! `bench forward` over `net_memif` (its default link): the generator
//! thread, the ftfw worker and testpmd each run, every frame ftfw took is
//! forwarded (none dropped, the sink got them), and no mbuf leaks.
//!
//! Root (EAL) and `dpdk-testpmd` (Debian's dpdk-dev); built with
//! `--features dpdk`.
#![cfg(feature = "dpdk")]

use ftfw_lab::forward::{self, ForwardOpts, Link};

#[test]
#[ignore = "needs root: DPDK EAL, dpdk-testpmd"]
fn dpdk_memif_forward_benchmark_runs_both_forwarders_and_accounts_every_frame() {
    let opts = ForwardOpts {
        duration_secs: 1.0,
        size: 60,
        flows: 1000,
        rounds: 1,
        gen_core: 0,
        fwd_core: 1,
        testpmd: "dpdk-testpmd".into(),
        link: Link::Memif,
    };
    let r = forward::run(&opts).expect("benchmark");
    assert_eq!(r.ftfw_rounds_mpps.len(), 1, "{r:?}");
    assert!(r.ftfw_rounds_mpps[0] > 0.01, "ftfw forwarded: {r:?}");
    assert!(r.testpmd_rounds_mpps[0] > 0.01, "testpmd forwarded: {r:?}");
    // Offered is what the generator built, at least what was taken.
    assert_eq!(r.offered_mpps.len(), 2, "{r:?}");
    assert!(r.offered_mpps[0] >= r.ftfw_rounds_mpps[0], "{r:?}");
    assert!(r.offered_mpps[1] >= r.testpmd_rounds_mpps[0], "{r:?}");
    // Every frame ftfw took went to the sink: none dropped, and the sink
    // counted at least the window's frames (it also saw the warm-up).
    assert_eq!(r.ftfw_dropped, 0, "{r:?}");
    let window_frames = r.ftfw_rounds_mpps[0] * 1e6 * opts.duration_secs;
    let sink = r.ftfw_sink_frames.expect("memif counts the sink") as f64;
    assert!(sink >= 0.95 * window_frames, "{r:?}");
    assert!(r.ftfw_fast_path as f64 >= 0.95 * window_frames, "{r:?}");
    assert_eq!(
        r.pool_in_use_end, r.pool_in_use_start,
        "mbufs leaked: {r:?}"
    );
    // The extra round with the stage clock: every stage of ftfw's burst
    // took some time, and together no more than a packet's share of the
    // round (the rated rounds' rate is within a factor of the clocked
    // one's).
    let st = r
        .ftfw_stages_ns_per_packet
        .as_ref()
        .expect("memif times ftfw's stages");
    for k in ["rx", "parse", "lookup", "decide", "tx"] {
        assert!(st.get(k).is_some_and(|&ns| ns > 0.0), "{k}: {r:?}");
    }
    let sum: f64 = st.values().sum();
    assert!(
        sum < 10.0 * 1000.0 / r.ftfw_rounds_mpps[0],
        "stages {sum} ns per packet: {r:?}"
    );
    assert_eq!(r.ratio.is_none(), r.generator_limited, "{r:?}");
    assert_eq!(
        r.generator_limited,
        !(r.ftfw_outrun && r.testpmd_outrun),
        "{r:?}"
    );
}
