//! `expect list`: the expectations helpers created (connections announced
//! on a control connection, waiting for their first packet).

use serde::{Deserialize, Serialize};

use super::flows::{proto_name, MasterJson, TupleJson};

/// One expectation, like a line of `conntrack -L expect`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpectJson {
    /// Protocol of the expected connection.
    pub proto: String,
    /// The expected connection's original tuple; no `sport` means any
    /// source port.
    pub expected: TupleJson,
    /// The control connection that announced it.
    pub master: MasterJson,
    /// Conntrack zone.
    pub zone: u16,
    /// The helper that created it (`ftp`, `tftp`).
    pub helper: String,
    /// Seconds left before it expires.
    pub timeout: u32,
    /// Where the connection is translated to when its master is
    /// translated (it follows the master's NAT): the announcer's own
    /// address and port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub translated_to: Option<String>,
    /// The source the announcer sees the translated connection come from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub translated_from: Option<String>,
}

impl ExpectJson {
    /// The console form of a worker's expectation with `timeout` seconds
    /// left.
    pub fn new(e: &ftfw_dataplane::helper::Expectation, timeout: u32) -> ExpectJson {
        let mut expected = TupleJson::from_tuple(&e.tuple);
        if e.tuple.src_port == 0 {
            expected.sport = None;
        }
        ExpectJson {
            proto: proto_name(e.tuple.proto),
            expected,
            master: MasterJson {
                proto: proto_name(e.master.orig.proto),
                original: TupleJson::from_tuple(&e.master.orig),
            },
            zone: e.master.zone,
            helper: e.helper.name().to_owned(),
            timeout,
            translated_to: e.nat.map(|n| {
                std::net::SocketAddr::new(
                    ftfw_dataplane::flow::addr_ip(&n.reply_src, e.tuple.v6),
                    n.reply_src_port,
                )
                .to_string()
            }),
            translated_from: e
                .nat
                .map(|n| ftfw_dataplane::flow::addr_ip(&n.reply_dst, e.tuple.v6).to_string()),
        }
    }
}

/// Answer to [`Request::ExpectList`](super::Request::ExpectList).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpectListing {
    /// Every waiting expectation.
    pub expectations: Vec<ExpectJson>,
}
