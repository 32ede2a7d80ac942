//! Pre-shared key rings: the keys of `[sync] psk_file` (or the one key of
//! `psk`), each with an id, so that keys rotate without a restart.
//!
//! The file holds one key a line, `ID HEX`: the id (1 to 255) and the key
//! in hex (at least [`MIN_KEY_LEN`] bytes); blank lines and lines starting
//! with `#` are ignored. Senders use the newest key (the highest id);
//! receivers take any key of the ring. To rotate: add the next id on every
//! node (each picks the file up within a second), then, once all have it,
//! remove the old one.

use std::collections::BTreeMap;

/// Shortest key accepted (bytes).
pub const MIN_KEY_LEN: usize = 16;

/// A set of keys by id; never empty.
#[derive(Clone, PartialEq, Eq)]
pub struct Keyring {
    keys: BTreeMap<u8, Vec<u8>>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the keys themselves.
        f.debug_struct("Keyring")
            .field("ids", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// What is wrong with a key file, and on which line (1-based; 0 for the
/// file as a whole).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct KeyringError {
    /// The line.
    pub line: usize,
    /// What is wrong there.
    pub message: String,
}

impl Keyring {
    /// A ring of one key with id `id`.
    pub fn single(id: u8, key: Vec<u8>) -> Result<Keyring, KeyringError> {
        check(id, &key, 0)?;
        Ok(Keyring {
            keys: BTreeMap::from([(id, key)]),
        })
    }

    /// Parses a key file (see the module documentation).
    pub fn parse(text: &str) -> Result<Keyring, KeyringError> {
        let mut keys = BTreeMap::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let l = raw.trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            let err = |m: &str| KeyringError {
                line,
                message: m.to_string(),
            };
            let mut parts = l.split_whitespace();
            let (Some(id), Some(hex), None) = (parts.next(), parts.next(), parts.next()) else {
                return Err(err("expected `ID HEX-KEY`"));
            };
            let id: u8 = match id.parse() {
                Ok(v) if v > 0 => v,
                _ => return Err(err("the key id must be a number from 1 to 255")),
            };
            let key = ftfw_sync::wire::hex::decode(hex)
                .ok_or_else(|| err("the key is not hex (two digits per byte)"))?;
            check(id, &key, line)?;
            if keys.insert(id, key).is_some() {
                return Err(err(&format!("key id {id} is given twice")));
            }
        }
        if keys.is_empty() {
            return Err(KeyringError {
                line: 0,
                message: "no key in the file".into(),
            });
        }
        Ok(Keyring { keys })
    }

    /// The newest key (highest id): what senders use.
    pub fn newest(&self) -> (u8, &[u8]) {
        let (id, k) = self
            .keys
            .iter()
            .next_back()
            .expect("a keyring is never empty");
        (*id, k)
    }

    /// The key with id `id`.
    pub fn get(&self, id: u8) -> Option<&[u8]> {
        self.keys.get(&id).map(Vec::as_slice)
    }

    /// The ids, ascending.
    pub fn ids(&self) -> Vec<u8> {
        self.keys.keys().copied().collect()
    }
}

/// Whether a key file is written as a ring (`ID HEX` lines) rather than
/// as one raw key (the election's and cluster's older `key_file` form):
/// its first line that is not blank or a comment is a number, a space,
/// and more.
pub fn looks_like_ring(text: &str) -> bool {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .is_some_and(|l| {
            let mut p = l.split_whitespace();
            p.next()
                .is_some_and(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
                && p.next().is_some()
        })
}

/// A key file looked at now and then: [`KeyFileWatch::poll`] returns its
/// keys when it changed (by modification time and length), at most once
/// per [`KEY_FILE_CHECK`].
#[derive(Debug)]
pub struct KeyFileWatch {
    path: std::path::PathBuf,
    stamp: Option<(std::time::SystemTime, u64)>,
    next_check: std::time::Instant,
    /// The ring last taken from the file.
    ring: Option<Keyring>,
    /// Rings taken after the first (the first is the start, not a reload).
    reloads: u64,
    /// Changed files refused (unparsable, or refused by the user).
    errors: u64,
}

/// How often a watched key file is looked at.
pub const KEY_FILE_CHECK: std::time::Duration = std::time::Duration::from_secs(1);

impl KeyFileWatch {
    /// Watches `path`; the first [`KeyFileWatch::poll`] reads it.
    pub fn new(path: std::path::PathBuf, now: std::time::Instant) -> Self {
        KeyFileWatch {
            path,
            stamp: None,
            next_check: now,
            ring: None,
            reloads: 0,
            errors: 0,
        }
    }

    /// The watch as if `ring` had been taken from the file (status tests).
    #[cfg(test)]
    pub(crate) fn with_ring(mut self, ring: Keyring) -> Self {
        self.ring = Some(ring);
        self
    }

    /// The ring last taken from the file, if any.
    pub fn ring(&self) -> Option<&Keyring> {
        self.ring.as_ref()
    }

    /// Rings taken from the file since the first.
    pub fn reloads(&self) -> u64 {
        self.reloads
    }

    /// Changed files refused, the keys in use kept.
    pub fn errors(&self) -> u64 {
        self.errors
    }

    /// The file.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// `None` when it is not time to look or the file did not change; else
    /// its keys, or why they cannot be taken (a line number in the text).
    pub fn poll(&mut self, now: std::time::Instant) -> Option<Result<Keyring, String>> {
        if now < self.next_check {
            return None;
        }
        self.next_check = now + KEY_FILE_CHECK;
        let stamp = std::fs::metadata(&self.path)
            .ok()
            .and_then(|m| Some((m.modified().ok()?, m.len())));
        if stamp.is_some() && stamp == self.stamp {
            return None;
        }
        self.stamp = stamp;
        Some(
            std::fs::read_to_string(&self.path)
                .map_err(|e| e.to_string())
                .and_then(|t| Keyring::parse(&t).map_err(|e| e.to_string())),
        )
    }

    /// When the file changed ([`KeyFileWatch::poll`]), hands its keys to
    /// `apply`, keeps the ring `apply` took ([`KeyFileWatch::ring`]),
    /// counts the outcome ([`KeyFileWatch::reloads`] after the first ring,
    /// [`KeyFileWatch::errors`]) and logs it for `what` (e.g. "election").
    /// A file that does not parse, or that `apply` refuses, leaves the keys
    /// in use.
    pub fn reload<E: std::fmt::Display>(
        &mut self,
        now: std::time::Instant,
        what: &str,
        apply: impl FnOnce(&Keyring) -> Result<(), E>,
    ) {
        let Some(r) = self.poll(now) else { return };
        let file = self.path.display().to_string();
        match r.and_then(|ring| apply(&ring).map(|()| ring).map_err(|e| e.to_string())) {
            Ok(ring) => {
                tracing::info!(%file, ids = ?ring.ids(), "{what} keys loaded");
                if self.ring.replace(ring).is_some() {
                    self.reloads += 1;
                }
            }
            Err(e) => {
                tracing::warn!(%file, error = %e, "{what} key file refused; the keys in use stay");
                self.errors += 1;
            }
        }
    }
}

/// What `ftfwctl status` (election) and `cluster status` show of a
/// watched key ring file: `{"file", "ids", "sending"}`, the ids of the
/// ring in use and the newest of them (what messages are sealed with);
/// `null` while none was taken from the file. (The reload counters are
/// the drivers' `key_reloads` and `key_reload_errors`.)
pub fn status_json(watch: &KeyFileWatch) -> serde_json::Value {
    let ring = watch.ring();
    serde_json::json!({
        "file": watch.path().display().to_string(),
        "ids": ring.map(Keyring::ids),
        "sending": ring.map(|r| r.newest().0),
    })
}

fn check(id: u8, key: &[u8], line: usize) -> Result<(), KeyringError> {
    if id == 0 {
        return Err(KeyringError {
            line,
            message: "key id 0 is reserved".into(),
        });
    }
    if key.len() < MIN_KEY_LEN {
        return Err(KeyringError {
            line,
            message: format!(
                "the key has {} bytes; at least {MIN_KEY_LEN} are needed",
                key.len()
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_files_parse_with_ids_and_the_newest_is_the_highest() {
        let text = "# rotation\n1 000102030405060708090a0b0c0d0e0f\n\n  7 ffeeddccbbaa99887766554433221100ff\n";
        let r = Keyring::parse(text).unwrap();
        assert_eq!(r.ids(), vec![1, 7]);
        assert_eq!(r.newest().0, 7);
        assert_eq!(r.get(1).unwrap()[15], 0x0f);
        assert!(r.get(2).is_none());
        assert!(!format!("{r:?}").contains("ff"), "Debug never shows keys");
    }

    #[test]
    fn rings_are_told_from_raw_keys_and_watched_files_reload_on_change() {
        assert!(looks_like_ring("# c\n\n 1 00ff\n"));
        assert!(looks_like_ring("12 zz"));
        assert!(!looks_like_ring("a raw key of more than sixteen bytes"));
        assert!(!looks_like_ring("1234567890abcdef1234"));
        assert!(!looks_like_ring("# only a comment\n"));
        let p = std::env::temp_dir().join(format!("ftfw-keywatch-{}", std::process::id()));
        let k = |id: u8, b: &str| format!("{id} {}\n", b.repeat(16));
        std::fs::write(&p, k(1, "01")).unwrap();
        let t0 = std::time::Instant::now();
        let mut w = KeyFileWatch::new(p.clone(), t0);
        assert_eq!(w.poll(t0).unwrap().unwrap().ids(), vec![1]);
        // Unchanged, or too soon: nothing.
        assert!(w.poll(t0 + KEY_FILE_CHECK).is_none());
        std::fs::write(&p, k(1, "01") + &k(2, "02")).unwrap();
        assert!(
            w.poll(t0 + KEY_FILE_CHECK).is_none(),
            "checked a second ago"
        );
        assert_eq!(
            w.poll(t0 + KEY_FILE_CHECK * 2).unwrap().unwrap().ids(),
            vec![1, 2]
        );
        std::fs::write(&p, "1 nothex\n").unwrap();
        let e = w.poll(t0 + KEY_FILE_CHECK * 3).unwrap().unwrap_err();
        assert!(e.contains("line 1"), "{e}");

        // `reload` keeps the ring taken and counts: the first ring is the
        // start, later ones reloads; a bad file (or one the user refuses)
        // an error, the ring in use kept.
        std::fs::write(&p, k(1, "01")).unwrap();
        let mut w = KeyFileWatch::new(p.clone(), t0);
        let ok = |_: &Keyring| Ok::<(), String>(());
        w.reload(t0, "test", ok);
        assert_eq!(
            (w.ring().map(Keyring::ids), w.reloads(), w.errors()),
            (Some(vec![1]), 0, 0)
        );
        std::fs::write(&p, k(1, "01") + &k(2, "02")).unwrap();
        w.reload(t0 + KEY_FILE_CHECK, "test", ok);
        assert_eq!(
            (w.ring().map(Keyring::ids), w.reloads(), w.errors()),
            (Some(vec![1, 2]), 1, 0)
        );
        std::fs::write(&p, "1 nothex\n").unwrap();
        w.reload(t0 + KEY_FILE_CHECK * 2, "test", ok);
        assert_eq!(
            (w.ring().map(Keyring::ids), w.reloads(), w.errors()),
            (Some(vec![1, 2]), 1, 1)
        );
        std::fs::write(&p, k(3, "03")).unwrap();
        w.reload(t0 + KEY_FILE_CHECK * 3, "test", |_| Err("refused"));
        assert_eq!(
            (w.ring().map(Keyring::ids), w.reloads(), w.errors()),
            (Some(vec![1, 2]), 1, 2)
        );
        std::fs::remove_file(&p).unwrap();
    }

    #[test]
    fn bad_key_files_name_the_line() {
        let e = |t: &str| Keyring::parse(t).unwrap_err();
        assert_eq!(e("").line, 0);
        assert_eq!(e("# only\n").line, 0);
        assert_eq!(e("1 00\n").line, 1);
        assert_eq!(e("\n0 000102030405060708090a0b0c0d0e0f\n").line, 2);
        assert_eq!(e("256 000102030405060708090a0b0c0d0e0f\n").line, 1);
        assert_eq!(e("1 zz0102030405060708090a0b0c0d0e0f\n").line, 1);
        assert_eq!(e("1 000102030405060708090a0b0c0d0e0f extra\n").line, 1);
        let dup = e("1 000102030405060708090a0b0c0d0e0f\n1 000102030405060708090a0b0c0d0e0f\n");
        assert_eq!(dup.line, 2);
        assert!(dup.message.contains("twice"));
        assert!(Keyring::single(1, vec![0; 15]).is_err());
        assert!(Keyring::single(0, vec![0; 16]).is_err());
    }
}
