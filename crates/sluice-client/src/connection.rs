//! One TCP connection to one broker: size-prefixed frames, request headers with correlation
//! ids, the ApiVersions handshake, and a timeout on every round trip.
//!
//! Requests are sent one at a time. After a timeout or an I/O error the connection is marked
//! broken, because a late response would otherwise be read as the answer to the next request.

use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::{check, Error, Result};
use crate::versions::{client_range, BrokerVersions};

/// Responses larger than this are refused rather than allocated: a garbage length prefix must
/// not make us reserve gigabytes.
const MAX_RESPONSE_BYTES: usize = 512 * 1024 * 1024;

pub struct Connection {
    addr: String,
    stream: Option<TcpStream>,
    client_id: StrBytes,
    next_correlation_id: i32,
    timeout: Duration,
    versions: BrokerVersions,
}

impl Connection {
    /// Connects and negotiates API versions.
    pub async fn connect(addr: &str, client_id: &str, timeout: Duration) -> Result<Connection> {
        let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Err(_) => {
                return Err(Error::Timeout {
                    what: "connecting".into(),
                    addr: addr.into(),
                    after: timeout,
                })
            }
            Ok(Err(source)) => {
                return Err(Error::Connect {
                    addr: addr.into(),
                    source,
                })
            }
            Ok(Ok(s)) => s,
        };
        // Requests are small and sent one at a time; Nagle would only add latency.
        let _ = stream.set_nodelay(true);
        let mut conn = Connection {
            addr: addr.into(),
            stream: Some(stream),
            client_id: StrBytes::from_string(client_id.to_owned()),
            next_correlation_id: 1,
            timeout,
            versions: BrokerVersions::default(),
        };
        conn.versions = conn.api_versions().await?;
        Ok(conn)
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    pub fn is_broken(&self) -> bool {
        self.stream.is_none()
    }

    /// The negotiated version of `api`.
    pub fn version(&self, api: ApiKey) -> Result<i16> {
        self.versions
            .pick(api)
            .map_err(|detail| Error::Unsupported {
                addr: self.addr.clone(),
                api: format!("{api:?}"),
                detail,
            })
    }

    /// KIP-511: ask with our newest ApiVersions; a broker that does not know it answers
    /// UNSUPPORTED_VERSION in v0 format, listing its own range, and we retry with that.
    async fn api_versions(&mut self) -> Result<BrokerVersions> {
        let ours = client_range(ApiKey::ApiVersions);
        let mut version = ours.max;
        for _ in 0..2 {
            let mut req = ApiVersionsRequest::default();
            if version >= 3 {
                req.client_software_name = StrBytes::from_static_str("sluice-cli");
                req.client_software_version = StrBytes::from_static_str(env!("CARGO_PKG_VERSION"));
            }
            let resp: ApiVersionsResponse = self
                .round_trip(ApiKey::ApiVersions, version, &req, self.timeout)
                .await?;
            if resp.error_code == 35 {
                // UNSUPPORTED_VERSION: the broker's ApiVersions range is in the list.
                let theirs = resp
                    .api_keys
                    .iter()
                    .find(|k| k.api_key == ApiKey::ApiVersions as i16)
                    .map(|k| k.max_version)
                    .unwrap_or(0);
                version = theirs.min(ours.max).max(0);
                continue;
            }
            check(resp.error_code, None, || {
                format!("ApiVersions to {}", self.addr)
            })?;
            return Ok(BrokerVersions::new(
                resp.api_keys
                    .iter()
                    .map(|k| (k.api_key, k.min_version, k.max_version)),
            ));
        }
        Err(Error::Protocol {
            addr: self.addr.clone(),
            detail: "ApiVersions negotiation did not converge".into(),
        })
    }

    /// Sends `req` with the negotiated version and decodes the response.
    pub async fn send<R: Request>(&mut self, req: &R) -> Result<R::Response> {
        self.send_with_timeout(req, self.timeout).await
    }

    /// As [`send`](Self::send), with a longer bound for long polls (Fetch's `max_wait_ms`).
    pub async fn send_with_timeout<R: Request>(
        &mut self,
        req: &R,
        timeout: Duration,
    ) -> Result<R::Response> {
        let api = ApiKey::try_from(R::KEY).map_err(|_| Error::Protocol {
            addr: self.addr.clone(),
            detail: format!("unknown API key {}", R::KEY),
        })?;
        let version = self.version(api)?;
        self.round_trip(api, version, req, timeout).await
    }

    async fn round_trip<Q: Encodable, P: Decodable>(
        &mut self,
        api: ApiKey,
        version: i16,
        req: &Q,
        timeout: Duration,
    ) -> Result<P> {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1);
        let frame = self.encode(api, version, correlation_id, req)?;
        let addr = self.addr.clone();
        let Some(stream) = self.stream.as_mut() else {
            return Err(Error::Io {
                addr,
                source: std::io::Error::new(
                    std::io::ErrorKind::NotConnected,
                    "connection was closed after an earlier failure",
                ),
            });
        };
        let exchange = async {
            stream.write_all(&frame).await?;
            let len = stream.read_i32().await?;
            let len = usize::try_from(len).unwrap_or(usize::MAX);
            if len > MAX_RESPONSE_BYTES {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("response frame of {len} bytes is too large"),
                ));
            }
            let mut body = vec![0u8; len];
            stream.read_exact(&mut body).await?;
            Ok(Bytes::from(body))
        };
        let body = match tokio::time::timeout(timeout, exchange).await {
            Err(_) => {
                self.stream = None;
                return Err(Error::Timeout {
                    what: format!("{api:?} request"),
                    addr,
                    after: timeout,
                });
            }
            Ok(Err(source)) => {
                self.stream = None;
                return Err(Error::Io { addr, source });
            }
            Ok(Ok(body)) => body,
        };
        self.decode(api, version, correlation_id, body)
    }

    fn encode<Q: Encodable>(
        &self,
        api: ApiKey,
        version: i16,
        correlation_id: i32,
        req: &Q,
    ) -> Result<BytesMut> {
        let header = RequestHeader::default()
            .with_request_api_key(api as i16)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(self.client_id.clone()));
        let mut buf = BytesMut::with_capacity(256);
        buf.put_i32(0); // size, patched below
        let encoded = header
            .encode(&mut buf, api.request_header_version(version))
            .and_then(|()| req.encode(&mut buf, version));
        encoded.map_err(|e| Error::Protocol {
            addr: self.addr.clone(),
            detail: format!("cannot encode {api:?} v{version}: {e}"),
        })?;
        let size = i32::try_from(buf.len() - 4).map_err(|_| {
            Error::Invalid(format!(
                "{api:?} request is larger than 2 GiB; send less at once"
            ))
        })?;
        buf[..4].copy_from_slice(&size.to_be_bytes());
        Ok(buf)
    }

    fn decode<P: Decodable>(
        &self,
        api: ApiKey,
        version: i16,
        correlation_id: i32,
        mut body: Bytes,
    ) -> Result<P> {
        let protocol = |detail: String| Error::Protocol {
            addr: self.addr.clone(),
            detail,
        };
        let header = ResponseHeader::decode(&mut body, api.response_header_version(version))
            .map_err(|e| protocol(format!("bad {api:?} response header: {e}")))?;
        if header.correlation_id != correlation_id {
            return Err(protocol(format!(
                "{api:?} response has correlation id {}, expected {correlation_id}",
                header.correlation_id
            )));
        }
        let resp = P::decode(&mut body, version)
            .map_err(|e| protocol(format!("cannot decode {api:?} v{version} response: {e}")))?;
        if body.has_remaining() {
            tracing::debug!(
                "{api:?} v{version} response has {} trailing bytes",
                body.remaining()
            );
        }
        Ok(resp)
    }
}
