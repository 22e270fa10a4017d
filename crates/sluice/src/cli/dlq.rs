//! `sluice dlq list|show|requeue|discard`: inspect and redrive the dead letters of share groups
//! (BRIEF §5). What they do is `sluice_client::dlq`, shared with the HTTP API's `/v1/dlqs`;
//! this module parses the arguments, draws the progress bar, stops on Ctrl-C and prints.

use std::collections::BTreeSet;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use anyhow::bail;
use bytes::Bytes;
use clap::{ArgGroup, Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use sluice_client::dlq::{
    self, offsets_text, Action, Dlq, Letter, Outcome, Progress, Redrive, Target as DlqTarget,
};

use super::table::Table;
use super::{block_on, now_ms, ClientArgs};

/// A progress bar is drawn for redrives larger than this (when stderr is a terminal).
const PROGRESS_MIN: u64 = 100;
/// Key and value widths in `show`'s table (JSON prints them in full).
const KEY_WIDTH: usize = 24;
const VALUE_WIDTH: usize = 48;

#[derive(Args, Debug)]
pub struct DlqArgs {
    #[command(subcommand)]
    command: DlqCommand,
}

#[derive(Subcommand, Debug)]
enum DlqCommand {
    /// List every DLQ topic with its group, depth (unhandled dead letters) and oldest age
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Print a DLQ's unhandled dead letters with their origin and reason
    Show(ShowArgs),
    /// Write dead letters back to their origin topic and partition (never the same one twice)
    Requeue(ActArgs),
    /// Mark dead letters handled without writing them anywhere
    Discard(ActArgs),
}

/// Which DLQ: the group's, or a topic named outright.
#[derive(Args, Debug)]
#[group(required = true, multiple = false)]
struct Target {
    /// The share group whose DLQ to use (its `errors.deadletterqueue.topic.name`, by default
    /// dlq.<group>)
    #[arg(short, long)]
    group: Option<String>,
    /// The DLQ topic itself
    #[arg(short, long)]
    topic: Option<String>,
}

#[derive(Args, Debug)]
struct ShowArgs {
    #[command(flatten)]
    target: Target,
    /// Include dead letters already requeued or discarded (marked as handled)
    #[arg(long)]
    all: bool,
    /// Print at most N dead letters (0: all of them)
    #[arg(long, default_value_t = 100, value_name = "N")]
    limit: u64,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Args, Debug)]
#[command(group(ArgGroup::new("which").required(true).args(["offset", "all"])))]
struct ActArgs {
    #[command(flatten)]
    target: Target,
    /// The DLQ offset of a dead letter, or a range A-B (repeat, or separate with commas, for
    /// several)
    #[arg(
        long = "offset",
        value_name = "N|A-B",
        num_args = 1..,
        value_delimiter = ',',
        value_parser = parse_offsets
    )]
    offset: Vec<OffsetSpec>,
    /// Every dead letter not yet handled
    #[arg(long)]
    all: bool,
    /// The DLQ partition the offsets are in (needed only when the DLQ has several)
    #[arg(short, long)]
    partition: Option<i32>,
    /// Dead letters per produced batch; each batch is recorded as handled once written
    #[arg(long, default_value_t = 500, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=100_000))]
    batch_size: u64,
    /// Requeue at most N dead letters a second (SQS's redrive velocity), so the original
    /// topics' consumers are not flooded [default: as fast as it goes]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    max_per_second: Option<u32>,
    #[command(flatten)]
    client: ClientArgs,
}

/// One `--offset` value: an offset or an inclusive range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct OffsetSpec {
    first: i64,
    last: i64,
}

/// Bound on the offsets one range may name.
const MAX_RANGE: i64 = 1_000_000;

fn parse_offsets(s: &str) -> Result<OffsetSpec, String> {
    let num = |t: &str| {
        t.trim()
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .ok_or_else(|| format!("expected an offset (0 or more) or a range A-B, got `{s}`"))
    };
    let (first, last) = match s.split_once('-') {
        Some((a, b)) => (num(a)?, num(b)?),
        None => (num(s)?, num(s)?),
    };
    if last < first {
        return Err(format!("range `{s}` ends before it starts"));
    }
    if last - first >= MAX_RANGE {
        return Err(format!(
            "range `{s}` names more than {MAX_RANGE} offsets; use --all"
        ));
    }
    Ok(OffsetSpec { first, last })
}

pub fn run(args: DlqArgs) -> anyhow::Result<()> {
    block_on(async move {
        match args.command {
            DlqCommand::List { client } => list(&client).await,
            DlqCommand::Show(args) => show(args).await,
            DlqCommand::Requeue(args) => act(args, Action::Requeue).await,
            DlqCommand::Discard(args) => act(args, Action::Discard).await,
        }
    })
}

impl Target {
    fn dlq_target(&self) -> anyhow::Result<DlqTarget> {
        match (&self.group, &self.topic) {
            (Some(g), _) => Ok(DlqTarget::Group(g.clone())),
            (None, Some(t)) => Ok(DlqTarget::Topic(t.clone())),
            (None, None) => bail!("say which DLQ: --group G or --topic T"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// list

async fn list(client: &ClientArgs) -> anyhow::Result<()> {
    let mut c = client.connect().await?;
    let (rows, warnings) = dlq::list_rows(&mut c).await?;
    for w in warnings {
        eprintln!("warning: {w}");
    }
    let now = now_ms();
    if client.json() {
        let v: Vec<_> = rows.iter().map(|r| r.json(now)).collect();
        println!("{}", serde_json::Value::Array(v));
        return Ok(());
    }
    let mut t = Table::new(&["TOPIC", "GROUP", "DEPTH", "HANDLED", "OLDEST-AGE"]);
    for r in &rows {
        t.row(vec![
            r.topic.clone(),
            if r.groups.is_empty() {
                "-".into()
            } else {
                r.groups.join(",")
            },
            r.depth.to_string(),
            (r.total - r.depth).to_string(),
            r.age_ms(now).map_or_else(|| "-".into(), human_age),
        ]);
    }
    t.print();
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// show

async fn show(args: ShowArgs) -> anyhow::Result<()> {
    let mut c = args.client.connect().await?;
    let dlq = dlq::resolve(&mut c, &args.target.dlq_target()?).await?;
    let sel = dlq::select(&mut c, &dlq, args.all, args.limit, usize::MAX).await?;
    let matching = if args.all { sel.total } else { sel.depth };
    let now = now_ms();
    if args.client.json() {
        let letters: Vec<_> = sel.letters.iter().map(|(l, h)| l.json(*h, now)).collect();
        println!(
            "{}",
            json!({
                "topic": dlq.topic,
                "group": dlq.group,
                "depth": sel.depth,
                "total": sel.total,
                "dead_letters": letters,
            })
        );
        return Ok(());
    }
    let age = |l: &Letter| l.dead_lettered_ms.map(|t| (now - t).max(0));
    let many = dlq.partitions.len() > 1;
    let mut header = Vec::new();
    if many {
        header.push("PARTITION");
    }
    header.push("OFFSET");
    if args.all {
        header.push("HANDLED");
    }
    header.extend(["ORIGIN", "REASON", "DELIVERIES", "AGE", "KEY", "VALUE"]);
    let mut t = Table::new(&header);
    for (l, handled) in &sel.letters {
        let mut row = Vec::new();
        if many {
            row.push(l.partition.to_string());
        }
        row.push(l.offset().to_string());
        if args.all {
            row.push(if *handled { "yes" } else { "no" }.into());
        }
        row.extend([
            l.origin_text(),
            l.reason.clone().unwrap_or_else(|| "-".into()),
            l.delivery_count
                .map_or_else(|| "-".into(), |n| n.to_string()),
            age(l).map_or_else(|| "-".into(), human_age),
            printable(&l.record.key, KEY_WIDTH),
            printable(&l.record.value, VALUE_WIDTH),
        ]);
        t.row(row);
    }
    t.print();
    if (sel.letters.len() as i64) < matching && args.limit != 0 {
        eprintln!(
            "showing the first {} of {matching} dead letters; --limit N shows more (0: all)",
            sel.letters.len()
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// requeue and discard

/// Set by Ctrl-C or SIGTERM: the redrive stops after the batch in flight, recorded as handled.
fn stop_flag() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let f = flag.clone();
    tokio::spawn(async move {
        crate::serve::shutdown_signal().await;
        f.store(true, Ordering::SeqCst);
    });
    flag
}

/// A progress bar on stderr for large redrives, when it is a terminal.
struct Bar {
    action: Action,
    bar: OnceLock<ProgressBar>,
}

impl Progress for Bar {
    fn planned(&self, n: u64) {
        if n > PROGRESS_MIN && std::io::stderr().is_terminal() {
            let bar = ProgressBar::new(n);
            bar.set_style(
                ProgressStyle::with_template(&format!(
                    "{} {{bar:40}} {{pos}}/{{len}} {{per_sec}} eta {{eta}}",
                    self.action.past()
                ))
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            let _ = self.bar.set(bar);
        }
    }

    fn advance(&self, n: u64) {
        if let Some(bar) = self.bar.get() {
            bar.inc(n);
        }
    }
}

async fn act(args: ActArgs, action: Action) -> anyhow::Result<()> {
    let mut c = args.client.connect().await?;
    let dlq = dlq::resolve(&mut c, &args.target.dlq_target()?).await?;
    let offsets: BTreeSet<i64> = args.offset.iter().flat_map(|r| r.first..=r.last).collect();
    let req = Redrive {
        action,
        partition: args.partition,
        offsets,
        batch_size: usize::try_from(args.batch_size).unwrap_or(500),
        max_per_second: args.max_per_second,
    };
    let stop = stop_flag();
    let bar = Bar {
        action,
        bar: OnceLock::new(),
    };
    let (outcome, result) = dlq::redrive(&mut c, &dlq, &req, &stop, &bar).await;
    if let Some(bar) = bar.bar.get() {
        bar.finish_and_clear();
    }
    if let Err(e) = result {
        let so_far = if outcome.done > 0 {
            format!(
                " ({} {} dead letters before this, recorded as handled; run the same command \
                 again to continue)",
                action.past(),
                outcome.done
            )
        } else {
            String::new()
        };
        return Err(e.context(format!("{} {}{so_far}", dlq::verb(action), dlq.topic)));
    }
    print_outcome(&args, &dlq, action, &outcome);
    if stop.load(Ordering::SeqCst) && outcome.done < outcome.planned {
        bail!(
            "interrupted: {} {} of {} dead letters (recorded as handled); run the \
             same command again to continue",
            action.past(),
            outcome.done,
            outcome.planned
        );
    }
    Ok(())
}

fn print_outcome(args: &ActArgs, dlq: &Dlq, action: Action, o: &Outcome) {
    let skipped_offsets: Vec<i64> = o.skipped_offsets.iter().map(|x| x.1).collect();
    if args.client.json() {
        let mut v = json!({
            "topic": dlq.topic,
            "group": dlq.group,
            "skipped_already_handled": o.skipped,
        });
        v[action.past()] = json!(o.done);
        if !args.offset.is_empty() {
            v["skipped_offsets"] = json!(skipped_offsets);
        }
        if action == Action::Requeue {
            v["to"] = json!(o.to);
        }
        println!("{v}");
        return;
    }
    if o.done == 0 {
        let verb = match action {
            Action::Requeue => "requeue",
            Action::Discard => "discard",
        };
        if args.offset.is_empty() {
            println!(
                "nothing to {verb}: {} has no unhandled dead letters ({} already handled)",
                dlq.topic, o.skipped
            );
        } else {
            println!(
                "nothing to {verb}: {} of {} {} already handled",
                offsets_text(&skipped_offsets),
                dlq.topic,
                if skipped_offsets.len() == 1 {
                    "is"
                } else {
                    "are"
                }
            );
        }
        return;
    }
    let mut line = format!(
        "{} {} dead letter{} from {}",
        action.past(),
        o.done,
        if o.done == 1 { "" } else { "s" },
        dlq.topic
    );
    if action == Action::Requeue && !o.to.is_empty() {
        let to: Vec<String> = o.to.iter().map(|(t, n)| format!("{t} ({n})")).collect();
        line.push_str(&format!(" to {}", to.join(", ")));
    }
    if o.skipped > 0 {
        line.push_str(&format!("; skipped {} already handled", o.skipped));
        if !skipped_offsets.is_empty() {
            line.push_str(&format!(" ({})", offsets_text(&skipped_offsets)));
        }
    }
    println!("{line}");
}

// ---------------------------------------------------------------------------------------------
// Formatting

/// A key or value for a table cell: control characters escaped, cut to `width` characters
/// with an ellipsis; `-` for null.
fn printable(b: &Option<Bytes>, width: usize) -> String {
    let Some(b) = b else {
        return "-".into();
    };
    let text = String::from_utf8_lossy(b);
    let mut out = String::new();
    let mut count = 0;
    for ch in text.chars() {
        let piece: String = if ch.is_control() {
            ch.escape_default().collect()
        } else {
            ch.to_string()
        };
        let n = piece.chars().count();
        if count + n > width {
            out.push('…');
            return out;
        }
        out.push_str(&piece);
        count += n;
    }
    out
}

/// `3m12s`, `2h05m`, `4d03h`: an age in milliseconds, to the two largest units.
fn human_age(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    let (d, h, m, sec) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    if d > 0 {
        format!("{d}d{h:02}h")
    } else if h > 0 {
        format!("{h}h{m:02}m")
    } else if m > 0 {
        format!("{m}m{sec:02}s")
    } else {
        format!("{sec}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_offsets_and_ranges() {
        assert_eq!(parse_offsets("7"), Ok(OffsetSpec { first: 7, last: 7 }));
        assert_eq!(parse_offsets("3-5"), Ok(OffsetSpec { first: 3, last: 5 }));
        assert!(parse_offsets("5-3").is_err());
        assert!(parse_offsets("-1").is_err());
        assert!(parse_offsets("x").is_err());
        assert!(parse_offsets("0-2000000").is_err());
        assert_eq!(offsets_text(&[4]), "offset 4");
        assert_eq!(offsets_text(&[1, 2, 3, 7]), "offsets 1-3, 7");
    }

    #[test]
    fn formats_ages_and_cells() {
        assert_eq!(human_age(-5), "0s");
        assert_eq!(human_age(12_400), "12s");
        assert_eq!(human_age(192_000), "3m12s");
        assert_eq!(human_age(7_500_000), "2h05m");
        assert_eq!(human_age(3 * 86_400_000 + 3_600_000), "3d01h");
        assert_eq!(printable(&None, 10), "-");
        assert_eq!(printable(&Some(Bytes::from_static(b"a\nb")), 10), "a\\nb");
        assert_eq!(
            printable(&Some(Bytes::from_static(b"abcdefghijkl")), 5),
            "abcde…"
        );
    }
}
