//! DPDK plumbing for the lab (feature `dpdk`): EAL for benchmarks and the
//! `net_ring` ports `bench pipeline --backend dpdk` runs over.

use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::Context;
use ftfw_dataplane::port::dpdk::{self, DeviceConfig, DpdkPort};
use ftfw_dataplane::port::Port;

/// Free 2 MB hugepages on this machine (0 when unknown).
pub fn free_hugepages() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("HugePages_Free:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// EAL arguments for a lab process: main lcore `main_cpu`, no PCI
/// devices, hugepages when at least `min_hugepages` are free (else
/// `--no-huge` with 1 GB of ordinary memory). Returns the arguments and
/// whether hugepages are used.
pub fn eal_args(main_cpu: usize, min_hugepages: u64) -> (Vec<String>, bool) {
    let huge = free_hugepages() >= min_hugepages;
    let mut a: Vec<String> = vec!["-l".into(), main_cpu.to_string(), "--no-pci".into()];
    if huge {
        a.push("--in-memory".into());
    } else {
        a.extend(["--no-huge".into(), "-m".into(), "1024".into()]);
    }
    a.push("--log-level=lib.eal:warning".into());
    (a, huge)
}

/// Initialises EAL for this lab process (see [`eal_args`]).
pub fn init(main_cpu: usize) -> anyhow::Result<bool> {
    let (args, huge) = eal_args(main_cpu, 128);
    dpdk::init(&args).with_context(|| format!("DPDK EAL init {args:?}"))?;
    Ok(huge)
}

static WIRES: AtomicU32 = AtomicU32::new(0);

/// Two DPDK ports joined by `net_ring` rings (what one sends the other
/// receives), each with one queue pair: the DPDK twin of `mem::wire`.
pub fn ring_wire(a: &str, b: &str) -> anyhow::Result<(Box<dyn Port>, Box<dyn Port>)> {
    let n = WIRES.fetch_add(1, Ordering::Relaxed);
    let (na, nb) = dpdk::ring::wire(&format!("{a}{n}"), &format!("{b}{n}"), 4096)?;
    let open = |name: &str| -> anyhow::Result<Box<dyn Port>> {
        let cfg = DeviceConfig {
            rx_descriptors: 256,
            tx_descriptors: 256,
            mbufs: 4095,
            ..DeviceConfig::new(name, 1)
        };
        Ok(Box::new(DpdkPort::open(&cfg, 0)?))
    };
    Ok((open(&na)?, open(&nb)?))
}
