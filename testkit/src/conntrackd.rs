//! conntrackd 1.4.7 as a live FT-FW peer in a test's namespace: the one
//! configuration the interop tests share. conntrackd listens on
//! 203.0.113.2 (`vs1`) and syncs with ftfwd at 203.0.113.1, port 3780;
//! its log, lock file and console socket (`conntrackd.sock`) are in `dir`.

use std::path::{Path, PathBuf};

/// How the peer is set up.
#[derive(Clone, Copy, Debug, Default)]
pub struct ConntrackdPeer {
    /// Multicast group 225.0.0.50 instead of unicast UDP.
    pub multicast: bool,
    /// `Options { ExpectationSync on }`.
    pub expectation_sync: bool,
}

impl ConntrackdPeer {
    /// Writes `dir/conntrackd.conf` and returns its path.
    pub fn write_config(self, dir: &Path) -> std::io::Result<PathBuf> {
        let d = dir.display();
        let transport = if self.multicast {
            "Multicast {
		IPv4_address 225.0.0.50
		Group 3780
		IPv4_interface 203.0.113.2
		Interface vs1
		Checksum on
	}"
        } else {
            "UDP {
		IPv4_address 203.0.113.2
		IPv4_Destination_Address 203.0.113.1
		Port 3780
		Interface vs1
		Checksum on
	}"
        };
        let options = if self.expectation_sync {
            "Options {
		ExpectationSync on
	}"
        } else {
            ""
        };
        let text = format!(
            "Sync {{
	Mode FTFW {{
		ResendQueueSize 131072
		ACKWindowSize 300
		DisableExternalCache Off
	}}
	{transport}
	{options}
}}
General {{
	HashSize 8192
	HashLimit 65536
	LogFile {d}/conntrackd.log
	Syslog off
	LockFile {d}/conntrackd.lock
	UNIX {{
		Path {d}/conntrackd.sock
	}}
	NetlinkBufferSize 2097152
	NetlinkBufferSizeMaxGrowth 8388608
	Filter From Userspace {{
		Address Ignore {{
			IPv4_address 127.0.0.1
			IPv4_address 203.0.113.1
			IPv4_address 203.0.113.2
			IPv6_address ::1
		}}
	}}
}}
"
        );
        let p = dir.join("conntrackd.conf");
        std::fs::write(&p, text)?;
        Ok(p)
    }
}
