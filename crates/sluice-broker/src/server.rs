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
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify, Semaphore, TryAcquireError};

use crate::broker::Broker;
use crate::handlers::{self, Handled};

pub async fn serve_kafka(
    broker: Arc<Broker>,
    listener: TcpListener,
    mut stop: watch::Receiver<bool>,
) {
    let mut connections = tokio::task::JoinSet::new();
    let memory = RequestMemory::new(
        broker.config.queued_max_request_bytes,
        broker.metrics.request_memory.clone(),
    );
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    if connections.len() >= broker.config.max_connections {
                        tracing::warn!(%peer, limit = broker.config.max_connections, "refusing connection: max.connections reached");
                        drop(stream);
                        continue;
                    }
                    let _ = stream.set_nodelay(true);
                    connections.spawn(connection(broker.clone(), stream, peer, memory.clone(), stop.clone()));
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

/// How long a request still in flight when shutdown starts may take before its connection is
/// closed unanswered (see the module docs).
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// Resolves once shutdown has started (at once if it already has; also if the signal's sender
/// is gone). Unlike `changed()`, it can be awaited any number of times.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopping| *stopping).await;
}

async fn connection(
    broker: Arc<Broker>,
    stream: TcpStream,
    peer: SocketAddr,
    memory: Arc<RequestMemory>,
    mut stop: watch::Receiver<bool>,
) {
    broker.metrics.connections.inc();
    let (rd, wr) = stream.into_split();
    let mut rd = BufReader::with_capacity(64 * 1024, rd);
    let mut wr = BufWriter::with_capacity(64 * 1024, wr);
    let max = broker.config.max_request_bytes;
    let idle = broker.config.idle_timeout;
    let read_timeout = broker.config.request_read_timeout;
    loop {
        let size = tokio::select! {
            biased;
            _ = stopped(&mut stop) => break,
            r = tokio::time::timeout(idle, rd.read_i32()) => match r {
                Err(_) => {
                    tracing::debug!(%peer, "closing idle connection");
                    break;
                }
                Ok(Err(_)) => break,
                Ok(Ok(size)) => size,
            },
        };
        let (Ok(size), Ok(permits)) = (usize::try_from(size), u32::try_from(size)) else {
            tracing::warn!(%peer, size, "closing connection: negative request size");
            break;
        };
        if size > max {
            tracing::warn!(%peer, size, max, "closing connection: request size exceeds socket.request.max.bytes");
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
                tracing::warn!(%peer, size, timeout_ms = read_timeout.as_millis() as u64,
                    "closing connection: request not received within the request read timeout");
                break;
            }
            Ok(None) => break,
            Ok(Some(frame)) => frame,
        };
        let handled = {
            let handling = handlers::handle(&broker, frame, peer);
            tokio::pin!(handling);
            tokio::select! {
                biased;
                h = &mut handling => h,
                _ = async {
                    stopped(&mut stop).await;
                    tokio::time::sleep(SHUTDOWN_GRACE).await;
                } => {
                    tracing::debug!(%peer, "closing a connection whose request was still waiting at shutdown");
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
                    tracing::debug!(%peer, error = %e, "closing connection: response not sent");
                    break;
                }
                mute
            }
            Handled::NoResponse(mute) => mute,
            Handled::Close(reason) => {
                tracing::warn!(%peer, %reason, "closing connection");
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
    broker.metrics.connections.dec();
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
