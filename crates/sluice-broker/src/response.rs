//! A response as a connection writes it: encoded bytes, and for a fetch the records themselves
//! as ranges of segment files, which go from the page cache to the socket with `sendfile` and
//! are never copied into the broker's memory (Kafka's `FileRecords.writeTo` does the same with
//! `transferTo`).
//!
//! How a file range gets into an encoded response: kafka-protocol encodes a records field from
//! a `Bytes`, writing its length prefix and then its body with one `put_slice`. A fetch stands a
//! one-byte placeholder in for each range ([`StoredRecords::add`]); the placeholder points into
//! [`MARKS`], a static array that no data slice can point into. [`ResponseBuf`], the buffer the
//! response is encoded into, recognises the placeholder by its address when it arrives in
//! `put_slice`, replaces the one-byte length prefix the encoder has just written with the
//! range's length, and puts the range where the byte would have gone. A unit test encodes a
//! fetch response at every supported version this way, so a change in how kafka-protocol
//! writes a records field fails the build's tests rather than the clients.

use std::io;

use bytes::buf::UninitSlice;
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::protocol::buf::ByteBufMut;
use sluice_storage::SegmentSlice;
use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::net::tcp::OwnedWriteHalf;

use crate::limits::MAX_FETCH_PARTITIONS;

/// One placeholder byte per file range a response can carry: a fetch serves at most
/// `MAX_FETCH_PARTITIONS` partitions, one range each.
static MARKS: [u8; MAX_FETCH_PARTITIONS] = [0; MAX_FETCH_PARTITIONS];

/// The file ranges a response's records fields stand for.
#[derive(Default)]
pub struct StoredRecords {
    ranges: Vec<SegmentSlice>,
}

impl StoredRecords {
    /// The records value that stands for `slice` in the response; `None` when the response
    /// already carries as many ranges as there are placeholders (the caller loads the bytes).
    pub fn add(&mut self, slice: SegmentSlice) -> Option<Bytes> {
        let mark = MARKS.get(self.ranges.len()..self.ranges.len() + 1)?;
        self.ranges.push(slice);
        Some(Bytes::from_static(mark))
    }

    /// The bytes a records value sends: a placeholder's range, else the value itself.
    pub fn len_of(&self, records: &[u8]) -> usize {
        self.range_of(records).map_or(records.len(), |r| r.len)
    }

    fn range_of(&self, value: &[u8]) -> Option<&SegmentSlice> {
        if value.len() != 1 {
            return None;
        }
        let at = (value.as_ptr() as usize).checked_sub(MARKS.as_ptr() as usize)?;
        self.ranges.get(at)
    }
}

/// One piece of a response on the wire.
pub enum Part {
    Bytes(Bytes),
    File(SegmentSlice),
}

/// A whole response: its pieces in order and their total length (the frame's size prefix).
pub struct Response {
    pub parts: Vec<Part>,
    pub len: usize,
}

/// The buffer a response is encoded into (see the module comment).
pub struct ResponseBuf {
    head: BytesMut,
    parts: Vec<Part>,
    len: usize,
    files: StoredRecords,
    /// The response's records fields carry compact (varint) length prefixes: flexible versions.
    compact: bool,
    error: Option<String>,
}

impl ResponseBuf {
    pub fn new(files: StoredRecords, compact: bool) -> ResponseBuf {
        ResponseBuf {
            head: BytesMut::with_capacity(256),
            parts: Vec::new(),
            len: 0,
            files,
            compact,
            error: None,
        }
    }

    /// Where a response without file ranges is encoded (kafka-protocol's `ResponseKind`
    /// encodes into a `BytesMut` only).
    pub fn bytes_mut(&mut self) -> &mut BytesMut {
        &mut self.head
    }

    pub fn finish(mut self) -> Result<Response, String> {
        if let Some(e) = self.error {
            return Err(e);
        }
        self.cut();
        Ok(Response {
            parts: self.parts,
            len: self.len,
        })
    }

    /// Ends the current run of encoded bytes.
    fn cut(&mut self) {
        if !self.head.is_empty() {
            let bytes = self.head.split().freeze();
            self.len += bytes.len();
            self.parts.push(Part::Bytes(bytes));
        }
    }

    /// Puts `range` where the encoder was about to put its one-byte placeholder.
    fn put_range(&mut self, range: SegmentSlice) {
        // What the encoder wrote as the placeholder's length: 1, as a compact unsigned varint
        // of length + 1, or as an INT32.
        let written: &[u8] = if self.compact { &[2] } else { &[0, 0, 0, 1] };
        if !self.head.ends_with(written) {
            self.error = Some("a records placeholder arrived without its length prefix".into());
            return;
        }
        self.head.truncate(self.head.len() - written.len());
        let framed = if self.compact {
            u32::try_from(range.len)
                .ok()
                .and_then(|n| n.checked_add(1))
                .map(|n| put_unsigned_varint(&mut self.head, n))
        } else {
            i32::try_from(range.len).ok().map(|n| self.head.put_i32(n))
        };
        if framed.is_none() {
            self.error = Some(format!("records of {} bytes cannot be framed", range.len));
            return;
        }
        self.cut();
        self.len += range.len;
        self.parts.push(Part::File(range));
    }
}

/// Kafka's UNSIGNED_VARINT: seven bits a byte, low first, the high bit set on all but the last.
fn put_unsigned_varint(buf: &mut BytesMut, mut n: u32) {
    while n >= 0x80 {
        buf.put_u8((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
    buf.put_u8(n as u8);
}

// SAFETY: every method hands on to the `BytesMut` that holds the bytes not yet cut, which
// upholds `BufMut`'s contract itself.
unsafe impl BufMut for ResponseBuf {
    fn remaining_mut(&self) -> usize {
        self.head.remaining_mut()
    }
    unsafe fn advance_mut(&mut self, cnt: usize) {
        // SAFETY: the caller's promise (`cnt` bytes of `chunk_mut` initialised) is about
        // `head`'s chunk, which is what `chunk_mut` returned.
        unsafe { self.head.advance_mut(cnt) }
    }
    fn chunk_mut(&mut self) -> &mut UninitSlice {
        self.head.chunk_mut()
    }
    fn put_slice(&mut self, src: &[u8]) {
        match self.files.range_of(src) {
            Some(range) => {
                let range = range.clone();
                self.put_range(range);
            }
            None => self.head.extend_from_slice(src),
        }
    }
}

/// Offsets address the bytes not yet cut (kafka-protocol seeks only inside what it is
/// encoding at the moment, to fill gaps it left; it leaves none in a response).
impl ByteBufMut for ResponseBuf {
    fn offset(&self) -> usize {
        self.head.len()
    }
    fn seek(&mut self, offset: usize) {
        self.head.resize(offset, 0);
    }
    fn range(&mut self, r: std::ops::Range<usize>) -> &mut [u8] {
        let end = r.end.min(self.head.len());
        &mut self.head[r.start.min(end)..end]
    }
}

/// Where a connection's responses go. A plain socket sends file ranges with `sendfile`, from
/// the page cache without copying; a TLS stream must encrypt every byte, so there the range is
/// read in pieces of [`TLS_FILE_CHUNK`] and written through it (Kafka's SSL transport copies
/// the same way).
pub trait FrameSink: tokio::io::AsyncWrite + Unpin + Send {
    fn send_file(
        &mut self,
        range: &SegmentSlice,
    ) -> impl std::future::Future<Output = io::Result<()>> + Send;
}

impl FrameSink for BufWriter<OwnedWriteHalf> {
    async fn send_file(&mut self, range: &SegmentSlice) -> io::Result<()> {
        self.flush().await?;
        send_file(self.get_ref().as_ref(), range).await
    }
}

/// Bytes of a segment file read at a time to be written through TLS.
pub const TLS_FILE_CHUNK: usize = 64 * 1024;

impl<S: tokio::io::AsyncWrite + Send> FrameSink for BufWriter<tokio::io::WriteHalf<S>> {
    async fn send_file(&mut self, range: &SegmentSlice) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        let mut chunk = vec![0u8; TLS_FILE_CHUNK.min(range.len)];
        let mut at = range.position;
        let mut left = range.len;
        while left > 0 {
            let n = chunk.len().min(left);
            // A page-cache read of at most 64 KiB, as the fetch path's header reads are.
            match range.file.read_at(&mut chunk[..n], at) {
                // As with sendfile: the frame's size is on the wire, a short file cannot be
                // made up.
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "segment file ended inside the range being sent",
                    ))
                }
                Ok(read) => {
                    self.write_all(&chunk[..read]).await?;
                    at += read as u64;
                    left -= read;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// Writes a response frame: its size, then its parts, the file ranges through
/// [`FrameSink::send_file`].
pub async fn write<W: FrameSink>(wr: &mut W, response: Response) -> io::Result<()> {
    let len = i32::try_from(response.len)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "response over 2 GiB"))?;
    wr.write_i32(len).await?;
    for part in response.parts {
        match part {
            Part::Bytes(b) => wr.write_all(&b).await?,
            Part::File(range) => wr.send_file(&range).await?,
        }
    }
    wr.flush().await
}

/// Writes one frame of already encoded bytes (the SASL exchange's answers) and flushes it.
pub async fn write_frame<W: tokio::io::AsyncWrite + Unpin>(
    wr: &mut W,
    frame: &[u8],
) -> io::Result<()> {
    let len = i32::try_from(frame.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "frame over 2 GiB"))?;
    wr.write_i32(len).await?;
    wr.write_all(frame).await?;
    wr.flush().await
}

/// Sends `range` of its segment file to the socket from the page cache.
#[cfg(target_os = "linux")]
async fn send_file(stream: &tokio::net::TcpStream, range: &SegmentSlice) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
    let mut offset = libc::off_t::try_from(range.position).map_err(|_| bad("range offset"))?;
    let mut left = range.len;
    while left > 0 {
        stream.writable().await?;
        let sent = stream.try_io(tokio::io::Interest::WRITABLE, || {
            // SAFETY: both descriptors stay open for the call (`stream` and `range.file` are
            // borrowed); the kernel reads the file and writes `offset`, a live local.
            let n = unsafe {
                libc::sendfile(
                    stream.as_raw_fd(),
                    range.file.as_raw_fd(),
                    &mut offset,
                    left,
                )
            };
            usize::try_from(n).map_err(|_| io::Error::last_os_error())
        });
        match sent {
            // The frame's size is already on the wire: a file cut short (truncated by a
            // replica's divergence after the read) cannot be made up, so the connection closes.
            Ok(0) => return Err(bad("segment file ended inside the range being sent")),
            Ok(n) => left -= n.min(left),
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock
                    || e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Elsewhere: read the range and write it.
#[cfg(not(target_os = "linux"))]
async fn send_file(stream: &tokio::net::TcpStream, range: &SegmentSlice) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; range.len];
    range.file.read_exact_at(&mut buf, range.position)?;
    let mut at = 0;
    while at < buf.len() {
        stream.writable().await?;
        match stream.try_write(&buf[at..]) {
            Ok(n) => at += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::fetch_response::{
        EpochEndOffset, FetchableTopicResponse, LeaderIdAndEpoch, NodeEndpoint, PartitionData,
    };
    use kafka_protocol::messages::{BrokerId, FetchResponse, TopicName};
    use kafka_protocol::protocol::{Encodable, StrBytes};
    use std::io::Write;
    use std::sync::Arc;

    /// The bytes a client receives: the parts in order, file ranges read from their files.
    fn on_the_wire(response: &Response) -> Vec<u8> {
        use std::os::unix::fs::FileExt;
        let mut out = Vec::new();
        for part in &response.parts {
            match part {
                Part::Bytes(b) => out.extend_from_slice(b),
                Part::File(r) => {
                    let mut buf = vec![0u8; r.len];
                    r.file.read_exact_at(&mut buf, r.position).unwrap();
                    out.extend(buf);
                }
            }
        }
        assert_eq!(out.len(), response.len);
        out
    }

    /// At every Fetch version Sluice serves, a response whose records stand for file ranges
    /// reaches the client byte for byte as kafka-protocol encodes the same response with the
    /// records in memory, beside partitions with in-memory, empty and null records, and with
    /// the tagged fields (diverging epoch, current leader, node endpoints) of the later versions.
    #[test]
    fn file_ranges_encode_as_the_records_they_stand_for() {
        let mut file = tempfile::tempfile().unwrap();
        let content: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
        file.write_all(&content).unwrap();
        let file = Arc::new(file);
        // Lengths around the varint boundaries (127/128, 16383/16384).
        let ranges = [
            (0u64, 1usize),
            (10, 126),
            (300, 127),
            (1000, 16_383),
            (2000, 60_000),
        ];
        for version in 4..=16i16 {
            let mut files = StoredRecords::default();
            let mut partitions_stored = Vec::new();
            let mut partitions_memory = Vec::new();
            for (i, &(position, len)) in ranges.iter().enumerate() {
                let slice = SegmentSlice {
                    file: file.clone(),
                    position,
                    len,
                };
                let placeholder = files.add(slice).unwrap();
                assert_eq!(files.len_of(&placeholder), len);
                let bytes = Bytes::copy_from_slice(&content[position as usize..][..len]);
                let mut base = PartitionData::default()
                    .with_partition_index(i as i32)
                    .with_high_watermark(1000 + i as i64);
                if version >= 12 {
                    base = base.with_current_leader(
                        LeaderIdAndEpoch::default()
                            .with_leader_id(BrokerId(3))
                            .with_leader_epoch(7),
                    );
                }
                partitions_stored.push(base.clone().with_records(Some(placeholder)));
                partitions_memory.push(base.with_records(Some(bytes)));
            }
            let mut diverged = PartitionData::default()
                .with_partition_index(92)
                .with_error_code(6)
                .with_records(None);
            if version >= 12 {
                diverged = diverged.with_diverging_epoch(
                    EpochEndOffset::default().with_epoch(2).with_end_offset(5),
                );
            }
            let others = vec![
                PartitionData::default()
                    .with_partition_index(90)
                    .with_records(Some(Bytes::from_static(b"in memory"))),
                PartitionData::default()
                    .with_partition_index(91)
                    .with_records(Some(Bytes::new())),
                diverged,
            ];
            partitions_stored.extend(others.clone());
            partitions_memory.extend(others);
            let response = |partitions| {
                let mut r = FetchResponse::default().with_responses(vec![
                    FetchableTopicResponse::default()
                        .with_topic(TopicName(StrBytes::from_static_str("t")))
                        .with_partitions(partitions),
                    FetchableTopicResponse::default()
                        .with_topic(TopicName(StrBytes::from_static_str("u")))
                        .with_partitions(vec![PartitionData::default().with_records(None)]),
                ]);
                if version >= 7 {
                    r = r.with_session_id(4);
                }
                if version >= 16 {
                    r = r.with_node_endpoints(vec![NodeEndpoint::default()
                        .with_node_id(BrokerId(3))
                        .with_host(StrBytes::from_static_str("localhost"))
                        .with_port(9092)]);
                }
                r
            };
            let mut expected = BytesMut::new();
            response(partitions_memory)
                .encode(&mut expected, version)
                .unwrap();
            let mut buf = ResponseBuf::new(files, version >= 12);
            response(partitions_stored)
                .encode(&mut buf, version)
                .unwrap();
            let sent = buf.finish().unwrap();
            let file_parts = sent
                .parts
                .iter()
                .filter(|p| matches!(p, Part::File(_)))
                .count();
            assert_eq!(file_parts, ranges.len(), "v{version}");
            assert_eq!(on_the_wire(&sent), expected.to_vec(), "v{version}");
        }
    }

    /// A one-byte value that only looks like a placeholder (same content, another address) is
    /// encoded as itself.
    #[test]
    fn only_placeholders_become_file_ranges() {
        let files = StoredRecords::default();
        assert_eq!(files.len_of(&[0u8]), 1);
        let mut buf = ResponseBuf::new(files, true);
        buf.put_slice(&[2]);
        buf.put_slice(&MARKS[..1]);
        let sent = buf.finish().unwrap();
        assert_eq!(on_the_wire(&sent), vec![2, 0]);
    }
}
