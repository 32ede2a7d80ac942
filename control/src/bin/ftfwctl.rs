//! `ftfwctl`: the operator console of ftfwd.
//!
//! Sends one request to the console socket (`--socket`, else `$FTFW_SOCKET`,
//! else `/run/ftfw/ftfwd.sock`) and prints the answer for people, or as
//! pretty JSON with `--json`.
//!
//! Exit codes: 0 ok, 1 the request failed (error on stderr), 2 usage,
//! 3 ftfwd is not running.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use ftfw_control::config::DEFAULT_CONSOLE_SOCKET;
use ftfw_control::console::client::{ClientError, ConsoleClient};
use ftfw_control::console::proto::{
    proto_from_name, status_bit, ClusterChange, FlowFilter, FlowJson, NotifyState, Request,
    Response, TupleJson,
};
use ftfw_control::console::render;
use ftfw_dataplane::flow::{proto, FlowState, TcpState};

/// Operator console of the ftfw firewall daemon.
#[derive(Parser, Debug)]
#[command(name = "ftfwctl", version, about)]
struct Cli {
    /// Console socket of ftfwd [default: $FTFW_SOCKET or /run/ftfw/ftfwd.sock].
    #[arg(long, global = true, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Print the raw response payload as pretty JSON.
    #[arg(long, global = true)]
    json: bool,
    /// Seconds to wait for ftfwd's answer.
    #[arg(
        long = "wait",
        global = true,
        default_value_t = 10,
        value_name = "SECS"
    )]
    wait_secs: u64,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Daemon overview: ports, flow table, rules.
    Status,
    /// Counters per worker with totals, and per port.
    Stats,
    /// Live view: role and peers, packets per second per worker, bits per
    /// second per port, flows and new flows per second, sync queues, the
    /// last takeover. Refreshes every second; `q` quits.
    Top {
        /// Print one frame (after two samples a second apart, for the
        /// rates) and exit: for scripts and terminals without a screen.
        #[arg(long)]
        once: bool,
        /// Width of the `--once` frame.
        #[arg(long, default_value_t = 80)]
        width: u16,
        /// Height of the `--once` frame.
        #[arg(long, default_value_t = 24)]
        height: u16,
    },
    /// The connection-tracking table.
    Flows {
        #[command(subcommand)]
        cmd: FlowsCmd,
    },
    /// The rule set.
    Rules {
        #[command(subcommand)]
        cmd: RulesCmd,
    },
    /// Replication with the peer.
    Sync {
        #[command(subcommand)]
        cmd: SyncCmd,
    },
    /// The peer's flows held in the external cache.
    External {
        #[command(subcommand)]
        cmd: ExternalCmd,
    },
    /// Connections FTP/TFTP helpers expect (like `conntrack -L expect`).
    Expect {
        #[command(subcommand)]
        cmd: ExpectCmd,
    },
    /// Import the external cache into the flow table (like `conntrackd -c`).
    Commit,
    /// Ask the peer for its whole table (like `conntrackd -n`).
    Resync,
    /// Failover detector hook (keepalived notify scripts): take over as
    /// `master` (commit, forward, announce), stand by as `backup`, or stop
    /// forwarding on `fault`.
    Notify {
        /// master, backup or fault.
        #[arg(value_parser = parse_notify)]
        state: NotifyState,
    },
    /// Routed mode: the neighbor (ARP / NDP) table: IP, MAC, port, age.
    Neighbors,
    /// Routed mode: connected and static routes, longest prefix first
    /// (`routes reload`: re-read the static routes of the configuration
    /// file, whole or not at all, as SIGHUP does).
    Routes {
        #[command(subcommand)]
        cmd: Option<RoutesCmd>,
    },
    /// Hand the primary role to NODE with no flow lost (built-in
    /// election): our table is sent and acknowledged first, then we step
    /// down and NODE takes over. `status` shows the progress.
    Migrate {
        /// The node id that becomes primary.
        node: u32,
    },
    /// Planned restart of ftfwd (e.g. after installing a new binary): a
    /// standalone node hands its flow table to the new process, so
    /// established connections continue. Same as SIGUSR2.
    Restart,
    /// Cluster members ([cluster]): bucket map, load, planned moves.
    Cluster {
        #[command(subcommand)]
        cmd: ClusterCmd,
    },
    /// Empty a cache.
    Flush {
        #[command(subcommand)]
        what: FlushWhat,
    },
    /// FT-FW sync wire tools (run locally, no daemon needed).
    Wire {
        #[command(subcommand)]
        cmd: WireCmd,
    },
}

#[derive(Subcommand, Debug)]
enum ClusterCmd {
    /// Map version, members with their buckets and load, moves under way,
    /// replication per peer.
    Status,
    /// Move every bucket off NODE (planned: its flows are handed over
    /// first, no connection is cut); it keeps backing up the others.
    Drain {
        /// The node id.
        node: u32,
    },
    /// Let NODE own buckets again (the coordinator rebalances).
    Undrain {
        /// The node id.
        node: u32,
    },
    /// Even out bucket ownership over the members.
    Rebalance,
}

#[derive(Subcommand, Debug)]
enum SyncCmd {
    /// Peer state, sequence numbers, queues and counters.
    Status,
}

#[derive(Subcommand, Debug)]
enum ExternalCmd {
    /// List the external cache, like `conntrackd -e`.
    List {
        #[command(flatten)]
        filter: FilterArgs,
        /// Show at most N flows (the count line still counts all matches).
        #[arg(long, value_name = "N")]
        limit: Option<u64>,
    },
}

#[derive(Subcommand, Debug)]
enum ExpectCmd {
    /// Seconds left, expected tuple, master, helper.
    List,
    /// The peer's expectations in the external expectation cache
    /// (`[sync] expectations`; like `conntrackd -e expect`).
    External,
}

#[derive(Subcommand, Debug)]
enum FlushWhat {
    /// The external cache (like `conntrackd -f external`).
    External,
}

#[derive(Subcommand, Debug)]
enum WireCmd {
    /// Decode FT-FW messages: FILE is one datagram as hex (`#` comments,
    /// whitespace-separated bytes or an offset-prefixed hexdump) or a pcap
    /// file (every UDP payload). `--json`: one object per message.
    Decode {
        /// Hex text or pcap file.
        file: PathBuf,
        /// Only UDP datagrams from or to this port (pcap input).
        #[arg(long)]
        port: Option<u16>,
    },
}

#[derive(Subcommand, Debug)]
enum FlowsCmd {
    /// List flows, like `conntrack -L`.
    List {
        #[command(flatten)]
        filter: FilterArgs,
        /// Show at most N flows (the count line still counts all matches).
        #[arg(long, value_name = "N")]
        limit: Option<u64>,
    },
    /// Insert a flow, like `conntrack -I`.
    Add(AddArgs),
    /// Delete the flows matching the filter, like `conntrack -D`
    /// (no filter deletes every flow).
    Delete {
        #[command(flatten)]
        filter: FilterArgs,
    },
}

#[derive(Subcommand, Debug)]
enum RoutesCmd {
    /// Show the route table (the default).
    Show,
    /// Reload the static routes (`[[route]]`) of the configuration file;
    /// a file that does not load is rejected whole and the running routes
    /// stay.
    Reload,
}

#[derive(Subcommand, Debug)]
enum RulesCmd {
    /// Show the loaded rules.
    Show,
    /// Reload the rules from their source; a bad rule set is rejected whole.
    Reload,
}

/// `conntrack -L` style filters; all match the original direction.
#[derive(Args, Debug, Default)]
struct FilterArgs {
    /// Protocol: tcp, udp, icmp, icmpv6, sctp, ... or a number.
    #[arg(short = 'p', long = "proto", value_parser = parse_proto)]
    proto: Option<u8>,
    /// Original source address.
    #[arg(short = 's', long = "src")]
    src: Option<IpAddr>,
    /// Original destination address.
    #[arg(short = 'd', long = "dst")]
    dst: Option<IpAddr>,
    /// Original source port.
    #[arg(long)]
    sport: Option<u16>,
    /// Original destination port.
    #[arg(long)]
    dport: Option<u16>,
    /// TCP state (ESTABLISHED, TIME_WAIT, ...).
    #[arg(long, value_parser = parse_state)]
    state: Option<TcpState>,
    /// Conntrack zone.
    #[arg(short = 'w', long = "zone")]
    zone: Option<u16>,
    /// Connection mark.
    #[arg(short = 'm', long = "mark")]
    mark: Option<u32>,
}

impl From<FilterArgs> for FlowFilter {
    fn from(a: FilterArgs) -> FlowFilter {
        FlowFilter {
            proto: a.proto,
            src: a.src,
            dst: a.dst,
            sport: a.sport,
            dport: a.dport,
            state: a.state,
            zone: a.zone,
            mark: a.mark,
        }
    }
}

/// A flow to insert.
#[derive(Args, Debug)]
struct AddArgs {
    /// Protocol: tcp, udp, icmp, icmpv6, ... or a number.
    #[arg(short = 'p', long = "proto", value_parser = parse_proto)]
    proto: u8,
    /// Original source address.
    #[arg(short = 's', long = "src")]
    src: IpAddr,
    /// Original destination address.
    #[arg(short = 'd', long = "dst")]
    dst: IpAddr,
    /// Original source port (port protocols).
    #[arg(long)]
    sport: Option<u16>,
    /// Original destination port (port protocols).
    #[arg(long)]
    dport: Option<u16>,
    /// ICMP type (icmp, icmpv6).
    #[arg(long)]
    icmp_type: Option<u8>,
    /// ICMP code.
    #[arg(long)]
    icmp_code: Option<u8>,
    /// ICMP identifier.
    #[arg(long)]
    icmp_id: Option<u16>,
    /// TCP or SCTP state [default for tcp and sctp: ESTABLISHED].
    #[arg(long)]
    state: Option<String>,
    /// SCTP verification tag of the original direction.
    #[arg(long, value_parser = parse_u32)]
    orig_vtag: Option<u32>,
    /// SCTP verification tag of the reply direction.
    #[arg(long, value_parser = parse_u32)]
    reply_vtag: Option<u32>,
    /// Connection labels by bit number (0 to 127), comma-separated.
    #[arg(
        short = 'l',
        long = "label",
        value_delimiter = ',',
        value_name = "BITS"
    )]
    labels: Vec<u8>,
    /// Seconds until the flow expires.
    #[arg(long, short = 't', value_name = "SECS")]
    timeout: u32,
    /// Connection mark, decimal or hexadecimal (0xffffffff).
    #[arg(short = 'm', long = "mark", default_value = "0", value_parser = parse_u32)]
    mark: u32,
    /// Conntrack zone.
    #[arg(short = 'w', long = "zone", default_value_t = 0)]
    zone: u16,
    /// Status bits, comma-separated (SEEN_REPLY,ASSURED,...); CONFIRMED is
    /// always set.
    #[arg(long, value_delimiter = ',', value_name = "BITS")]
    status_bits: Vec<String>,
    /// Source NAT to this address (and port), like `conntrack --src-nat`:
    /// replies come back to it.
    #[arg(long, value_name = "IP[:PORT]", value_parser = parse_nat)]
    src_nat: Option<(IpAddr, Option<u16>)>,
    /// Destination NAT to this address (and port), like `conntrack --dst-nat`.
    #[arg(long, value_name = "IP[:PORT]", value_parser = parse_nat)]
    dst_nat: Option<(IpAddr, Option<u16>)>,
}

/// A 32-bit value, decimal or `0x` hexadecimal, as `conntrack` takes marks.
fn parse_u32(s: &str) -> Result<u32, String> {
    let r = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u32::from_str_radix(h, 16),
        None => s.parse(),
    };
    r.map_err(|_| format!("{s:?} is not a 32-bit number (decimal or 0x hexadecimal)"))
}

/// `IP`, `IP:PORT`, `[IPv6]:PORT` or a bare IPv6 address.
fn parse_nat(s: &str) -> Result<(IpAddr, Option<u16>), String> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok((ip, None));
    }
    if let Ok(sa) = s.parse::<std::net::SocketAddr>() {
        return Ok((sa.ip(), Some(sa.port())));
    }
    Err(format!("{s:?} is not IP, IP:PORT or [IPv6]:PORT"))
}

impl AddArgs {
    fn to_flow(&self) -> Result<FlowJson, String> {
        let state = match (&self.state, self.proto) {
            (None, proto::TCP | proto::SCTP) => Some(TcpState::Established.name().to_string()),
            (s, _) => s.clone(),
        };
        let vtags = match (self.orig_vtag, self.reply_vtag) {
            (None, None) => None,
            (o, r) => Some([o.unwrap_or(0), r.unwrap_or(0)]),
        };
        for b in &self.status_bits {
            status_bit(b).ok_or_else(|| format!("--status-bits: unknown status bit {b:?}"))?;
        }
        let mut status_names = self.status_bits.clone();
        // The reply tuple of a NATed flow, as conntrack builds it: the
        // inverse of the original, with the translated side replaced.
        let reply = if self.src_nat.is_some() || self.dst_nat.is_some() {
            let mut r = TupleJson {
                src: self.dst,
                dst: self.src,
                sport: self.dport,
                dport: self.sport,
                icmp_type: self.icmp_type,
                code: self.icmp_code,
                id: self.icmp_id,
            };
            if let Some((ip, port)) = self.src_nat {
                r.dst = ip;
                r.dport = port.or(r.dport);
                status_names.extend(["SRC_NAT".to_string(), "SRC_NAT_DONE".to_string()]);
            }
            if let Some((ip, port)) = self.dst_nat {
                r.src = ip;
                r.sport = port.or(r.sport);
                status_names.extend(["DST_NAT".to_string(), "DST_NAT_DONE".to_string()]);
            }
            Some(r)
        } else {
            None
        };
        let flow = FlowJson {
            proto: ftfw_control::console::proto::proto_name(self.proto),
            proto_num: Some(self.proto),
            family: None,
            original: TupleJson {
                src: self.src,
                dst: self.dst,
                sport: self.sport,
                dport: self.dport,
                icmp_type: self.icmp_type,
                code: self.icmp_code,
                id: self.icmp_id,
            },
            reply,
            zone: self.zone,
            state,
            status: 0,
            status_names,
            timeout: self.timeout,
            mark: self.mark,
            counters: Default::default(),
            active_secs: None,
            window_scale: None,
            vtags,
            labels: self.labels.clone(),
            helper: None,
            master: None,
        };
        // Validate here so mistakes are usage errors, not daemon errors.
        FlowState::try_from(flow.clone()).map_err(|e| e.to_string())?;
        Ok(flow)
    }
}

fn parse_notify(s: &str) -> Result<NotifyState, String> {
    match s.to_ascii_lowercase().as_str() {
        "master" => Ok(NotifyState::Master),
        "backup" => Ok(NotifyState::Backup),
        "fault" => Ok(NotifyState::Fault),
        _ => Err(format!("{s:?}: expected master, backup or fault")),
    }
}

fn parse_proto(s: &str) -> Result<u8, String> {
    proto_from_name(s).ok_or_else(|| format!("unknown protocol {s:?}"))
}

fn parse_state(s: &str) -> Result<TcpState, String> {
    TcpState::from_name(s).ok_or_else(|| format!("unknown TCP state {s:?} (e.g. ESTABLISHED)"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Cmd::Wire {
        cmd: WireCmd::Decode { file, port },
    } = &cli.cmd
    {
        return wire_decode(file, *port, cli.json);
    }
    if let Cmd::Top {
        once,
        width,
        height,
    } = cli.cmd
    {
        return top(&socket_path(cli.socket), cli.wait_secs, once, width, height);
    }
    let req = match build_request(cli.cmd) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ftfwctl: {e}");
            return ExitCode::from(2);
        }
    };
    let socket = socket_path(cli.socket);
    let timeout = Duration::from_secs(cli.wait_secs.max(1));
    let value = match ConsoleClient::connect(&socket, timeout).and_then(|mut c| c.call_value(&req))
    {
        Ok(v) => v,
        Err(e) => {
            eprintln!("ftfwctl: {e}");
            return ExitCode::from(if matches!(e, ClientError::NotRunning { .. }) {
                3
            } else {
                1
            });
        }
    };
    let resp: Response = match serde_json::from_value(value.clone()) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ftfwctl: malformed response from ftfwd: {e}");
            return ExitCode::from(1);
        }
    };
    match resp {
        Response::Error(e) => {
            eprintln!("ftfwctl: {e}");
            ExitCode::from(1)
        }
        Response::Ok(payload) => if cli.json {
            let mut v = value;
            if let Some(o) = v.as_object_mut() {
                o.remove("ok");
            }
            emit(&format!(
                "{}\n",
                serde_json::to_string_pretty(&v).unwrap_or_default()
            ))
        } else {
            emit(&render::payload(&payload))
        }
        .map_or_else(|code| code, |()| ExitCode::SUCCESS),
    }
}

/// `--socket`, else `$FTFW_SOCKET`, else the default.
fn socket_path(arg: Option<PathBuf>) -> PathBuf {
    arg.or_else(|| {
        std::env::var_os("FTFW_SOCKET")
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
    })
    .unwrap_or_else(|| PathBuf::from(DEFAULT_CONSOLE_SOCKET))
}

/// `ftfwctl top`.
fn top(socket: &std::path::Path, wait: u64, once: bool, width: u16, height: u16) -> ExitCode {
    use ftfw_control::metrics::Snapshot;
    use ftfw_control::top;
    let timeout = Duration::from_secs(wait.max(1));
    let fetch = || -> Result<Snapshot, String> {
        let mut c = ConsoleClient::connect(socket, timeout).map_err(|e| e.to_string())?;
        Snapshot::collect(|r| c.call(&r).map_err(|e| e.to_string()))
    };
    let result = if once {
        fetch().and_then(|first| {
            let t0 = std::time::Instant::now();
            std::thread::sleep(top::REFRESH);
            let cur = fetch()?;
            let sample = top::Sample {
                prev: Some(&first),
                cur: &cur,
                dt: t0.elapsed(),
            };
            print!("{}", top::render_text(&sample, width, height));
            Ok(())
        })
    } else {
        top::run_live(fetch)
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ftfwctl: {e}");
            ExitCode::from(1)
        }
    }
}

fn build_request(cmd: Cmd) -> Result<Request, String> {
    Ok(match cmd {
        Cmd::Status => Request::Status,
        Cmd::Stats => Request::Stats,
        Cmd::Top { .. } => return Err("top is not one request".into()),
        Cmd::Flows {
            cmd: FlowsCmd::List { filter, limit },
        } => Request::FlowsList {
            filter: filter.into(),
            limit,
        },
        Cmd::Flows {
            cmd: FlowsCmd::Add(a),
        } => Request::FlowsAdd {
            flow: a.to_flow().map_err(|e| format!("flows add: {e}"))?,
        },
        Cmd::Flows {
            cmd: FlowsCmd::Delete { filter },
        } => Request::FlowsDelete {
            filter: filter.into(),
        },
        Cmd::Rules {
            cmd: RulesCmd::Show,
        } => Request::RulesShow,
        Cmd::Rules {
            cmd: RulesCmd::Reload,
        } => Request::RulesReload,
        Cmd::Sync {
            cmd: SyncCmd::Status,
        } => Request::SyncStatus,
        Cmd::External {
            cmd: ExternalCmd::List { filter, limit },
        } => Request::ExternalList {
            filter: filter.into(),
            limit,
        },
        Cmd::Expect {
            cmd: ExpectCmd::List,
        } => Request::ExpectList,
        Cmd::Expect {
            cmd: ExpectCmd::External,
        } => Request::ExpectExternal,
        Cmd::Commit => Request::Commit,
        Cmd::Notify { state } => Request::Notify { state },
        Cmd::Migrate { node } => Request::Migrate { to: node },
        Cmd::Cluster { cmd } => match cmd {
            ClusterCmd::Status => Request::ClusterStatus,
            ClusterCmd::Drain { node } => Request::ClusterChange {
                change: ClusterChange::Drain { node },
            },
            ClusterCmd::Undrain { node } => Request::ClusterChange {
                change: ClusterChange::Undrain { node },
            },
            ClusterCmd::Rebalance => Request::ClusterChange {
                change: ClusterChange::Rebalance,
            },
        },
        Cmd::Resync => Request::Resync,
        Cmd::Restart => Request::Restart,
        Cmd::Neighbors => Request::Neighbors,
        Cmd::Routes {
            cmd: None | Some(RoutesCmd::Show),
        } => Request::Routes,
        Cmd::Routes {
            cmd: Some(RoutesCmd::Reload),
        } => Request::RoutesReload,
        Cmd::Flush {
            what: FlushWhat::External,
        } => Request::FlushExternal,
        Cmd::Wire { .. } => return Err("wire commands run locally".into()),
    })
}

/// `ftfwctl wire decode FILE`: prints every message, its header fields and
/// decoded body or error; exit 1 when the file cannot be read or holds no
/// datagram.
fn wire_decode(file: &std::path::Path, port: Option<u16>, json: bool) -> ExitCode {
    use ftfw_control::wire_dump;
    let bytes = match std::fs::read(file) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("ftfwctl: {}: {e}", file.display());
            return ExitCode::from(1);
        }
    };
    let cap = match wire_dump::read_capture(&bytes, port) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ftfwctl: {}: {e}", file.display());
            return ExitCode::from(1);
        }
    };
    for n in &cap.notes {
        eprintln!("ftfwctl: {}: {n}", file.display());
    }
    if cap.payloads.is_empty() {
        eprintln!("ftfwctl: {}: no UDP payload to decode", file.display());
        return ExitCode::from(1);
    }
    let mut stats = ftfw_sync::wire::DecodeStats::default();
    let recs = wire_dump::decode_all(&cap, &mut stats);
    for r in &recs {
        let text = if json {
            format!("{}\n", wire_dump::record_json(r))
        } else {
            wire_dump::record_text(r)
        };
        if let Err(code) = emit(&text) {
            return code;
        }
    }
    if json {
        eprintln!("{}", wire_dump::stats_line(&stats));
        ExitCode::SUCCESS
    } else {
        emit(&format!("{}\n", wire_dump::stats_line(&stats)))
            .map_or_else(|code| code, |()| ExitCode::SUCCESS)
    }
}

/// Writes `text` to stdout. `Err(code)`: stop writing and exit with
/// `code`: success when the reader went away (`ftfwctl flows list |
/// head`), failure (reported) on another write error.
fn emit(text: &str) -> Result<(), ExitCode> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(ExitCode::SUCCESS),
        Err(e) => {
            eprintln!("ftfwctl: writing the answer: {e}");
            Err(ExitCode::FAILURE)
        }
    }
}

#[cfg(test)]
#[path = "ftfwctl/tests.rs"]
mod tests;
