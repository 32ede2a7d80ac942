//! Proactive migration (hFT-FW, section V): hand the primary role over
//! *before* the hardware fails, when it starts reporting errors.
//!
//! Memory that corrects more and more errors (EDAC `ce_count`), an
//! uncorrectable error (`ue_count`), a fatal PCIe error (AER) or a CPU past
//! its thermal limit are warnings that a crash may follow. A primary that
//! sees one migrates to its best backup with the planned handover (its
//! table sent and acknowledged first), so no connection is lost, instead of
//! waiting to crash and be taken over.
//!
//! Sources, under a configurable root (default `/sys`, so tests can write
//! fake counters):
//! - `devices/system/edac/mc/mc*/ce_count` and `ue_count`;
//! - `bus/pci/devices/*/aer_dev_fatal` (the `TOTAL_ERR_FATAL` line);
//! - `class/thermal/thermal_zone*/temp` (millidegrees Celsius).
//!
//! A source that is missing or unreadable is reported in `status`, never
//! fatal. Counters are judged against their value when monitoring started
//! (errors from before the start do not count). [`judge`] is pure; only
//! [`read_sample`] touches the file system.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// `[failover.health]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthConfig {
    /// Root of the sources (`/sys`).
    pub root: PathBuf,
    /// How often the sources are read.
    pub interval: Duration,
    /// Uncorrectable memory errors since the start that trigger (0: any).
    pub uncorrected_errors: u64,
    /// Corrected memory errors per minute that trigger.
    pub corrected_per_minute: u64,
    /// Fatal PCIe errors since the start that trigger (0: any).
    pub pcie_fatal_errors: u64,
    /// Thermal zone temperature (degrees Celsius) that triggers.
    pub max_temp_c: i64,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            root: PathBuf::from("/sys"),
            interval: Duration::from_secs(1),
            uncorrected_errors: 0,
            corrected_per_minute: 100,
            pcie_fatal_errors: 0,
            max_temp_c: 95,
        }
    }
}

/// One reading of every source.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Sample {
    /// Sum of `ce_count` over the memory controllers (`None`: no EDAC).
    pub corrected: Option<u64>,
    /// Sum of `ue_count`.
    pub uncorrected: Option<u64>,
    /// Sum of fatal AER errors over PCI devices (`None`: no AER counters).
    pub pcie_fatal: Option<u64>,
    /// Hottest thermal zone, millidegrees (`None`: no thermal zones).
    pub max_temp_mc: Option<i64>,
    /// Sources that exist but could not be read or parsed.
    pub unreadable: Vec<String>,
}

/// Why a node should hand its role over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// New uncorrectable memory errors.
    Uncorrected(u64),
    /// Corrected memory errors per minute over the limit.
    CorrectedRate(u64),
    /// New fatal PCIe errors.
    PcieFatal(u64),
    /// A thermal zone over the limit (degrees Celsius).
    Temperature(i64),
}

impl std::fmt::Display for Trigger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Trigger::Uncorrected(n) => write!(f, "{n} uncorrectable memory error(s) (EDAC)"),
            Trigger::CorrectedRate(n) => {
                write!(f, "{n} corrected memory errors per minute (EDAC)")
            }
            Trigger::PcieFatal(n) => write!(f, "{n} fatal PCIe error(s) (AER)"),
            Trigger::Temperature(c) => write!(f, "a thermal zone at {c} C"),
        }
    }
}

fn read_u64(p: &Path, bad: &mut Vec<String>) -> Option<u64> {
    match std::fs::read_to_string(p) {
        Ok(s) => match s.trim().parse() {
            Ok(v) => Some(v),
            Err(_) => {
                bad.push(p.display().to_string());
                None
            }
        },
        Err(_) => {
            bad.push(p.display().to_string());
            None
        }
    }
}

/// Entries of `dir` whose names start with `prefix`, sorted.
fn entries(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn sum(values: impl Iterator<Item = Option<u64>>) -> Option<u64> {
    values.fold(None, |acc, v| match (acc, v) {
        (a, None) => a,
        (None, Some(v)) => Some(v),
        (Some(a), Some(v)) => Some(a.saturating_add(v)),
    })
}

/// Reads every source under `root`.
pub fn read_sample(root: &Path) -> Sample {
    let mut s = Sample::default();
    let mcs = entries(&root.join("devices/system/edac/mc"), "mc");
    s.corrected = sum(mcs
        .iter()
        .map(|m| read_u64(&m.join("ce_count"), &mut s.unreadable)));
    s.uncorrected = sum(mcs
        .iter()
        .map(|m| read_u64(&m.join("ue_count"), &mut s.unreadable)));
    let devs = entries(&root.join("bus/pci/devices"), "");
    s.pcie_fatal = sum(devs.iter().filter_map(|d| {
        let p = d.join("aer_dev_fatal");
        let text = std::fs::read_to_string(&p).ok()?;
        let v = text
            .lines()
            .find_map(|l| l.strip_prefix("TOTAL_ERR_FATAL"))
            .and_then(|v| v.trim().parse().ok());
        if v.is_none() {
            s.unreadable.push(p.display().to_string());
        }
        Some(v)
    }));
    let zones = entries(&root.join("class/thermal"), "thermal_zone");
    s.max_temp_mc = zones
        .iter()
        .filter_map(|z| {
            let p = z.join("temp");
            match std::fs::read_to_string(&p).map(|t| t.trim().parse::<i64>()) {
                Ok(Ok(v)) => Some(v),
                _ => {
                    s.unreadable.push(p.display().to_string());
                    None
                }
            }
        })
        .max();
    s
}

/// Judges `now` against the `baseline` taken at the start and the
/// `previous` reading taken `elapsed` ago. Pure.
pub fn judge(
    cfg: &HealthConfig,
    baseline: &Sample,
    previous: &Sample,
    now: &Sample,
    elapsed: Duration,
) -> Option<Trigger> {
    let since = |n: Option<u64>, b: Option<u64>| n?.checked_sub(b.unwrap_or(0));
    if let Some(ue) = since(now.uncorrected, baseline.uncorrected) {
        if ue > cfg.uncorrected_errors {
            return Some(Trigger::Uncorrected(ue));
        }
    }
    if let Some(f) = since(now.pcie_fatal, baseline.pcie_fatal) {
        if f > cfg.pcie_fatal_errors {
            return Some(Trigger::PcieFatal(f));
        }
    }
    if let (Some(ce), false) = (since(now.corrected, previous.corrected), elapsed.is_zero()) {
        let per_min = u128::from(ce) * 60_000 / elapsed.as_millis().max(1);
        let per_min = u64::try_from(per_min).unwrap_or(u64::MAX);
        if per_min > cfg.corrected_per_minute {
            return Some(Trigger::CorrectedRate(per_min));
        }
    }
    if let Some(t) = now.max_temp_mc {
        if t / 1000 >= cfg.max_temp_c {
            return Some(Trigger::Temperature(t / 1000));
        }
    }
    None
}

/// Reads the sources every interval and says when to migrate.
#[derive(Debug)]
pub struct HealthMonitor {
    cfg: HealthConfig,
    baseline: Option<Sample>,
    last: Option<(Instant, Sample)>,
    trigger: Option<Trigger>,
}

impl HealthMonitor {
    /// A monitor; the first reading is the baseline.
    pub fn new(cfg: HealthConfig) -> HealthMonitor {
        HealthMonitor {
            cfg,
            baseline: None,
            last: None,
            trigger: None,
        }
    }

    /// Reads the sources if the interval has passed; returns a trigger the
    /// first time one fires (then it stays in [`HealthMonitor::trigger`]).
    pub fn poll(&mut self, now: Instant) -> Option<Trigger> {
        if self
            .last
            .as_ref()
            .is_some_and(|(t, _)| now.saturating_duration_since(*t) < self.cfg.interval)
        {
            return None;
        }
        let s = read_sample(&self.cfg.root);
        let fired = match (&self.baseline, &self.last) {
            (Some(b), Some((t, prev))) if self.trigger.is_none() => {
                judge(&self.cfg, b, prev, &s, now.saturating_duration_since(*t))
            }
            _ => None,
        };
        if self.baseline.is_none() {
            self.baseline = Some(s.clone());
        }
        self.last = Some((now, s));
        if fired.is_some() {
            self.trigger.clone_from(&fired);
        }
        fired
    }

    /// What fired, if anything has.
    pub fn trigger(&self) -> Option<&Trigger> {
        self.trigger.as_ref()
    }

    /// The last reading, as `status` shows it.
    pub fn status(&self) -> serde_json::Value {
        serde_json::json!({
            "root": self.cfg.root.display().to_string(),
            "last": self.last.as_ref().map(|(_, s)| s),
            "trigger": self.trigger.as_ref().map(ToString::to_string),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, rel: &str, v: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, v).unwrap();
    }

    fn root(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("ftfw-health-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn reads_edac_aer_and_thermal_and_reports_what_it_cannot_read() {
        let r = root("read");
        write(&r, "devices/system/edac/mc/mc0/ce_count", "3\n");
        write(&r, "devices/system/edac/mc/mc0/ue_count", "0\n");
        write(&r, "devices/system/edac/mc/mc1/ce_count", "4\n");
        write(&r, "devices/system/edac/mc/mc1/ue_count", "garbage\n");
        write(
            &r,
            "bus/pci/devices/0000:03:00.0/aer_dev_fatal",
            "Undefined 0\nTOTAL_ERR_FATAL 2\n",
        );
        write(&r, "class/thermal/thermal_zone0/temp", "41000\n");
        write(&r, "class/thermal/thermal_zone1/temp", "57000\n");
        let s = read_sample(&r);
        assert_eq!(s.corrected, Some(7));
        assert_eq!(s.uncorrected, Some(0));
        assert_eq!(s.pcie_fatal, Some(2));
        assert_eq!(s.max_temp_mc, Some(57_000));
        assert_eq!(s.unreadable.len(), 1, "{:?}", s.unreadable);
        assert!(s.unreadable[0].ends_with("mc1/ue_count"));
        // Nothing there at all: nothing known, nothing fatal.
        let empty = read_sample(&root("empty"));
        assert_eq!(empty, Sample::default());
        std::fs::remove_dir_all(&r).unwrap();
    }

    #[test]
    fn judges_new_errors_rates_and_temperature_against_the_start() {
        let cfg = HealthConfig::default();
        let base = Sample {
            corrected: Some(10),
            uncorrected: Some(1),
            pcie_fatal: Some(0),
            max_temp_mc: Some(50_000),
            ..Sample::default()
        };
        let min = Duration::from_secs(60);
        // Errors from before the start do not count.
        assert_eq!(judge(&cfg, &base, &base, &base, min), None);
        let ue = Sample {
            uncorrected: Some(2),
            ..base.clone()
        };
        assert_eq!(
            judge(&cfg, &base, &base, &ue, min),
            Some(Trigger::Uncorrected(1))
        );
        let ce = Sample {
            corrected: Some(111),
            ..base.clone()
        };
        assert_eq!(
            judge(&cfg, &base, &base, &ce, min),
            Some(Trigger::CorrectedRate(101))
        );
        // The same 101 over two minutes is under 100 per minute.
        assert_eq!(judge(&cfg, &base, &base, &ce, min * 2), None);
        let hot = Sample {
            max_temp_mc: Some(96_500),
            ..base.clone()
        };
        assert_eq!(
            judge(&cfg, &base, &base, &hot, min),
            Some(Trigger::Temperature(96))
        );
        let aer = Sample {
            pcie_fatal: Some(1),
            ..base.clone()
        };
        assert_eq!(
            judge(&cfg, &base, &base, &aer, min),
            Some(Trigger::PcieFatal(1))
        );
    }

    #[test]
    fn the_monitor_fires_once_when_a_fake_counter_moves() {
        let r = root("mon");
        write(&r, "devices/system/edac/mc/mc0/ue_count", "5\n");
        write(&r, "devices/system/edac/mc/mc0/ce_count", "0\n");
        let mut m = HealthMonitor::new(HealthConfig {
            root: r.clone(),
            interval: Duration::from_millis(10),
            ..HealthConfig::default()
        });
        let t0 = Instant::now();
        assert_eq!(m.poll(t0), None, "the first reading is the baseline");
        assert_eq!(
            m.poll(t0 + Duration::from_millis(5)),
            None,
            "within the interval"
        );
        assert_eq!(m.poll(t0 + Duration::from_millis(20)), None, "nothing new");
        write(&r, "devices/system/edac/mc/mc0/ue_count", "6\n");
        assert_eq!(
            m.poll(t0 + Duration::from_millis(40)),
            Some(Trigger::Uncorrected(1))
        );
        assert_eq!(m.poll(t0 + Duration::from_millis(60)), None, "fires once");
        assert_eq!(m.trigger(), Some(&Trigger::Uncorrected(1)));
        std::fs::remove_dir_all(&r).unwrap();
    }
}
