//! The DPDK Environment Abstraction Layer: initialised once per process,
//! and the registration of worker threads as EAL lcores.

use std::cell::Cell;
use std::ffi::{c_char, c_int, CString};
use std::sync::Mutex;

use dpdk_sys as sys;

use super::ffi::{self, DpdkError};

/// What `init` was called with and how it went; EAL can be initialised
/// only once per process, so later calls are answered from here.
static STATE: Mutex<Option<Result<Vec<String>, DpdkError>>> = Mutex::new(None);

/// The directory ftfw loads poll-mode drivers from (`-d`), found at build
/// time; empty if the build found none (then EAL's built-in default applies).
pub fn pmd_dir() -> &'static str {
    sys::PMD_DIR
}

/// The EAL arguments ftfw passes before the caller's: program name, the
/// driver directory (when it exists), and `--no-telemetry`.
pub fn base_args() -> Vec<String> {
    let mut a = vec!["ftfw".to_string()];
    let dir = pmd_dir();
    if !dir.is_empty() && std::path::Path::new(dir).is_dir() {
        a.push("-d".into());
        a.push(dir.into());
    }
    a.push("--no-telemetry".into());
    a
}

/// Initialises EAL with [`base_args`] followed by `args` (for example
/// `["-l", "0", "--in-memory", "--no-pci"]`).
///
/// Idempotent for the same arguments; a second call with different ones is
/// an error, and so is every call after a failed one (EAL cannot be
/// initialised twice). The calling thread becomes EAL's main lcore; its CPU
/// affinity is restored afterwards, so threads it spawns later are not
/// confined to the main lcore's core.
pub fn init(args: &[String]) -> Result<(), DpdkError> {
    let mut state = STATE.lock().unwrap_or_else(|e| e.into_inner());
    match &*state {
        Some(Ok(prev)) if prev == args => return Ok(()),
        Some(Ok(prev)) => {
            return Err(DpdkError::Usage(format!(
                "EAL is already initialised with arguments {prev:?}, not {args:?}"
            )))
        }
        Some(Err(e)) => return Err(e.clone()),
        None => {}
    }
    let r = init_once(args);
    *state = Some(r.clone().map(|()| args.to_vec()));
    r
}

/// Whether EAL has been initialised successfully.
pub fn is_initialized() -> bool {
    matches!(
        &*STATE.lock().unwrap_or_else(|e| e.into_inner()),
        Some(Ok(_))
    )
}

pub(super) fn require() -> Result<(), DpdkError> {
    if is_initialized() {
        Ok(())
    } else {
        Err(DpdkError::Usage(
            "DPDK EAL is not initialised (call port::dpdk::init first)".into(),
        ))
    }
}

fn init_once(args: &[String]) -> Result<(), DpdkError> {
    let mut all = base_args();
    all.extend(args.iter().cloned());
    let cstrings: Vec<CString> = all
        .iter()
        .map(|a| {
            CString::new(a.as_str())
                .map_err(|_| DpdkError::Usage(format!("EAL argument {a:?} contains a NUL byte")))
        })
        .collect::<Result<_, _>>()?;
    // EAL keeps pointers into argv (and getopt permutes it), so the strings
    // and the array live for the rest of the process.
    let argv: &'static mut [*mut c_char] = Box::leak(
        cstrings
            .into_iter()
            .map(CString::into_raw)
            .chain(std::iter::once(std::ptr::null_mut()))
            .collect::<Vec<_>>()
            .into_boxed_slice(),
    );
    let argc = c_int::try_from(argv.len() - 1)
        .map_err(|_| DpdkError::Usage("too many EAL arguments".into()))?;
    let affinity = current_affinity();
    // SAFETY: argv holds argc valid NUL-terminated strings and a final NULL,
    // all leaked so they outlive EAL; STATE's lock makes this the only call.
    let ret = unsafe { sys::rte_eal_init(argc, argv.as_mut_ptr()) };
    if let Some(set) = affinity {
        restore_affinity(&set);
    }
    ffi::errno_on_negative("rte_eal_init", ret).map(|_| ())
}

fn current_affinity() -> Option<libc::cpu_set_t> {
    // SAFETY: cpu_set_t is plain data; all-zero is a valid (empty) set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: pid 0 is this thread; the size is that of `set`, which the
    // kernel writes into.
    let r = unsafe { libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set) };
    (r == 0).then_some(set)
}

fn restore_affinity(set: &libc::cpu_set_t) {
    // SAFETY: pid 0 is this thread; `set` is a valid cpu_set_t of that size.
    let r = unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(set), set) };
    if r != 0 {
        tracing::warn!(
            error = %std::io::Error::last_os_error(),
            "could not restore the CPU affinity EAL changed"
        );
    }
}

/// `LCORE_ID_ANY`: the lcore id of a thread EAL does not know.
fn lcore_id_any() -> u32 {
    // SAFETY: returns a constant.
    unsafe { sys::ftfw_lcore_id_any() }
}

/// This thread's EAL lcore id, or `None` for a thread EAL does not know.
pub fn lcore_id() -> Option<u32> {
    // SAFETY: reads a thread-local variable; valid on any thread.
    let id = unsafe { sys::rte_lcore_id() };
    (id != lcore_id_any()).then_some(id)
}

/// Unregisters the thread from EAL when the thread exits.
struct Registration;

impl Drop for Registration {
    fn drop(&mut self) {
        // SAFETY: runs on the thread that registered (thread-local
        // destructor), which unregisters itself; DPDK's own thread-local
        // lcore id is plain data and still valid during thread exit.
        unsafe { sys::rte_thread_unregister() };
    }
}

thread_local! {
    /// Whether this thread tried to register (so a failure is tried and
    /// logged once per thread, not per burst).
    static TRIED: Cell<bool> = const { Cell::new(false) };
    static REGISTRATION: Cell<Option<Registration>> = const { Cell::new(None) };
}

/// Makes the calling thread an EAL lcore if it is not one, so that mempool
/// per-lcore caches work for it, and returns its lcore id. Cheap after the
/// first call on a thread. A thread that cannot be registered (all
/// `RTE_MAX_LCORE` ids taken) still works, without a mempool cache.
pub fn register_thread() -> Option<u32> {
    if TRIED.with(Cell::get) {
        return lcore_id();
    }
    TRIED.with(|t| t.set(true));
    if let Some(id) = lcore_id() {
        return Some(id);
    }
    if !is_initialized() {
        return None;
    }
    // SAFETY: EAL is initialised; registration affects only this thread.
    let r = unsafe { sys::rte_thread_register() };
    match ffi::errno_on_negative("rte_thread_register", r) {
        Ok(_) => {
            REGISTRATION.with(|c| c.set(Some(Registration)));
            lcore_id()
        }
        Err(e) => {
            tracing::warn!(error = %e, "worker thread not registered with EAL; mempool cache disabled for it");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_args_name_the_program_and_driver_directory() {
        let a = base_args();
        assert_eq!(a[0], "ftfw");
        assert!(a.contains(&"--no-telemetry".to_string()));
        if std::path::Path::new(pmd_dir()).is_dir() {
            let i = a.iter().position(|x| x == "-d").expect("-d");
            assert_eq!(a[i + 1], pmd_dir());
        }
    }

    #[test]
    fn threads_outside_eal_have_no_lcore() {
        // A unit test never initialises EAL, so no thread is registered.
        let t = std::thread::spawn(|| (lcore_id(), register_thread()));
        assert_eq!(t.join().unwrap(), (None, None));
        assert!(require().is_err());
    }
}
