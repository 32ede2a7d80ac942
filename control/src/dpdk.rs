//! DPDK glue for ftfwd (cargo feature `dpdk`): EAL arguments from the
//! configuration, and one DPDK port per worker and configured device.

use ftfw_dataplane::port::dpdk::{self, DeviceConfig, DpdkError, DpdkPort};
use ftfw_dataplane::port::Port;

use crate::config::{Config, DpdkPortConfig, PortBackend};

/// EAL could not be initialised.
#[derive(Debug, thiserror::Error)]
#[error("DPDK EAL init with arguments {args:?}")]
pub struct DpdkInitError {
    /// The EAL arguments.
    pub args: Vec<String>,
    /// Why.
    #[source]
    pub source: DpdkError,
}

/// A worker's queue on a DPDK device could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum DpdkPortError {
    /// More workers than a queue id holds.
    #[error("too many workers for a DPDK port")]
    TooManyWorkers,
    /// The device or queue could not be set up.
    #[error("port {port} (worker {worker}): DPDK device {device:?}")]
    Open {
        /// The port.
        port: String,
        /// The worker.
        worker: usize,
        /// The device.
        device: String,
        /// Why.
        #[source]
        source: DpdkError,
    },
}

/// Whether the option `name` (with or without `=value`) is among `args`.
fn has_option(args: &[String], names: &[&str]) -> bool {
    args.iter().any(|a| {
        names
            .iter()
            .any(|n| a == n || a.starts_with(&format!("{n}=")))
    })
}

/// The EAL arguments for `config` (program name and driver directory are
/// added by [`dpdk::init`]):
/// - `-l CPU`: the main lcore is the first CPU this process may run on
///   (workers are not EAL-launched; they register themselves), unless the
///   configuration's `eal_args` choose lcores;
/// - `--in-memory`: no files in /var/run/dpdk, several instances per host
///   (not with `--no-huge` or `--file-prefix`, which exclude it);
/// - `-a ADDR` for every PCI device in the configuration, or `--no-pci`
///   if there is none, so no other NIC is taken;
/// - then `[dpdk] eal_args`.
pub fn eal_args(config: &Config) -> Vec<String> {
    let user = &config.dpdk.eal_args;
    let mut a = Vec::new();
    if !has_option(user, &["-l", "--lcores", "-c"]) {
        let cpu = core_affinity::get_core_ids()
            .and_then(|ids| ids.first().map(|c| c.id))
            .unwrap_or(0);
        a.push("-l".to_string());
        a.push(cpu.to_string());
    }
    if !has_option(user, &["--no-huge", "--file-prefix", "--in-memory"]) {
        a.push("--in-memory".into());
    }
    let pci: Vec<&DpdkPortConfig> = dpdk_ports(config).filter(|p| p.is_pci()).collect();
    if pci.is_empty() {
        if !has_option(user, &["--no-pci", "-a", "--allow", "-b", "--block"]) {
            a.push("--no-pci".into());
        }
    } else {
        for p in pci {
            a.push("-a".into());
            a.push(p.name().to_string());
        }
    }
    a.extend(user.iter().cloned());
    a
}

fn dpdk_ports(config: &Config) -> impl Iterator<Item = &DpdkPortConfig> {
    config.ports.iter().filter_map(|p| match &p.backend {
        PortBackend::Dpdk(d) => Some(d),
        _ => None,
    })
}

/// Initialises EAL if the configuration has a DPDK port.
pub fn init(config: &Config) -> Result<(), DpdkInitError> {
    if dpdk_ports(config).next().is_none() {
        return Ok(());
    }
    let args = eal_args(config);
    tracing::info!(?args, version = %dpdk::version(), "initialising DPDK EAL");
    dpdk::init(&args).map_err(|source| DpdkInitError { args, source })
}

/// The device configuration worker queues open: the configured device with
/// `workers` queue pairs (an `net_af_packet` vdev without `qpairs` gets
/// `qpairs=workers`, one socket per worker).
pub fn device_config(port: &DpdkPortConfig, workers: usize) -> Result<DeviceConfig, DpdkPortError> {
    let queues = u16::try_from(workers).map_err(|_| DpdkPortError::TooManyWorkers)?;
    let mut devargs = port.device.clone();
    if port.name().starts_with("net_af_packet") && !devargs.contains("qpairs=") {
        devargs.push_str(&format!(",qpairs={queues}"));
    }
    Ok(DeviceConfig {
        mbufs: port.mbufs,
        rx_descriptors: port.rx_descriptors,
        tx_descriptors: port.tx_descriptors,
        ..DeviceConfig::new(&devargs, queues)
    })
}

/// Opens worker `worker`'s queue pair on `port`'s device.
pub fn open_port(
    name: &str,
    port: &DpdkPortConfig,
    worker: usize,
    workers: usize,
) -> Result<Box<dyn Port>, DpdkPortError> {
    let cfg = device_config(port, workers)?;
    let queue = u16::try_from(worker).map_err(|_| DpdkPortError::TooManyWorkers)?;
    let p = DpdkPort::open(&cfg, queue).map_err(|source| DpdkPortError::Open {
        port: name.to_string(),
        worker,
        device: port.device.clone(),
        source,
    })?;
    Ok(Box::new(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(ports: &str, dpdk: &str) -> Config {
        let text = format!("{ports}[[bridge]]\nports = [\"a\", \"b\"]\n{dpdk}");
        crate::config::parse(&text, "t.toml").unwrap()
    }

    #[test]
    fn eal_arguments_follow_the_configuration() {
        let vdevs = "[[port]]\nname = \"a\"\nbackend = \"dpdk\"\ndevice = \"net_af_packet0,iface=x0\"\n\
                     [[port]]\nname = \"b\"\nbackend = \"dpdk\"\ndevice = \"net_af_packet1,iface=x1\"\n";
        let a = eal_args(&config(vdevs, ""));
        assert_eq!(a[0], "-l");
        assert!(a[1].parse::<usize>().is_ok(), "{a:?}");
        assert_eq!(&a[2..], ["--in-memory", "--no-pci"]);

        let a = eal_args(&config(
            vdevs,
            "[dpdk]\neal_args = [\"--no-huge\", \"-m\", \"128\", \"-l\", \"1\"]\n",
        ));
        assert_eq!(a, ["--no-pci", "--no-huge", "-m", "128", "-l", "1"]);

        let pci = "[[port]]\nname = \"a\"\nbackend = \"dpdk\"\ndevice = \"0000:03:00.0\"\n\
                   [[port]]\nname = \"b\"\nbackend = \"dpdk\"\ndevice = \"0000:03:00.1\"\n";
        let a = eal_args(&config(pci, ""));
        assert_eq!(
            &a[2..],
            ["--in-memory", "-a", "0000:03:00.0", "-a", "0000:03:00.1"]
        );
    }

    #[test]
    fn af_packet_vdevs_get_a_queue_pair_per_worker() {
        let p = DpdkPortConfig {
            device: "net_af_packet0,iface=x0".into(),
            mbufs: 4095,
            rx_descriptors: 512,
            tx_descriptors: 256,
        };
        let d = device_config(&p, 3).unwrap();
        assert_eq!(d.devargs, "net_af_packet0,iface=x0,qpairs=3");
        assert_eq!(
            (d.queues, d.mbufs, d.rx_descriptors, d.tx_descriptors),
            (3, 4095, 512, 256)
        );
        let given = DpdkPortConfig {
            device: "net_af_packet0,iface=x0,qpairs=2".into(),
            ..p.clone()
        };
        assert_eq!(device_config(&given, 2).unwrap().devargs, given.device);
        let nic = DpdkPortConfig {
            device: "0000:03:00.0".into(),
            ..p
        };
        assert_eq!(device_config(&nic, 2).unwrap().devargs, "0000:03:00.0");
    }
}
