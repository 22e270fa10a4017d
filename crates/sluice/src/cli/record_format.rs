//! How `sluice consume` prints a record: a kcat-like template (`--format`) or one JSON object
//! per line (`--output json`).
//!
//! Template tokens: `%t` topic, `%p` partition, `%o` offset, `%k` key, `%v` value, `%T`
//! timestamp (Unix ms), `%h` headers as `k=v,k2=v2`, `%K` key length, `%S` value length
//! (-1 when null), `%%` a percent sign; escapes `\n`, `\t`, `\\`. A newline is added after
//! each record unless the template already ends with one. Default: `%v`.

use bytes::Bytes;
use serde_json::json;
use sluice_client::Record;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Text(String),
    Topic,
    Partition,
    Offset,
    Key,
    Value,
    Timestamp,
    Headers,
    KeyLen,
    ValueLen,
}

#[derive(Debug, Clone)]
pub struct RecordFormat {
    tokens: Vec<Token>,
}

impl RecordFormat {
    pub fn parse(template: &str) -> Result<Self, String> {
        let mut tokens = Vec::new();
        let mut text = String::new();
        let mut chars = template.chars();
        while let Some(c) = chars.next() {
            match c {
                '%' => {
                    let t = match chars.next() {
                        Some('%') => {
                            text.push('%');
                            continue;
                        }
                        Some('t') => Token::Topic,
                        Some('p') => Token::Partition,
                        Some('o') => Token::Offset,
                        Some('k') => Token::Key,
                        Some('v') => Token::Value,
                        Some('T') => Token::Timestamp,
                        Some('h') => Token::Headers,
                        Some('K') => Token::KeyLen,
                        Some('S') => Token::ValueLen,
                        Some(other) => {
                            return Err(format!(
                            "unknown format token %{other} (known: %t %p %o %k %v %T %h %K %S %%)"
                        ))
                        }
                        None => return Err("format ends with a lone %".into()),
                    };
                    if !text.is_empty() {
                        tokens.push(Token::Text(std::mem::take(&mut text)));
                    }
                    tokens.push(t);
                }
                '\\' => match chars.next() {
                    Some('n') => text.push('\n'),
                    Some('t') => text.push('\t'),
                    Some('\\') => text.push('\\'),
                    Some(other) => {
                        text.push('\\');
                        text.push(other);
                    }
                    None => text.push('\\'),
                },
                c => text.push(c),
            }
        }
        if !text.ends_with('\n') {
            text.push('\n');
        }
        tokens.push(Token::Text(text));
        Ok(RecordFormat { tokens })
    }

    pub fn render(&self, topic: &str, partition: i32, r: &Record, out: &mut Vec<u8>) {
        for t in &self.tokens {
            match t {
                Token::Text(s) => out.extend_from_slice(s.as_bytes()),
                Token::Topic => out.extend_from_slice(topic.as_bytes()),
                Token::Partition => out.extend_from_slice(partition.to_string().as_bytes()),
                Token::Offset => out.extend_from_slice(r.offset.to_string().as_bytes()),
                // Raw bytes, as kcat prints them: binary payloads pass through untouched.
                Token::Key => out.extend_from_slice(r.key.as_deref().unwrap_or_default()),
                Token::Value => out.extend_from_slice(r.value.as_deref().unwrap_or_default()),
                Token::Timestamp => out.extend_from_slice(r.timestamp.to_string().as_bytes()),
                Token::Headers => {
                    let hs: Vec<String> = r
                        .headers
                        .iter()
                        .map(|(k, v)| format!("{}={}", k.as_str(), text(v).unwrap_or_default()))
                        .collect();
                    out.extend_from_slice(hs.join(",").as_bytes());
                }
                Token::KeyLen => out.extend_from_slice(len(&r.key).to_string().as_bytes()),
                Token::ValueLen => out.extend_from_slice(len(&r.value).to_string().as_bytes()),
            }
        }
    }
}

fn len(b: &Option<Bytes>) -> i64 {
    b.as_ref().map_or(-1, |b| b.len() as i64)
}

fn text(b: &Option<Bytes>) -> Option<String> {
    b.as_ref().map(|b| String::from_utf8_lossy(b).into_owned())
}

/// One record as a JSON object (key, value and header values as UTF-8 text, lossily).
pub fn record_json(topic: &str, partition: i32, r: &Record) -> serde_json::Value {
    let headers: serde_json::Map<String, serde_json::Value> = r
        .headers
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), json!(text(v))))
        .collect();
    json!({
        "topic": topic,
        "partition": partition,
        "offset": r.offset,
        "timestamp": r.timestamp,
        "key": text(&r.key),
        "value": text(&r.value),
        "headers": headers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_client::records::{build_batch, decode_fetched, ProduceRecord};

    fn record() -> Record {
        let batch = build_batch(
            &[ProduceRecord {
                key: Some(Bytes::from_static(b"k")),
                value: Some(Bytes::from_static(b"v1")),
                headers: vec![("h".into(), Some(Bytes::from_static(b"x")))],
            }],
            sluice_client::Compression::None,
            42,
        )
        .unwrap();
        decode_fetched(batch).unwrap().remove(0)
    }

    fn render(f: &str) -> String {
        let mut out = Vec::new();
        RecordFormat::parse(f)
            .unwrap()
            .render("t", 3, &record(), &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn templates() {
        assert_eq!(render("%v"), "v1\n");
        assert_eq!(render("%t/%p@%o %k=%v\\n"), "t/3@0 k=v1\n");
        assert_eq!(render("%T %h %K %S 100%%"), "42 h=x 1 2 100%\n");
        assert!(RecordFormat::parse("%z").is_err());
        assert!(RecordFormat::parse("%").is_err());
    }

    #[test]
    fn json_record() {
        let v = record_json("t", 0, &record());
        assert_eq!(v["key"], "k");
        assert_eq!(v["value"], "v1");
        assert_eq!(v["headers"]["h"], "x");
        assert_eq!(v["timestamp"], 42);
    }
}
