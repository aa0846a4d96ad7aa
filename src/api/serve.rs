//! `quantserve serve`: configuration, logging, the HTTP server on its own executor, and the
//! graceful shutdown (stop accepting, drain within `drain_seconds`, stop the workers).

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use tokio::sync::{oneshot, watch};

use crate::metrics::Metrics;
use crate::runtime::Runtime;
use crate::runtime::config::{Config, Overrides};

/// The `serve` subcommand's flags.
#[derive(Clone, Debug, Default)]
pub struct ServeArgs {
    pub config: Option<PathBuf>,
    pub http_addr: Option<String>,
    pub models: Option<PathBuf>,
}

pub fn serve_main(args: ServeArgs) -> Result<()> {
    init_tracing();
    let overrides = Overrides {
        http_addr: args.http_addr,
        models_dir: args.models,
    };
    let config = Config::load(args.config.as_deref(), &overrides)?;
    let server = Server::start(config, true)?;
    tracing::info!(addr = %server.addr(), "listening");
    server.wait()
}

/// Logs to stderr, filtered by `QUANTSERVE_LOG` or `RUST_LOG` (default `info`; `debug` adds one
/// line per request).
pub fn init_tracing() {
    let filter = std::env::var("QUANTSERVE_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".into());
    let filter = tracing_subscriber::EnvFilter::try_new(&filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// A running server: listening, loading models in the background.
pub struct Server {
    addr: SocketAddr,
    runtime: Arc<Runtime>,
    trigger: watch::Sender<bool>,
    thread: JoinHandle<Result<()>>,
}

impl Server {
    /// Binds `config.server.http_addr` and serves on a thread of its own. With `handle_signals`,
    /// SIGTERM and SIGINT start the graceful shutdown.
    pub fn start(config: Config, handle_signals: bool) -> Result<Self> {
        let addr = &config.server.http_addr;
        let listener =
            std::net::TcpListener::bind(addr).with_context(|| format!("binding {addr}"))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let runtime = Runtime::start(config, Arc::new(Metrics::new()))?;
        let (trigger, triggered) = watch::channel(false);
        let rt = runtime.clone();
        let thread = std::thread::Builder::new()
            .name("qs-http".into())
            .spawn(move || run_http(rt, listener, triggered, handle_signals))
            .context("starting the HTTP thread")?;
        Ok(Self {
            addr,
            runtime,
            trigger,
            thread,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    /// Starts the graceful shutdown (as SIGTERM does).
    pub fn shutdown(&self) {
        let _ = self.trigger.send(true);
    }

    /// Waits until the server has shut down.
    pub fn wait(self) -> Result<()> {
        let Self {
            thread, trigger, ..
        } = self;
        let result = thread
            .join()
            .map_err(|_| anyhow!("the HTTP thread panicked"))?;
        drop(trigger);
        result
    }
}

fn run_http(
    runtime: Arc<Runtime>,
    listener: std::net::TcpListener,
    triggered: watch::Receiver<bool>,
    handle_signals: bool,
) -> Result<()> {
    let threads = runtime.config.server.http_threads;
    let executor = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        // Tokenizing runs on the blocking pool; keep it as small as the executor.
        .max_blocking_threads(threads)
        .thread_name("qs-http")
        .enable_all()
        .build()
        .context("starting the async executor")?;
    let drain = Duration::from_secs(runtime.config.server.drain_seconds);
    let (began_tx, began_rx) = oneshot::channel::<Instant>();
    let rt = runtime.clone();
    let result = executor.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let app = super::http::router(rt.clone());
        let shutdown = async move {
            wait_for_shutdown(triggered, handle_signals).await;
            tracing::info!(drain_seconds = drain.as_secs(), in_flight = rt.in_flight(), "shutting down: draining");
            rt.begin_drain();
            let _ = began_tx.send(Instant::now());
        };
        let serve = axum::serve(listener, app).with_graceful_shutdown(shutdown).into_future();
        tokio::select! {
            r = serve => r.context("serving HTTP")?,
            _ = drain_deadline(began_rx, drain) => tracing::warn!("drain time over: exiting with requests in flight"),
        }
        anyhow::Ok(())
    });
    // Every connection is closed (or the drain time is over): what is left in the queues has
    // nobody waiting for it.
    if !runtime.stop_workers(Duration::from_secs(1)) {
        tracing::warn!("workers still busy at exit");
    }
    executor.shutdown_timeout(Duration::from_secs(1));
    tracing::info!("stopped");
    result
}

/// Resolves `drain` after the shutdown began; never if it does not.
async fn drain_deadline(began: oneshot::Receiver<Instant>, drain: Duration) {
    match began.await {
        Ok(t) => tokio::time::sleep_until((t + drain).into()).await,
        Err(_) => std::future::pending().await,
    }
}

async fn wait_for_shutdown(mut triggered: watch::Receiver<bool>, handle_signals: bool) {
    let trigger = async move {
        if triggered.wait_for(|t| *t).await.is_err() {
            // The server handle is gone without asking for a shutdown: only a signal stops it.
            std::future::pending::<()>().await;
        }
    };
    if !handle_signals {
        return trigger.await;
    }
    tokio::select! {
        _ = trigger => {}
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
        _ = terminate() => tracing::info!("SIGTERM received"),
    }
}

#[cfg(unix)]
async fn terminate() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut s) => {
            s.recv().await;
        }
        Err(_) => std::future::pending().await,
    }
}

#[cfg(not(unix))]
async fn terminate() {
    std::future::pending().await
}
