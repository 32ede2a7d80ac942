//! Generates bindings to the system DPDK and compiles exported wrappers for
//! the `static inline` functions the bindings name.
//!
//! DPDK is found with pkg-config (`libdpdk`, Debian 12's libdpdk-dev 22.11)
//! and linked dynamically. bindgen needs libclang (libclang-dev). The
//! directory the poll-mode drivers are loaded from at run time is exported
//! to the crate as `DPDK_PMD_DIR` (empty when it cannot be found).
//!
//! All of this happens only with the `system` feature; without it the
//! crate is empty and this script does nothing.

fn main() {
    #[cfg(feature = "system")]
    system::main();
}

#[cfg(feature = "system")]
mod system {
    use std::env;
    use std::path::PathBuf;

    /// Functions the crate binds: only what ftfw uses.
    const FUNCTIONS: &[&str] = &[
        // EAL
        "rte_eal_init",
        "rte_eal_cleanup",
        "rte_strerror",
        "rte_lcore_id",
        "rte_socket_id",
        "rte_thread_register",
        "rte_thread_unregister",
        "rte_dev_probe",
        "rte_dev_remove",
        // ethdev
        "rte_eth_dev_count_avail",
        "rte_eth_dev_get_port_by_name",
        "rte_eth_dev_info_get",
        "rte_eth_dev_configure",
        "rte_eth_dev_adjust_nb_rx_tx_desc",
        "rte_eth_dev_socket_id",
        "rte_eth_rx_queue_setup",
        "rte_eth_tx_queue_setup",
        "rte_eth_dev_start",
        "rte_eth_dev_stop",
        "rte_eth_dev_close",
        "rte_eth_promiscuous_enable",
        "rte_eth_link_get_nowait",
        "rte_eth_stats_get",
        "rte_eth_macaddr_get",
        "rte_eth_rx_burst",
        "rte_eth_tx_burst",
        // rings as Ethernet devices (net_ring), for in-process tests and benches
        "rte_ring_create",
        "rte_ring_free",
        "rte_eth_from_rings",
        // mbuf and mempool
        "rte_pktmbuf_pool_create",
        "rte_mempool_free",
        "rte_mempool_avail_count",
        "rte_mempool_in_use_count",
        "rte_pktmbuf_alloc",
        "rte_pktmbuf_alloc_bulk",
        "rte_pktmbuf_free",
        "rte_pktmbuf_free_bulk",
        // helpers from csrc/wrapper.h
        "ftfw_.*",
    ];

    const TYPES: &[&str] = &[
        "rte_mbuf",
        "rte_mempool",
        "rte_eth_conf",
        "rte_eth_dev_info",
        "rte_eth_rxconf",
        "rte_eth_txconf",
        "rte_eth_link",
        "rte_eth_stats",
        "rte_ether_addr",
    ];

    const VARS: &[&str] = &[
        "RTE_ETH_MQ_RX_.*",
        "RTE_ETH_MQ_TX_.*",
        "RTE_ETH_RSS_.*",
        "RTE_ETH_LINK_.*",
        "RTE_ETH_SPEED_.*",
        "RTE_MAX_ETHPORTS",
        "RTE_MAX_LCORE",
        "RTE_PKTMBUF_HEADROOM",
        "SOCKET_ID_ANY",
        "RTE_ETH_NAME_MAX_LEN",
        "RING_F_.*",
    ];

    pub(super) fn main() {
        println!("cargo:rerun-if-changed=csrc/wrapper.h");
        println!("cargo:rerun-if-changed=build.rs");
        println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");

        let dpdk = match pkg_config::Config::new()
            .atleast_version("22.11")
            .cargo_metadata(true)
            .probe("libdpdk")
        {
            Ok(lib) => lib,
            Err(e) => panic!(
                "\n\ndpdk-sys: DPDK (libdpdk >= 22.11) was not found with pkg-config: {e}\n\
                 On Debian 12: apt-get install libdpdk-dev libclang-dev pkg-config\n\
                 Building ftfw without `--features dpdk` does not need DPDK.\n\n"
            ),
        };

        // The compile flags pkg-config gives (include dirs, `-include
        // rte_config.h`, `-march=...`), for both bindgen and the wrapper object.
        let flags_out = std::process::Command::new("pkg-config")
            .args(["--cflags", "libdpdk"])
            .output()
            .expect("running pkg-config --cflags libdpdk");
        let flags: Vec<String> = String::from_utf8_lossy(&flags_out.stdout)
            .split_whitespace()
            .map(str::to_string)
            .collect();
        let mut clang_args: Vec<String> = Vec::new();
        let mut i = 0;
        while i < flags.len() {
            let f = &flags[i];
            if f == "-include" && i + 1 < flags.len() {
                clang_args.push(f.clone());
                clang_args.push(flags[i + 1].clone());
                i += 2;
                continue;
            }
            if f.starts_with("-I") || f.starts_with("-D") || f.starts_with("-march") {
                clang_args.push(f.clone());
            }
            i += 1;
        }

        let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));
        let wrap_path = out.join("static_fns");
        let mut b = bindgen::Builder::default()
            .header("csrc/wrapper.h")
            .clang_args(&clang_args)
            .wrap_static_fns(true)
            .wrap_static_fns_path(&wrap_path)
            .allowlist_recursively(true)
            .derive_default(true)
            .derive_debug(true)
            .layout_tests(false)
            .generate_comments(false)
            .prepend_enum_name(false)
            .default_enum_style(bindgen::EnumVariation::Consts)
            .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()));
        for f in FUNCTIONS {
            b = b.allowlist_function(f);
        }
        for t in TYPES {
            b = b.allowlist_type(t);
        }
        for v in VARS {
            b = b.allowlist_var(v);
        }
        let bindings = b.generate().unwrap_or_else(|e| {
            panic!(
                "\n\ndpdk-sys: bindgen failed on the DPDK headers: {e}\n\
                 bindgen needs libclang (Debian: apt-get install libclang-dev).\n\n"
            )
        });
        bindings
            .write_to_file(out.join("bindings.rs"))
            .expect("writing bindings.rs");

        // rte_eth_from_rings lives in the net_ring driver, which pkg-config
        // does not list (drivers are plugins); link it for that one call.
        println!("cargo:rustc-link-lib=dylib=rte_net_ring");

        // The exported wrappers bindgen generated for the static inline functions.
        let mut cc = cc::Build::new();
        cc.file(wrap_path.with_extension("c"))
            .include(env::var("CARGO_MANIFEST_DIR").expect("manifest dir"))
            .opt_level(2)
            .warnings(false);
        for f in &clang_args {
            cc.flag(f);
        }
        cc.compile("dpdk_sys_static_fns");

        // Where the poll-mode drivers live: <libdir>/dpdk/pmds-<ABI>.
        let pmd_dir = dpdk
            .link_paths
            .iter()
            .chain(
                pkg_config::get_variable("libdpdk", "libdir")
                    .ok()
                    .map(PathBuf::from)
                    .iter(),
            )
            .filter_map(|d| std::fs::read_dir(d.join("dpdk")).ok())
            .flat_map(|rd| rd.filter_map(Result::ok))
            .map(|e| e.path())
            .filter(|p| {
                p.is_dir()
                    && p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("pmds-"))
            })
            .max()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        println!("cargo:rustc-env=DPDK_PMD_DIR={pmd_dir}");
        println!("cargo:rustc-env=DPDK_VERSION={}", dpdk.version);
        println!("cargo:pmd_dir={pmd_dir}");
    }
}
