//! End-to-end tests of the command-line tools: each test starts the real `sluice serve` on
//! free ports with a temporary data directory, runs the tools as subprocesses against it, and
//! checks what they print and how they exit.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_sluice");

/// A broker process, stopped by PID when dropped (SIGTERM, then SIGKILL after 5 s).
struct Broker {
    child: Child,
    addr: String,
    dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr").port()
}

/// Polls `cond` until it holds or `limit` passes; panics naming `what` on timeout.
fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Broker {
    fn start() -> Broker {
        let dir = tempfile::tempdir().expect("tempdir");
        let addr = format!("127.0.0.1:{}", free_port());
        let http = format!("127.0.0.1:{}", free_port());
        let log = std::fs::File::create(dir.path().join("broker.log")).expect("log file");
        let mut child = Command::new(BIN)
            .args([
                "serve",
                "--kafka-addr",
                &addr,
                "--http-addr",
                &http,
                "--data-dir",
            ])
            .arg(dir.path().join("data"))
            .args(["--initial-rebalance-delay-ms", "200"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start sluice serve");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if TcpStream::connect(&addr).is_ok() {
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("broker exited with {status}: {}", read_log(dir.path()));
            }
            assert!(
                Instant::now() < deadline,
                "broker did not listen on {addr}: {}",
                read_log(dir.path())
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Broker { child, addr, dir }
    }

    /// Runs `sluice ARGS` against this broker.
    fn run(&self, args: &[&str]) -> Output {
        self.run_with_stdin(args, "")
    }

    fn run_with_stdin(&self, args: &[&str], stdin: &str) -> Output {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run sluice");
        let mut input = child.stdin.take().expect("stdin");
        input.write_all(stdin.as_bytes()).expect("write stdin");
        drop(input);
        wait_output(child, Duration::from_secs(60))
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.args(args).env("SLUICE_BOOTSTRAP_SERVER", &self.addr);
        c
    }

    /// Runs and asserts success; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        self.ok_with_stdin(args, "")
    }

    fn ok_with_stdin(&self, args: &[&str], stdin: &str) -> String {
        let out = self.run_with_stdin(args, stdin);
        assert!(
            out.status.success(),
            "sluice {args:?} failed with {}:\nstdout: {}\nstderr: {}\nbroker log: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            read_log(self.dir.path())
        );
        String::from_utf8(out.stdout).expect("utf-8 stdout")
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.extend(["--output", "json"]);
        let out = self.ok(&a);
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("sluice {args:?} printed non-JSON ({e}): {out}"))
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read_log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("broker.log")).unwrap_or_default()
}

/// Waits for a child with a bound, killing it if the bound passes.
fn wait_output(mut child: Child, limit: Duration) -> Output {
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => return child.wait_with_output().expect("collect output"),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let out = child.wait_with_output().expect("collect output");
                panic!(
                    "command did not finish in {limit:?}; stdout: {} stderr: {}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
    }
}

fn lines(s: &str) -> Vec<&str> {
    s.lines().collect()
}

/// The group's committed offsets and lags from `group describe --output json`.
fn group_offsets(b: &Broker, group: &str) -> Vec<(String, i64, Option<i64>, Option<i64>)> {
    let v = b.json(&["group", "describe", group]);
    v["offsets"]
        .as_array()
        .expect("offsets array")
        .iter()
        .map(|o| {
            (
                o["topic"].as_str().unwrap_or_default().to_owned(),
                o["partition"].as_i64().unwrap_or(-1),
                o["committed_offset"].as_i64(),
                o["lag"].as_i64(),
            )
        })
        .collect()
}

fn total_committed(b: &Broker, group: &str) -> i64 {
    group_offsets(b, group)
        .iter()
        .map(|o| o.2.unwrap_or(0))
        .sum()
}

fn total_lag(b: &Broker, group: &str) -> i64 {
    group_offsets(b, group)
        .iter()
        .map(|o| o.3.unwrap_or(0))
        .sum()
}

/// `sluice group reset-offsets -g workers -t jobs` followed by `extra`.
fn reset_offsets<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["group", "reset-offsets", "-g", "workers", "-t", "jobs"];
    args.extend_from_slice(extra);
    args
}

#[test]
fn topic_create_list_describe_alter_delete() {
    let b = Broker::start();
    let out = b.ok(&[
        "topic",
        "create",
        "orders",
        "--partitions",
        "3",
        "--config",
        "retention.ms=86400000",
    ]);
    assert!(out.contains("created topic orders"), "{out}");

    let again = b.run(&["topic", "create", "orders"]);
    assert_eq!(again.status.code(), Some(1));
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(err.contains("TOPIC_ALREADY_EXISTS"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    b.ok(&["topic", "create", "orders", "--if-not-exists"]);

    let list = b.ok(&["topic", "list"]);
    assert!(
        list.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["orders", "3"]),
        "{list}"
    );
    let list = b.json(&["topic", "list"]);
    assert!(list
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["name"] == "orders" && t["partitions"] == 3));

    let text = b.ok(&["topic", "describe", "orders"]);
    assert!(text.contains("LOG-END-OFFSET"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("retention.ms") && l.contains("86400000")),
        "{text}"
    );
    let d = b.json(&["topic", "describe", "orders"]);
    assert_eq!(d["partitions"].as_array().unwrap().len(), 3);
    assert_eq!(d["partitions"][0]["log_start_offset"], 0);
    assert_eq!(d["partitions"][0]["log_end_offset"], 0);
    assert_eq!(d["configs"]["retention.ms"]["value"], "86400000");

    b.ok(&[
        "topic",
        "alter",
        "orders",
        "--config",
        "retention.ms=1000",
        "--config",
        "max.message.bytes=2000000",
    ]);
    let d = b.json(&["topic", "describe", "orders"]);
    assert_eq!(d["configs"]["retention.ms"]["value"], "1000");
    assert_eq!(d["configs"]["max.message.bytes"]["value"], "2000000");
    b.ok(&[
        "topic",
        "alter",
        "orders",
        "--delete-config",
        "retention.ms",
    ]);
    let d = b.json(&["topic", "describe", "orders"]);
    assert_ne!(d["configs"]["retention.ms"]["value"], "1000", "{d}");

    b.ok(&["topic", "add-partitions", "orders", "--partitions", "5"]);
    assert_eq!(
        b.json(&["topic", "describe", "orders"])["partitions"]
            .as_array()
            .unwrap()
            .len(),
        5
    );
    b.ok(&["topic", "alter", "orders", "--partitions", "6"]);
    assert_eq!(
        b.json(&["topic", "describe", "orders"])["partitions"]
            .as_array()
            .unwrap()
            .len(),
        6
    );

    b.ok(&["topic", "delete", "orders"]);
    wait_until("orders to disappear", Duration::from_secs(10), || {
        !b.ok(&["topic", "list"]).contains("orders")
    });
    let missing = b.run(&["topic", "describe", "orders"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("UNKNOWN_TOPIC_OR_PARTITION"));
}

#[test]
fn produce_then_consume_back() {
    let b = Broker::start();
    b.ok(&["topic", "create", "events"]);
    let produced = b.run_with_stdin(
        &["produce", "events", "--key-separator", ":"],
        "k1:v1\nk2:v2\nv3\n",
    );
    assert!(produced.status.success());
    let summary = String::from_utf8_lossy(&produced.stderr);
    assert!(summary.contains("produced 3 records"), "{summary}");

    let out = b.ok(&[
        "consume",
        "events",
        "--from-beginning",
        "--count",
        "3",
        "--format",
        "%k=%v@%o",
    ]);
    assert_eq!(lines(&out), ["k1=v1@0", "k2=v2@1", "=v3@2"]);
    let out = b.ok(&["consume", "events", "--from-beginning", "--count", "3"]);
    assert_eq!(lines(&out), ["v1", "v2", "v3"]);
    let out = b.ok(&[
        "consume",
        "events",
        "--offset",
        "1",
        "--count",
        "2",
        "--partition",
        "0",
    ]);
    assert_eq!(lines(&out), ["v2", "v3"]);

    let out = b.ok(&[
        "consume",
        "events",
        "--from-beginning",
        "--count",
        "3",
        "--output",
        "json",
    ]);
    let records: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON record"))
        .collect();
    assert_eq!(records.len(), 3);
    assert_eq!(records[0]["key"], "k1");
    assert_eq!(records[0]["value"], "v1");
    assert_eq!(records[2]["key"], Value::Null);
    assert_eq!(records[2]["offset"], 2);

    // A file, compressed, into a topic that the broker auto-creates, spread over partitions.
    let path = b.dir.path().join("input.txt");
    let body: String = (0..1000).map(|i| format!("key{i}|value {i}\n")).collect();
    std::fs::write(&path, body).unwrap();
    b.ok(&["topic", "create", "bulk", "--partitions", "4"]);
    b.ok(&[
        "produce",
        "bulk",
        "--file",
        path.to_str().unwrap(),
        "--key-separator",
        "|",
        "--compression",
        "lz4",
    ]);
    let d = b.json(&["topic", "describe", "bulk"]);
    let ends: Vec<i64> = d["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["log_end_offset"].as_i64().unwrap())
        .collect();
    assert_eq!(ends.iter().sum::<i64>(), 1000);
    assert!(
        ends.iter().filter(|e| **e > 0).count() > 1,
        "keys spread over partitions: {ends:?}"
    );
    let out = b.ok(&[
        "consume",
        "bulk",
        "--from-beginning",
        "--count",
        "1000",
        "--format",
        "%k",
    ]);
    let mut keys: Vec<&str> = out.lines().collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 1000);

    // Waits for new records from the end when no start is given.
    let consumer = b
        .command(&["consume", "events", "--count", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Produce until the consumer (which starts at the end) has seen one record.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut consumer = Some(consumer);
    let mut seen = None;
    while seen.is_none() {
        assert!(
            Instant::now() < deadline,
            "consumer from latest saw nothing"
        );
        b.ok_with_stdin(&["produce", "events"], "late\n");
        std::thread::sleep(Duration::from_millis(200));
        if let Some(c) = consumer.as_mut() {
            if let Ok(Some(_)) = c.try_wait() {
                seen = consumer.take().map(|c| c.wait_with_output().unwrap());
            }
        }
    }
    let out = seen.unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "late\n");
}

#[test]
fn groups_commit_describe_lag_and_reset() {
    let b = Broker::start();
    b.ok(&["topic", "create", "jobs", "--partitions", "2"]);
    let input: String = (0..10).map(|i| format!("k{i}:job{i}\n")).collect();
    b.ok_with_stdin(&["produce", "jobs", "-K", ":"], &input);

    let out = b.ok(&[
        "consume",
        "jobs",
        "--group",
        "workers",
        "--from-beginning",
        "--count",
        "10",
    ]);
    assert_eq!(out.lines().count(), 10);
    assert_eq!(total_committed(&b, "workers"), 10);
    assert_eq!(total_lag(&b, "workers"), 0);
    let text = b.ok(&["group", "describe", "workers"]);
    assert!(
        text.contains("CURRENT-OFFSET") && text.contains("LAG"),
        "{text}"
    );
    assert!(b.ok(&["group", "list"]).contains("workers"));
    let groups = b.json(&["group", "list"]);
    assert!(groups
        .as_array()
        .unwrap()
        .iter()
        .any(|g| g["group"] == "workers"));

    // More records: lag grows, and a consumer resumes from the committed offsets.
    b.ok_with_stdin(&["produce", "jobs", "-K", ":"], "a:x1\nb:x2\nc:x3\nd:x4\n");
    assert_eq!(total_lag(&b, "workers"), 4);
    let out = b.ok(&["consume", "jobs", "--group", "workers", "--count", "4"]);
    let mut got: Vec<&str> = out.lines().collect();
    got.sort();
    assert_eq!(got, ["x1", "x2", "x3", "x4"]);
    assert_eq!(total_lag(&b, "workers"), 0);
    assert_eq!(total_committed(&b, "workers"), 14);

    // Dry run: prints the plan, changes nothing.
    let plan = b.ok(&[
        "group",
        "reset-offsets",
        "--group",
        "workers",
        "--topic",
        "jobs",
        "--to-earliest",
    ]);
    assert!(plan.contains("NEW-OFFSET"), "{plan}");
    let rows: Vec<Vec<&str>> = plan
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), 2);
    assert!(
        rows.iter()
            .all(|r| r[0] == "workers" && r[1] == "jobs" && r[4] == "0"),
        "{plan}"
    );
    assert_eq!(total_committed(&b, "workers"), 14);

    // Execute: a consumer replays everything.
    b.ok(&[
        "group",
        "reset-offsets",
        "--group",
        "workers",
        "--topic",
        "jobs",
        "--to-earliest",
        "--execute",
    ]);
    assert_eq!(total_committed(&b, "workers"), 0);
    assert_eq!(total_lag(&b, "workers"), 14);
    let out = b.ok(&["consume", "jobs", "--group", "workers", "--count", "14"]);
    assert_eq!(out.lines().count(), 14);
    assert_eq!(total_lag(&b, "workers"), 0);

    // --to-offset clamps to each partition's end; --shift-by moves from the committed offset.
    let ends: Vec<i64> = group_offsets(&b, "workers")
        .iter()
        .map(|o| o.2.unwrap())
        .collect();
    b.ok(&reset_offsets(&["--to-offset", "1", "--execute"]));
    assert!(group_offsets(&b, "workers").iter().all(|o| o.2 == Some(1)));
    b.ok(&reset_offsets(&["--shift-by", "2", "--execute"]));
    let shifted: Vec<i64> = group_offsets(&b, "workers")
        .iter()
        .map(|o| o.2.unwrap())
        .collect();
    let expect: Vec<i64> = ends.iter().map(|e| (*e).min(3)).collect();
    assert_eq!(shifted, expect);
    b.ok(&reset_offsets(&["--shift-by", "-100", "--execute"]));
    assert_eq!(total_committed(&b, "workers"), 0);

    // --to-datetime: a time before every record is the start; after every record, the end.
    let v = b.json(&reset_offsets(&[
        "--to-datetime",
        "2999-01-01T00:00:00Z",
        "--execute",
    ]));
    assert_eq!(v["executed"], true);
    assert_eq!(total_lag(&b, "workers"), 0);
    b.ok(&reset_offsets(&[
        "--to-datetime",
        "2000-01-01T00:00:00+02:00",
        "--execute",
    ]));
    assert_eq!(total_committed(&b, "workers"), 0);
    b.ok(&reset_offsets(&["--to-latest", "--execute"]));
    assert_eq!(total_lag(&b, "workers"), 0);

    let bad = b.run(&reset_offsets(&["--to-datetime", "yesterday"]));
    assert_eq!(bad.status.code(), Some(2));

    b.ok(&["group", "delete", "workers"]);
    assert!(!b.ok(&["group", "list"]).contains("workers"));
}

#[test]
fn reset_is_refused_while_the_group_has_members_and_sigterm_commits() {
    let b = Broker::start();
    b.ok(&["topic", "create", "live"]);
    b.ok_with_stdin(&["produce", "live"], "a\nb\nc\n");
    let printed = b.dir.path().join("consumer.out");
    let consumer = b
        .command(&["consume", "live", "--group", "busy", "--from-beginning"])
        .stdout(std::fs::File::create(&printed).unwrap())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until(
        "the consumer to join and print",
        Duration::from_secs(20),
        || {
            // Until the consumer has joined, the group does not exist and describe fails.
            let out = b.run(&["group", "describe", "busy", "--output", "json"]);
            let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
            v["members"].as_array().is_some_and(|m| m.len() == 1)
                && v["state"] == "Stable"
                && std::fs::read_to_string(&printed).unwrap_or_default() == "a\nb\nc\n"
        },
    );
    let refused = b.run(&[
        "group",
        "reset-offsets",
        "-g",
        "busy",
        "-t",
        "live",
        "--to-earliest",
        "--execute",
    ]);
    assert_eq!(refused.status.code(), Some(1));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("active member"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    let del = b.run(&["group", "delete", "busy"]);
    assert_eq!(del.status.code(), Some(1));

    // SIGTERM: the consumer commits what it printed and leaves.
    let pid = consumer.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let out = wait_output(consumer, Duration::from_secs(20));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read_to_string(&printed).unwrap(), "a\nb\nc\n");
    assert_eq!(total_committed(&b, "busy"), 3);
    let v = b.json(&["group", "describe", "busy"]);
    assert_eq!(v["members"].as_array().map(Vec::len), Some(0), "{v}");
}

#[test]
fn errors_are_one_line_with_the_right_exit_code() {
    let port = free_port();
    let out = Command::new(BIN)
        .args([
            "topic",
            "list",
            "--bootstrap-server",
            &format!("127.0.0.1:{port}"),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        err.starts_with("error: cannot connect to 127.0.0.1:"),
        "{err}"
    );
    assert!(
        err.contains("connection refused") && err.contains("sluice serve"),
        "{err}"
    );

    let out = Command::new(BIN)
        .args(["topic", "list", "--no-such-flag"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(BIN)
        .args(["group", "reset-offsets", "-g", "g", "-t", "t"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "a reset strategy is required");
    let out = Command::new(BIN)
        .args(["consume", "t", "--group", "g", "--partition", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// A record to write with [`produce_with_headers`]: key, value, CreateTime, headers.
type TestRecord<'a> = (&'a str, &'a str, i64, Vec<(&'a str, String)>);

/// Writes records to `topic` partition 0 as the broker writes dead letters: `(key, value,
/// CreateTime, headers)` each.
fn produce_with_headers(b: &Broker, topic: &str, records: Vec<TestRecord<'_>>) {
    use sluice_client::records::ProduceRecord;
    let records: Vec<(i64, ProduceRecord)> = records
        .into_iter()
        .map(|(k, v, ts, hs)| {
            (
                ts,
                ProduceRecord {
                    key: Some(bytes::Bytes::from(k.to_owned())),
                    value: Some(bytes::Bytes::from(v.to_owned())),
                    headers: hs
                        .into_iter()
                        .map(|(k, v)| (k.to_owned(), Some(bytes::Bytes::from(v))))
                        .collect(),
                },
            )
        })
        .collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let mut c = sluice_client::Client::connect(sluice_client::ClientConfig::new(&b.addr))
            .await
            .expect("connect");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            // The topic was just created: its leader may take a moment to be known.
            match c
                .produce_timed(topic, 0, &records, sluice_client::Compression::None)
                .await
            {
                Ok(_) => break,
                Err(e) if e.is_retriable() && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                Err(e) => panic!("produce to {topic}: {e}"),
            }
        }
    });
}

/// The dead-letter headers of a record from `origin` partition/offset, dead-lettered at `at`.
fn dlq_headers(origin: &str, partition: i32, offset: i64, at: i64) -> Vec<(&'static str, String)> {
    vec![
        ("trace", format!("t{offset}")),
        ("__dlq.errors.topic", origin.to_owned()),
        ("__dlq.errors.partition", partition.to_string()),
        ("__dlq.errors.offset", offset.to_string()),
        ("__dlq.errors.group", "workers".into()),
        ("__dlq.errors.delivery.count", "5".into()),
        ("__dlq.errors.reason", "delivery_limit".into()),
        ("__dlq.errors.timestamp", at.to_string()),
    ]
}

fn dlq_depth(b: &Broker, topic: &str) -> i64 {
    let v = b.json(&["dlq", "list"]);
    v.as_array()
        .expect("list is an array")
        .iter()
        .find(|t| t["topic"] == topic)
        .unwrap_or_else(|| panic!("{topic} is not listed: {v}"))["depth"]
        .as_i64()
        .expect("depth")
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[test]
fn dlq_list_show_requeue_discard() {
    let b = Broker::start();
    b.ok(&["topic", "create", "orders", "--partitions", "2"]);
    b.ok(&["topic", "create", "dlq.workers"]);
    let now = now_ms();
    let created = now - 3_600_000;
    let dead_at = now - 90_000;
    // Offsets 0..=3: dead letters from orders (partition 0 or 1); offset 4: no origin headers.
    let mut records: Vec<TestRecord> = (0..4)
        .map(|i| {
            (
                ["k0", "k1", "k2", "k3"][i as usize],
                ["v0", "v1\nsecond line", "v2", "v3"][i as usize],
                created + i,
                dlq_headers("orders", (i % 2) as i32, 10 + i, dead_at + i),
            )
        })
        .collect();
    records.push(("stray", "no origin", created, Vec::new()));
    produce_with_headers(&b, "dlq.workers", records);

    // list: the topic, its group (from the name), depth and the oldest age.
    let v = b.json(&["dlq", "list"]);
    let row = &v.as_array().expect("array")[0];
    assert_eq!(row["topic"], "dlq.workers", "{v}");
    assert_eq!(row["group"], "workers", "{v}");
    assert_eq!(row["depth"], 5, "{v}");
    assert!(row["oldest_age_ms"].as_i64().unwrap_or(0) >= 90_000, "{v}");
    let text = b.ok(&["dlq", "list"]);
    assert_eq!(
        lines(&text)[0].split_whitespace().collect::<Vec<_>>(),
        ["TOPIC", "GROUP", "DEPTH", "HANDLED", "OLDEST-AGE"]
    );
    let cells: Vec<&str> = lines(&text)[1].split_whitespace().collect();
    assert_eq!(cells[..4], ["dlq.workers", "workers", "5", "0"], "{text}");
    assert!(cells[4].starts_with("1m"), "age of 90 s: {text}");

    // show: origins, reasons, printable values.
    let v = b.json(&["dlq", "show", "--group", "workers"]);
    let letters = v["dead_letters"].as_array().expect("dead_letters");
    assert_eq!(letters.len(), 5, "{v}");
    assert_eq!(letters[1]["origin"]["topic"], "orders");
    assert_eq!(letters[1]["origin"]["partition"], 1);
    assert_eq!(letters[1]["origin"]["offset"], 11);
    assert_eq!(letters[1]["reason"], "delivery_limit");
    assert_eq!(letters[1]["delivery_count"], 5);
    assert_eq!(letters[1]["value"], "v1\nsecond line", "full in JSON");
    assert_eq!(letters[1]["headers"]["trace"], "t11");
    assert!(letters[4]["origin"].is_null());
    let text = b.ok(&["dlq", "show", "-g", "workers", "--limit", "2"]);
    assert_eq!(lines(&text).len(), 3, "{text}");
    assert!(
        text.contains("orders:1:11") && text.contains("v1\\nsecond line"),
        "{text}"
    );

    // requeue one: back to orders-1 with key, value, timestamp and headers, once only.
    let v = b.json(&["dlq", "requeue", "-g", "workers", "--offset", "1"]);
    assert_eq!(v["requeued"], 1, "{v}");
    let out = b.ok(&[
        "consume",
        "orders",
        "-p",
        "1",
        "--from-beginning",
        "-c",
        "1",
        "--output",
        "json",
    ]);
    let r: Value = serde_json::from_str(out.trim()).expect("json record");
    assert_eq!(r["key"], "k1");
    assert_eq!(r["value"], "v1\nsecond line");
    assert_eq!(r["timestamp"], created + 1, "the original CreateTime");
    assert_eq!(r["headers"]["trace"], "t11");
    assert_eq!(r["headers"]["__dlq.requeued.from"], "dlq.workers:0:1");
    assert!(r["headers"]["__dlq.errors.topic"].is_null(), "{r}");
    let text = b.ok(&["dlq", "requeue", "-g", "workers", "--offset", "1"]);
    assert!(
        text.contains("nothing to requeue") && text.contains("already handled"),
        "{text}"
    );
    assert_eq!(dlq_depth(&b, "dlq.workers"), 4);

    // An offset that is not in the DLQ, or has no origin: an error naming it, nothing written.
    let out = b.run(&["dlq", "requeue", "-g", "workers", "--offset", "0,9"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("offset 9 is not in dlq.workers-0"), "{err}");
    let out = b.run(&["dlq", "requeue", "-g", "workers", "--offset", "4"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("dead letter 4 has no origin headers"), "{err}");
    assert_eq!(dlq_depth(&b, "dlq.workers"), 4);

    // discard the stray one; show --all marks the handled ones.
    let v = b.json(&["dlq", "discard", "-g", "workers", "--offset", "4"]);
    assert_eq!(v["discarded"], 1, "{v}");
    let v = b.json(&["dlq", "show", "-g", "workers", "--all"]);
    let handled: Vec<bool> = v["dead_letters"]
        .as_array()
        .expect("dead_letters")
        .iter()
        .map(|l| l["handled"].as_bool().unwrap_or(false))
        .collect();
    assert_eq!(handled, [false, true, false, false, true], "{v}");
    assert_eq!(
        b.json(&["dlq", "show", "-g", "workers"])["dead_letters"]
            .as_array()
            .map(Vec::len),
        Some(3)
    );

    // requeue --all: the other three, then nothing.
    let text = b.ok(&["dlq", "requeue", "-g", "workers", "--all"]);
    assert!(
        text.starts_with(
            "requeued 3 dead letters from dlq.workers to orders (3); skipped 2 already handled"
        ),
        "{text}"
    );
    let v = b.json(&["dlq", "requeue", "-g", "workers", "--all"]);
    assert_eq!(v["requeued"], 0, "{v}");
    assert_eq!(v["skipped_already_handled"], 5, "{v}");
    assert_eq!(dlq_depth(&b, "dlq.workers"), 0);
    let out = b.ok(&[
        "consume",
        "orders",
        "--from-beginning",
        "-c",
        "4",
        "-f",
        "%p %k %h",
    ]);
    let mut got: Vec<&str> = lines(&out);
    got.sort();
    assert_eq!(got.len(), 4, "{out}");
    assert!(
        got[0].starts_with("0 k0 trace=t10,__dlq.requeued.from=dlq.workers:0:0"),
        "{out}"
    );
    // The bookkeeping is an ordinary consumer group: no lag left.
    assert_eq!(total_lag(&b, "sluice-dlq"), 0);
}

#[test]
fn dlq_argument_errors() {
    let run = |args: &[&str]| Command::new(BIN).args(args).output().expect("run sluice");
    for args in [
        &["dlq", "show"][..],
        &["dlq", "show", "--group", "g", "--topic", "t"],
        &["dlq", "requeue", "--group", "g"],
        &["dlq", "requeue", "--group", "g", "--all", "--offset", "1"],
        &["dlq", "discard", "--topic", "t"],
        &["dlq", "discard", "--topic", "t", "--offset", "x"],
        &["dlq", "discard", "--topic", "t", "--offset", "5-3"],
    ] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.starts_with("error: "), "{args:?}: {err}");
    }
    let port = free_port();
    let out = run(&[
        "dlq",
        "list",
        "--bootstrap-server",
        &format!("127.0.0.1:{port}"),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");

    let b = Broker::start();
    let out = b.run(&["dlq", "show", "--group", "nobody"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("DLQ topic dlq.nobody does not exist"), "{err}");
}

/// The share-group admin APIs that no installed client library exposes (confluent-kafka 2.16
/// has no ShareGroupDescribe or share-group offset admin), driven over the Kafka protocol:
/// a member joins and fetches (creating the share-partition), then ShareGroupDescribe,
/// DescribeShareGroupOffsets, AlterShareGroupOffsets and DeleteShareGroupOffsets, including
/// their refusals while the group has members.
#[test]
fn share_group_admin_apis_over_the_protocol() {
    use kafka_protocol::messages::alter_share_group_offsets_request::{
        AlterShareGroupOffsetsRequestPartition, AlterShareGroupOffsetsRequestTopic,
    };
    use kafka_protocol::messages::delete_share_group_offsets_request::DeleteShareGroupOffsetsRequestTopic;
    use kafka_protocol::messages::describe_share_group_offsets_request::DescribeShareGroupOffsetsRequestGroup;
    use kafka_protocol::messages::share_fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::StrBytes;

    let b = Broker::start();
    let topic = "share-admin";
    let group = "share-admin-g";
    b.ok(&["topic", "create", topic]);
    // One batch per record: a share fetch hands out whole stored batches (batch-aligned
    // acquisition), so the fetch of two records below gets exactly two.
    for _ in 0..5 {
        produce_with_headers(&b, topic, vec![("k", "job", now_ms(), vec![])]);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let mut c = sluice_client::Client::connect(sluice_client::ClientConfig::new(&b.addr))
            .await
            .expect("connect");
        let s = |t: &str| StrBytes::from_string(t.to_string());
        let member = "m-1";
        let offsets_of = |resp: &DescribeShareGroupOffsetsResponse| -> Vec<(i32, i64, i16)> {
            resp.groups[0]
                .topics
                .iter()
                .flat_map(|t| {
                    t.partitions
                        .iter()
                        .map(|p| (p.partition_index, p.start_offset, p.error_code))
                })
                .collect()
        };
        // Earliest, so the fetch below acquires the five records.
        let alter_cfg = IncrementalAlterConfigsRequest::default().with_resources(vec![
            incremental_alter_configs_request::AlterConfigsResource::default()
                .with_resource_type(32)
                .with_resource_name(s(group))
                .with_configs(vec![
                    incremental_alter_configs_request::AlterableConfig::default()
                        .with_name(s("share.auto.offset.reset"))
                        .with_config_operation(0)
                        .with_value(Some(s("earliest"))),
                ]),
        ]);
        let r = c.send(&b.addr, &alter_cfg).await.expect("alter configs");
        assert_eq!(
            r.responses[0].error_code, 0,
            "{:?}",
            r.responses[0].error_message
        );

        let hb = ShareGroupHeartbeatRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_member_id(s(member))
            .with_member_epoch(0)
            .with_subscribed_topic_names(Some(vec![TopicName(s(topic))]));
        let r = c.send(&b.addr, &hb).await.expect("heartbeat");
        assert_eq!(r.error_code, 0, "{:?}", r.error_message);
        let epoch = r.member_epoch;
        let assigned = r.assignment.expect("assignment").topic_partitions;
        assert_eq!(assigned[0].partitions, vec![0]);
        let topic_id = assigned[0].topic_id;

        let fetch = ShareFetchRequest::default()
            .with_group_id(Some(GroupId(s(group))))
            .with_member_id(Some(s(member)))
            .with_share_session_epoch(0)
            .with_max_wait_ms(2000)
            .with_max_bytes(1 << 20)
            .with_max_records(2)
            .with_batch_size(2)
            .with_topics(vec![FetchTopic::default()
                .with_topic_id(topic_id)
                .with_partitions(vec![
                    FetchPartition::default().with_partition_index(0)
                ])]);
        let r = c.send(&b.addr, &fetch).await.expect("share fetch");
        assert_eq!(r.error_code, 0, "{:?}", r.error_message);
        let acquired = &r.responses[0].partitions[0].acquired_records;
        assert_eq!(
            (
                acquired[0].first_offset,
                acquired[0].last_offset,
                acquired[0].delivery_count
            ),
            (0, 1, 1)
        );

        // A wrong session epoch is refused; then accept both records (epoch 1).
        let ack = |epoch: i32, types: Vec<i8>| {
            ShareAcknowledgeRequest::default()
                .with_group_id(Some(GroupId(s(group))))
                .with_member_id(Some(s(member)))
                .with_share_session_epoch(epoch)
                .with_topics(vec![share_acknowledge_request::AcknowledgeTopic::default()
                    .with_topic_id(topic_id)
                    .with_partitions(vec![
                        share_acknowledge_request::AcknowledgePartition::default()
                            .with_partition_index(0)
                            .with_acknowledgement_batches(vec![
                                share_acknowledge_request::AcknowledgementBatch::default()
                                    .with_first_offset(0)
                                    .with_last_offset(1)
                                    .with_acknowledge_types(types),
                            ]),
                    ])])
        };
        let r = c.send(&b.addr, &ack(7, vec![1])).await.expect("ack");
        assert_eq!(r.error_code, 123, "INVALID_SHARE_SESSION_EPOCH");
        let r = c.send(&b.addr, &ack(1, vec![1])).await.expect("ack");
        assert_eq!(r.error_code, 0);
        assert_eq!(r.responses[0].partitions[0].error_code, 0);
        // Acknowledging again: the records are no longer acquired.
        let r = c.send(&b.addr, &ack(2, vec![1])).await.expect("ack");
        assert_eq!(
            r.responses[0].partitions[0].error_code, 121,
            "INVALID_RECORD_STATE"
        );

        let describe = ShareGroupDescribeRequest::default().with_group_ids(vec![GroupId(s(group))]);
        let r = c.send(&b.addr, &describe).await.expect("describe");
        let g = &r.groups[0];
        assert_eq!(g.error_code, 0);
        assert_eq!(g.group_state.as_str(), "Stable");
        assert_eq!(g.members.len(), 1);
        assert_eq!(g.members[0].member_id.as_str(), member);
        assert_eq!(
            g.members[0].assignment.topic_partitions[0]
                .topic_name
                .0
                .as_str(),
            topic
        );

        let describe_offsets = DescribeShareGroupOffsetsRequest::default().with_groups(vec![
            DescribeShareGroupOffsetsRequestGroup::default()
                .with_group_id(GroupId(s(group)))
                // null: every topic-partition the group has state for
                .with_topics(None),
        ]);
        let r = c
            .send(&b.addr, &describe_offsets)
            .await
            .expect("describe offsets");
        assert_eq!(
            offsets_of(&r),
            vec![(0, 2, 0)],
            "records 0 and 1 are done: {r:?}"
        );

        let alter = AlterShareGroupOffsetsRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_topics(vec![AlterShareGroupOffsetsRequestTopic::default()
                .with_topic_name(TopicName(s(topic)))
                .with_partitions(vec![
                    AlterShareGroupOffsetsRequestPartition::default()
                        .with_partition_index(0)
                        .with_start_offset(4),
                ])]);
        let r = c.send(&b.addr, &alter).await.expect("alter offsets");
        assert_eq!(
            r.error_code, 68,
            "NON_EMPTY_GROUP while a member is in the group"
        );

        let leave = hb
            .clone()
            .with_member_epoch(-1)
            .with_subscribed_topic_names(None);
        let r = c.send(&b.addr, &leave).await.expect("leave");
        assert_eq!((r.error_code, r.member_epoch), (0, -1));
        assert!(epoch > 0);

        let r = c.send(&b.addr, &alter).await.expect("alter offsets");
        assert_eq!(r.error_code, 0, "{:?}", r.error_message);
        assert_eq!(r.responses[0].partitions[0].error_code, 0);
        let r = c
            .send(&b.addr, &describe_offsets)
            .await
            .expect("describe offsets");
        assert_eq!(offsets_of(&r), vec![(0, 4, 0)]);

        let delete = DeleteShareGroupOffsetsRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_topics(vec![
                DeleteShareGroupOffsetsRequestTopic::default().with_topic_name(TopicName(s(topic)))
            ]);
        let r = c.send(&b.addr, &delete).await.expect("delete offsets");
        assert_eq!((r.error_code, r.responses[0].error_code), (0, 0));
        let r = c
            .send(&b.addr, &describe_offsets)
            .await
            .expect("describe offsets");
        assert_eq!(
            offsets_of(&r),
            Vec::<(i32, i64, i16)>::new(),
            "no state left"
        );

        let r = c
            .send(
                &b.addr,
                &ShareGroupDescribeRequest::default().with_group_ids(vec![GroupId(s("nobody"))]),
            )
            .await
            .expect("describe");
        assert_eq!(r.groups[0].error_code, 69, "GROUP_ID_NOT_FOUND");
    });
}
