//! In-process links between two DPDK ports (`net_ring` devices built with
//! `rte_eth_from_rings`): what one end transmits the other receives. The
//! DPDK twin of [`mem::wire`](crate::port::mem::wire), for tests and the
//! pipeline benchmark over DPDK.

use std::ffi::{c_uint, CString};

use dpdk_sys as sys;

use super::ffi::{self, DpdkError};

/// Creates two single-queue `net_ring` Ethernet devices, `net_ring_<a>` and
/// `net_ring_<b>` (the names it returns), joined by two rings of `slots`
/// entries (a power of two), one each way. Open them with
/// [`DpdkPort::open`](super::DpdkPort::open) and
/// [`DeviceConfig::new(name, 1)`](super::DeviceConfig::new).
///
/// The rings live as long as the process (a closed ring device does not
/// free its rings); mbufs still in them when the devices close keep their
/// pool from being freed.
pub fn wire(a: &str, b: &str, slots: u32) -> Result<(String, String), DpdkError> {
    super::eal::require()?;
    if !slots.is_power_of_two() {
        return Err(DpdkError::Usage(format!(
            "ring size {slots} is not a power of two"
        )));
    }
    let ring = |from: &str, to: &str| -> Result<*mut sys::rte_ring, DpdkError> {
        let name = CString::new(format!("w_{from}_{to}"))
            .map_err(|_| DpdkError::Usage("ring name contains NUL".into()))?;
        // SAFETY: EAL is initialised; name is NUL-terminated and copied.
        // One producer (the sending port's queue) and one consumer (the
        // receiving port's queue) per ring.
        let r = unsafe {
            sys::rte_ring_create(
                name.as_ptr(),
                slots,
                sys::SOCKET_ID_ANY,
                sys::RING_F_SP_ENQ | sys::RING_F_SC_DEQ,
            )
        };
        ffi::non_null("rte_ring_create", r).map(|p| p.as_ptr())
    };
    let a_to_b = ring(a, b)?;
    let b_to_a = ring(b, a)?;
    let make = |name: &str, rx: *mut sys::rte_ring, tx: *mut sys::rte_ring| {
        let cname = CString::new(name)
            .map_err(|_| DpdkError::Usage(format!("device name {name:?} contains NUL")))?;
        let (rxq, txq) = ([rx], [tx]);
        let one: c_uint = 1;
        // SAFETY: EAL is initialised; the name is copied; the rings are
        // valid and never freed, so the device may keep pointers to them.
        let r = unsafe {
            sys::rte_eth_from_rings(cname.as_ptr(), rxq.as_ptr(), one, txq.as_ptr(), one, 0)
        };
        ffi::errno_on_negative("rte_eth_from_rings", r)
    };
    // rte_eth_from_rings names the device `net_ring_<name>`.
    make(a, b_to_a, a_to_b)?;
    make(b, a_to_b, b_to_a)?;
    Ok((format!("net_ring_{a}"), format!("net_ring_{b}")))
}
