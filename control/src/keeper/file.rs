//! The state file's format: a stream of conntrackd sync messages.
//!
//! ```text
//! CTL ALIVE, seq = MAGIC               marks the file as ours (checked on attach)
//! CTL ALIVE, seq = WORKERS | n         the node ran n workers
//! CTL ALIVE, seq = WORKER | w          the records that follow are worker w's
//! CT_NEW | CT_UPD | CT_DEL, seq = T    one flow each; T = Unix seconds when written
//! ...                                  (snapshot first, then appended changes)
//! ```
//!
//! The worker of each flow is kept because a restarted node must put it
//! back where its port steers the flow's frames: the kernel's fanout hash
//! (AF_PACKET) has a per-boot seed that userspace cannot compute, but it
//! stays the same across a restart, as do the join order of the sockets
//! and the RSS key.
//!
//! Every record is an FT-FW message exactly as it goes on the sync link
//! (`ftfw_sync::wire`), so the file needs no codec of its own and a peer's
//! dissector reads it. A record cut short by a crash in the middle of a
//! write ends the walk (counted as `truncated`); a record that does not
//! decode is skipped and counted (`bad_records`); nothing in the file can
//! make the reader panic.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use ftfw_dataplane::flow::{FlowKey, FlowState};
use ftfw_sync::wire::datagram::{
    decode_datagram_with, encode_control, encode_flow, Body, DecodeStats,
};
use ftfw_sync::wire::{ControlMsg, EncodeOptions, MsgType};

use super::KeeperError;

/// The sequence number of the leading ALIVE: "FTFW".
pub const MAGIC: u32 = 0x4654_4657;
/// ALIVE `WORKERS | n`: the node had n workers.
pub const WORKERS: u32 = 0x5700_0000;
/// ALIVE `WORKER | w`: the following records are worker w's.
pub const WORKER: u32 = 0x5800_0000;

/// What a state file held.
#[derive(Debug, Default)]
pub struct Recovered {
    /// The live flows at the last write, by key, with the worker whose
    /// shard held them (when the file says).
    pub flows: HashMap<FlowKey, (Option<u16>, FlowState)>,
    /// How many workers the node that wrote the file had (when it says).
    pub workers: Option<u16>,
    /// Unix seconds of the newest record (0: none).
    pub written_at: u32,
    /// Records read (after the marker).
    pub records: u64,
    /// Records that did not decode and were skipped.
    pub bad_records: u64,
    /// Whether the file ended inside a record (a write cut by a crash).
    pub truncated: bool,
}

/// Reads and folds a state file: NEW and UPDATE replace a flow, DELETE
/// removes it. `Ok(None)`: there is no file.
pub fn read(path: &Path) -> Result<Option<Recovered>, KeeperError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(KeeperError::Io {
                path: path.to_path_buf(),
                what: "reading",
                source,
            })
        }
    };
    parse(&bytes)
        .map(Some)
        .ok_or_else(|| KeeperError::NotAStateFile {
            path: path.to_path_buf(),
        })
}

/// Folds the bytes of a state file; `None` when they do not start with
/// the marker.
pub fn parse(bytes: &[u8]) -> Option<Recovered> {
    let mut out = Recovered::default();
    let mut first = true;
    let mut ours = false;
    let mut stats = DecodeStats::default();
    let mut worker = None;
    decode_datagram_with(bytes, &mut stats, |item| {
        if first {
            first = false;
            ours = matches!(&item, Ok(m) if m.header.seq == MAGIC
                && matches!(m.body, Body::Control(ControlMsg::Alive)));
            return;
        }
        if !ours {
            return;
        }
        out.records += 1;
        let m = match item {
            Ok(m) => m,
            Err(e) if e.is_framing() => {
                out.truncated = true;
                out.records -= 1;
                return;
            }
            Err(_) => {
                out.bad_records += 1;
                return;
            }
        };
        let attrs = match &m.body {
            Body::Ct(attrs) => attrs,
            Body::Control(ControlMsg::Alive) if m.header.seq & 0xff00_0000 == WORKER => {
                worker = u16::try_from(m.header.seq & 0xffff).ok();
                out.records -= 1;
                return;
            }
            Body::Control(ControlMsg::Alive) if m.header.seq & 0xff00_0000 == WORKERS => {
                out.workers = u16::try_from(m.header.seq & 0xffff).ok();
                out.records -= 1;
                return;
            }
            _ => {
                out.bad_records += 1;
                return;
            }
        };
        let Ok(flow) = attrs.to_flow() else {
            out.bad_records += 1;
            return;
        };
        out.written_at = out.written_at.max(m.header.seq);
        match m.header.msg_type() {
            Some(MsgType::CtDel) => {
                out.flows.remove(&flow.key);
            }
            _ => {
                out.flows.insert(flow.key, (worker, flow));
            }
        }
    });
    ours.then_some(out)
}

/// Appends one record to `out`.
pub fn encode_record(out: &mut Vec<u8>, ty: MsgType, flow: &FlowState, now_secs: u32) -> bool {
    // Window scales included: a restored TCP flow tracks its windows.
    let opts = EncodeOptions {
        tcp_window_tracking: true,
        ..EncodeOptions::default()
    };
    encode_flow(out, ty, 0, now_secs, flow, &opts).is_ok()
}

/// The marker that starts every state file, with the node's worker count.
pub fn encode_marker(out: &mut Vec<u8>, workers: u16) {
    encode_control(out, &ControlMsg::Alive, 0, MAGIC);
    encode_control(out, &ControlMsg::Alive, 0, WORKERS | u32::from(workers));
}

/// The marker before records of worker `w`.
pub fn encode_worker(out: &mut Vec<u8>, w: u16) {
    encode_control(out, &ControlMsg::Alive, 0, WORKER | u32::from(w));
}

/// Writes a whole snapshot to `path` atomically (a temporary file beside
/// it, then a rename): `per_worker[w]` are worker w's flows. Returns the
/// file opened for appending and its size.
pub fn write_snapshot(
    path: &Path,
    per_worker: &[Vec<&FlowState>],
    now_secs: u32,
) -> Result<(File, u64), KeeperError> {
    let io_err = |what| {
        move |source| KeeperError::Io {
            path: path.to_path_buf(),
            what,
            source,
        }
    };
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io_err("creating the directory of"))?;
    }
    let tmp = tmp_path(path);
    let mut w =
        io::BufWriter::with_capacity(1 << 20, File::create(&tmp).map_err(io_err("creating"))?);
    let mut buf = Vec::with_capacity(4096);
    encode_marker(
        &mut buf,
        u16::try_from(per_worker.len()).unwrap_or(u16::MAX),
    );
    let mut size = 0u64;
    for (i, flows) in per_worker.iter().enumerate() {
        encode_worker(&mut buf, u16::try_from(i).unwrap_or(u16::MAX));
        for f in flows {
            encode_record(&mut buf, MsgType::CtNew, f, now_secs);
            if buf.len() >= 64 * 1024 {
                w.write_all(&buf).map_err(io_err("writing"))?;
                size += buf.len() as u64;
                buf.clear();
            }
        }
    }
    w.write_all(&buf).map_err(io_err("writing"))?;
    size += buf.len() as u64;
    w.flush().map_err(io_err("writing"))?;
    drop(w);
    std::fs::rename(&tmp, path).map_err(io_err("renaming the snapshot onto"))?;
    let f = OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(io_err("opening for appending"))?;
    Ok((f, size))
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".tmp");
    PathBuf::from(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ftfw_dataplane::flow::{proto, TcpState, Tuple};
    use std::net::IpAddr;

    fn flow(sport: u16, state: TcpState) -> FlowState {
        let src: IpAddr = "192.0.2.10".parse().unwrap();
        let dst: IpAddr = "198.51.100.20".parse().unwrap();
        FlowState {
            key: FlowKey {
                orig: Tuple::new(src, dst, proto::TCP, sport, 80),
                zone: 0,
            },
            tcp_state: state,
            status: 0,
            timeout_secs: 300,
            mark: 0,
            wscale: [0; 2],
            counters: Default::default(),
            extras: Default::default(),
        }
    }

    #[test]
    fn snapshot_then_changes_fold_to_the_live_table() {
        let dir = std::env::temp_dir().join(format!("ftfw-keeper-file-{}", std::process::id()));
        let path = dir.join("s.state");
        let a = flow(40000, TcpState::Established);
        let b = flow(40001, TcpState::SynSent);
        let (mut f, _) = write_snapshot(&path, &[vec![&a], vec![&b]], 1000).unwrap();
        let mut buf = Vec::new();
        encode_worker(&mut buf, 1);
        let mut b2 = b.clone();
        b2.tcp_state = TcpState::Established;
        assert!(encode_record(&mut buf, MsgType::CtUpd, &b2, 1001));
        assert!(encode_record(&mut buf, MsgType::CtDel, &a, 1002));
        f.write_all(&buf).unwrap();
        let r = read(&path).unwrap().unwrap();
        assert_eq!(r.flows.len(), 1);
        assert_eq!(r.flows[&b.key].1.tcp_state, TcpState::Established);
        assert_eq!(r.flows[&b.key].0, Some(1));
        assert_eq!(r.workers, Some(2));
        assert_eq!(r.written_at, 1002);
        assert_eq!((r.records, r.bad_records, r.truncated), (4, 0, false));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_record_cut_by_a_crash_ends_the_walk_and_keeps_what_came_before() {
        let mut bytes = Vec::new();
        encode_marker(&mut bytes, 1);
        let a = flow(40000, TcpState::Established);
        encode_record(&mut bytes, MsgType::CtNew, &a, 7);
        let whole = bytes.len();
        encode_record(
            &mut bytes,
            MsgType::CtNew,
            &flow(40001, TcpState::Established),
            8,
        );
        for cut in whole + 1..bytes.len() {
            let r = parse(&bytes[..cut]).unwrap();
            assert_eq!(r.flows.len(), 1, "cut at {cut}");
            assert!(r.flows.contains_key(&a.key));
            assert!(r.truncated, "cut at {cut}");
        }
    }

    #[test]
    fn a_file_without_the_marker_is_refused() {
        let mut bytes = Vec::new();
        encode_record(
            &mut bytes,
            MsgType::CtNew,
            &flow(1, TcpState::Established),
            1,
        );
        assert!(parse(&bytes).is_none());
        assert!(parse(b"hello, this is not a state file").is_none());
        assert!(parse(&[]).is_none());
    }

    #[test]
    fn a_corrupt_record_is_skipped_and_counted() {
        let mut bytes = Vec::new();
        encode_marker(&mut bytes, 1);
        let start = bytes.len();
        encode_record(
            &mut bytes,
            MsgType::CtNew,
            &flow(1, TcpState::Established),
            1,
        );
        // An attribute length pointing past the message: the message is
        // rejected, the walk goes on.
        bytes[start + 8 + 1] = 0xff;
        let b = flow(2, TcpState::Established);
        encode_record(&mut bytes, MsgType::CtNew, &b, 2);
        let r = parse(&bytes).unwrap();
        assert_eq!(r.bad_records, 1);
        assert_eq!(r.flows.len(), 1);
        assert!(r.flows.contains_key(&b.key));
    }
}
