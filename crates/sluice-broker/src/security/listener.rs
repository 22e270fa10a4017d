//! Listeners: Kafka's `NAME=PROTOCOL://HOST:PORT` with its four security protocols, and what a
//! connection on each one must do before its requests are served.

use std::net::{SocketAddr, ToSocketAddrs};

pub use sluice_auth::SecurityProtocol;

/// One `--listener`: a name (what Metadata is answered for: a client is told the other brokers'
/// addresses on the listener it came in on), a security protocol, where to bind, and what to
/// advertise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerSpec {
    pub name: String,
    pub protocol: SecurityProtocol,
    pub bind: SocketAddr,
    /// `host:port` clients are told to connect to; `None`: the host as written in the listener
    /// (the bound address when it named none) with the bound port.
    pub advertised: Option<String>,
    /// The host as written (`localhost`, an IP, or empty for every interface).
    pub host: String,
}

/// Largest listener name (Kafka has none; names go into every broker registration).
const MAX_LISTENER_NAME: usize = 64;

impl ListenerSpec {
    /// Parses `NAME=PROTOCOL://HOST:PORT`, or `PROTOCOL://HOST:PORT` (the name is then the
    /// protocol's, as Kafka's default `listener.security.protocol.map` maps `SSL` to SSL). An
    /// empty host binds every interface (`0.0.0.0`); a host name is resolved once, here.
    pub fn parse(s: &str) -> Result<ListenerSpec, String> {
        let (name, rest) = match s.split_once('=') {
            Some((n, r)) => (n.trim(), r.trim()),
            None => ("", s.trim()),
        };
        let (protocol, addr) = rest
            .split_once("://")
            .ok_or_else(|| format!("listener {s:?} must be NAME=PROTOCOL://HOST:PORT"))?;
        let protocol: SecurityProtocol = protocol.parse()?;
        let name = if name.is_empty() {
            protocol.name().to_string()
        } else {
            name.to_string()
        };
        if name.len() > MAX_LISTENER_NAME
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(format!(
                "listener name {name:?} must be 1-{MAX_LISTENER_NAME} letters, digits, '_' or '-'"
            ));
        }
        let (host, port) = addr
            .rsplit_once(':')
            .ok_or_else(|| format!("listener {s:?} has no port"))?;
        let port: u16 = port
            .parse()
            .map_err(|_| format!("listener {s:?}: the port must be 0-65535"))?;
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let bind = if bare.is_empty() {
            SocketAddr::from(([0, 0, 0, 0], port))
        } else {
            (bare, port)
                .to_socket_addrs()
                .map_err(|e| format!("listener {s:?}: cannot resolve {bare:?}: {e}"))?
                .next()
                .ok_or_else(|| format!("listener {s:?}: {bare:?} resolves to no address"))?
        };
        Ok(ListenerSpec {
            name,
            protocol,
            bind,
            advertised: None,
            host: bare.to_string(),
        })
    }

    /// The single PLAINTEXT listener of a broker started without `--listener`
    /// (`--kafka-addr`, `--advertised-kafka-addr`): the zero-config default.
    pub fn plaintext(bind: SocketAddr, advertised: Option<String>) -> ListenerSpec {
        ListenerSpec {
            name: SecurityProtocol::Plaintext.name().to_string(),
            protocol: SecurityProtocol::Plaintext,
            bind,
            advertised,
            host: String::new(),
        }
    }

    /// What this listener advertises once bound to `local`: the `--advertised-listener`, else
    /// the host as written (or the bound IP) with the bound port.
    pub fn advertised_endpoint(&self, local: SocketAddr) -> Result<(String, i32), String> {
        if let Some(a) = &self.advertised {
            return crate::broker::parse_host_port(a).map_err(|e| e.to_string());
        }
        let host = if self.host.is_empty() {
            local.ip().to_string()
        } else {
            self.host.clone()
        };
        Ok((host, i32::from(local.port())))
    }
}

/// Parses `--advertised-listener NAME=HOST:PORT`.
pub fn parse_advertised(s: &str) -> Result<(String, String), String> {
    let (name, addr) = s
        .split_once('=')
        .ok_or_else(|| format!("advertised listener {s:?} must be NAME=HOST:PORT"))?;
    crate::config::check_host_port(addr.trim())?;
    Ok((name.trim().to_string(), addr.trim().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_listeners() {
        let l = ListenerSpec::parse("EXTERNAL=SASL_SSL://127.0.0.1:9093").unwrap();
        assert_eq!(l.name, "EXTERNAL");
        assert_eq!(l.protocol, SecurityProtocol::SaslSsl);
        assert_eq!(l.bind, "127.0.0.1:9093".parse().unwrap());
        let l = ListenerSpec::parse("SSL://:9094").unwrap();
        assert_eq!(l.name, "SSL");
        assert_eq!(l.bind, "0.0.0.0:9094".parse().unwrap());
        let l = ListenerSpec::parse("sasl_plaintext://localhost:0").unwrap();
        assert_eq!(l.protocol, SecurityProtocol::SaslPlaintext);
        assert_eq!(l.host, "localhost");
        assert_eq!(
            l.advertised_endpoint("127.0.0.1:4000".parse().unwrap())
                .unwrap(),
            ("localhost".to_string(), 4000)
        );
        let l = ListenerSpec::parse("V6=PLAINTEXT://[::1]:9092").unwrap();
        assert_eq!(l.bind, "[::1]:9092".parse().unwrap());
        for bad in [
            "X=TLS://h:1",
            "X=PLAINTEXT//h:1",
            "X=PLAINTEXT://h",
            "X=PLAINTEXT://h:99999",
            "a b=PLAINTEXT://h:1",
            "",
        ] {
            assert!(ListenerSpec::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn parses_advertised_listeners() {
        assert_eq!(
            parse_advertised("EXTERNAL=kafka.example:9093").unwrap(),
            ("EXTERNAL".to_string(), "kafka.example:9093".to_string())
        );
        assert!(parse_advertised("EXTERNAL").is_err());
        assert!(parse_advertised("E=host").is_err());
    }
}
