//! One connection's socket and service as `listener.rs` hands them to hyper: what the connection
//! is doing (requests in progress, idle since when), the socket handed back when hyper is done
//! with it (for the lingering close), and request heads that carry both `Transfer-Encoding` and
//! `Content-Length` — hyper drops the `Content-Length` and reads the body as chunked, but a proxy
//! in front may have read it by its length, so the request is refused (request smuggling).

use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, Response, StatusCode, header};
use axum::response::IntoResponse;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tower::ServiceExt;

use super::errors::ApiError;

/// A head longer than this is hyper's to refuse; scanning stops.
const MAX_SCANNED_HEAD: usize = 64 * 1024;

/// What a connection is doing, shared by its socket, its service and its task.
pub struct ConnState {
    /// Requests whose response has not been handed to hyper in full.
    active: AtomicUsize,
    /// Milliseconds after `epoch` when `active` last became 0.
    idle_since_ms: AtomicU64,
    epoch: Instant,
    /// The next bytes read start a request head (nothing is being served).
    head_expected: AtomicBool,
    /// The head just read had both `Transfer-Encoding` and `Content-Length`.
    bad_framing: AtomicBool,
}

impl ConnState {
    pub fn new() -> Self {
        Self {
            active: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(0),
            epoch: Instant::now(),
            head_expected: AtomicBool::new(true),
            bad_framing: AtomicBool::new(false),
        }
    }

    /// How long nothing has been served; `None` while a request is.
    pub fn idle_for(&self) -> Option<Duration> {
        if self.active.load(Ordering::SeqCst) > 0 {
            return None;
        }
        let since = Duration::from_millis(self.idle_since_ms.load(Ordering::SeqCst));
        Some(self.epoch.elapsed().saturating_sub(since))
    }

    /// When the connection will have been idle for `idle`; `None` while a request is served.
    pub fn idle_deadline(&self, idle: Duration) -> Option<Instant> {
        self.idle_for()
            .map(|for_| Instant::now() + idle.saturating_sub(for_))
    }
}

impl Default for ConnState {
    fn default() -> Self {
        Self::new()
    }
}

/// Counts one request as in progress until dropped (with the response body, once hyper has
/// taken all of it).
struct Active(Arc<ConnState>);

impl Active {
    fn new(state: Arc<ConnState>) -> Self {
        state.active.fetch_add(1, Ordering::SeqCst);
        Self(state)
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        let s = &self.0;
        if s.active.fetch_sub(1, Ordering::SeqCst) == 1 {
            let now = s.epoch.elapsed().as_millis() as u64;
            s.idle_since_ms.store(now, Ordering::SeqCst);
            s.head_expected.store(true, Ordering::SeqCst);
        }
    }
}

/// A response body that keeps its request counted as in progress.
struct Counted {
    inner: Body,
    _active: Active,
}

impl hyper::body::Body for Counted {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The router as hyper's service for one connection.
pub fn service(
    app: Router,
    state: Arc<ConnState>,
) -> impl hyper::service::Service<
    Request<Incoming>,
    Response = Response<Body>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<Body>, Infallible>> + Send + 'static,
> + Clone {
    hyper::service::service_fn(move |req: Request<Incoming>| {
        let (app, state) = (app.clone(), state.clone());
        async move {
            let active = Active::new(state.clone());
            let resp = if state.bad_framing.swap(false, Ordering::SeqCst) {
                let mut resp = ApiError::bad_request(
                    "a request must not have both Transfer-Encoding and Content-Length",
                )
                .into_response();
                resp.headers_mut()
                    .insert(header::CONNECTION, "close".parse().expect("valid header"));
                *resp.status_mut() = StatusCode::BAD_REQUEST;
                resp
            } else {
                match app.oneshot(req.map(Body::new)).await {
                    Ok(resp) => resp,
                    Err(never) => match never {},
                }
            };
            Ok(resp.map(|inner| {
                Body::new(Counted {
                    inner,
                    _active: active,
                })
            }))
        }
    })
}

/// The socket as hyper reads and writes it; handed back through a channel when hyper drops it.
pub struct ConnIo {
    stream: Option<TcpStream>,
    back: Option<oneshot::Sender<TcpStream>>,
    state: Arc<ConnState>,
    head: Vec<u8>,
}

impl ConnIo {
    pub fn new(
        stream: TcpStream,
        state: Arc<ConnState>,
    ) -> (TokioIo<Self>, oneshot::Receiver<TcpStream>) {
        let (back, returned) = oneshot::channel();
        let io = Self {
            stream: Some(stream),
            back: Some(back),
            state,
            head: Vec::new(),
        };
        (TokioIo::new(io), returned)
    }

    fn stream(&mut self) -> &mut TcpStream {
        self.stream
            .as_mut()
            .expect("the socket is only taken on drop")
    }

    /// Looks at bytes that start a request head until its end.
    fn scan(&mut self, bytes: &[u8]) {
        if bytes.is_empty() || !self.state.head_expected.load(Ordering::SeqCst) {
            return;
        }
        self.head.extend_from_slice(bytes);
        let end = self.head.windows(4).position(|w| w == b"\r\n\r\n");
        if let Some(end) = end {
            let has = |name: &[u8]| {
                self.head[..end].split(|&b| b == b'\n').any(|line| {
                    line.len() > name.len() && line[..name.len()].eq_ignore_ascii_case(name)
                })
            };
            if has(b"transfer-encoding:") && has(b"content-length:") {
                self.state.bad_framing.store(true, Ordering::SeqCst);
            }
        }
        if end.is_some() || self.head.len() > MAX_SCANNED_HEAD {
            self.state.head_expected.store(false, Ordering::SeqCst);
            self.head = Vec::new();
        }
    }
}

impl Drop for ConnIo {
    fn drop(&mut self) {
        if let (Some(stream), Some(back)) = (self.stream.take(), self.back.take()) {
            let _ = back.send(stream);
        }
    }
}

impl AsyncRead for ConnIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(self.stream()).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && self.state.head_expected.load(Ordering::SeqCst)
        {
            let new = buf.filled()[before..].to_vec();
            self.scan(&new);
        }
        result
    }
}

impl AsyncWrite for ConnIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(self.stream()).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.stream()).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.stream()).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(self.stream()).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.as_ref().is_some_and(|s| s.is_write_vectored())
    }
}
