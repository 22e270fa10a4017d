//! The one place the broker decompresses or compresses record data (Kafka's codecs: gzip,
//! snappy in xerial framing, lz4 frames, zstd).
//!
//! Every decompression is streamed into a buffer that may not grow past a cap the caller
//! gives (the topic's `max.message.bytes`): a small batch that inflates without bound — a
//! decompression bomb — stops at the cap with [`DecompressError::TooLarge`] having used at
//! most the cap in memory. Nothing here trusts a size the input declares: snappy's block
//! lengths and zstd's frame content size are checked against the cap *before* allocating,
//! and zstd's window (the memory its decoder reserves) is limited to zstd's own default
//! limit, so a crafted frame is an error, never an allocation failure (which would abort).
//!
//! Pure functions, no IO: the callers (produce validation and recompression, ListOffsets,
//! dead letters) decide what an error means for the client.

use std::io::{Read, Write};

use crate::limits::ZSTD_WINDOW_LOG_MAX;

/// A record batch's compression codec (the low 3 bits of its attributes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Codec {
    pub fn from_id(id: i16) -> Option<Codec> {
        Some(match id {
            0 => Codec::None,
            1 => Codec::Gzip,
            2 => Codec::Snappy,
            3 => Codec::Lz4,
            4 => Codec::Zstd,
            _ => return None,
        })
    }

    pub fn id(self) -> i16 {
        match self {
            Codec::None => 0,
            Codec::Gzip => 1,
            Codec::Snappy => 2,
            Codec::Lz4 => 3,
            Codec::Zstd => 4,
        }
    }

    /// Kafka's name for the codec as a `compression.type` value.
    pub fn name(self) -> &'static str {
        match self {
            Codec::None => "uncompressed",
            Codec::Gzip => "gzip",
            Codec::Snappy => "snappy",
            Codec::Lz4 => "lz4",
            Codec::Zstd => "zstd",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecompressError {
    /// The data inflates past the cap (bytes).
    TooLarge(usize),
    /// Not a valid stream of the codec (or truncated).
    Corrupt(String),
}

impl std::fmt::Display for DecompressError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecompressError::TooLarge(cap) => write!(
                f,
                "records decompress to more than {cap} bytes (max.message.bytes)"
            ),
            DecompressError::Corrupt(why) => write!(f, "cannot decompress: {why}"),
        }
    }
}

/// Bytes read from a streaming decoder per step.
const CHUNK: usize = 32 * 1024;

fn corrupt(codec: Codec, e: impl std::fmt::Display) -> DecompressError {
    DecompressError::Corrupt(format!("{}: {e}", codec.name()))
}

/// Appends `n` more bytes' worth of room to `out` without letting its capacity pass `limit`
/// (Vec's doubling would otherwise reserve up to twice the cap).
fn reserve_capped(out: &mut Vec<u8>, n: usize, limit: usize) {
    let need = out.len().saturating_add(n);
    if need > out.capacity() {
        let target = out.capacity().saturating_mul(2).max(need).min(limit);
        out.reserve_exact(target.saturating_sub(out.len()));
    }
}

/// Drains a streaming decoder into `out`, failing as soon as more than `cap` bytes come out.
fn read_capped(
    codec: Codec,
    mut reader: impl Read,
    cap: usize,
    out: &mut Vec<u8>,
) -> Result<(), DecompressError> {
    let limit = out.len().saturating_add(cap);
    let mut chunk = [0u8; CHUNK];
    loop {
        let n = match reader.read(&mut chunk) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(corrupt(codec, e)),
        };
        let data = chunk.get(..n).unwrap_or_default();
        if out.len().saturating_add(n) > limit {
            return Err(DecompressError::TooLarge(cap));
        }
        reserve_capped(out, n, limit);
        out.extend_from_slice(data);
    }
}

/// xerial snappy-java's stream header (magic, version 1, compatible version 1), as Kafka writes.
const SNAPPY_MAGIC: &[u8; 16] = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01";
/// snappy-java's default block size (Kafka's `SnappyOutputStream`).
const SNAPPY_BLOCK: usize = 32 * 1024;

/// One raw snappy block appended to `out`; its declared length is checked against the room
/// left under `limit` before anything is allocated.
fn snappy_block(
    block: &[u8],
    limit: usize,
    cap: usize,
    out: &mut Vec<u8>,
) -> Result<(), DecompressError> {
    let len = snap::raw::decompress_len(block).map_err(|e| corrupt(Codec::Snappy, e))?;
    let start = out.len();
    let end = start
        .checked_add(len)
        .filter(|end| *end <= limit)
        .ok_or(DecompressError::TooLarge(cap))?;
    reserve_capped(out, len, limit);
    out.resize(end, 0);
    let dst = out.get_mut(start..).unwrap_or_default();
    let written = snap::raw::Decoder::new()
        .decompress(block, dst)
        .map_err(|e| corrupt(Codec::Snappy, e))?;
    out.truncate(start.saturating_add(written));
    Ok(())
}

fn snappy_decompress(input: &[u8], cap: usize, out: &mut Vec<u8>) -> Result<(), DecompressError> {
    let limit = out.len().saturating_add(cap);
    let Some(mut rest) = input.strip_prefix(SNAPPY_MAGIC.as_slice()) else {
        // No xerial header: one raw block, as snappy-java's reader falls back to.
        return snappy_block(input, limit, cap, out);
    };
    while !rest.is_empty() {
        let (len, tail) = rest
            .split_first_chunk::<4>()
            .ok_or_else(|| corrupt(Codec::Snappy, "truncated block length"))?;
        let len = usize::try_from(u32::from_be_bytes(*len))
            .map_err(|_| corrupt(Codec::Snappy, "block length"))?;
        let block = tail
            .get(..len)
            .ok_or_else(|| corrupt(Codec::Snappy, "block longer than the data"))?;
        snappy_block(block, limit, cap, out)?;
        rest = tail.get(len..).unwrap_or_default();
    }
    Ok(())
}

const ZSTD_MAGIC: u32 = 0xFD2F_B528;

/// What a zstd frame header declares: (content size if present, window size). `None` if the
/// input does not start with a zstd frame header (the decoder then reports the error).
fn zstd_frame_header(input: &[u8]) -> Option<(Option<u64>, u64)> {
    let (magic, rest) = input.split_first_chunk::<4>()?;
    if u32::from_le_bytes(*magic) != ZSTD_MAGIC {
        return None;
    }
    let (&fhd, mut rest) = rest.split_first()?;
    let single_segment = fhd & 0x20 != 0;
    let dict_id_len = [0usize, 1, 2, 4][usize::from(fhd & 0x03)];
    let fcs_len = match fhd >> 6 {
        0 if single_segment => 1,
        0 => 0,
        1 => 2,
        2 => 4,
        _ => 8,
    };
    let mut window = None;
    if !single_segment {
        let (&wd, tail) = rest.split_first()?;
        rest = tail;
        let exponent = u32::from(wd >> 3);
        let base = 1u64 << (10 + exponent);
        window = Some(base + (base / 8) * u64::from(wd & 0x07));
    }
    let fcs_bytes = rest.get(dict_id_len..dict_id_len + fcs_len)?;
    let mut le = [0u8; 8];
    le.get_mut(..fcs_len)?.copy_from_slice(fcs_bytes);
    let mut content = (fcs_len > 0).then(|| u64::from_le_bytes(le));
    if fcs_len == 2 {
        content = content.map(|c| c + 256);
    }
    // A single-segment frame's window is its content size.
    let window = window.or(content)?;
    Some((content, window))
}

fn zstd_decompress(input: &[u8], cap: usize, out: &mut Vec<u8>) -> Result<(), DecompressError> {
    if let Some((content, window)) = zstd_frame_header(input) {
        if content.is_some_and(|c| c > cap as u64) {
            return Err(DecompressError::TooLarge(cap));
        }
        if window > 1u64 << ZSTD_WINDOW_LOG_MAX {
            return Err(corrupt(
                Codec::Zstd,
                format!(
                    "frame window of {window} bytes is over the limit of 2^{ZSTD_WINDOW_LOG_MAX}"
                ),
            ));
        }
    }
    let mut decoder =
        zstd::stream::read::Decoder::with_buffer(input).map_err(|e| corrupt(Codec::Zstd, e))?;
    decoder
        .window_log_max(ZSTD_WINDOW_LOG_MAX)
        .map_err(|e| corrupt(Codec::Zstd, e))?;
    read_capped(Codec::Zstd, decoder, cap, out)
}

/// Appends the decompressed form of `input` (a batch's records section compressed with
/// `codec`) to `out`, or fails once more than `cap` bytes would come out. `out` never holds
/// more than its prior length plus `cap`.
pub fn decompress(
    codec: Codec,
    input: &[u8],
    cap: usize,
    out: &mut Vec<u8>,
) -> Result<(), DecompressError> {
    match codec {
        Codec::None => {
            if input.len() > cap {
                return Err(DecompressError::TooLarge(cap));
            }
            out.extend_from_slice(input);
            Ok(())
        }
        // Java's GZIPInputStream reads concatenated members; so does MultiGzDecoder.
        Codec::Gzip => read_capped(codec, flate2::read::MultiGzDecoder::new(input), cap, out),
        Codec::Snappy => snappy_decompress(input, cap, out),
        Codec::Lz4 => {
            let mut decoder = lz4::Decoder::new(input).map_err(|e| corrupt(codec, e))?;
            read_capped(codec, &mut decoder, cap, out)?;
            // A truncated frame reads as a short stream; the decoder knows it did not end.
            decoder.finish().1.map_err(|e| corrupt(codec, e))
        }
        Codec::Zstd => zstd_decompress(input, cap, out),
    }
}

/// Compression levels (KIP-390's topic configs). `None` is the codec's default as Kafka has it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Levels {
    /// `compression.gzip.level`: 1..=9, or -1 for zlib's default (6).
    pub gzip: i32,
    /// `compression.lz4.level`: 1..=17, default 9.
    pub lz4: i32,
    /// `compression.zstd.level`: -131072..=22, default 3.
    pub zstd: i32,
}

pub const GZIP_DEFAULT_LEVEL: i32 = -1;
pub const LZ4_DEFAULT_LEVEL: i32 = 9;
pub const ZSTD_DEFAULT_LEVEL: i32 = 3;

impl Levels {
    pub const DEFAULT: Levels = Levels {
        gzip: GZIP_DEFAULT_LEVEL,
        lz4: LZ4_DEFAULT_LEVEL,
        zstd: ZSTD_DEFAULT_LEVEL,
    };
}

fn compress_err(codec: Codec, e: impl std::fmt::Display) -> String {
    format!("{} compression failed: {e}", codec.name())
}

/// Appends `input` compressed with `codec` to `out`, in the framing Kafka's clients read:
/// gzip members, xerial-framed snappy in 32 KiB blocks, lz4 frames with independent 64 KiB
/// blocks and no checksums (Kafka's `Lz4BlockOutputStream`), zstd frames.
pub fn compress(
    codec: Codec,
    levels: Levels,
    input: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), String> {
    match codec {
        Codec::None => out.extend_from_slice(input),
        Codec::Gzip => {
            let level = match u32::try_from(levels.gzip) {
                Ok(l @ 1..=9) => flate2::Compression::new(l),
                _ => flate2::Compression::default(),
            };
            let mut e = flate2::write::GzEncoder::new(out, level);
            e.write_all(input).map_err(|e| compress_err(codec, e))?;
            e.finish().map_err(|e| compress_err(codec, e))?;
        }
        Codec::Snappy => {
            out.extend_from_slice(SNAPPY_MAGIC);
            let mut encoder = snap::raw::Encoder::new();
            let mut block = vec![0u8; snap::raw::max_compress_len(SNAPPY_BLOCK)];
            for piece in input.chunks(SNAPPY_BLOCK) {
                let n = encoder
                    .compress(piece, &mut block)
                    .map_err(|e| compress_err(codec, e))?;
                let len = u32::try_from(n).map_err(|e| compress_err(codec, e))?;
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(block.get(..n).unwrap_or_default());
            }
        }
        Codec::Lz4 => {
            // Kafka uses lz4's fast compressor at the default level, its high-compression
            // one (levels 3..=12 in liblz4, higher ones clamped) otherwise.
            let level = if levels.lz4 == LZ4_DEFAULT_LEVEL {
                0
            } else {
                u32::try_from(levels.lz4).unwrap_or(0)
            };
            let mut e = lz4::EncoderBuilder::new()
                .level(level)
                .block_size(lz4::BlockSize::Max64KB)
                .block_mode(lz4::BlockMode::Independent)
                .checksum(lz4::ContentChecksum::NoChecksum)
                .block_checksum(lz4::liblz4::BlockChecksum::NoBlockChecksum)
                .build(out)
                .map_err(|e| compress_err(codec, e))?;
            e.write_all(input).map_err(|e| compress_err(codec, e))?;
            let (_, result) = e.finish();
            result.map_err(|e| compress_err(codec, e))?;
        }
        Codec::Zstd => {
            let compressed =
                zstd::bulk::compress(input, levels.zstd).map_err(|e| compress_err(codec, e))?;
            out.extend_from_slice(&compressed);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Codec; 5] = [
        Codec::None,
        Codec::Gzip,
        Codec::Snappy,
        Codec::Lz4,
        Codec::Zstd,
    ];

    fn sample() -> Vec<u8> {
        (0..200_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect()
    }

    #[test]
    fn every_codec_round_trips() {
        let data = sample();
        for codec in ALL {
            for levels in [
                Levels::DEFAULT,
                Levels {
                    gzip: 9,
                    lz4: 17,
                    zstd: -5,
                },
            ] {
                let mut packed = Vec::new();
                compress(codec, levels, &data, &mut packed).unwrap();
                let mut back = vec![1, 2, 3];
                decompress(codec, &packed, data.len(), &mut back).unwrap();
                assert_eq!(&back[..3], &[1, 2, 3]);
                assert_eq!(&back[3..], &data[..], "{codec:?}");
            }
        }
    }

    #[test]
    fn a_bomb_stops_at_the_cap() {
        let zeros = vec![0u8; 20 << 20];
        let cap = 1 << 20;
        for codec in ALL {
            let mut packed = Vec::new();
            compress(codec, Levels::DEFAULT, &zeros, &mut packed).unwrap();
            let mut out = Vec::new();
            assert_eq!(
                decompress(codec, &packed, cap, &mut out),
                Err(DecompressError::TooLarge(cap)),
                "{codec:?}"
            );
            assert!(out.capacity() <= cap, "{codec:?}: {}", out.capacity());
            // Exactly at the cap is fine.
            let mut out = Vec::new();
            decompress(codec, &packed, zeros.len(), &mut out).unwrap();
            assert_eq!(out.len(), zeros.len());
        }
    }

    #[test]
    fn zstd_checks_what_the_frame_declares() {
        let packed = zstd::bulk::compress(&[7u8; 5000], 3).unwrap();
        assert_eq!(zstd_frame_header(&packed).map(|h| h.0), Some(Some(5000)));
        // Refused before decoding: the declared size alone is over the cap.
        let mut out = Vec::new();
        assert_eq!(
            decompress(Codec::Zstd, &packed, 4999, &mut out),
            Err(DecompressError::TooLarge(4999))
        );
        // A frame asking for a 2 GiB window (windowLog 31) is an error, not an allocation.
        let mut huge = ZSTD_MAGIC.to_le_bytes().to_vec();
        huge.extend_from_slice(&[0x00, (31 - 10) << 3, 0, 0, 0, 0, 0, 0]);
        assert!(matches!(
            decompress(Codec::Zstd, &huge, 1 << 20, &mut out),
            Err(DecompressError::Corrupt(_))
        ));
    }

    #[test]
    fn snappy_block_lengths_are_checked_before_allocating() {
        // A raw block whose preamble claims 4 GiB.
        let block = [0xff, 0xff, 0xff, 0xff, 0x0f, 0x00];
        let mut out = Vec::new();
        assert_eq!(
            decompress(Codec::Snappy, &block, 1 << 20, &mut out),
            Err(DecompressError::TooLarge(1 << 20))
        );
        assert_eq!(out.capacity(), 0);
    }

    #[test]
    fn garbage_and_truncation_are_errors() {
        let data = sample();
        for codec in [Codec::Gzip, Codec::Snappy, Codec::Lz4, Codec::Zstd] {
            let mut packed = Vec::new();
            compress(codec, Levels::DEFAULT, &data, &mut packed).unwrap();
            let cut = &packed[..packed.len() / 2];
            let mut out = Vec::new();
            assert!(
                decompress(codec, cut, 10 << 20, &mut out).is_err(),
                "{codec:?}"
            );
            let mut out = Vec::new();
            assert!(
                decompress(codec, &[1, 2, 3, 4, 5, 6, 7], 10 << 20, &mut out).is_err(),
                "{codec:?}"
            );
        }
    }
}
