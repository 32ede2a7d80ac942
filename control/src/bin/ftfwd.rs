//! `ftfwd`: the ftfw firewall daemon.
//!
//! Validates the whole configuration, starts the workers (and the sync
//! thread with `[sync]`), and runs the control thread: a mio event loop
//! that serves the operator console, runs the failover election
//! (`[failover] mode = "election"`), reloads rules (and in routed mode the
//! static routes) on SIGHUP, drains log
//! and delta rings, and stops cleanly on SIGTERM or SIGINT.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use ftfw_control::appliance::{self, Appliance};
use ftfw_control::console::client::{ConsoleClient, DEFAULT_TIMEOUT};
use ftfw_control::console::server::ConsoleServer;
use mio::{Events, Interest, Poll, Token};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR2};
use signal_hook_mio::v1_0::Signals;

/// The ftfw stateful firewall daemon.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Configuration file (TOML).
    #[arg(short, long, value_name = "FILE")]
    config: PathBuf,
    /// Validate the configuration and its rules, then exit.
    #[arg(long)]
    check: bool,
    /// Log lines as text (for a terminal or the journal) or as one JSON
    /// object per line (for log shippers), with the fields of the spans
    /// they happen in (takeover, commit, resync, rule reload).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

/// `--log-format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

const SIGNALS: Token = Token(0);
const ELECTION: Token = Token(1);
const CLUSTER: Token = Token(2);
const CONSOLE_BASE: usize = 16;
/// Control-loop tick: log and delta rings are drained at least this often.
const TICK: Duration = Duration::from_millis(50);

fn main() -> ExitCode {
    let args = Args::parse();
    let config = match appliance::check(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ftfwd: {e:#}");
            return ExitCode::from(2);
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("FTFW_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(config.daemon.log_level.as_str()));
    let log = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Text => log.init(),
        LogFormat::Json => log
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .init(),
    }
    if args.check {
        println!(
            "{}: configuration and rules are valid",
            args.config.display()
        );
        return ExitCode::SUCCESS;
    }
    match run(config, &args.config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ftfwd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(config: ftfw_control::config::Config, config_path: &Path) -> anyhow::Result<()> {
    let socket = config.daemon.console_socket.clone();
    // Bind the console first: a second daemon on the same socket stops here
    // before it opens any port.
    let mut console = ConsoleServer::bind(&socket, CONSOLE_BASE)
        .map_err(|e| anyhow::anyhow!("console {}: {e}", socket.display()))?;
    let election_on = config.failover.election.is_some();
    let metrics_listen = config.metrics.as_ref().map(|m| m.listen);
    let mut app = Appliance::start_system(config)?;
    app.set_config_path(config_path);
    // The metrics thread asks the console like ftfwctl does (answered by
    // this loop), so a scrape and `ftfwctl stats` agree.
    let metrics = match metrics_listen {
        Some(listen) => {
            let socket = socket.clone();
            let source: ftfw_control::metrics::server::Source = Box::new(move || {
                let mut c =
                    ConsoleClient::connect(&socket, DEFAULT_TIMEOUT).map_err(|e| e.to_string())?;
                let snap = ftfw_control::metrics::Snapshot::collect(|r| {
                    c.call(&r).map_err(|e| e.to_string())
                })?;
                Ok(ftfw_control::metrics::encode(&snap))
            });
            let server = ftfw_control::metrics::server::MetricsServer::spawn(listen, source)
                .map_err(|e| anyhow::anyhow!("metrics {listen}: {e}"))?;
            tracing::info!(listen = %server.local_addr(), "metrics served at /metrics");
            Some(server)
        }
        None => None,
    };
    let mut driver = if election_on {
        Some(ftfw_control::election_driver::ElectionDriver::new(
            app.config(),
            std::time::Instant::now(),
        )?)
    } else {
        None
    };
    let mut cluster = if app.config().cluster.is_some() {
        Some(ftfw_control::cluster_driver::ClusterDriver::new(
            app.config(),
            std::time::Instant::now(),
        )?)
    } else {
        None
    };
    let mut poll = Poll::new()?;
    let mut signals = Signals::new([SIGHUP, SIGTERM, SIGINT, SIGUSR2])?;
    poll.registry()
        .register(&mut signals, SIGNALS, Interest::READABLE)?;
    console.register(poll.registry())?;
    if let Some(d) = &mut driver {
        poll.registry()
            .register(d.socket(), ELECTION, Interest::READABLE)?;
    }
    if let Some(c) = &mut cluster {
        poll.registry()
            .register(c.socket(), CLUSTER, Interest::READABLE)?;
    }
    tracing::info!(socket = %socket.display(), pid = std::process::id(), "ftfwd running");
    let mut events = Events::with_capacity(128);
    let mut restart = false;
    loop {
        let now = std::time::Instant::now();
        let wait = driver
            .as_ref()
            .and_then(|d| d.next_wake(now))
            .into_iter()
            .chain(cluster.as_ref().and_then(|c| c.next_wake(now)))
            .min()
            .map_or(TICK, |t| t.saturating_duration_since(now).min(TICK));
        if let Err(e) = poll.poll(&mut events, Some(wait)) {
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e.into());
        }
        for ev in events.iter() {
            if ev.token() == SIGNALS {
                for sig in signals.pending() {
                    match sig {
                        SIGHUP => {
                            tracing::info!("SIGHUP: reloading rules and static routes");
                            let _ = app.reload_rules();
                            let _ = app.reload_configured_routes();
                        }
                        SIGUSR2 => restart = true,
                        _ => {
                            tracing::info!(signal = sig, "stopping");
                            if let Some(d) = &mut driver {
                                // A master tells the others it is leaving.
                                d.shutdown(std::time::Instant::now(), &mut app);
                            }
                            app.stop();
                            app.drain(usize::MAX);
                            return Ok(());
                        }
                    }
                }
            } else if console.owns(ev.token()) {
                console.handle_event(poll.registry(), ev, &mut app);
            }
        }
        if app.take_restart_request() || restart {
            if let Some(d) = &mut driver {
                d.shutdown(std::time::Instant::now(), &mut app);
            }
            drop(metrics);
            return restart_process(app, console);
        }
        if let Some(d) = &mut driver {
            d.poll(std::time::Instant::now(), &mut app);
        }
        if let Some(c) = &mut cluster {
            c.poll(std::time::Instant::now(), &mut app);
        }
        console.expire_idle(poll.registry(), std::time::Instant::now());
        app.drain(4096);
    }
}

/// A planned restart (`ftfwctl restart`, SIGUSR2): the table goes to the
/// state file, everything stops, and the process is replaced by the
/// binary at the path it was started from (a new one after an upgrade),
/// with the same arguments and PID. Returns only if that fails.
fn restart_process(mut app: Appliance, console: ConsoleServer) -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt;
    let t0 = std::time::Instant::now();
    let flows = app.prepare_restart()?;
    app.drain(usize::MAX);
    drop(app);
    drop(console);
    let exe = restart_binary()?;
    tracing::info!(flows, exe = %exe.display(), millis = u64::try_from(t0.elapsed().as_millis()).unwrap_or(u64::MAX), "restarting");
    let err = std::process::Command::new(&exe)
        .args(std::env::args_os().skip(1))
        .exec();
    Err(anyhow::anyhow!(
        "restart: executing {}: {err}",
        exe.display()
    ))
}

/// The binary to restart: argv[0] when it names a path (after an upgrade
/// the new file is there), else the running executable.
fn restart_binary() -> anyhow::Result<PathBuf> {
    if let Some(a0) = std::env::args_os().next() {
        let p = PathBuf::from(a0);
        if p.components().count() > 1 {
            return Ok(p);
        }
    }
    let exe = std::env::current_exe()?;
    // Linux names a replaced binary "PATH (deleted)".
    let s = exe.to_string_lossy();
    Ok(match s.strip_suffix(" (deleted)") {
        Some(p) => PathBuf::from(p),
        None => exe,
    })
}
