//! The one error type of this crate. Kafka error codes keep Kafka's upper-case names
//! (`UNKNOWN_TOPIC_OR_PARTITION`) so that messages can be searched for in Kafka's docs.

use std::time::Duration;

use kafka_protocol::error::ResponseError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The TCP connection could not be opened.
    #[error("cannot connect to {addr}: {}", io_reason(source))]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    /// Reading or writing an open connection failed (the broker closed it, for example).
    #[error("connection to {addr} failed: {}", io_reason(source))]
    Io {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} to {addr} timed out after {} ms", after.as_millis())]
    Timeout {
        what: String,
        addr: String,
        after: Duration,
    },
    /// The broker answered with a Kafka error code.
    #[error("{context}: {name}{}", message.as_ref().map(|m| format!(" ({m})")).unwrap_or_default())]
    Kafka {
        context: String,
        code: i16,
        name: String,
        message: Option<String>,
    },
    #[error("broker {addr} does not support {api} in any version this client speaks ({detail})")]
    Unsupported {
        addr: String,
        api: String,
        detail: String,
    },
    /// Bytes from the broker that do not decode, or answers that do not fit the question.
    #[error("protocol error from {addr}: {detail}")]
    Protocol { addr: String, detail: String },
    /// A request that cannot be made as asked (no such partition, for example).
    #[error("{0}")]
    Invalid(String),
    /// The security settings cannot be used (a missing CA file, a key that does not parse,
    /// SASL without credentials). The text names the setting.
    #[error("{0}")]
    Config(String),
    /// The TLS handshake failed (an untrusted or misnamed certificate, a listener that does not
    /// speak TLS), or the broker ended the TLS session with an alert (a client certificate it
    /// requires or refuses).
    #[error("TLS with {addr} failed: {detail}")]
    Tls { addr: String, detail: String },
    /// SASL authentication failed: the broker refused the mechanism
    /// (UNSUPPORTED_SASL_MECHANISM, with the ones it offers) or the credentials
    /// (SASL_AUTHENTICATION_FAILED, with its message), or the broker's own proof did not verify.
    #[error("SASL authentication to {addr} with {mechanism} failed: {reason}")]
    Sasl {
        addr: String,
        mechanism: String,
        /// The broker's error code, when it sent one.
        code: Option<i16>,
        reason: String,
    },
}

impl Error {
    /// The Kafka error code, when the broker sent one.
    pub fn kafka_code(&self) -> Option<i16> {
        match self {
            Error::Kafka { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// True when a retry on a fresh connection may succeed.
    pub fn is_retriable(&self) -> bool {
        match self {
            Error::Kafka { code, .. } => {
                ResponseError::try_from_code(*code).is_some_and(|e| e.is_retriable())
            }
            Error::Io { .. } | Error::Timeout { .. } => true,
            _ => false,
        }
    }
}

/// An I/O error on an open connection: [`Error::Tls`] when TLS is what failed (an alert from
/// the broker, a record that does not decrypt), else [`Error::Io`].
pub(crate) fn io_error(addr: &str, source: std::io::Error) -> Error {
    match source
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(tls) => Error::Tls {
            addr: addr.to_owned(),
            detail: tls.to_string(),
        },
        // rustls's text for a TLS connection closed without close_notify is a paragraph with
        // a link; the kind says all there is to say.
        None if source.kind() == std::io::ErrorKind::UnexpectedEof => Error::Io {
            addr: addr.to_owned(),
            source: std::io::ErrorKind::UnexpectedEof.into(),
        },
        None => Error::Io {
            addr: addr.to_owned(),
            source,
        },
    }
}

/// `Err` for a non-zero Kafka error code. `context` says which request, on what.
pub fn check(code: i16, message: Option<&str>, context: impl FnOnce() -> String) -> Result<()> {
    match ResponseError::try_from_code(code) {
        None => Ok(()),
        Some(_) => Err(Error::Kafka {
            context: context(),
            code,
            name: error_name(code),
            message: message.filter(|m| !m.is_empty()).map(str::to_owned),
        }),
    }
}

/// Kafka's name for an error code: `UnknownTopicOrPartition` becomes
/// `UNKNOWN_TOPIC_OR_PARTITION`, as Kafka's own tools print it.
pub fn error_name(code: i16) -> String {
    match ResponseError::try_from_code(code) {
        None => "NONE".to_owned(),
        Some(ResponseError::Unknown(c)) => format!("UNKNOWN_ERROR_CODE_{c}"),
        Some(e) => {
            let camel = format!("{e:?}");
            let mut out = String::with_capacity(camel.len() + 8);
            for (i, ch) in camel.chars().enumerate() {
                if ch.is_ascii_uppercase() && i > 0 {
                    out.push('_');
                }
                out.push(ch.to_ascii_uppercase());
            }
            out
        }
    }
}

/// A short, lower-case reason ("connection refused") rather than the OS's sentence.
fn io_reason(e: &std::io::Error) -> String {
    use std::io::ErrorKind::*;
    match e.kind() {
        ConnectionRefused => "connection refused".into(),
        ConnectionReset => "connection reset by the broker".into(),
        UnexpectedEof => "the broker closed the connection".into(),
        BrokenPipe => "the broker closed the connection".into(),
        TimedOut => "timed out".into(),
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_kafkas() {
        assert_eq!(error_name(3), "UNKNOWN_TOPIC_OR_PARTITION");
        assert_eq!(error_name(36), "TOPIC_ALREADY_EXISTS");
        assert_eq!(error_name(-1), "UNKNOWN_SERVER_ERROR");
        let e = check(36, Some("Topic 'a' already exists."), || {
            "create topic a".into()
        })
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "create topic a: TOPIC_ALREADY_EXISTS (Topic 'a' already exists.)"
        );
        assert_eq!(e.kafka_code(), Some(36));
        assert!(check(0, None, || unreachable!()).is_ok());
    }
}
