//! The agent's identity on disk: `data_dir/node-id` (a UUID v4 created
//! once, crash-safely) and the raft id derived from it.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

use anyhow::Context;

/// Read `data_dir/node-id`, or create it: a random UUID v4, written to a
/// temporary file, synced and renamed so a crash never leaves half an ID.
pub(super) fn load_or_create_node_id(data_dir: &Path) -> anyhow::Result<(String, [u8; 16])> {
    let path = data_dir.join("node-id");
    match fs::read_to_string(&path) {
        Ok(text) => {
            let id = text.trim();
            let bytes = parse_uuid(id).with_context(|| {
                format!(
                    "Error: {} does not hold a UUID ({id:?}): fix or delete it",
                    path.display()
                )
            })?;
            Ok((id.to_string(), bytes))
        }
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            let mut bytes = [0u8; 16];
            rand::fill(&mut bytes);
            // RFC 4122 version 4, variant 1.
            bytes[6] = (bytes[6] & 0x0f) | 0x40;
            bytes[8] = (bytes[8] & 0x3f) | 0x80;
            let id = format_uuid(&bytes);
            let tmp = data_dir.join("node-id.tmp");
            let write = || -> io::Result<()> {
                let mut file = fs::File::create(&tmp)?;
                file.write_all(id.as_bytes())?;
                file.sync_all()?;
                fs::rename(&tmp, &path)?;
                fs::File::open(data_dir)?.sync_all()
            };
            write().with_context(|| format!("Error: cannot write {}", path.display()))?;
            Ok((id, bytes))
        }
        Err(err) => Err(err).with_context(|| format!("Error: cannot read {}", path.display())),
    }
}

/// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`, lowercase hex.
fn format_uuid(bytes: &[u8; 16]) -> String {
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// Parse the hyphenated UUID form.
fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let groups: Vec<&str> = s.split('-').collect();
    let lens: Vec<usize> = groups.iter().map(|g| g.len()).collect();
    if lens != [8, 4, 4, 4, 12] {
        return None;
    }
    let hex: String = groups.concat();
    let mut out = [0u8; 16];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// The raft id: the first 8 bytes of the node UUID, big-endian, never 0
/// (a v4 UUID's version nibble already makes it non-zero).
pub(super) fn raft_id(uuid: &[u8; 16]) -> u64 {
    let mut first = [0u8; 8];
    first.copy_from_slice(&uuid[..8]);
    u64::from_be_bytes(first).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_round_trips_and_gives_a_nonzero_raft_id() {
        let bytes = [
            0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0x4d, 0xef, 0x80, 0x01, 0x02, 0x03, 0x04, 0x05,
            0x06, 0x07,
        ];
        let s = format_uuid(&bytes);
        assert_eq!(s, "12345678-9abc-4def-8001-020304050607");
        assert_eq!(parse_uuid(&s), Some(bytes));
        assert_eq!(raft_id(&bytes), 0x1234_5678_9abc_4def);
        assert_eq!(raft_id(&[0; 16]), 1);
        assert_eq!(parse_uuid("not-a-uuid"), None);
    }

    #[test]
    fn node_id_is_persisted() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let (first, _) = load_or_create_node_id(dir.path())?;
        let (second, _) = load_or_create_node_id(dir.path())?;
        assert_eq!(first, second);
        let bytes = parse_uuid(&first).expect("a generated id parses");
        assert_eq!(bytes[6] >> 4, 4, "version 4");
        Ok(())
    }
}
