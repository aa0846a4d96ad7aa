//! The inference runtime, independent of any transport: configuration, model registry, queues
//! and batching, worker threads. `api` (HTTP and gRPC) only parses requests, calls
//! `Runtime::classify`/`translate`/`embed` and formats their results or `RuntimeError`s.

pub mod ab;
pub mod abtest;
pub mod batcher;
pub mod compare;
pub mod compare_request;
pub mod config;
mod config_sources;
pub mod detect;
mod embed;
pub mod error;
pub mod experiment;
pub mod html;
pub mod loader;
pub mod pending;
pub mod pool;
pub mod registry;
pub mod request;
pub mod routing;
pub mod segment;
pub mod selfcheck;
pub mod service;
pub mod shadow;
mod translate;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Result;

use crate::metrics::Metrics;
use ab::ExperimentBook;
use abtest::AbStats;
use batcher::BatchLimits;
use config::Config;
use pool::{PoolSettings, WorkerPool};
use registry::Registry;
use shadow::ShadowRecorder;

pub use error::RuntimeError;

pub struct Runtime {
    /// The configuration the server started with; `[models]` lives on in `registry`, which
    /// SIGHUP and `/admin/reload` update.
    pub config: Config,
    pub registry: Registry,
    pub pool: WorkerPool,
    pub metrics: Arc<Metrics>,
    pub ab: Arc<AbStats>,
    pub shadow: Arc<ShadowRecorder>,
    /// A/B experiments: periods, assignments and the counts behind the verdicts.
    pub experiments: Arc<ExperimentBook>,
    /// Serialises admin changes (loads, unloads, reloads) so each sees the others' result.
    admin: std::sync::Mutex<()>,
    draining: AtomicBool,
    in_flight: AtomicUsize,
}

impl Runtime {
    /// Starts the workers and loads the models in the background.
    pub fn start(config: Config, metrics: Arc<Metrics>) -> Result<Arc<Self>> {
        let (workers, threads, adaptive) = config.worker_layout();
        let b = &config.batching;
        let settings = PoolSettings {
            workers,
            threads_per_worker: threads,
            adaptive,
            limits: BatchLimits {
                max_batch_tokens: b.max_batch_tokens,
                max_batch_size: b.max_batch_size,
                age_bound: Duration::from_millis(b.age_bound_ms),
            },
            max_wait: Duration::from_millis(b.max_wait_ms),
            queue_capacity: b.queue_capacity,
            low_priority_capacity: b.shadow_queue_capacity,
            low_priority_min_share: b.shadow_min_share,
        };
        tracing::info!(
            workers,
            threads_per_worker = threads,
            adaptive,
            "starting workers"
        );
        let pool = WorkerPool::start(settings, metrics.clone())?;
        let ab = Arc::new(AbStats::default());
        let runtime = Arc::new(Self {
            registry: Registry::new(&config.server.models_dir, &config.models),
            config,
            pool,
            shadow: Arc::new(ShadowRecorder::new(metrics.clone(), ab.clone())),
            ab,
            experiments: Arc::new(ExperimentBook::new(metrics.clone())),
            metrics,
            admin: std::sync::Mutex::new(()),
            draining: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
        });
        loader::spawn(runtime.clone())?;
        Ok(runtime)
    }

    /// Serving: every model has a variant of its routing split loaded, warmed up and checked,
    /// and no shutdown began.
    pub fn is_ready(&self) -> bool {
        !self.is_draining() && self.registry.all_routable()
    }

    /// New requests are refused from now on; queued and in-flight ones finish.
    pub fn begin_drain(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Inference requests accepted and not yet answered.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Stops the workers once the queues are empty; false if they were still busy at `timeout`.
    pub fn stop_workers(&self, timeout: Duration) -> bool {
        self.pool.close();
        self.pool.join(timeout)
    }
}

/// Counts a request as in flight for as long as it lives.
struct InFlight<'a>(&'a AtomicUsize);

impl<'a> InFlight<'a> {
    fn new(counter: &'a AtomicUsize) -> Self {
        counter.fetch_add(1, Ordering::SeqCst);
        Self(counter)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}
