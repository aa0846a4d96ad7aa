//! `quantserve serve`: configuration, logging, the HTTP and gRPC servers on their own executor
//! (one listener for both, or one each), and the graceful shutdown of both together (stop
//! accepting, drain within `drain_seconds`, stop the workers).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use tokio::sync::{oneshot, watch};

use super::listener;
use crate::metrics::Metrics;
use crate::runtime::Runtime;
use crate::runtime::config::{Config, LogFormat, Overrides};

/// The `serve` subcommand's flags.
#[derive(Clone, Debug, Default)]
pub struct ServeArgs {
    pub config: Option<PathBuf>,
    pub http_addr: Option<String>,
    pub grpc_addr: Option<String>,
    pub models: Option<PathBuf>,
    pub log_format: Option<LogFormat>,
}

pub fn serve_main(args: ServeArgs) -> Result<()> {
    let overrides = Overrides {
        http_addr: args.http_addr,
        grpc_addr: args.grpc_addr,
        models_dir: args.models,
        log_format: args.log_format,
    };
    // Loaded first: the log format is part of it (its errors go to stderr through `main`).
    let config = Config::load(args.config.as_deref(), &overrides)?;
    init_tracing(config.log.format);
    let server = Server::start(config, true)?;
    tracing::info!(http = %server.addr(), grpc = %server.grpc_addr(), "listening");
    server.wait()
}

/// Logs to stderr, filtered by `QUANTSERVE_LOG` or `RUST_LOG` (default `info`: one access-log
/// line per HTTP request, see `api::middleware`), as text or one JSON object per line.
pub fn init_tracing(format: LogFormat) {
    let filter = std::env::var("QUANTSERVE_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".into());
    let filter = tracing_subscriber::EnvFilter::try_new(&filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// A running server: listening, loading models in the background.
pub struct Server {
    addr: SocketAddr,
    /// `addr` when gRPC shares the HTTP port.
    grpc_addr: SocketAddr,
    /// The admin API's own listener, when configured.
    admin_addr: Option<SocketAddr>,
    runtime: Arc<Runtime>,
    trigger: watch::Sender<bool>,
    thread: JoinHandle<Result<()>>,
}

impl Server {
    /// Binds `config.server.http_addr` (and `grpc_addr` when set) and serves on a thread of its
    /// own. With `handle_signals`, SIGTERM and SIGINT start the graceful shutdown.
    pub fn start(config: Config, handle_signals: bool) -> Result<Self> {
        // Bound here, before any thread starts, so a taken port fails `start` itself.
        let http = bind(&config.server.http_addr)?;
        let grpc = config.server.grpc_addr.as_deref().map(bind).transpose()?;
        let admin = config.server.admin_addr.as_deref().map(bind).transpose()?;
        let admin_addr = admin.as_ref().map(|l| l.local_addr()).transpose()?;
        let addr = http.local_addr()?;
        let grpc_addr = match &grpc {
            Some(l) => l.local_addr()?,
            None => addr,
        };
        super::admin::warn_if_disabled(&config.server);
        let runtime = Runtime::start(config, Arc::new(Metrics::new()))?;
        let (trigger, triggered) = watch::channel(false);
        let rt = runtime.clone();
        let thread = std::thread::Builder::new()
            .name("qs-http".into())
            .spawn(move || run_servers(rt, http, grpc, admin, triggered, handle_signals))
            .context("starting the HTTP thread")?;
        Ok(Self {
            addr,
            grpc_addr,
            admin_addr,
            runtime,
            trigger,
            thread,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where gRPC is served: its own listener's address, or the HTTP one's when shared.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
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

fn bind(addr: &str) -> Result<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind(addr).with_context(|| format!("binding {addr}"))?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

fn run_servers(
    runtime: Arc<Runtime>,
    http: std::net::TcpListener,
    grpc: Option<std::net::TcpListener>,
    admin: Option<std::net::TcpListener>,
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
    let shared = connection_limits(&runtime);
    let result = executor.block_on(async move {
        let http = tokio::net::TcpListener::from_std(http)?;
        let grpc = grpc.map(tokio::net::TcpListener::from_std).transpose()?;
        let admin = admin.map(tokio::net::TcpListener::from_std).transpose()?;
        // Turns true when the shutdown begins: every listener stops accepting and drains.
        let (stopping_tx, stopping) = watch::channel(false);
        let (health, health_service) = super::grpc::health::Health::new().await;
        tokio::spawn(health.follow(rt.clone(), stopping.clone()));
        if handle_signals {
            tokio::spawn(reload_on_hangup(rt.clone()));
        }
        let http_app = super::http::router(rt.clone());
        let grpc_app = super::grpc::router(rt.clone(), health_service)?;
        let (http_app, grpc) = match grpc {
            Some(listener) => {
                let elsewhere = super::grpc::elsewhere(listener.local_addr()?);
                (
                    super::grpc::shared_port(http_app, elsewhere),
                    Some((listener, grpc_app)),
                )
            }
            None => (super::grpc::shared_port(http_app, grpc_app), None),
        };
        let serve = |listener, name, app| {
            listener::serve(listener, name, app, shared.clone(), stopping.clone())
        };
        let serve_http = serve(http, "http", http_app);
        let serve_grpc = async {
            match grpc {
                Some((listener, app)) => serve(listener, "grpc", app).await,
                None => Ok(()),
            }
        };
        let admin_app = super::http::admin_router(rt.clone());
        let serve_admin = async {
            match admin {
                Some(listener) => serve(listener, "admin", admin_app).await,
                None => Ok(()),
            }
        };
        let open = shared.clone();
        let rt_at_deadline = rt.clone();
        tokio::spawn(async move {
            wait_for_shutdown(triggered, handle_signals).await;
            tracing::info!(
                drain_seconds = drain.as_secs(),
                in_flight = rt.in_flight(),
                connections = open.open(),
                "shutting down: draining (connections with no request in progress close now)"
            );
            rt.begin_drain();
            let _ = stopping_tx.send(true);
            let _ = began_tx.send(Instant::now());
        });
        tokio::select! {
            r = async { tokio::try_join!(serve_http, serve_grpc, serve_admin) } => {
                r.context("serving HTTP and gRPC")?;
                tracing::info!("drained: every connection closed");
            }
            _ = drain_deadline(began_rx, drain) => tracing::warn!(
                in_flight = rt_at_deadline.in_flight(),
                connections = shared.open(),
                "drain time over: closing the connections still open"
            ),
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

/// The `[server]` connection limits, `max_connections` lowered to fit the open-file limit
/// (model files, the listeners and the log need descriptors too).
fn connection_limits(rt: &Runtime) -> listener::Shared {
    let s = &rt.config.server;
    let mut max = s.max_connections;
    if let Some(files) = open_file_limit() {
        let fit = files.saturating_sub(128).max(16) as usize;
        if fit < max {
            tracing::warn!(
                max_connections = max,
                open_file_limit = files,
                "server.max_connections lowered to {fit} to fit the open-file limit (raise it with ulimit -n)"
            );
            max = fit;
        }
    }
    let limits = listener::ConnLimits {
        header_read_timeout: Duration::from_millis(s.header_read_timeout_ms),
        idle_timeout: Duration::from_secs(s.idle_timeout_seconds),
        linger: Duration::from_secs(2),
        linger_bytes: (rt.config.limits.max_body_bytes as u64).saturating_mul(16),
    };
    listener::Shared::new(max, limits, rt.metrics.clone())
}

/// The soft limit on open files, from `/proc/self/limits` (Linux); `None` elsewhere.
fn open_file_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
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

/// SIGHUP re-reads the configuration file and applies its models and routing.
#[cfg(unix)]
async fn reload_on_hangup(rt: Arc<Runtime>) {
    let Ok(mut hangups) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
    else {
        return;
    };
    while hangups.recv().await.is_some() {
        tracing::info!("SIGHUP received: reloading the configuration");
        let rt = rt.clone();
        let outcome = super::admin::off_executor(move || rt.reload_config()).await;
        if let Err(e) = outcome {
            tracing::error!("configuration reload failed: {e}");
        }
    }
}

#[cfg(not(unix))]
async fn reload_on_hangup(_rt: Arc<Runtime>) {}

#[cfg(not(unix))]
async fn terminate() {
    std::future::pending().await
}
