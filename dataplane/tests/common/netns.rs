//! Shared by the port tests: a private network namespace with veth pairs,
//! and IPv4/UDP frames with valid checksums.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::process::Command;

/// Marks our frames among the IPv6 noise the kernel sends on new links.
pub(crate) const MAGIC: &[u8; 4] = b"FTFW";

pub(crate) const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
pub(crate) const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];

/// A network namespace deleted on drop.
pub(crate) struct Netns {
    pub(crate) name: String,
}

impl Netns {
    pub(crate) fn new(tag: &str) -> Netns {
        let name = format!("ftfwt-{}-{tag}", std::process::id());
        run(&["netns", "add", &name]);
        Netns { name }
    }

    /// `ip -n <ns> args...`; panics with stderr on failure.
    pub(crate) fn ip(&self, args: &[&str]) {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        run(&all);
    }

    /// A veth pair `a`-`b` inside the namespace, both ends up.
    #[allow(dead_code)] // not every test file uses it
    pub(crate) fn veth(&self, a: &str, b: &str) {
        self.veth_queues(a, b, None);
    }

    /// [`Netns::veth`] with `queues` transmit and receive queues on each
    /// end (`None`: the kernel's default, one per CPU).
    pub(crate) fn veth_queues(&self, a: &str, b: &str, queues: Option<&str>) {
        let per_end = match queues {
            Some(q) => vec!["numtxqueues", q, "numrxqueues", q],
            None => Vec::new(),
        };
        let mut args = vec!["link", "add", a];
        args.extend(&per_end);
        args.extend(["type", "veth", "peer", "name", b]);
        args.extend(&per_end);
        self.ip(&args);
        self.ip(&["link", "set", a, "up"]);
        self.ip(&["link", "set", b, "up"]);
    }

    /// Runs `f` on a thread that has entered the namespace.
    pub(crate) fn enter<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/var/run/netns/{}", self.name);
        std::thread::scope(|s| {
            s.spawn(|| {
                let ns = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
                // SAFETY: `ns` is an open namespace file for the duration of
                // the call; setns(CLONE_NEWNET) only changes this thread's
                // network namespace, which no other thread observes.
                let ret = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(ret, 0, "setns {path}: {}", std::io::Error::last_os_error());
                f()
            })
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let out = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .output();
        if !matches!(&out, Ok(o) if o.status.success()) {
            eprintln!("warning: could not delete netns {}: {out:?}", self.name);
        }
    }
}

pub(crate) fn run(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("run ip (iproute2)");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

pub(crate) fn csum_add(sum: &mut u32, bytes: &[u8]) {
    for c in bytes.chunks(2) {
        *sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
}

pub(crate) fn csum_fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    u16::try_from(sum).unwrap()
}

/// Whether the UDP checksum of the IPv4 packet at `ip` is valid.
pub(crate) fn udp4_checksum_ok(f: &[u8], ip: usize) -> bool {
    let ihl = usize::from(f[ip] & 0xf) * 4;
    let total = usize::from(u16::from_be_bytes([f[ip + 2], f[ip + 3]]));
    let mut s = 0;
    csum_add(&mut s, &f[ip + 12..ip + 20]);
    s += 17 + u32::try_from(total - ihl).unwrap();
    csum_add(&mut s, &f[ip + ihl..ip + total]);
    csum_fold(s) == 0xffff
}

/// Ethernet (+ optional VLAN tags) + IPv4 + UDP with valid checksums.
pub(crate) fn udp_frame(
    vlans: &[(u16, u16)],
    src: ([u8; 4], u16),
    dst: ([u8; 4], u16),
    payload: &[u8],
) -> Vec<u8> {
    let mut f = Vec::with_capacity(64 + payload.len());
    f.extend_from_slice(&MAC_B);
    f.extend_from_slice(&MAC_A);
    for (tpid, tci) in vlans {
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&tci.to_be_bytes());
    }
    f.extend_from_slice(&0x0800u16.to_be_bytes());
    let ip = f.len();
    let total = u16::try_from(20 + 8 + payload.len()).unwrap();
    f.extend_from_slice(&[0x45, 0]);
    f.extend_from_slice(&total.to_be_bytes());
    f.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0]);
    f.extend_from_slice(&src.0);
    f.extend_from_slice(&dst.0);
    let mut s = 0;
    csum_add(&mut s, &f[ip..ip + 20]);
    let c = !csum_fold(s);
    f[ip + 10..ip + 12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&src.1.to_be_bytes());
    f.extend_from_slice(&dst.1.to_be_bytes());
    f.extend_from_slice(&(total - 20).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(payload);
    let mut s = 0;
    csum_add(&mut s, &f[ip + 12..ip + 20]);
    s += 17 + u32::from(total - 20);
    csum_add(&mut s, &f[ip + 20..]);
    let c = match !csum_fold(s) {
        0 => 0xffff,
        c => c,
    };
    f[ip + 26..ip + 28].copy_from_slice(&c.to_be_bytes());
    assert!(udp4_checksum_ok(&f, ip));
    f
}

/// Frames for the small-ring tests: sequence number after `MAGIC`.
pub(crate) fn numbered(n: u32) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let mut payload = MAGIC.to_vec();
            payload.extend_from_slice(&i.to_be_bytes());
            udp_frame(
                &[],
                ([192, 0, 2, 1], 40000),
                ([198, 51, 100, 2], 7),
                &payload,
            )
        })
        .collect()
}
