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
