//! Byte formats of the quorum's files: framed log records and checksummed atomic files.
//!
//! Everything here is pure (no IO) so the fuzz target can drive it with arbitrary bytes.

use openraft::{CommittedLeaderId, EntryPayload, LogId, Membership};

use crate::types::{Command, Entry, TypeConfig};

/// Largest command (one `propose` payload) the quorum accepts, in bytes. Metadata batches larger
/// than this must be split by the proposer.
pub const MAX_COMMAND_BYTES: usize = 8 << 20;

/// Largest body of one log record on disk (a command plus its log id and kind header, or a
/// membership's JSON). A record claiming more is corruption.
pub const MAX_RECORD_BYTES: usize = MAX_COMMAND_BYTES + 64 * 1024;

/// Largest snapshot (the application's state plus its envelope) written or accepted, in bytes.
pub const MAX_SNAPSHOT_BYTES: usize = 512 << 20;

/// Largest payload of a small atomic file (vote, committed, purged, identity).
pub const MAX_SMALL_FILE_BYTES: usize = 1 << 20;

/// Bytes in a record frame header: `u32` body length, `u32` CRC-32C of the body (little endian).
pub const RECORD_HEADER_BYTES: usize = 8;

/// Magic at the start of every atomic file (`SQF1`: Sluice Quorum File, version 1).
pub const FILE_MAGIC: [u8; 4] = *b"SQF1";

const KIND_BLANK: u8 = 0;
const KIND_NORMAL: u8 = 1;
const KIND_MEMBERSHIP: u8 = 2;
/// Body header: term u64, leader node u64, index u64, kind u8.
const BODY_HEADER_BYTES: usize = 25;

/// Why bytes did not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("truncated: need {need} bytes, have {have}")]
    Truncated { need: usize, have: usize },
    #[error("checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    Checksum { stored: u32, computed: u32 },
    #[error("length {len} out of bounds (max {max})")]
    TooLong { len: usize, max: usize },
    #[error("bad magic")]
    Magic,
    #[error("malformed: {0}")]
    Malformed(String),
}

/// Encodes one log entry as its record body.
pub fn encode_entry_body(entry: &Entry) -> Result<Vec<u8>, DecodeError> {
    let mut out = Vec::with_capacity(BODY_HEADER_BYTES + 64);
    out.extend_from_slice(&entry.log_id.leader_id.term.to_le_bytes());
    out.extend_from_slice(&entry.log_id.leader_id.node_id.to_le_bytes());
    out.extend_from_slice(&entry.log_id.index.to_le_bytes());
    match &entry.payload {
        EntryPayload::Blank => out.push(KIND_BLANK),
        EntryPayload::Normal(cmd) => {
            out.push(KIND_NORMAL);
            out.extend_from_slice(&cmd.0);
        }
        EntryPayload::Membership(m) => {
            out.push(KIND_MEMBERSHIP);
            let json = serde_json::to_vec(m).map_err(|e| DecodeError::Malformed(e.to_string()))?;
            out.extend_from_slice(&json);
        }
    }
    if out.len() > MAX_RECORD_BYTES {
        return Err(DecodeError::TooLong {
            len: out.len(),
            max: MAX_RECORD_BYTES,
        });
    }
    Ok(out)
}

fn u64_at(b: &[u8], at: usize) -> Result<u64, DecodeError> {
    let end = at
        .checked_add(8)
        .ok_or(DecodeError::Malformed("offset overflow".into()))?;
    let s = b.get(at..end).ok_or(DecodeError::Truncated {
        need: end,
        have: b.len(),
    })?;
    let mut a = [0u8; 8];
    a.copy_from_slice(s);
    Ok(u64::from_le_bytes(a))
}

fn u32_at(b: &[u8], at: usize) -> Result<u32, DecodeError> {
    let end = at
        .checked_add(4)
        .ok_or(DecodeError::Malformed("offset overflow".into()))?;
    let s = b.get(at..end).ok_or(DecodeError::Truncated {
        need: end,
        have: b.len(),
    })?;
    let mut a = [0u8; 4];
    a.copy_from_slice(s);
    Ok(u32::from_le_bytes(a))
}

/// Decodes a record body back into a log entry.
pub fn decode_entry_body(body: &[u8]) -> Result<Entry, DecodeError> {
    if body.len() < BODY_HEADER_BYTES {
        return Err(DecodeError::Truncated {
            need: BODY_HEADER_BYTES,
            have: body.len(),
        });
    }
    let term = u64_at(body, 0)?;
    let node = u64_at(body, 8)?;
    let index = u64_at(body, 16)?;
    let kind = body.get(24).copied().unwrap_or(u8::MAX);
    let rest = body.get(BODY_HEADER_BYTES..).unwrap_or(&[]);
    let payload = match kind {
        KIND_BLANK if rest.is_empty() => EntryPayload::Blank,
        KIND_NORMAL => {
            if rest.len() > MAX_COMMAND_BYTES {
                return Err(DecodeError::TooLong {
                    len: rest.len(),
                    max: MAX_COMMAND_BYTES,
                });
            }
            EntryPayload::Normal(Command(rest.to_vec()))
        }
        KIND_MEMBERSHIP => {
            let m: Membership<u64, openraft::BasicNode> = serde_json::from_slice(rest)
                .map_err(|e| DecodeError::Malformed(format!("membership: {e}")))?;
            EntryPayload::Membership(m)
        }
        k => {
            return Err(DecodeError::Malformed(format!(
                "entry kind {k} with {} payload bytes",
                rest.len()
            )))
        }
    };
    Ok(Entry {
        log_id: LogId::new(CommittedLeaderId::new(term, node), index),
        payload,
    })
}

/// Frames a record body: `[u32 len][u32 crc32c(body)][body]`.
pub fn frame_record(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(RECORD_HEADER_BYTES + body.len());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(body).to_le_bytes());
    out.extend_from_slice(body);
    out
}

/// One step of scanning a log segment.
#[derive(Debug, PartialEq, Eq)]
pub enum Scan<'a> {
    /// A whole, valid record body and the frame's total length.
    Record { body: &'a [u8], frame_len: usize },
    /// Clean end of data.
    End,
    /// The bytes at this position are not a valid record.
    Bad(DecodeError),
}

/// Reads the record frame at the start of `buf`.
pub fn scan_record(buf: &[u8]) -> Scan<'_> {
    if buf.is_empty() {
        return Scan::End;
    }
    if buf.len() < RECORD_HEADER_BYTES {
        return Scan::Bad(DecodeError::Truncated {
            need: RECORD_HEADER_BYTES,
            have: buf.len(),
        });
    }
    let (len, crc) = match (u32_at(buf, 0), u32_at(buf, 4)) {
        (Ok(l), Ok(c)) => (l as usize, c),
        (Err(e), _) | (_, Err(e)) => return Scan::Bad(e),
    };
    if len == 0 || len > MAX_RECORD_BYTES {
        return Scan::Bad(DecodeError::TooLong {
            len,
            max: MAX_RECORD_BYTES,
        });
    }
    let Some(end) = RECORD_HEADER_BYTES.checked_add(len) else {
        return Scan::Bad(DecodeError::TooLong {
            len,
            max: MAX_RECORD_BYTES,
        });
    };
    let Some(body) = buf.get(RECORD_HEADER_BYTES..end) else {
        return Scan::Bad(DecodeError::Truncated {
            need: end,
            have: buf.len(),
        });
    };
    let computed = crc32c::crc32c(body);
    if computed != crc {
        return Scan::Bad(DecodeError::Checksum {
            stored: crc,
            computed,
        });
    }
    Scan::Record {
        body,
        frame_len: end,
    }
}

/// The outcome of decoding a whole segment's bytes.
#[derive(Debug)]
pub struct SegmentScan {
    /// Decoded entries with their byte offset in the segment.
    pub entries: Vec<(u64, Entry)>,
    /// Length of the valid prefix.
    pub valid_len: u64,
    /// Set when the data after `valid_len` is not valid: the problem, and whether it looks like a
    /// torn tail (the bad frame reaches the end of the data, or only zeros follow it).
    pub bad: Option<(DecodeError, bool)>,
}

/// Decodes every record of a segment. Never panics; stops at the first bad record.
pub fn scan_segment(data: &[u8]) -> SegmentScan {
    let mut pos = 0usize;
    let mut entries = Vec::new();
    loop {
        let rest = data.get(pos..).unwrap_or(&[]);
        match scan_record(rest) {
            Scan::End => {
                return SegmentScan {
                    entries,
                    valid_len: pos as u64,
                    bad: None,
                }
            }
            Scan::Record { body, frame_len } => match decode_entry_body(body) {
                Ok(e) => {
                    entries.push((pos as u64, e));
                    pos = pos.saturating_add(frame_len);
                }
                // A record whose checksum matches but whose body is wrong was written that way:
                // never a torn tail.
                Err(e) => {
                    return SegmentScan {
                        entries,
                        valid_len: pos as u64,
                        bad: Some((e, false)),
                    }
                }
            },
            Scan::Bad(e) => {
                // Appends extend the file; what a crash leaves of an unsynced append is a prefix of
                // the frame, or zeros where the data had not reached the disk. So: a frame cut by
                // the end of data, or a bad frame followed by nothing but zeros, is a torn tail.
                // Anything else (a checksum mismatch with more data after the frame, an impossible
                // length followed by non-zero bytes) is corruption.
                let torn = match &e {
                    DecodeError::Truncated { .. } => true,
                    DecodeError::Checksum { .. } => {
                        let end = u32_at(rest, 0)
                            .ok()
                            .and_then(|l| (l as usize).checked_add(RECORD_HEADER_BYTES))
                            .unwrap_or(usize::MAX);
                        rest.get(end..)
                            .is_none_or(|after| after.iter().all(|b| *b == 0))
                    }
                    _ => rest.iter().all(|b| *b == 0),
                };
                return SegmentScan {
                    entries,
                    valid_len: pos as u64,
                    bad: Some((e, torn)),
                };
            }
        }
    }
}

/// Wraps a small file's payload: `[magic "SQF1"][u32 len][u32 crc32c(payload)][payload]`.
pub fn encode_file(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(12 + payload.len());
    out.extend_from_slice(&FILE_MAGIC);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// Checks and unwraps an atomic file (`[magic][u32 len][u32 crc32c][payload]`); `max` bounds the payload.
pub fn decode_file(data: &[u8], max: usize) -> Result<&[u8], DecodeError> {
    if data.len() < 12 {
        return Err(DecodeError::Truncated {
            need: 12,
            have: data.len(),
        });
    }
    if data.get(0..4) != Some(&FILE_MAGIC[..]) {
        return Err(DecodeError::Magic);
    }
    let len = u32_at(data, 4)? as usize;
    let crc = u32_at(data, 8)?;
    if len > max {
        return Err(DecodeError::TooLong { len, max });
    }
    let end = 12usize
        .checked_add(len)
        .ok_or(DecodeError::TooLong { len, max })?;
    let payload = data.get(12..end).ok_or(DecodeError::Truncated {
        need: end,
        have: data.len(),
    })?;
    if data.len() != end {
        return Err(DecodeError::Malformed(format!(
            "{} trailing bytes",
            data.len() - end
        )));
    }
    let computed = crc32c::crc32c(payload);
    if computed != crc {
        return Err(DecodeError::Checksum {
            stored: crc,
            computed,
        });
    }
    Ok(payload)
}

/// The snapshot file's payload: the openraft meta (JSON) and the application's state.
pub fn encode_snapshot(
    meta: &openraft::SnapshotMeta<u64, openraft::BasicNode>,
    state: &[u8],
) -> Result<Vec<u8>, DecodeError> {
    let meta = serde_json::to_vec(meta).map_err(|e| DecodeError::Malformed(e.to_string()))?;
    let total = 4usize
        .saturating_add(meta.len())
        .saturating_add(state.len());
    if total > MAX_SNAPSHOT_BYTES {
        return Err(DecodeError::TooLong {
            len: total,
            max: MAX_SNAPSHOT_BYTES,
        });
    }
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&(meta.len() as u32).to_le_bytes());
    out.extend_from_slice(&meta);
    out.extend_from_slice(state);
    Ok(out)
}

/// Splits a snapshot payload into its meta and the application's state.
#[allow(clippy::type_complexity)]
pub fn decode_snapshot(
    data: &[u8],
) -> Result<(openraft::SnapshotMeta<u64, openraft::BasicNode>, &[u8]), DecodeError> {
    let len = u32_at(data, 0)? as usize;
    let end = 4usize.checked_add(len).ok_or(DecodeError::TooLong {
        len,
        max: MAX_SMALL_FILE_BYTES,
    })?;
    let meta = data.get(4..end).ok_or(DecodeError::Truncated {
        need: end,
        have: data.len(),
    })?;
    let meta = serde_json::from_slice(meta)
        .map_err(|e| DecodeError::Malformed(format!("snapshot meta: {e}")))?;
    Ok((meta, data.get(end..).unwrap_or(&[])))
}

/// Keeps `TypeConfig` referenced for docs.
#[allow(dead_code)]
type _C = TypeConfig;

#[cfg(test)]
mod tests {
    use super::*;

    fn e(term: u64, index: u64, cmd: &[u8]) -> Entry {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(term, 1), index),
            payload: EntryPayload::Normal(Command(cmd.to_vec())),
        }
    }

    #[test]
    fn entries_round_trip_and_torn_tails_are_detected() {
        let mut seg = Vec::new();
        for i in 1..=3u64 {
            seg.extend(frame_record(
                &encode_entry_body(&e(2, i, b"hello")).unwrap(),
            ));
        }
        let blank = Entry {
            log_id: LogId::new(CommittedLeaderId::new(3, 2), 4),
            payload: EntryPayload::Blank,
        };
        seg.extend(frame_record(&encode_entry_body(&blank).unwrap()));
        let s = scan_segment(&seg);
        assert!(s.bad.is_none());
        assert_eq!(s.entries.len(), 4);
        assert_eq!(s.entries[3].1.log_id.index, 4);
        assert_eq!(s.valid_len, seg.len() as u64);
        // Every truncation point is a torn tail keeping the whole records before it.
        let full = s.valid_len as usize;
        for cut in 0..full {
            let s = scan_segment(&seg[..cut]);
            assert!(s.bad.as_ref().is_none_or(|(_, torn)| *torn), "cut {cut}");
            assert!(s.valid_len as usize <= cut);
        }
        // A flipped byte in the first record with valid records after it is corruption.
        let mut bad = seg.clone();
        bad[12] ^= 0xff;
        let s = scan_segment(&bad);
        assert_eq!(s.valid_len, 0);
        assert!(matches!(s.bad, Some((DecodeError::Checksum { .. }, false))));
        // Zeros after the valid prefix are a torn tail.
        let mut z = seg.clone();
        z.extend([0u8; 100]);
        let s = scan_segment(&z);
        assert_eq!(s.valid_len, seg.len() as u64);
        assert!(matches!(s.bad, Some((_, true))));
    }

    #[test]
    fn files_round_trip_and_reject_damage() {
        let f = encode_file(b"payload");
        assert_eq!(decode_file(&f, 100).unwrap(), b"payload");
        for cut in 0..f.len() {
            assert!(decode_file(&f[..cut], 100).is_err());
        }
        let mut g = f.clone();
        g[14] ^= 1;
        assert!(matches!(
            decode_file(&g, 100),
            Err(DecodeError::Checksum { .. })
        ));
        assert!(matches!(
            decode_file(&f, 3),
            Err(DecodeError::TooLong { .. })
        ));
    }
}
