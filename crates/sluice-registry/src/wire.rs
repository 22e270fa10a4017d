//! Confluent's serialized-message framing, read by the broker's produce path.
//!
//! `0x00`, the schema id as a big-endian i32, then for PROTOBUF the message-index path
//! (a zig-zag varint count, then that many zig-zag varint indexes; a count of 0 means `[0]`),
//! then the payload. Nothing here allocates for a well-formed AVRO/JSON header, and a PROTOBUF
//! path allocates one small vector.

use thiserror::Error;

/// The only magic byte Confluent's id-prefixed framing uses.
pub const MAGIC: u8 = 0;

/// No real schema nests messages this deep; a larger count is garbage or hostile.
const MAX_INDEXES: i32 = 64;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WireError {
    #[error("record is {0} bytes, shorter than the 5-byte schema-registry header")]
    TooShort(usize),
    #[error("unknown magic byte {0:#04x} (expected 0x00 followed by a schema id)")]
    BadMagic(u8),
    #[error("malformed protobuf message indexes: {0}")]
    BadIndexes(&'static str),
}

/// A framed record split into its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Framed<'a> {
    pub schema_id: i32,
    /// The PROTOBUF message-index path; empty for other formats.
    pub message_indexes: Vec<i32>,
    pub payload: &'a [u8],
}

/// Reads the magic byte and schema id; returns the id and what follows.
pub fn parse_header(bytes: &[u8]) -> Result<(i32, &[u8]), WireError> {
    if bytes.len() < 5 {
        return Err(WireError::TooShort(bytes.len()));
    }
    if bytes[0] != MAGIC {
        return Err(WireError::BadMagic(bytes[0]));
    }
    let id = i32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
    Ok((id, &bytes[5..]))
}

/// Reads a PROTOBUF message-index path; returns it and the payload after it.
pub fn parse_message_indexes(bytes: &[u8]) -> Result<(Vec<i32>, &[u8]), WireError> {
    let (count, mut rest) = read_zigzag(bytes)?;
    if count == 0 {
        return Ok((vec![0], rest));
    }
    if !(1..=MAX_INDEXES).contains(&count) {
        return Err(WireError::BadIndexes("index count out of range"));
    }
    let mut indexes = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let (i, r) = read_zigzag(rest)?;
        if i < 0 {
            return Err(WireError::BadIndexes("negative index"));
        }
        indexes.push(i);
        rest = r;
    }
    Ok((indexes, rest))
}

/// Splits a framed record; `protobuf` says whether a message-index path follows the id
/// (the caller knows the schema's type from the id).
pub fn parse_framed(bytes: &[u8], protobuf: bool) -> Result<Framed<'_>, WireError> {
    let (schema_id, rest) = parse_header(bytes)?;
    let (message_indexes, payload) = if protobuf {
        parse_message_indexes(rest)?
    } else {
        (Vec::new(), rest)
    };
    Ok(Framed {
        schema_id,
        message_indexes,
        payload,
    })
}

/// Kafka's `ByteUtils.readVarint`: at most 5 bytes, zig-zag decoded.
fn read_zigzag(bytes: &[u8]) -> Result<(i32, &[u8]), WireError> {
    let mut raw: u32 = 0;
    for (i, b) in bytes.iter().enumerate().take(5) {
        raw |= u32::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            let value = ((raw >> 1) as i32) ^ -((raw & 1) as i32);
            return Ok((value, &bytes[i + 1..]));
        }
    }
    Err(WireError::BadIndexes(if bytes.len() < 5 {
        "truncated varint"
    } else {
        "varint longer than 5 bytes"
    }))
}

/// Writes a message-index path the way Confluent's serializers do (`[0]` as one 0 byte);
/// for tests and tools.
pub fn encode_message_indexes(indexes: &[i32]) -> Vec<u8> {
    fn zigzag(out: &mut Vec<u8>, v: i32) {
        let mut raw = ((v << 1) ^ (v >> 31)) as u32;
        while raw >= 0x80 {
            out.push((raw as u8) | 0x80);
            raw >>= 7;
        }
        out.push(raw as u8);
    }
    let mut out = Vec::new();
    if indexes == [0] {
        out.push(0);
        return out;
    }
    zigzag(&mut out, indexes.len() as i32);
    for i in indexes {
        zigzag(&mut out, *i);
    }
    out
}

/// Frames a payload: magic, id, optional message indexes.
pub fn frame(schema_id: i32, message_indexes: Option<&[i32]>, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![MAGIC];
    out.extend_from_slice(&schema_id.to_be_bytes());
    if let Some(ix) = message_indexes {
        out.extend(encode_message_indexes(ix));
    }
    out.extend_from_slice(payload);
    out
}
