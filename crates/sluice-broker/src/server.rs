//! The Kafka listener: accepts connections and runs each one's request loop.
//!
//! A connection reads size-prefixed frames, handles them one at a time in arrival order (so
//! responses go out in request order, as Kafka requires; pipelined requests wait in the socket
//! buffer), and writes each response. A frame over `socket.request.max.bytes`, an unknown API or
//! version, or an undecodable request closes that connection only, as Kafka does.
//!
//! Memory a client can make the broker hold for its requests is bounded three ways (limits.rs):
//! - one frame per connection (`socket.request.max.bytes`), since requests are read one at a time;
//! - `queued.max.request.bytes` across connections: a frame's bytes are reserved from a
//!   broker-wide pool when its size prefix arrives and returned when its request has been
//!   handled; while the pool is short the connection is muted (nothing more is read from it, it
//!   is not closed), as Kafka's memory pool does ([`RequestMemory`]);
//! - time: once the prefix arrived (and its bytes were granted), the whole frame must arrive
//!   within the request read timeout, else the connection is closed and the bytes freed.
//!
//! Shutdown (the `stop` signal): a connection reads no new request; an idle one closes at
//! once; one with a request in flight answers it and then closes, unless the request is still
//! waiting [`SHUTDOWN_GRACE`] after the signal. Requests that wait on other clients or on
//! time — a JoinGroup held until every member rejoins (a member whose application stopped
//! polling holds it up to its rebalance timeout, minutes), a long-polling fetch, an acks=all
//! produce waiting for the ISR — are then dropped and their connection closed unanswered, as
//! Kafka's socket server closes connections at shutdown; clients retry. The broker's drain
//! therefore ends within about the grace, and the clean-shutdown marker gets written.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify, OwnedSemaphorePermit, Semaphore, TryAcquireError};

use crate::broker::Broker;
use crate::handlers::{self, Handled};
use crate::response::FrameSink;
use crate::security::sasl::{SaslSession, SaslSettings, Screen};
use crate::security::{ListenerSpec, SecurityProtocol};

/// What every connection of one listener shares.
struct ListenerContext {
    name: Arc<str>,
    protocol: SecurityProtocol,
    sasl: Option<Arc<SaslSettings>>,
}

/// Accepts the connections of one listener until `stop`. `connection_slots` is shared by
/// every listener: `max.connections` bounds the broker, not each listener.
pub async fn serve_kafka(
    broker: Arc<Broker>,
    listener: TcpListener,
    spec: ListenerSpec,
    connection_slots: Arc<Semaphore>,
    memory: Arc<RequestMemory>,
    mut stop: watch::Receiver<bool>,
) {
    let context = Arc::new(ListenerContext {
        name: Arc::from(spec.name.as_str()),
        protocol: spec.protocol,
        sasl: broker.security.sasl_settings(spec.protocol),
    });
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let Ok(slot) = connection_slots.clone().try_acquire_owned() else {
                        tracing::warn!(%peer, limit = broker.config.max_connections, "refusing connection: max.connections reached");
                        drop(stream);
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    connections.spawn(accept(broker.clone(), stream, peer, context.clone(), memory.clone(), stop.clone(), slot));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}

/// A new connection: its TLS handshake (on SSL and SASL_SSL listeners, bounded by the
/// authentication timeout), its principal if a client certificate names one, then its
/// request loop.
async fn accept(
    broker: Arc<Broker>,
    stream: TcpStream,
    peer: SocketAddr,
    listener: Arc<ListenerContext>,
    memory: Arc<RequestMemory>,
    stop: watch::Receiver<bool>,
    _slot: OwnedSemaphorePermit,
) {
    broker.metrics.connections.inc();
    let deadline = tokio::time::Instant::now()
        + Duration::from_millis(crate::limits::AUTHENTICATION_TIMEOUT_MS);
    if !listener.protocol.uses_tls() {
        let (rd, wr) = stream.into_split();
        let conn = Conn::new(peer, &listener, crate::security::anonymous());
        connection(
            broker.clone(),
            rd,
            BufWriter::with_capacity(64 * 1024, wr),
            conn,
            listener,
            deadline,
            memory,
            stop,
        )
        .await;
        broker.metrics.connections.dec();
        return;
    }
    let Some(tls) = broker.security.tls.as_ref().map(|t| t.current()) else {
        tracing::error!(%peer, "closing connection: a TLS listener without TLS settings");
        broker.metrics.connections.dec();
        return;
    };
    let config = if listener.protocol == SecurityProtocol::Ssl {
        tls.ssl.clone()
    } else {
        tls.sasl_ssl.clone()
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    match tokio::time::timeout_at(deadline, acceptor.accept(stream)).await {
        Err(_) => {
            tracing::info!(%peer, "closing connection: TLS handshake not done within the authentication timeout")
        }
        Ok(Err(e)) => {
            // Untrusted client certificates and clients speaking plaintext to a TLS port end
            // here; the operator sees why, the client only a failed handshake.
            tracing::info!(%peer, listener = %listener.name, error = %e, "TLS handshake failed");
            broker
                .metrics
                .authentication_failed(listener.protocol.name(), "TLS");
        }
        Ok(Ok(tls_stream)) => {
            let cn = tls_stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|certs| certs.first())
                .and_then(|cert| crate::security::tls::certificate_cn(cert));
            let principal = match cn {
                Some(cn) if listener.protocol == SecurityProtocol::Ssl => {
                    sluice_auth::KafkaPrincipal::user(&cn)
                }
                _ => crate::security::anonymous(),
            };
            let conn = Conn::new(peer, &listener, principal);
            let (rd, wr) = tokio::io::split(tls_stream);
            connection(
                broker.clone(),
                rd,
                BufWriter::with_capacity(64 * 1024, wr),
                conn,
                listener,
                deadline,
                memory,
                stop,
            )
            .await;
        }
    }
    broker.metrics.connections.dec();
}

/// How long a request still in flight when shutdown starts may take before its connection is
/// closed unanswered (see the module docs).
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// Resolves once shutdown has started (at once if it already has; also if the signal's sender
/// is gone). Unlike `changed()`, it can be awaited any number of times.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopping| *stopping).await;
}

/// A connection's identity as the handlers see it.
type Conn = handlers::Connection;

impl handlers::Connection {
    fn new(
        peer: SocketAddr,
        listener: &ListenerContext,
        principal: sluice_auth::KafkaPrincipal,
    ) -> Self {
        handlers::Connection {
            peer,
            listener: listener.name.clone(),
            principal: Arc::new(principal),
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn connection<R: AsyncRead + Unpin, W: FrameSink>(
    broker: Arc<Broker>,
    rd: R,
    mut wr: W,
    mut conn: Conn,
    listener: Arc<ListenerContext>,
    auth_deadline: tokio::time::Instant,
    memory: Arc<RequestMemory>,
    mut stop: watch::Receiver<bool>,
) {
    let mut rd = BufReader::with_capacity(64 * 1024, rd);
    // SASL listeners: nothing but ApiVersions and the SASL exchange until authenticated.
    let mut sasl = listener.sasl.as_ref().map(|_| SaslSession::default());
    let max = broker.config.max_request_bytes;
    let idle = broker.config.idle_timeout;
    let read_timeout = broker.config.request_read_timeout;
    loop {
        let authenticated = sasl.as_ref().is_none_or(SaslSession::is_authenticated);
        if !authenticated && tokio::time::Instant::now() >= auth_deadline {
            tracing::info!(peer = %conn.peer, "closing connection: not authenticated within the authentication timeout");
            break;
        }
        // Before authentication the whole exchange must end by the deadline.
        let wait = if authenticated {
            idle
        } else {
            auth_deadline.saturating_duration_since(tokio::time::Instant::now())
        };
        let size = tokio::select! {
            biased;
            _ = stopped(&mut stop) => break,
            r = tokio::time::timeout(wait, rd.read_i32()) => match r {
                Err(_) if authenticated => {
                    tracing::debug!(peer = %conn.peer, "closing idle connection");
                    break;
                }
                Err(_) => {
                    tracing::info!(peer = %conn.peer, "closing connection: not authenticated within the authentication timeout");
                    break;
                }
                Ok(Err(_)) => break,
                Ok(Ok(size)) => size,
            },
        };
        let (Ok(size), Ok(permits)) = (usize::try_from(size), u32::try_from(size)) else {
            tracing::warn!(peer = %conn.peer, size, "closing connection: negative request size");
            break;
        };
        let max = if authenticated {
            max
        } else {
            max.min(crate::limits::SASL_MAX_RECEIVE_BYTES)
        };
        if size > max {
            tracing::warn!(peer = %conn.peer, size, max, authenticated, "closing connection: request size exceeds socket.request.max.bytes (sasl.server.max.receive.size before authentication)");
            break;
        }
        // Reserve the frame's bytes before reading them. Waiting here mutes the connection: its
        // bytes stay in the socket buffer and TCP flow control holds the client back.
        let reserved = tokio::select! {
            biased;
            _ = stopped(&mut stop) => break,
            r = memory.reserve(permits) => match r {
                Some(r) => r,
                None => break,
            },
        };
        // A frame still arriving at shutdown gets the same grace as a request in flight.
        let reading = tokio::select! {
            biased;
            r = tokio::time::timeout(read_timeout, read_frame(&mut rd, size)) => r,
            _ = async {
                stopped(&mut stop).await;
                tokio::time::sleep(SHUTDOWN_GRACE).await;
            } => break,
        };
        let frame = match reading {
            Err(_) => {
                tracing::warn!(peer = %conn.peer, size, timeout_ms = read_timeout.as_millis() as u64,
                    "closing connection: request not received within the request read timeout");
                break;
            }
            Ok(None) => break,
            Ok(Some(frame)) => frame,
        };
        if let (Some(session), Some(settings)) = (sasl.as_mut(), listener.sasl.as_ref()) {
            let Some(nonce) = crate::security::nonce() else {
                tracing::error!("closing connection: the OS has no entropy source for SASL nonces");
                break;
            };
            let users = broker.metadata.users.table();
            // A SASL step may hash a password (PBKDF2, milliseconds): at most a few run at a
            // time, off the request workers, so that clients guessing passwords slow down only
            // each other.
            let expensive = !session.is_authenticated() || session.is_reauthenticating();
            let slot = if expensive {
                tokio::select! {
                    biased;
                    _ = stopped(&mut stop) => break,
                    slot = crate::security::AUTHENTICATIONS.acquire() => slot.ok(),
                }
            } else {
                None
            };
            let now = crate::broker::now_ms();
            let mut step = || session.screen(&frame, settings, users.as_ref(), now, &nonce);
            let screened = if expensive
                && tokio::runtime::Handle::current().runtime_flavor()
                    == tokio::runtime::RuntimeFlavor::MultiThread
            {
                tokio::task::block_in_place(step)
            } else {
                step()
            };
            drop(slot);
            match screened {
                Screen::Serve => {
                    if let Some(p) = session.principal() {
                        if p != conn.principal.as_ref() {
                            conn.principal = Arc::new(p.clone());
                        }
                    }
                }
                Screen::Reply(bytes) => {
                    drop(reserved);
                    if session.is_authenticated() {
                        if let Some(p) = session.principal() {
                            conn.principal = Arc::new(p.clone());
                        }
                    }
                    if crate::response::write_frame(&mut wr, &bytes).await.is_err() {
                        break;
                    }
                    continue;
                }
                Screen::Fail { reply, reason } => {
                    tracing::info!(peer = %conn.peer, listener = %listener.name, %reason, "SASL authentication failed");
                    broker
                        .metrics
                        .authentication_failed(listener.protocol.name(), "SASL");
                    // Kafka's connection.failed.authentication.delay.ms: slows guessing.
                    tokio::time::sleep(Duration::from_millis(
                        crate::limits::FAILED_AUTHENTICATION_DELAY_MS,
                    ))
                    .await;
                    if let Some(reply) = reply {
                        let _ = crate::response::write_frame(&mut wr, &reply).await;
                    }
                    break;
                }
                Screen::Close(reason) => {
                    tracing::info!(peer = %conn.peer, listener = %listener.name, %reason, "closing connection");
                    break;
                }
            }
        }
        let handled = {
            let handling = handlers::handle(&broker, frame, &conn);
            tokio::pin!(handling);
            tokio::select! {
                biased;
                h = &mut handling => h,
                _ = async {
                    stopped(&mut stop).await;
                    tokio::time::sleep(SHUTDOWN_GRACE).await;
                } => {
                    tracing::debug!(peer = %conn.peer, "closing a connection whose request was still waiting at shutdown");
                    break;
                }
            }
        };
        // The request's bytes go back to the pool once it has been handled (Kafka releases its
        // buffer at the same point).
        drop(reserved);
        let mute = match handled {
            Handled::Respond(response, mute) => {
                // Flushed at the end: the next request may be a long-polling fetch.
                if let Err(e) = crate::response::write(&mut wr, response).await {
                    tracing::debug!(peer = %conn.peer, error = %e, "closing connection: response not sent");
                    break;
                }
                mute
            }
            Handled::NoResponse(mute) => mute,
            Handled::Close(reason) => {
                tracing::warn!(peer = %conn.peer, %reason, "closing connection");
                break;
            }
        };
        // A throttled client (over its quota): its response went out with `throttle_time_ms`,
        // and nothing more is read from it for that long (KIP-219's muted channel).
        if !mute.is_zero() {
            tokio::select! {
                biased;
                _ = stopped(&mut stop) => break,
                _ = tokio::time::sleep(mute) => {}
            }
        }
    }
    let _ = wr.flush().await;
}

/// The broker-wide pool of request bytes (`queued.max.request.bytes`).
///
/// Not first come, first served, as Kafka's pool is not: a request waits only while fewer bytes
/// are free than it needs. Frames that claim a lot and arrive slowly (or never, until the read
/// timeout) then hold back only requests that do not fit beside them, and small requests — fetches,
/// heartbeats, metadata — keep flowing; a fair queue would put every request behind the first
/// large waiter. The cost: under a steady stream of smaller requests a large one can wait long.
pub struct RequestMemory {
    free: Semaphore,
    /// Bytes reserved now (the `sluice_request_memory_bytes` metric).
    in_use: prometheus_client::metrics::gauge::Gauge,
    /// Woken whenever bytes return, so every waiting connection tries again.
    freed: Notify,
}

impl RequestMemory {
    pub fn new(
        bytes: usize,
        in_use: prometheus_client::metrics::gauge::Gauge,
    ) -> Arc<RequestMemory> {
        Arc::new(RequestMemory {
            free: Semaphore::new(bytes.min(Semaphore::MAX_PERMITS)),
            in_use,
            freed: Notify::new(),
        })
    }

    /// Waits until `bytes` are free and takes them; `None` if the pool was closed.
    pub async fn reserve(self: &Arc<Self>, bytes: u32) -> Option<Reservation> {
        loop {
            // Registered before trying, so a release between the try and the wait is not missed.
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            match self.free.try_acquire_many(bytes) {
                Ok(permit) => {
                    permit.forget();
                    self.in_use.inc_by(i64::from(bytes));
                    return Some(Reservation {
                        pool: self.clone(),
                        bytes,
                    });
                }
                Err(TryAcquireError::NoPermits) => freed.await,
                Err(TryAcquireError::Closed) => return None,
            }
        }
    }
}

/// Bytes taken from a [`RequestMemory`]; returned (and waiters woken) on drop.
pub struct Reservation {
    pool: Arc<RequestMemory>,
    bytes: u32,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.pool.free.add_permits(self.bytes as usize);
        self.pool.in_use.dec_by(i64::from(self.bytes));
        self.pool.freed.notify_waiters();
    }
}

/// Reads one frame body of `size` bytes; `None` if the connection ends first.
async fn read_frame<R: tokio::io::AsyncRead + Unpin>(
    rd: &mut R,
    size: usize,
) -> Option<bytes::Bytes> {
    // Read into uninitialised capacity: zero-filling every request cost ~12% of produce CPU.
    let mut frame = BytesMut::with_capacity(size);
    let mut body = rd.take(size as u64);
    while frame.len() < size {
        match body.read_buf(&mut frame).await {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
    }
    Some(frame.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn read_frame_needs_every_byte() {
        let mut whole: &[u8] = b"abcdef";
        assert_eq!(
            read_frame(&mut whole, 4).await.as_deref(),
            Some(&b"abcd"[..])
        );
        let mut short: &[u8] = b"abc";
        assert_eq!(read_frame(&mut short, 4).await, None);
        let mut empty: &[u8] = b"";
        assert_eq!(read_frame(&mut empty, 0).await.as_deref(), Some(&b""[..]));
    }

    #[tokio::test]
    async fn request_memory_mutes_what_does_not_fit_and_lets_small_requests_pass() {
        let pool = RequestMemory::new(100, Default::default());
        let big = pool.reserve(80).await.unwrap();
        // 20 bytes free: a 50-byte request waits, a 10-byte one passes it.
        let waiting = pool.reserve(50);
        tokio::pin!(waiting);
        assert!(futures::poll!(waiting.as_mut()).is_pending());
        let small = pool.reserve(10).await.unwrap();
        assert!(futures::poll!(waiting.as_mut()).is_pending());
        drop(big);
        let mid = waiting.await.unwrap();
        // 100 - 10 - 50 = 40 free.
        assert!(futures::FutureExt::now_or_never(pool.reserve(41)).is_none());
        let rest = pool.reserve(40).await.unwrap();
        drop((small, mid, rest));
        let all = pool.reserve(100).await.unwrap();
        assert_eq!(all.bytes, 100);
    }
}
