//! The scenarios of `ftfw-lab netns cluster` (crash, rejoin, drain) and
//! their reports, on a [`ClusterLab`] the parent module built.

use super::*;

impl ClusterLab {
    fn report(
        &self,
        scenario: Scenario,
        before: (&[(u32, [u64; 5])], Vec<u32>),
        after: (&[(u32, [u64; 5])], Vec<u32>),
        batches: Vec<(usize, (usize, Vec<String>))>,
        time_to_settle_ms: u64,
    ) -> ScenarioReport {
        let (b, owned_before) = before;
        let (a, owned_after) = after;
        // Buckets that changed owner between the two maps.
        let buckets_moved = owned_after
            .iter()
            .zip(&owned_before)
            .map(|(a, b)| u64::from(a.saturating_sub(*b)))
            .sum();
        let mut flows_committed = 0;
        let mut counters = Vec::new();
        for (k, x) in a {
            let prev = b.iter().find(|(j, _)| j == k).map(|(_, v)| *v);
            // A member that restarted counts from 0.
            let p = prev.filter(|p| p.iter().zip(x).all(|(p, x)| p <= x));
            let p0 = p.unwrap_or_default();
            flows_committed += x[1] - p0[1];
            if p.is_some() {
                counters.push(MemberCounters {
                    node: *k,
                    rx: x[2] - p0[2],
                    tx: x[3] - p0[3],
                    not_owner: x[4] - p0[4],
                });
            }
        }
        let transfers = batches.iter().map(|(t, _)| t).sum();
        let completed = batches.iter().map(|(_, (c, _))| c).sum::<usize>();
        let errors: Vec<String> = batches.into_iter().flat_map(|(_, (_, e))| e).collect();
        ScenarioReport {
            scenario,
            node: self.o.victim,
            transfers,
            completed,
            broken: transfers.saturating_sub(completed),
            errors,
            time_to_settle_ms,
            owned_before,
            owned_after,
            buckets_moved,
            flows_committed,
            undrain_ms: None,
            owned_after_undrain: None,
            uplinks_before: Vec::new(),
            uplinks_after: self.uplink_states(),
            uplinks_after_undrain: Vec::new(),
            counters,
        }
    }

    /// Every live member settled on one map (the starting point of each
    /// scenario).
    fn before(&self) -> anyhow::Result<(Sample, Vec<u32>)> {
        let st = self.wait_settled("the cluster to settle before the scenario", 20, None)?;
        Ok((self.sample(), self.owned(&st)))
    }

    /// `crash`: SIGKILL of the victim with a batch of transfers paused
    /// mid-way through every member.
    pub fn crash(&mut self) -> anyhow::Result<ScenarioReport> {
        let k = self.o.victim;
        let (b, owned_before) = self.before()?;
        let uplinks_before = self.uplink_states();
        let batch = self.batch()?;
        let batch = self.wait_established(batch)?;
        let pid = self.pids[k as usize - 1].context("the victim is not running")?;
        netns::signal(pid, "KILL")?;
        let killed = Instant::now();
        batch.release();
        self.pids[k as usize - 1] = None;
        let st = self.wait_settled(
            "the survivors to forward every bucket",
            30,
            Some((k, false)),
        )?;
        let settle = ms(killed.elapsed());
        let owned_after = self.owned(&st);
        let t = batch.transfers;
        let r = batch.finish();
        let a = self.sample();
        let mut report = self.report(
            Scenario::Crash,
            (&b, owned_before),
            (&a, owned_after),
            vec![(t, r)],
            settle,
        );
        report.uplinks_before = uplinks_before;
        Ok(report)
    }

    /// `rejoin`: restart of the (crashed) victim with a batch of transfers
    /// paused mid-way; it must get a share back by planned hand-offs.
    pub fn rejoin(&mut self) -> anyhow::Result<ScenarioReport> {
        let k = self.o.victim;
        anyhow::ensure!(
            self.pids[k as usize - 1].is_none(),
            "rejoin needs the victim crashed first"
        );
        let (b, owned_before) = self.before()?;
        let batch = self.batch()?;
        let batch = self.wait_established(batch)?;
        let restarted = Instant::now();
        self.start_member(k)?;
        batch.release();
        let st = self.wait_settled(
            "the restarted member to own a share again",
            30,
            Some((k, true)),
        )?;
        let settle = ms(restarted.elapsed());
        let owned_after = self.owned(&st);
        let t = batch.transfers;
        let r = batch.finish();
        let a = self.sample();
        Ok(self.report(
            Scenario::Rejoin,
            (&b, owned_before),
            (&a, owned_after),
            vec![(t, r)],
            settle,
        ))
    }

    /// `drain`: `ftfwctl cluster drain` of the victim mid-transfer, then
    /// `undrain` with another batch running.
    pub fn drain(&mut self) -> anyhow::Result<ScenarioReport> {
        let k = self.o.victim;
        anyhow::ensure!(
            self.pids[k as usize - 1].is_some(),
            "drain needs the member running"
        );
        let (b, owned_before) = self.before()?;
        let uplinks_before = self.uplink_states();
        let batch = self.batch()?;
        let batch = self.wait_established(batch)?;
        let asked = Instant::now();
        let node = k.to_string();
        self.lab
            .ctl(1, &["cluster", "drain", &node])
            .context("ftfwctl cluster drain refused")?;
        batch.release();
        let st = self.wait_settled("the drained member to own nothing", 30, Some((k, false)))?;
        let settle = ms(asked.elapsed());
        let owned_after = self.owned(&st);
        // Its deactivate script runs after it stopped forwarding (the
        // kernel's link and the member's report both down).
        if self.o.uplinks_down_when_idle {
            self.lab.wait("the drained member's uplink down", 10, || {
                self.uplink_states().get(k as usize - 1).map(String::as_str) == Some("down/down")
            })?;
        }
        let uplinks_drained = self.uplink_states();
        let t = batch.transfers;
        let r = batch.finish();
        let a = self.sample();
        // Undrain, with another batch under way.
        let batch2 = self.batch()?;
        let batch2 = self.wait_established(batch2)?;
        let asked = Instant::now();
        self.lab
            .ctl(1, &["cluster", "undrain", &node])
            .context("ftfwctl cluster undrain refused")?;
        batch2.release();
        let st = self.wait_settled("the undrained member to own a share", 30, Some((k, true)))?;
        let undrain_ms = ms(asked.elapsed());
        let owned_undrain = self.owned(&st)[k as usize - 1];
        let t2 = batch2.transfers;
        let r2 = batch2.finish();
        let mut rep = self.report(
            Scenario::Drain,
            (&b, owned_before),
            (&a, owned_after),
            vec![(t, r), (t2, r2)],
            settle,
        );
        rep.undrain_ms = Some(undrain_ms);
        rep.owned_after_undrain = Some(owned_undrain);
        rep.uplinks_after_undrain = std::mem::replace(&mut rep.uplinks_after, uplinks_drained);
        rep.uplinks_before = uplinks_before;
        Ok(rep)
    }

    /// Frames each live member receives per second with no traffic
    /// (measured over one second).
    pub fn idle_rx_per_s(&self) -> Vec<u64> {
        let a = self.sample();
        std::thread::sleep(Duration::from_secs(1));
        let b = self.sample();
        a.iter()
            .zip(&b)
            .map(|((_, x), (_, y))| y[2].saturating_sub(x[2]))
            .collect()
    }
}

impl ClusterLab {
    /// Saves every live member's `sync status`, `stats` and `cluster
    /// status` into the lab's directory (`<what>-<member>-*.json`), for a
    /// post-mortem of a failed wait (kept with `FTFW_LAB_KEEP_LOGS=1`).
    fn save_state(&self, what: &str) {
        for k in self.live() {
            for (name, args) in [
                ("sync-status", &["sync", "status"][..]),
                ("stats", &["stats"][..]),
                ("cluster-status", &["cluster", "status"][..]),
            ] {
                if let Some(v) = self.lab.ctl(k, args) {
                    let p = self.dir().join(format!("{what}-{k}-{name}.json"));
                    let _ = std::fs::write(p, v.to_string());
                }
            }
        }
    }

    /// Waits until `n` transfers are established at their owners and
    /// replicated: every live member's transmit queue is empty and its
    /// cache of the peers' flows holds at least as many flows as the
    /// others have established (`replicate = "all"`).
    fn wait_established(&self, mut batch: Batch) -> anyhow::Result<Batch> {
        let n = self.o.transfers;
        let mut seen = String::new();
        let mut most = 0;
        let r = self
            .lab
            .wait("the transfers established and replicated", 45, || {
                let mut est = Vec::new();
                let mut ext = Vec::new();
                for k in self.live() {
                    let l = self.lab.ctl(
                        k,
                        &[
                            "flows",
                            "list",
                            "-p",
                            "tcp",
                            "--dport",
                            "8080",
                            "--state",
                            "ESTABLISHED",
                        ],
                    );
                    est.push(l.and_then(|l| l["total"].as_u64()).unwrap_or(0));
                    let Some(s) = self.lab.sync_status(k) else {
                        return false;
                    };
                    ext.push(s["external_flows"].as_u64().unwrap_or(0));
                    if s["tx_queue"].as_u64() != Some(0) {
                        seen = format!(
                            "member {k}'s transmit queue not empty, most established {most}"
                        );
                        return false;
                    }
                }
                let total: u64 = est.iter().sum();
                most = most.max(total);
                seen = format!("established {est:?}, cached {ext:?}, most established {most}");
                total >= n as u64 && est.iter().zip(&ext).all(|(e, x)| *x >= total - e)
            });
        match r {
            Ok(()) => Ok(batch),
            Err(e) => {
                if let Some(c) = &mut batch.child {
                    let _ = c.kill();
                }
                self.save_state("established");
                let (done, errors) = batch.finish();
                Err(e.context(format!(
                    "last seen: {seen}; {done} transfer(s) of the batch completed, errors: {:?}",
                    &errors[..errors.len().min(5)]
                )))
            }
        }
    }
}
