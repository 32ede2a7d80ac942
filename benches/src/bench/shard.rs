//! `bench pipeline --nat`'s flow-table figures: a shard alone making new
//! flows, translated or plain, with no frames and no ports around it.

use std::time::Instant;

use ftfw_dataplane::conntrack::{ConntrackConfig, Shard};

use crate::pktgen::NewFlowGen;

/// Flows per second a shard alone makes: `count` new flows from the
/// new-flow generator (frames parsed untimed, in chunks) into a shard of
/// `2 x count`, each translated by `nat`'s first rule when given.
pub(super) fn shard_flows_per_sec(
    count: usize,
    nat: Option<&ftfw_dataplane::nat::NatRules>,
) -> f64 {
    use ftfw_dataplane::conntrack::{DeltaRing, Track};
    use ftfw_dataplane::nat::alloc::{choose, Steering};
    let ring = DeltaRing::new(1 << 16);
    let mut shard = Shard::new(
        ConntrackConfig {
            capacity: count * 2,
            ..ConntrackConfig::default()
        },
        Instant::now(),
        ring.clone(),
    );
    let target = nat.and_then(|n| n.iter().next()).map(|(r, _)| r.target());
    if target.is_some() {
        shard.make_nat_tables();
    }
    let steer = Steering {
        workers: 1,
        buckets: 0,
        rss: None,
    };
    let mut gen = NewFlowGen::new(false, 60);
    let mut buf = Vec::new();
    let mut metas = Vec::with_capacity(4096);
    let (mut made, mut secs, mut generated) = (0usize, 0.0, 0usize);
    // Bounded: flows that could not be made (none free) do not count, and
    // at most twice `count` are tried.
    while made < count && generated < 2 * count {
        metas.clear();
        for _ in 0..4096.min(count - made) {
            generated += 1;
            gen.next_into(&mut buf);
            metas.push(ftfw_dataplane::packet::parse_frame(&buf).expect("generated frames parse"));
        }
        let start = Instant::now();
        for m in &metas {
            if let Track::New(nf) = shard.track(0, m, 0) {
                let done = match &target {
                    Some(t) => choose(t, &nf.key().orig, &steer, &|r| shard.reply_taken(r, 0))
                        .is_some_and(|c| {
                            shard
                                .confirm_nat(0, &nf, 1, Default::default(), c.reply)
                                .is_ok()
                        }),
                    None => shard.confirm(0, &nf, 1).is_ok(),
                };
                made += usize::from(done);
            }
        }
        secs += start.elapsed().as_secs_f64();
        // The sync thread's part, untimed.
        while ring.pop().is_some() {}
    }
    if secs > 0.0 {
        made as f64 / secs
    } else {
        0.0
    }
}
