//! `[dataplane]`: worker threads, their cores, polling and the forwarding
//! mode. New keys go into [`RawDataplane`] (as written, with its default)
//! and [`DataplaneConfig`] (validated), and are checked in
//! [`Checker::dataplane`].

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use super::Checker;

/// Most worker threads a configuration may ask for.
pub const MAX_WORKERS: usize = 64;

/// `[dataplane]`: workers and forwarding mode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataplaneConfig {
    /// Worker threads, `1..=`[`MAX_WORKERS`].
    pub workers: usize,
    /// CPU core per worker (same length as `workers`, no duplicates), or
    /// `None` to leave placement to the OS.
    pub cores: Option<Vec<usize>>,
    /// How idle workers wait.
    pub poll_mode: PollMode,
    /// Forwarding mode.
    pub mode: ForwardMode,
    /// Non-IP ethertypes forwarded unfiltered in transparent mode
    /// (`pass_ethertypes`, names or hex; default ARP and LLDP). Every other
    /// non-IP frame is dropped and counted.
    pub pass_ethertypes: ftfw_dataplane::worker::PassEthertypes,
    /// Helpers attached by well-known port to accepted flows whose rule
    /// names none (`helpers = ["ftp", "tftp"]`: FTP on TCP 21, TFTP on UDP
    /// 69; default none).
    pub helpers: Vec<ftfw_dataplane::helper::Helper>,
}

/// How a worker waits when its ports are idle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PollMode {
    /// Spin, then yield, then sleep on the port until frames arrive.
    Adaptive,
    /// Spin forever (lowest latency, one full core per worker).
    Busy,
}

impl PollMode {
    /// The name as written in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            PollMode::Adaptive => "adaptive",
            PollMode::Busy => "busy",
        }
    }
}

/// Forwarding mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ForwardMode {
    /// Bump in the wire: frames entering one port of a bridge leave the other.
    Transparent,
    /// An IP router: ARP / neighbor discovery, connected and static routes.
    Routed,
}

impl ForwardMode {
    /// The name as written in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            ForwardMode::Transparent => "transparent",
            ForwardMode::Routed => "routed",
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawDataplane {
    pub(super) workers: i64,
    pub(super) cores: Option<Vec<i64>>,
    pub(super) poll_mode: PollMode,
    pub(super) mode: ForwardMode,
    pub(super) pass_ethertypes: Vec<String>,
    pub(super) helpers: Vec<String>,
}

impl Default for RawDataplane {
    fn default() -> Self {
        RawDataplane {
            workers: 1,
            cores: None,
            poll_mode: PollMode::Adaptive,
            mode: ForwardMode::Transparent,
            pass_ethertypes: vec!["arp".into(), "lldp".into()],
            helpers: Vec::new(),
        }
    }
}

impl Checker<'_> {
    /// Checks `[dataplane]`.
    pub(super) fn dataplane(&mut self, raw: RawDataplane) -> DataplaneConfig {
        let workers = self
            .range("dataplane.workers", raw.workers, 1, MAX_WORKERS as u64)
            .unwrap_or(1);
        let workers = usize::try_from(workers).unwrap_or(1);
        let cores = raw.cores.map(|cores| {
            if cores.len() != workers {
                self.error(
                    "dataplane.cores",
                    format!("has {} entries but dataplane.workers is {workers}; give one core per worker", cores.len()),
                );
            }
            let mut seen = HashSet::new();
            let mut out = Vec::with_capacity(cores.len());
            for (i, &c) in cores.iter().enumerate() {
                let field = format!("dataplane.cores[{i}]");
                if let Some(c) = self.range(&field, c, 0, 4095) {
                    if !seen.insert(c) {
                        self.error(&field, format!("core {c} is given to two workers"));
                    }
                    out.push(usize::try_from(c).unwrap_or(0));
                }
            }
            out
        });
        let pass_ethertypes = ftfw_dataplane::worker::PassEthertypes::parse(&raw.pass_ethertypes)
            .unwrap_or_else(|e| {
                self.error("dataplane.pass_ethertypes", e.to_string());
                ftfw_dataplane::worker::PassEthertypes::DEFAULT
            });
        let mut helpers = Vec::new();
        for (i, name) in raw.helpers.iter().enumerate() {
            match ftfw_dataplane::helper::Helper::parse(name) {
                Some(h) if !helpers.contains(&h) => helpers.push(h),
                Some(_) => self.error(
                    &format!("dataplane.helpers[{i}]"),
                    format!("helper {name} is listed twice"),
                ),
                None => self.error(
                    &format!("dataplane.helpers[{i}]"),
                    format!("unknown helper \"{name}\" (expected ftp or tftp)"),
                ),
            }
        }
        DataplaneConfig {
            workers,
            cores,
            poll_mode: raw.poll_mode,
            mode: raw.mode,
            pass_ethertypes,
            helpers,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::parse;
    use ftfw_dataplane::helper::Helper;

    const BASE: &str = "[dataplane]\nworkers = 2\n\
[[port]]\nname = \"a\"\nbackend = \"mem\"\n\
[[port]]\nname = \"b\"\nbackend = \"mem\"\n\
[[bridge]]\nports = [\"a\", \"b\"]\n";

    fn errors(text: &str) -> Vec<String> {
        match parse(text, "ftfw.toml") {
            Ok(_) => panic!("expected errors"),
            Err(e) => e.diagnostics().iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn default_port_helpers_parse_and_errors_name_the_field() {
        let c = parse(BASE, "ftfw.toml").unwrap();
        assert!(c.dataplane.helpers.is_empty());
        let with =
            |h: &str| BASE.replace("workers = 2\n", &format!("workers = 2\nhelpers = {h}\n"));
        let c = parse(&with("[\"ftp\", \"tftp\"]"), "ftfw.toml").unwrap();
        assert_eq!(c.dataplane.helpers, [Helper::Ftp, Helper::Tftp]);
        assert_eq!(
            errors(&with("[\"ftp\", \"sip\", \"ftp\"]")),
            [
                "ftfw.toml:3: dataplane.helpers[1]: unknown helper \"sip\" (expected ftp or tftp)",
                "ftfw.toml:3: dataplane.helpers[2]: helper ftp is listed twice"
            ]
        );
    }
}
