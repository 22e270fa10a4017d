//! The cluster RPC: every broker↔broker message (quorum, controller, replica fetch, coordinator
//! traffic) rides on it.
//!
//! # Framing
//! Request frame: `[u32 len][u8 service][u64 request_id][payload]`; response frame:
//! `[u32 len][u64 request_id][u8 status][payload]` (big endian; `len` counts the bytes after
//! itself and is at most [`MAX_FRAME_BYTES`]). Status 0 = the handler's reply; 1 = no handler
//! for the service (payload empty).
//!
//! # Connections
//! The client keeps **one TCP connection per (peer address, service)**, and multiplexes calls on
//! it by request id: the server runs each request in its own task and answers in completion
//! order. So a replica fetch long-polling for 500 ms, or a multi-megabyte fetch response,
//! never sits in front of a quorum heartbeat (they are on different connections), and calls of
//! one service never wait for each other either (up to [`MAX_IN_FLIGHT_PER_CONNECTION`]).
//!
//! # Hostile or broken peers
//! The server caps connections ([`MAX_CONNECTIONS`]), frame sizes, requests in flight per
//! connection; a connection idle for [`IDLE_TIMEOUT`], one that takes longer than
//! [`FRAME_READ_TIMEOUT`] to deliver a started frame, or one that does not take its responses
//! within [`WRITE_TIMEOUT`] is closed. Any framing error closes only that connection.
//!
//! # Fault injection
//! [`RpcClient::cut_link`] makes calls to an address fail at once (as if the link dropped
//! everything) and drops replies that arrive while cut; tests cut both directions by cutting on
//! both nodes' clients.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch, OwnedSemaphorePermit, Semaphore};

/// Service id of the metadata quorum (Raft messages).
pub const SERVICE_QUORUM: u8 = 0;
/// Service id of the controller (registered by the broker).
pub const SERVICE_CONTROLLER: u8 = 1;
/// Service id of replica fetches (registered by the broker).
pub const SERVICE_REPLICA_FETCH: u8 = 2;
/// Service id of coordinator traffic between nodes: transaction markers, group completions,
/// transaction verification (registered by the broker).
pub const SERVICE_COORDINATOR: u8 = 3;
/// Service id of share-group traffic between nodes: share-state reads and writes to the share
/// coordinator, dead letters to a DLQ partition's leader (registered by the broker).
pub const SERVICE_SHARE: u8 = 4;

/// Largest frame (after the length prefix), either direction. A peer announcing more loses its
/// connection.
pub const MAX_FRAME_BYTES: usize = 64 << 20;
/// Most connections the server holds at once; more are closed on accept.
pub const MAX_CONNECTIONS: usize = 256;
/// Request bytes a server holds at once, across its connections: frames being read and
/// requests being handled (Kafka's `queued.max.request.bytes` for the cluster port). A
/// connection whose next frame does not fit waits, unread, until memory frees. At least
/// [`MAX_FRAME_BYTES`], so every frame that passes the size check can be read.
pub const MAX_QUEUED_REQUEST_BYTES: usize = 256 << 20;
/// Most requests one connection may have in flight on the server; the reader waits beyond it.
pub const MAX_IN_FLIGHT_PER_CONNECTION: usize = 64;
/// A server connection with no frame started for this long is closed (clients reconnect).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// Once a frame's first byte arrived, the rest must arrive within this.
pub const FRAME_READ_TIMEOUT: Duration = Duration::from_secs(15);
/// A frame must be written out within this, else the connection is closed.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(15);
/// Bound on establishing a client connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Frames queued for writing per connection.
const WRITE_QUEUE: usize = 64;

const REQ_HEADER: usize = 9; // service + request id
const RESP_HEADER: usize = 9; // request id + status
const STATUS_OK: u8 = 0;
const STATUS_NO_SERVICE: u8 = 1;

/// A boxed future, as handlers return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Serves one service: takes a request payload, returns the reply payload.
pub trait Handler: Send + Sync + 'static {
    fn handle<'a>(&'a self, request: Vec<u8>) -> BoxFuture<'a, Vec<u8>>;
}

/// Handlers by service id.
pub type Handlers = HashMap<u8, Arc<dyn Handler>>;

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RpcError {
    #[error("link to {0} is cut (test fault injection)")]
    LinkCut(String),
    #[error("cannot connect to {addr}: {reason}")]
    Connect { addr: String, reason: String },
    #[error("call to {0} timed out")]
    Timeout(String),
    #[error("connection to {addr} lost: {reason}")]
    ConnectionLost { addr: String, reason: String },
    #[error("frame of {0} bytes exceeds the cap")]
    FrameTooLarge(usize),
    #[error("{addr} has no handler for service {service}")]
    UnknownService { addr: String, service: u8 },
    #[error("malformed response from {0}")]
    Malformed(String),
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// Reads one frame body (after the length prefix). `Ok(None)` on a clean EOF before a frame.
/// `idle` bounds the wait for the first byte; the rest must come within [`FRAME_READ_TIMEOUT`].
pub async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    idle: Option<Duration>,
) -> io::Result<Option<Vec<u8>>> {
    Ok(read_frame_within(r, idle, None)
        .await?
        .map(|(body, _)| body))
}

/// [`read_frame`], taking the frame's bytes from `budget` (one permit per byte) once its size
/// is known and before its body is read: while the budget is spent the connection is not read
/// (muted, as Kafka's `queued.max.request.bytes` mutes a connection). The permit is returned
/// with the body; dropping it gives the bytes back.
async fn read_frame_within<R: AsyncRead + Unpin>(
    r: &mut R,
    idle: Option<Duration>,
    budget: Option<&Arc<Semaphore>>,
) -> io::Result<Option<(Vec<u8>, Option<OwnedSemaphorePermit>)>> {
    let mut len = [0u8; 4];
    let first = async {
        let n = r.read(&mut len[..1]).await?;
        io::Result::Ok(n)
    };
    let n = match idle {
        Some(t) => tokio::time::timeout(t, first)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "idle"))??,
        None => first.await?,
    };
    if n == 0 {
        return Ok(None);
    }
    tokio::time::timeout(FRAME_READ_TIMEOUT, r.read_exact(&mut len[1..]))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "frame read timed out"))??;
    let n = u32::from_be_bytes(len) as usize;
    if n > MAX_FRAME_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {n} bytes exceeds {MAX_FRAME_BYTES}"),
        ));
    }
    // Waiting for the budget is not the peer's time: the frame's read timeout starts after.
    let permit = match budget {
        Some(b) => Some(
            b.clone()
                .acquire_many_owned(u32::try_from(n).unwrap_or(u32::MAX))
                .await
                .map_err(|_| io::Error::other("server stopped"))?,
        ),
        None => None,
    };
    let rest = async {
        // Grows with the data that actually arrives: a lying length allocates nothing up front.
        let mut body = Vec::with_capacity(n.min(64 * 1024));
        let got = (&mut *r).take(n as u64).read_to_end(&mut body).await?;
        if got != n {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "frame cut short",
            ));
        }
        Ok(body)
    };
    tokio::time::timeout(FRAME_READ_TIMEOUT, rest)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "frame read timed out"))?
        .map(|body| Some((body, permit)))
}

/// Encodes a request frame.
pub fn encode_request(service: u8, id: u64, payload: &[u8]) -> Result<Vec<u8>, RpcError> {
    let n = REQ_HEADER + payload.len();
    if n > MAX_FRAME_BYTES {
        return Err(RpcError::FrameTooLarge(n));
    }
    let mut out = Vec::with_capacity(4 + n);
    out.extend_from_slice(&(n as u32).to_be_bytes());
    out.push(service);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(payload);
    Ok(out)
}

/// Splits a request frame body into (service, request id, payload).
pub fn decode_request(body: &[u8]) -> Option<(u8, u64, &[u8])> {
    let service = *body.first()?;
    let id = u64::from_be_bytes(body.get(1..9)?.try_into().ok()?);
    Some((service, id, body.get(REQ_HEADER..)?))
}

/// Encodes a response frame; a reply over the cap is replaced by an empty one with no status
/// change (the caller's decode then fails) — handlers must respect [`MAX_FRAME_BYTES`].
pub fn encode_response(id: u64, status: u8, payload: &[u8]) -> Vec<u8> {
    let payload = if RESP_HEADER + payload.len() > MAX_FRAME_BYTES {
        tracing::error!(
            bytes = payload.len(),
            "cluster rpc: reply over the frame cap dropped"
        );
        &[][..]
    } else {
        payload
    };
    let n = RESP_HEADER + payload.len();
    let mut out = Vec::with_capacity(4 + n);
    out.extend_from_slice(&(n as u32).to_be_bytes());
    out.extend_from_slice(&id.to_be_bytes());
    out.push(status);
    out.extend_from_slice(payload);
    out
}

/// Splits a response frame body into (request id, status, payload).
pub fn decode_response(body: &[u8]) -> Option<(u64, u8, &[u8])> {
    let id = u64::from_be_bytes(body.get(0..8)?.try_into().ok()?);
    let status = *body.get(8)?;
    Some((id, status, body.get(RESP_HEADER..)?))
}

// ---------------------------------------------------------------------------------------------
// Server

/// A running server; [`RpcServer::shutdown`] stops it and closes its connections.
pub struct RpcServer {
    local_addr: SocketAddr,
    stop: watch::Sender<bool>,
    accept: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl RpcServer {
    /// Starts serving `listener` with `handlers` (service id → handler) on the current runtime.
    pub fn serve(listener: TcpListener, handlers: Handlers) -> io::Result<RpcServer> {
        Self::serve_within(listener, handlers, MAX_QUEUED_REQUEST_BYTES)
    }

    /// [`RpcServer::serve`] holding at most `queued_bytes` of requests at once.
    fn serve_within(
        listener: TcpListener,
        handlers: Handlers,
        queued_bytes: usize,
    ) -> io::Result<RpcServer> {
        let local_addr = listener.local_addr()?;
        let (stop, stop_rx) = watch::channel(false);
        let handlers = Arc::new(handlers);
        let conns = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        let budget = Arc::new(Semaphore::new(queued_bytes));
        let accept = tokio::spawn(accept_loop(listener, handlers, conns, budget, stop_rx));
        Ok(RpcServer {
            local_addr,
            stop,
            accept: Mutex::new(Some(accept)),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting and closes every connection; returns once the listening socket is
    /// closed (its address can be bound again). Dropping the server also stops it, without
    /// waiting.
    pub async fn shutdown(&self) {
        let _ = self.stop.send(true);
        let accept = lock(&self.accept).take();
        if let Some(t) = accept {
            let _ = t.await;
        }
    }
}

impl Drop for RpcServer {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

async fn accept_loop(
    listener: TcpListener,
    handlers: Arc<Handlers>,
    conns: Arc<Semaphore>,
    budget: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            a = listener.accept() => a,
        };
        let (sock, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "cluster rpc: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = conns.clone().try_acquire_owned() else {
            tracing::warn!(%peer, cap = MAX_CONNECTIONS, "cluster rpc: connection cap reached, closing a new connection");
            drop(sock);
            continue;
        };
        let _ = sock.set_nodelay(true);
        let handlers = handlers.clone();
        let budget = budget.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            if let Err(e) = serve_conn(sock, handlers, budget, stop).await {
                tracing::debug!(%peer, error = %e, "cluster rpc: connection closed");
            }
            drop(permit);
        });
    }
}

async fn serve_conn(
    sock: TcpStream,
    handlers: Arc<Handlers>,
    budget: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
) -> io::Result<()> {
    let (mut rd, mut wr) = sock.into_split();
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(WRITE_QUEUE);
    let writer = tokio::spawn(async move {
        while let Some(frame) = rx.recv().await {
            match tokio::time::timeout(WRITE_TIMEOUT, wr.write_all(&frame)).await {
                Ok(Ok(())) => {}
                _ => return,
            }
        }
    });
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT_PER_CONNECTION));
    let result = loop {
        let frame = tokio::select! {
            _ = stop.wait_for(|s| *s) => break Ok(()),
            f = read_frame_within(&mut rd, Some(IDLE_TIMEOUT), Some(&budget)) => f,
        };
        let (body, bytes) = match frame {
            Ok(Some(b)) => b,
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        };
        let Some((service, id, _)) = decode_request(&body) else {
            break Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "request frame shorter than its header",
            ));
        };
        if writer.is_finished() {
            break Err(io::Error::other("writer stopped"));
        }
        let permit = match in_flight.clone().acquire_owned().await {
            Ok(p) => p,
            Err(_) => break Ok(()),
        };
        let tx = tx.clone();
        match handlers.get(&service).cloned() {
            None => {
                let _ = tx.send(encode_response(id, STATUS_NO_SERVICE, &[])).await;
            }
            Some(h) => {
                tokio::spawn(async move {
                    let mut body = body;
                    let payload = body.split_off(REQ_HEADER);
                    let reply = h.handle(payload).await;
                    // The request's bytes count until it is answered.
                    drop(bytes);
                    let _ = tx.send(encode_response(id, STATUS_OK, &reply)).await;
                    drop(permit);
                });
            }
        }
    };
    drop(tx);
    writer.abort();
    result
}

// ---------------------------------------------------------------------------------------------
// Client

type Pending = Mutex<HashMap<u64, oneshot::Sender<Result<(u8, Vec<u8>), RpcError>>>>;

struct ClientConn {
    tx: mpsc::Sender<Vec<u8>>,
    pending: Pending,
    closed: AtomicBool,
    /// Set when the connection is given up: its reader and writer tasks end (dropping the
    /// socket) even while they wait.
    stop: watch::Sender<bool>,
}

impl ClientConn {
    fn fail_all(&self, err: RpcError) {
        self.closed.store(true, Ordering::Release);
        self.stop.send_replace(true);
        let all: Vec<_> = lock(&self.pending).drain().collect();
        for (_, tx) in all {
            let _ = tx.send(Err(err.clone()));
        }
    }
}

/// The cluster RPC client: one multiplexed connection per (peer address, service), reused.
#[derive(Default)]
pub struct RpcClient {
    conns: Mutex<HashMap<(String, u8), Arc<ClientConn>>>,
    next_id: AtomicU64,
    cut: Mutex<HashSet<String>>,
}

impl RpcClient {
    pub fn new() -> Arc<RpcClient> {
        Arc::new(RpcClient::default())
    }

    /// Test hook: calls to `addr` fail at once with [`RpcError::LinkCut`], replies from it are
    /// dropped, and open connections to it are closed.
    pub fn cut_link(&self, addr: &str) {
        lock(&self.cut).insert(addr.to_string());
        let gone: Vec<_> = {
            let mut m = lock(&self.conns);
            let keys: Vec<_> = m.keys().filter(|(a, _)| a == addr).cloned().collect();
            keys.into_iter().filter_map(|k| m.remove(&k)).collect()
        };
        for c in gone {
            c.fail_all(RpcError::LinkCut(addr.to_string()));
        }
    }

    /// Test hook: restores the link to `addr`.
    pub fn heal_link(&self, addr: &str) {
        lock(&self.cut).remove(addr);
    }

    /// Test hook: restores every link.
    pub fn heal_all(&self) {
        lock(&self.cut).clear();
    }

    fn is_cut(&self, addr: &str) -> bool {
        lock(&self.cut).contains(addr)
    }

    async fn conn(
        self: &Arc<Self>,
        addr: &str,
        service: u8,
        timeout: Duration,
    ) -> Result<Arc<ClientConn>, RpcError> {
        let key = (addr.to_string(), service);
        if let Some(c) = lock(&self.conns).get(&key) {
            if !c.closed.load(Ordering::Acquire) {
                return Ok(c.clone());
            }
        }
        let connect =
            tokio::time::timeout(timeout.min(CONNECT_TIMEOUT), TcpStream::connect(addr)).await;
        let sock = match connect {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                return Err(RpcError::Connect {
                    addr: addr.to_string(),
                    reason: e.to_string(),
                })
            }
            Err(_) => {
                return Err(RpcError::Connect {
                    addr: addr.to_string(),
                    reason: "timed out".into(),
                })
            }
        };
        let _ = sock.set_nodelay(true);
        let (mut rd, mut wr) = sock.into_split();
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(WRITE_QUEUE);
        let conn = Arc::new(ClientConn {
            tx,
            pending: Mutex::new(HashMap::new()),
            closed: AtomicBool::new(false),
            stop: watch::channel(false).0,
        });
        {
            let mut m = lock(&self.conns);
            if let Some(c) = m.get(&key) {
                if !c.closed.load(Ordering::Acquire) {
                    return Ok(c.clone()); // lost a race; ours is dropped
                }
            }
            m.insert(key.clone(), conn.clone());
        }
        let wconn = conn.clone();
        let waddr = addr.to_string();
        let mut wstop = conn.stop.subscribe();
        tokio::spawn(async move {
            loop {
                let frame = tokio::select! {
                    _ = wstop.wait_for(|s| *s) => return,
                    f = rx.recv() => match f {
                        Some(f) => f,
                        None => return,
                    },
                };
                match tokio::time::timeout(WRITE_TIMEOUT, wr.write_all(&frame)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        wconn.fail_all(RpcError::ConnectionLost {
                            addr: waddr.clone(),
                            reason: e.to_string(),
                        });
                        return;
                    }
                    Err(_) => {
                        wconn.fail_all(RpcError::ConnectionLost {
                            addr: waddr.clone(),
                            reason: "write timed out".into(),
                        });
                        return;
                    }
                }
                if wconn.closed.load(Ordering::Acquire) {
                    return;
                }
            }
        });
        let rconn = conn.clone();
        let client = Arc::downgrade(self);
        let raddr = addr.to_string();
        let mut rstop = conn.stop.subscribe();
        tokio::spawn(async move {
            let reason = loop {
                let read = tokio::select! {
                    _ = rstop.wait_for(|s| *s) => break "closed".to_string(),
                    r = read_frame(&mut rd, None) => r,
                };
                let body = match read {
                    Ok(Some(b)) => b,
                    Ok(None) => break "closed by peer".to_string(),
                    Err(e) => break e.to_string(),
                };
                let Some((id, status, payload)) = decode_response(&body) else {
                    break "malformed response frame".to_string();
                };
                let tx = lock(&rconn.pending).remove(&id);
                if let Some(tx) = tx {
                    let _ = tx.send(Ok((status, payload.to_vec())));
                }
            };
            rconn.fail_all(RpcError::ConnectionLost {
                addr: raddr.clone(),
                reason,
            });
            if let Some(client) = client.upgrade() {
                let mut m = lock(&client.conns);
                if m.get(&key).is_some_and(|c| Arc::ptr_eq(c, &rconn)) {
                    m.remove(&key);
                }
            }
        });
        Ok(conn)
    }

    /// Calls `service` at `addr` with `payload`; fails after `timeout`. Connection failures are
    /// not retried here (the caller decides).
    pub async fn call(
        self: &Arc<Self>,
        addr: &str,
        service: u8,
        payload: &[u8],
        timeout: Duration,
    ) -> Result<Vec<u8>, RpcError> {
        if self.is_cut(addr) {
            return Err(RpcError::LinkCut(addr.to_string()));
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let frame = encode_request(service, id, payload)?;
        let deadline = tokio::time::Instant::now() + timeout;
        let conn = self.conn(addr, service, timeout).await?;
        let (tx, rx) = oneshot::channel();
        lock(&conn.pending).insert(id, tx);
        if conn.closed.load(Ordering::Acquire) {
            lock(&conn.pending).remove(&id);
            return Err(RpcError::ConnectionLost {
                addr: addr.to_string(),
                reason: "closed".into(),
            });
        }
        let sent = tokio::time::timeout_at(deadline, conn.tx.send(frame)).await;
        if !matches!(sent, Ok(Ok(()))) {
            lock(&conn.pending).remove(&id);
            return Err(RpcError::Timeout(addr.to_string()));
        }
        let res = tokio::time::timeout_at(deadline, rx).await;
        lock(&conn.pending).remove(&id);
        let (status, payload) = match res {
            Err(_) => return Err(RpcError::Timeout(addr.to_string())),
            Ok(Err(_)) => {
                return Err(RpcError::ConnectionLost {
                    addr: addr.to_string(),
                    reason: "dropped".into(),
                })
            }
            Ok(Ok(r)) => r?,
        };
        if self.is_cut(addr) {
            return Err(RpcError::LinkCut(addr.to_string()));
        }
        match status {
            STATUS_OK => Ok(payload),
            STATUS_NO_SERVICE => Err(RpcError::UnknownService {
                addr: addr.to_string(),
                service,
            }),
            _ => Err(RpcError::Malformed(addr.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Echo;
    impl Handler for Echo {
        fn handle<'a>(&'a self, request: Vec<u8>) -> BoxFuture<'a, Vec<u8>> {
            Box::pin(async move {
                if request.first() == Some(&b's') {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                request
            })
        }
    }

    async fn server() -> (RpcServer, String) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut h: Handlers = HashMap::new();
        h.insert(SERVICE_QUORUM, Arc::new(Echo));
        h.insert(SERVICE_REPLICA_FETCH, Arc::new(Echo));
        let s = RpcServer::serve(l, h).unwrap();
        let a = s.local_addr().to_string();
        (s, a)
    }

    /// Counts the requests it started; holds each until the gate opens.
    struct Gate {
        started: AtomicU64,
        open: tokio::sync::Notify,
    }
    impl Handler for Gate {
        fn handle<'a>(&'a self, request: Vec<u8>) -> BoxFuture<'a, Vec<u8>> {
            Box::pin(async move {
                let wait = self.open.notified();
                self.started.fetch_add(1, Ordering::AcqRel);
                wait.await;
                request
            })
        }
    }

    #[tokio::test]
    async fn requests_past_the_memory_budget_wait_unread_until_memory_frees() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let gate = Arc::new(Gate {
            started: AtomicU64::new(0),
            open: tokio::sync::Notify::new(),
        });
        let mut h: Handlers = HashMap::new();
        h.insert(SERVICE_QUORUM, gate.clone());
        h.insert(SERVICE_REPLICA_FETCH, gate.clone());
        // Room for one 600-byte request (plus its header), not two.
        let s = RpcServer::serve_within(l, h, 1000).unwrap();
        let addr = s.local_addr().to_string();
        let t = Duration::from_secs(10);
        let c = RpcClient::new();
        let started = |n| {
            let gate = gate.clone();
            async move {
                for _ in 0..500 {
                    if gate.started.load(Ordering::Acquire) >= n {
                        return true;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                false
            }
        };
        let (c1, a1) = (c.clone(), addr.clone());
        let first =
            tokio::spawn(async move { c1.call(&a1, SERVICE_REPLICA_FETCH, &[1; 600], t).await });
        assert!(
            started(1).await,
            "the first request never reached its handler"
        );
        // The second (on another connection) does not fit beside it: it is not read.
        let (c2, a2) = (c.clone(), addr.clone());
        let second = tokio::spawn(async move { c2.call(&a2, SERVICE_QUORUM, &[2; 600], t).await });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(gate.started.load(Ordering::Acquire), 1);
        // Once the first is answered its bytes come back and the second is read.
        gate.open.notify_waiters();
        assert_eq!(first.await.unwrap().unwrap(), vec![1; 600]);
        assert!(started(2).await, "the second request was never read");
        gate.open.notify_waiters();
        assert_eq!(second.await.unwrap().unwrap(), vec![2; 600]);
    }

    #[tokio::test]
    async fn calls_multiplex_and_long_calls_do_not_block_others() {
        let (_s, addr) = server().await;
        let c = RpcClient::new();
        let t = Duration::from_secs(5);
        assert_eq!(
            c.call(&addr, SERVICE_QUORUM, b"hi", t).await.unwrap(),
            b"hi"
        );
        // A slow call on the fetch service and on the quorum service itself; fast calls overtake.
        let c2 = c.clone();
        let a2 = addr.clone();
        let slow =
            tokio::spawn(async move { c2.call(&a2, SERVICE_REPLICA_FETCH, b"slow", t).await });
        let c3 = c.clone();
        let a3 = addr.clone();
        let slow_q = tokio::spawn(async move { c3.call(&a3, SERVICE_QUORUM, b"slow", t).await });
        tokio::task::yield_now().await;
        for i in 0..20u8 {
            assert_eq!(
                c.call(&addr, SERVICE_QUORUM, &[i], t).await.unwrap(),
                vec![i]
            );
        }
        // Both slow calls are still running: the fast ones did not wait for them.
        assert!(!slow.is_finished() && !slow_q.is_finished());
        assert_eq!(slow.await.unwrap().unwrap(), b"slow");
        assert_eq!(slow_q.await.unwrap().unwrap(), b"slow");
        assert_eq!(
            c.call(&addr, SERVICE_CONTROLLER, b"x", t).await,
            Err(RpcError::UnknownService {
                addr: addr.clone(),
                service: SERVICE_CONTROLLER
            })
        );
        assert!(matches!(
            c.call(&addr, SERVICE_QUORUM, b"slow", Duration::from_millis(50))
                .await,
            Err(RpcError::Timeout(_))
        ));
        c.cut_link(&addr);
        assert!(matches!(
            c.call(&addr, SERVICE_QUORUM, b"x", t).await,
            Err(RpcError::LinkCut(_))
        ));
        c.heal_link(&addr);
        assert_eq!(c.call(&addr, SERVICE_QUORUM, b"x", t).await.unwrap(), b"x");
    }

    #[tokio::test]
    async fn hostile_peers_lose_only_their_connection() {
        let (_s, addr) = server().await;
        let c = RpcClient::new();
        let t = Duration::from_secs(5);
        // A frame claiming more than the cap.
        let mut bad = TcpStream::connect(&addr).await.unwrap();
        bad.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
        let mut buf = [0u8; 1];
        assert_eq!(
            bad.read(&mut buf).await.unwrap(),
            0,
            "server closes the connection"
        );
        // A frame shorter than its header.
        let mut bad = TcpStream::connect(&addr).await.unwrap();
        bad.write_all(&[0, 0, 0, 2, 0, 0]).await.unwrap();
        assert_eq!(bad.read(&mut buf).await.unwrap(), 0);
        // A peer that starts a frame and stalls keeps only its own connection busy.
        let mut stall = TcpStream::connect(&addr).await.unwrap();
        stall.write_all(&[0, 0, 1]).await.unwrap();
        assert_eq!(
            c.call(&addr, SERVICE_QUORUM, b"ok", t).await.unwrap(),
            b"ok"
        );
        // Garbage bytes.
        let mut g = TcpStream::connect(&addr).await.unwrap();
        g.write_all(&[0, 0, 0, 9, 7, 7, 7, 7, 7, 7, 7, 7, 7, 0xff, 0xff])
            .await
            .unwrap();
        assert_eq!(
            c.call(&addr, SERVICE_QUORUM, b"still", t).await.unwrap(),
            b"still"
        );
    }

    #[tokio::test]
    async fn connection_cap_and_shutdown() {
        let (s, addr) = server().await;
        let c = RpcClient::new();
        let t = Duration::from_secs(5);
        // Fill the cap with idle connections; one more is closed at once.
        let mut idle = Vec::new();
        for _ in 0..MAX_CONNECTIONS - 1 {
            idle.push(TcpStream::connect(&addr).await.unwrap());
        }
        assert_eq!(
            c.call(&addr, SERVICE_QUORUM, b"last slot", t)
                .await
                .unwrap(),
            b"last slot"
        );
        let mut extra = TcpStream::connect(&addr).await.unwrap();
        let mut buf = [0u8; 1];
        assert_eq!(
            extra.read(&mut buf).await.unwrap(),
            0,
            "over the cap: closed"
        );
        drop(idle);
        // Shutdown closes the live connection: the next call fails, none hangs.
        s.shutdown().await;
        let r = c.call(&addr, SERVICE_QUORUM, b"after", t).await;
        assert!(r.is_err(), "{r:?}");
    }

    #[test]
    fn frames_round_trip() {
        let f = encode_request(2, 77, b"abc").unwrap();
        assert_eq!(decode_request(&f[4..]), Some((2, 77, &b"abc"[..])));
        let r = encode_response(77, 0, b"xyz");
        assert_eq!(decode_response(&r[4..]), Some((77, 0, &b"xyz"[..])));
        assert_eq!(decode_request(&[1, 2]), None);
        assert_eq!(decode_response(&[1, 2, 3, 4, 5, 6, 7, 8]), None);
    }
}
