//! Accepting connections with the limits a public server needs, instead of `axum::serve`
//! (which has no connection limit, no header-read or idle timeout and no lingering close):
//!
//! - at most `max_connections` open at once (shared by every listener); one more is answered
//!   503 `too_many_connections` and closed, logged (at most every 10 s) and counted;
//! - `accept` errors (EMFILE, ENFILE, ...) are logged and counted, then accepting pauses briefly
//!   instead of spinning;
//! - HTTP/1 request heads must arrive within `header_read_timeout_ms` (hyper's timer, which
//!   starts when the server begins waiting for a head, so it also closes idle keep-alive
//!   connections); any connection with no request in progress for `idle_timeout_seconds` is
//!   closed (HTTP/2, and clients that never send a byte);
//! - when the drain starts, connections finish the request they are serving and close; those
//!   with none (idle, or a head still arriving) are closed at once;
//! - a closed connection keeps reading (and discarding) what the client still sends for a moment
//!   (a "lingering close"), so a client that sends a large body before reading gets the 413
//!   rather than a reset.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use super::conn_io::{ConnIo, ConnState};
use crate::metrics::Metrics;

/// The connection limits of `[server]`.
#[derive(Clone, Debug)]
pub struct ConnLimits {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    /// How long a closing connection keeps discarding what the client still sends.
    pub linger: Duration,
    /// ... and at most this many bytes.
    pub linger_bytes: u64,
}

/// What every listener shares: the connection slots and the metrics.
#[derive(Clone)]
pub struct Shared {
    pub slots: Arc<Semaphore>,
    max_connections: usize,
    pub metrics: Arc<Metrics>,
    pub limits: ConnLimits,
    last_refusal_log: Arc<AtomicU64>,
    epoch: Instant,
}

impl Shared {
    pub fn new(max_connections: usize, limits: ConnLimits, metrics: Arc<Metrics>) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(max_connections)),
            max_connections,
            metrics,
            limits,
            last_refusal_log: Arc::new(AtomicU64::new(0)),
            epoch: Instant::now(),
        }
    }

    /// Connections open now, over every listener.
    pub fn open(&self) -> usize {
        self.max_connections - self.slots.available_permits()
    }

    /// Whether a warning may be logged now (at most one per 10 s, so a flood cannot flood the log).
    fn may_log(&self) -> bool {
        let now = self.epoch.elapsed().as_secs() + 10;
        let last = self.last_refusal_log.load(Ordering::Relaxed);
        now >= last + 10
            && self
                .last_refusal_log
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

const TOO_MANY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
connection: close\r\nretry-after: 1\r\ncontent-length: 87\r\n\r\n\
{\"error\":\"the server has as many connections open as it allows\",\"code\":\"too_many_connections\"}";

/// Serves `app` on `listener` until `stopping` turns true, then waits for its connections to
/// finish (the caller bounds the wait with the drain time).
pub async fn serve(
    listener: TcpListener,
    name: &'static str,
    app: Router,
    shared: Shared,
    stopping: watch::Receiver<bool>,
) -> Result<()> {
    let mut connections = JoinSet::new();
    let open = shared.metrics.open_connections.with_label_values(&[name]);
    let mut stop = stopping.clone();
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => match shared.slots.clone().try_acquire_owned() {
                    Ok(slot) => {
                        let (app, shared, stopping, open) =
                            (app.clone(), shared.clone(), stopping.clone(), open.clone());
                        connections.spawn(async move {
                            open.inc();
                            connection(stream, app, &shared, stopping).await;
                            open.dec();
                            drop(slot);
                        });
                    }
                    Err(_) => {
                        shared.metrics.connections_refused_total.with_label_values(&[name]).inc();
                        if shared.may_log() {
                            tracing::warn!(listener = name, %peer, limit = shared.max_connections,
                                "connection limit reached: refusing new connections (server.max_connections)");
                        }
                        // Best effort: an HTTP/1 client reads why; nothing waits on a slow one.
                        let _ = stream.try_write(TOO_MANY);
                    }
                },
                Err(e) => {
                    shared.metrics.accept_errors_total.with_label_values(&[name]).inc();
                    if shared.may_log() {
                        tracing::warn!(listener = name, error = %e, "accept failed (out of file descriptors?): pausing accepts for 100 ms");
                    }
                    // The error (EMFILE above all) would repeat at once: let connections close.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
    Ok(())
}

async fn connection(
    stream: TcpStream,
    app: Router,
    shared: &Shared,
    mut stopping: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let state = Arc::new(ConnState::new());
    let (io, returned) = ConnIo::new(stream, state.clone());
    let service = super::conn_io::service(app, state.clone());
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(shared.limits.header_read_timeout);
    // Boxed, so dropping it below really drops it (and hands the socket back).
    let mut conn = Box::pin(builder.serve_connection(io, service));
    let idle = shared.limits.idle_timeout;
    let mut draining = *stopping.borrow();
    if draining {
        conn.as_mut().graceful_shutdown();
    }
    loop {
        // While draining, look every 100 ms for the moment nothing is being served.
        let wake = if draining {
            Instant::now() + Duration::from_millis(100)
        } else {
            state.idle_deadline(idle).unwrap_or(Instant::now() + idle)
        };
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    let timeout = e
                        .downcast_ref::<hyper::Error>()
                        .is_some_and(hyper::Error::is_timeout);
                    if timeout {
                        shared.metrics.connections_timed_out_total.with_label_values(&["header"]).inc();
                    }
                    tracing::debug!("connection ended: {e}");
                }
                break;
            }
            _ = stopping.wait_for(|s| *s), if !draining => {
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = tokio::time::sleep_until(wake.into()) => {
                // A response handed to hyper gets 200 ms to be written before the close.
                if draining && state.idle_for() >= Some(Duration::from_millis(200)) {
                    break;
                }
                if !draining && state.idle_for() >= Some(idle) {
                    shared.metrics.connections_timed_out_total.with_label_values(&["idle"]).inc();
                    break;
                }
            }
        }
    }
    // Dropping hyper's connection hands the socket back here (see `ConnIo`) for the lingering
    // close; a socket hyper still held is returned by the drop itself.
    drop(conn);
    if let Ok(stream) = returned.await {
        let linger = if *stopping.borrow() {
            shared.limits.linger.min(Duration::from_millis(500))
        } else {
            shared.limits.linger
        };
        linger_close(stream, linger, shared.limits.linger_bytes).await;
    }
}

/// Closes the sending side, then reads and discards what the client still sends (up to `bytes`
/// within `time`) before closing: closing a socket with unread data makes the kernel send a
/// reset, which can destroy the response the client has not read yet.
async fn linger_close(mut stream: TcpStream, time: Duration, bytes: u64) {
    use tokio::io::AsyncWriteExt;
    let _ = stream.shutdown().await;
    let mut discarded = 0u64;
    let mut buf = vec![0u8; 16 * 1024];
    let _ = tokio::time::timeout(time, async {
        while discarded < bytes {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => discarded += n as u64,
            }
        }
    })
    .await;
}
