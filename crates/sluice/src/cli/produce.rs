//! `sluice produce TOPIC`: lines from stdin (or `--file`) become records, batched per
//! partition for throughput and written with acks=all. Keyed records go where the Java
//! client's partitioner would put them; unkeyed ones fill one partition per batch (sticky).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use sluice_client::records::{partition_for_key, ProduceRecord};
use sluice_client::{Client, Compression};

use super::{block_on, now_ms, ClientArgs};

#[derive(Args, Debug)]
pub struct ProduceArgs {
    /// Topic to write to (created on first use if the broker auto-creates topics)
    topic: String,
    /// Split each line at the first SEP into key and value; lines without SEP get no key
    #[arg(short = 'K', long, value_name = "SEP")]
    key_separator: Option<String>,
    /// Write every record to this partition (default: by key hash, else sticky round-robin)
    #[arg(short, long)]
    partition: Option<i32>,
    /// Read lines from this file instead of stdin (shows a progress bar)
    #[arg(short, long, value_name = "PATH")]
    file: Option<PathBuf>,
    /// Compression codec for record batches
    #[arg(long, value_enum, default_value_t = Codec::None)]
    compression: Codec,
    /// Most records in one batch
    #[arg(long, default_value_t = 5000)]
    batch_records: usize,
    /// Most bytes in one batch, before compression
    #[arg(long, default_value_t = 1024 * 1024)]
    batch_bytes: usize,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(ValueEnum, Debug, Clone, Copy)]
enum Codec {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl From<Codec> for Compression {
    fn from(c: Codec) -> Self {
        match c {
            Codec::None => Compression::None,
            Codec::Gzip => Compression::Gzip,
            Codec::Snappy => Compression::Snappy,
            Codec::Lz4 => Compression::Lz4,
            Codec::Zstd => Compression::Zstd,
        }
    }
}

/// Records waiting to be sent, per partition.
struct Pending {
    batches: BTreeMap<i32, Vec<ProduceRecord>>,
    bytes: usize,
    records: usize,
}

pub fn run(args: ProduceArgs) -> anyhow::Result<()> {
    block_on(produce(args))
}

async fn produce(args: ProduceArgs) -> anyhow::Result<()> {
    let mut client = args.client.connect().await?;
    let partitions = partition_count(&mut client, &args.topic).await?;
    if let Some(p) = args.partition {
        if p < 0 || p >= partitions {
            anyhow::bail!(
                "topic {} has partitions 0..{}; --partition {p} does not exist",
                args.topic,
                partitions - 1
            );
        }
    }
    let (reader, progress): (Box<dyn BufRead>, Option<ProgressBar>) = match &args.file {
        Some(path) => {
            let f = std::fs::File::open(path)
                .with_context(|| format!("cannot open {}", path.display()))?;
            let len = f.metadata().map(|m| m.len()).unwrap_or(0);
            let bar = ProgressBar::new(len);
            bar.set_style(
                ProgressStyle::with_template(
                    "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            let reader = bar.wrap_read(f);
            (
                Box::new(BufReader::with_capacity(1 << 20, reader)),
                Some(bar),
            )
        }
        None => (
            Box::new(BufReader::with_capacity(1 << 20, std::io::stdin())),
            None,
        ),
    };
    let started = Instant::now();
    let compression: Compression = args.compression.into();
    let mut pending = Pending {
        batches: BTreeMap::new(),
        bytes: 0,
        records: 0,
    };
    let (mut total_records, mut total_bytes) = (0u64, 0u64);
    let mut sticky = (now_ms() as u64 % partitions as u64) as i32;
    let mut lines = reader.split(b'\n');
    loop {
        let line = match lines.next() {
            None => break,
            Some(line) => line.context("cannot read input")?,
        };
        let mut line = line;
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        let record = split_line(Bytes::from(line), args.key_separator.as_deref());
        total_bytes += record.approximate_size() as u64 - 16;
        let partition = match (args.partition, &record.key) {
            (Some(p), _) => p,
            (None, Some(k)) => partition_for_key(k, partitions),
            (None, None) => sticky,
        };
        pending.bytes += record.approximate_size();
        pending.records += 1;
        pending.batches.entry(partition).or_default().push(record);
        total_records += 1;
        if pending.records >= args.batch_records.max(1) || pending.bytes >= args.batch_bytes {
            flush(&mut client, &args.topic, &mut pending, compression).await?;
            sticky = (sticky + 1) % partitions;
        }
    }
    flush(&mut client, &args.topic, &mut pending, compression).await?;
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    let secs = started.elapsed().as_secs_f64();
    let rate = if secs > 0.0 {
        total_records as f64 / secs
    } else {
        0.0
    };
    if args.client.json() {
        println!(
            "{}",
            json!({ "topic": args.topic, "records": total_records, "bytes": total_bytes, "seconds": secs })
        );
    } else {
        eprintln!(
            "produced {total_records} records ({total_bytes} bytes) to {} in {secs:.2}s ({rate:.0} records/s)",
            args.topic
        );
    }
    Ok(())
}

fn split_line(line: Bytes, separator: Option<&str>) -> ProduceRecord {
    let split = separator.filter(|s| !s.is_empty()).and_then(|sep| {
        let sep = sep.as_bytes();
        line.windows(sep.len())
            .position(|w| w == sep)
            .map(|at| (line.slice(..at), line.slice(at + sep.len()..)))
    });
    match split {
        Some((k, v)) => ProduceRecord {
            key: Some(k),
            value: Some(v),
            headers: Vec::new(),
        },
        None => ProduceRecord {
            key: None,
            value: Some(line),
            headers: Vec::new(),
        },
    }
}

/// The topic's partition count. A topic the broker has just auto-created may report
/// LEADER_NOT_AVAILABLE for a moment, so that is retried briefly.
async fn partition_count(client: &mut Client, topic: &str) -> anyhow::Result<i32> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let md = client.metadata(Some(&[topic.to_owned()]), true).await?;
        let t = md
            .topics
            .into_iter()
            .find(|t| t.name == topic)
            .with_context(|| format!("the broker did not describe topic {topic}"))?;
        let retry = t.error_code == 5 || (t.error_code == 0 && t.partitions.is_empty());
        if retry && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        sluice_client::error::check(t.error_code, None, || format!("topic {topic}"))?;
        return i32::try_from(t.partitions.len())
            .ok()
            .filter(|n| *n > 0)
            .with_context(|| format!("topic {topic} has no partitions"));
    }
}

async fn flush(
    client: &mut Client,
    topic: &str,
    pending: &mut Pending,
    compression: Compression,
) -> anyhow::Result<()> {
    for (partition, records) in std::mem::take(&mut pending.batches) {
        client
            .produce(topic, partition, &records, compression, now_ms())
            .await?;
    }
    pending.bytes = 0;
    pending.records = 0;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_keys() {
        let r = split_line(Bytes::from_static(b"k1:v:1"), Some(":"));
        assert_eq!(r.key.as_deref(), Some(&b"k1"[..]));
        assert_eq!(r.value.as_deref(), Some(&b"v:1"[..]));
        let r = split_line(Bytes::from_static(b"novalue"), Some("::"));
        assert_eq!(r.key, None);
        assert_eq!(r.value.as_deref(), Some(&b"novalue"[..]));
        let r = split_line(Bytes::from_static(b"a::b"), Some("::"));
        assert_eq!(r.key.as_deref(), Some(&b"a"[..]));
        assert_eq!(r.value.as_deref(), Some(&b"b"[..]));
        let r = split_line(Bytes::from_static(b"a:b"), None);
        assert_eq!(r.key, None);
    }
}
