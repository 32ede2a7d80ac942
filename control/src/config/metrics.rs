//! `[metrics]`: the Prometheus endpoint (absent: off).

use std::net::SocketAddr;

use serde::Deserialize;

use super::Checker;

/// `[metrics]`: where `GET /metrics` is served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetricsConfig {
    /// Address and port of the HTTP listener (`127.0.0.1:9779`).
    pub listen: SocketAddr,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMetrics {
    pub(super) listen: String,
}

impl Checker<'_> {
    /// Checks `[metrics]`.
    pub(super) fn metrics(&mut self, raw: Option<RawMetrics>) -> Option<MetricsConfig> {
        let raw = raw?;
        match raw.listen.parse::<SocketAddr>() {
            Ok(listen) if listen.port() == 0 => {
                self.error("metrics.listen", "needs a port other than 0");
                None
            }
            Ok(listen) => Some(MetricsConfig { listen }),
            Err(_) => {
                self.error(
                    "metrics.listen",
                    format!(
                        "{:?} is not an address and port (\"127.0.0.1:9779\", \"[::1]:9779\")",
                        raw.listen
                    ),
                );
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::parse;

    const BASE: &str = "\
[dataplane]
workers = 1
[[port]]
name = \"a\"
backend = \"mem\"
[[port]]
name = \"b\"
backend = \"mem\"
[[bridge]]
ports = [\"a\", \"b\"]
";

    fn errors(text: &str) -> Vec<String> {
        match parse(text, "ftfw.toml") {
            Ok(_) => panic!("expected errors"),
            Err(e) => e.diagnostics().iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn absent_is_off_present_listens() {
        assert_eq!(parse(BASE, "ftfw.toml").unwrap().metrics, None);
        let c = parse(
            &format!("{BASE}[metrics]\nlisten = \"127.0.0.1:9779\"\n"),
            "ftfw.toml",
        )
        .unwrap();
        assert_eq!(c.metrics.unwrap().listen, "127.0.0.1:9779".parse().unwrap());
    }

    #[test]
    fn bad_listen_is_named_with_its_line() {
        // Lines 11 and 12: the header and the key.
        let e = errors(&format!("{BASE}[metrics]\nlisten = \"localhost\"\n"));
        assert_eq!(
            e,
            vec!["ftfw.toml:12: metrics.listen: \"localhost\" is not an address and port (\"127.0.0.1:9779\", \"[::1]:9779\")"]
        );
        let e = errors(&format!("{BASE}[metrics]\nlisten = \"127.0.0.1:0\"\n"));
        assert_eq!(
            e,
            vec!["ftfw.toml:12: metrics.listen: needs a port other than 0"]
        );
        let e = errors(&format!("{BASE}[metrics]\nport = 9779\n"));
        assert!(e.iter().any(|d| d.starts_with("ftfw.toml:1")), "{e:?}");
    }
}
