/* The DPDK API ftfw uses, for bindgen. Everything declared `static inline`
 * here or in the DPDK headers that the allowlist names gets an exported
 * wrapper (bindgen wrap_static_fns, compiled by build.rs). */
#include <rte_config.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_dev.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_version.h>
#include <rte_ring.h>
#include <rte_eth_ring.h>

/* Macros and thread-local variables bindgen cannot bind, as functions. */

/* rte_errno is a per-thread variable behind a macro. */
static inline int ftfw_rte_errno(void) { return rte_errno; }

/* rte_pktmbuf_mtod(). */
static inline void *ftfw_pktmbuf_data(struct rte_mbuf *m) { return rte_pktmbuf_mtod(m, void *); }

/* RTE_MBUF_DEFAULT_BUF_SIZE and LCORE_ID_ANY are expressions bindgen skips. */
static inline uint16_t ftfw_mbuf_default_buf_size(void) { return RTE_MBUF_DEFAULT_BUF_SIZE; }
static inline unsigned int ftfw_lcore_id_any(void) { return LCORE_ID_ANY; }

/* The RSS hash types ftfw asks for: IPv4/IPv6 addresses, TCP and UDP ports. */
static inline uint64_t ftfw_eth_rss_ip_tcp_udp(void) { return RTE_ETH_RSS_IP | RTE_ETH_RSS_TCP | RTE_ETH_RSS_UDP; }

/* The runtime library's version string. */
static inline const char *ftfw_rte_version(void) { return rte_version(); }
