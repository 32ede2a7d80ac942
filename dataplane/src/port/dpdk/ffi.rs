//! DPDK's C error conventions mapped to `Result`, in one place.
//!
//! DPDK reports failure three ways: ethdev and device calls return a
//! negative errno; `rte_eal_init` and `rte_thread_register` return -1 and
//! set the per-thread `rte_errno`; constructors return NULL and set
//! `rte_errno`. Each has a function here that turns it into [`DpdkError`].

use std::ffi::{c_int, CStr};
use std::ptr::NonNull;

use dpdk_sys as sys;

/// A failed DPDK call, or a request the backend refuses.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DpdkError {
    /// A DPDK function failed.
    #[error("{call}: {message} (errno {errno})")]
    Call {
        /// The C function.
        call: &'static str,
        /// The error number it reported.
        errno: i32,
        /// `rte_strerror(errno)`.
        message: String,
    },
    /// The backend refuses the request (bad configuration, wrong order).
    #[error("{0}")]
    Usage(String),
}

impl DpdkError {
    /// The errno of a failed call.
    pub fn errno(&self) -> Option<i32> {
        match self {
            DpdkError::Call { errno, .. } => Some(*errno),
            DpdkError::Usage(_) => None,
        }
    }

    pub(super) fn call(call: &'static str, errno: i32) -> DpdkError {
        DpdkError::Call {
            call,
            errno,
            message: strerror(errno),
        }
    }
}

/// `rte_strerror(errno)`, copied.
pub(super) fn strerror(errno: i32) -> String {
    // SAFETY: rte_strerror accepts any value and returns a pointer to a
    // NUL-terminated string (static, or in a per-thread buffer that stays
    // valid until this thread's next call); it is copied before returning.
    let p = unsafe { sys::rte_strerror(errno) };
    if p.is_null() {
        return format!("error {errno}");
    }
    // SAFETY: p is non-null and NUL-terminated (see above).
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

/// This thread's `rte_errno`.
pub(super) fn rte_errno() -> i32 {
    // SAFETY: reads a thread-local integer; no preconditions.
    unsafe { sys::ftfw_rte_errno() }
}

/// Convention 1: `ret < 0` is `-errno`; otherwise `ret` is the result.
pub(super) fn neg_errno(call: &'static str, ret: c_int) -> Result<u32, DpdkError> {
    u32::try_from(ret).map_err(|_| DpdkError::call(call, ret.saturating_neg()))
}

/// Convention 2: `ret < 0` means failure with the reason in `rte_errno`.
pub(super) fn errno_on_negative(call: &'static str, ret: c_int) -> Result<u32, DpdkError> {
    u32::try_from(ret).map_err(|_| DpdkError::call(call, rte_errno()))
}

/// Convention 3: NULL means failure with the reason in `rte_errno`.
pub(super) fn non_null<T>(call: &'static str, p: *mut T) -> Result<NonNull<T>, DpdkError> {
    NonNull::new(p).ok_or_else(|| DpdkError::call(call, rte_errno()))
}

#[cfg(test)]
mod tests {
    use super::*;

    // These call only rte_strerror and read rte_errno, which need no EAL.

    #[test]
    fn negative_errno_becomes_an_error_with_its_message() {
        assert_eq!(neg_errno("rte_x", 3), Ok(3));
        let e = neg_errno("rte_eth_dev_configure", -libc::EINVAL).unwrap_err();
        assert_eq!(e.errno(), Some(libc::EINVAL));
        let s = e.to_string();
        assert!(s.starts_with("rte_eth_dev_configure: "), "{s}");
        assert!(s.contains("Invalid argument"), "{s}");
        assert!(s.ends_with(&format!("(errno {})", libc::EINVAL)), "{s}");
    }

    #[test]
    fn dpdk_specific_errnos_have_dpdk_messages() {
        // RTE_MIN_ERRNO + 1 = E_RTE_SECONDARY.
        let m = strerror(1001);
        assert!(m.to_lowercase().contains("secondary"), "{m}");
    }

    #[test]
    fn null_is_an_error_and_non_null_passes() {
        let mut x = 5u8;
        assert!(non_null("rte_y", &mut x as *mut u8).is_ok());
        let e = non_null::<u8>("rte_pktmbuf_pool_create", std::ptr::null_mut()).unwrap_err();
        assert!(
            e.to_string().starts_with("rte_pktmbuf_pool_create: "),
            "{e}"
        );
        assert_eq!(DpdkError::Usage("no".into()).errno(), None);
    }
}
