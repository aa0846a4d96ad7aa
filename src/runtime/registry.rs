//! The served models and their variants, changed at run time: variants load, swap and unload, and
//! each model's routing decides which variant answers a request.
//!
//! A request holds the `Arc<ModelEntry>` it was routed to until it is answered, so a swap or
//! unload never pulls a variant from under it: the registry forgets the entry at once, the entry
//! (its engine and queues) goes away with its last request.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::ab::settings::ExperimentSettings;
use super::ab::{Choice, Setup};
use super::config::{ModelConfig, Task};
use super::error::RuntimeError;
use super::pool::{QueueHandle, QueueKey};
use super::routing::Routing;
use super::selfcheck::SelfCheck;
use crate::models::Model;
use crate::repo::{VariantKind, language_pair};

/// A loaded, warmed-up and checked variant.
pub struct ModelEntry {
    pub key: QueueKey,
    pub engine: Arc<dyn Model>,
    pub queue: QueueHandle,
    /// Low-priority queue where shadow copies of other variants' requests run on this one.
    pub shadow_queue: QueueHandle,
    /// `None` for the model's reference variant, which is not checked against itself.
    pub self_check: Option<SelfCheck>,
    /// Scheme and bits, as the variant's file says.
    pub kind: VariantKind,
}

/// A routed request: the entry that serves it and how it was chosen.
pub struct Routed {
    pub entry: Arc<ModelEntry>,
    pub choice: Choice,
    pub settings: ExperimentSettings,
    pub setup: Setup,
}

#[derive(Clone, Debug, PartialEq)]
pub enum VariantStatus {
    Loading,
    /// Loaded, warmed up, checked: serving.
    Ready,
    Failed(String),
}

impl VariantStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            VariantStatus::Loading => "loading",
            VariantStatus::Ready => "ready",
            VariantStatus::Failed(_) => "failed",
        }
    }
}

struct Slot {
    serving: Option<Arc<ModelEntry>>,
    status: VariantStatus,
    /// A load of this variant is running (first load or a hot swap).
    loading: bool,
    /// Why the last load failed, also while an older copy keeps serving.
    last_error: Option<String>,
}

struct ModelState {
    config: ModelConfig,
    routing: Routing,
    slots: BTreeMap<String, Slot>,
    /// The (source, target) languages of a translator.
    pair: Option<(String, String)>,
}

/// A model's language pair: configured, else from its reference folder's files or its name.
fn model_pair(root: &Path, name: &str, config: &ModelConfig) -> Option<(String, String)> {
    if config.task == Some(Task::Classify) {
        return None;
    }
    match &config.pair {
        Some(p) => p
            .split_once('-')
            .map(|(s, t)| (s.to_string(), t.to_string())),
        None => language_pair(&root.join(name).join(&config.reference_variant), name),
    }
}

impl ModelState {
    fn new(config: ModelConfig, pair: Option<(String, String)>) -> Self {
        let routing = config.effective_routing();
        let slots = config
            .all_variants()
            .into_iter()
            .map(|v| {
                (
                    v,
                    Slot {
                        serving: None,
                        status: VariantStatus::Loading,
                        loading: false,
                        last_error: None,
                    },
                )
            })
            .collect();
        Self {
            config,
            routing,
            slots,
            pair,
        }
    }

    fn serving(&self, variant: &str) -> Option<&Arc<ModelEntry>> {
        self.slots.get(variant).and_then(|s| s.serving.as_ref())
    }

    fn experiment_setup(&self) -> (ExperimentSettings, Setup) {
        let r = &self.routing;
        let setup = Setup {
            split: r.split.clone(),
            reference: self.config.reference_variant.clone(),
            shadow_reference: r.shadow.as_ref().map(|s| s.reference.clone()),
            sticky: r.sticky_key.is_some(),
        };
        (r.experiment.clone(), setup)
    }
}

/// What `/v1/models` and the gRPC `ListModels` show of one variant.
#[derive(Clone, Debug)]
pub struct VariantView {
    pub name: String,
    pub status: VariantStatus,
    pub reloading: bool,
    pub last_error: Option<String>,
    pub engine: Option<Arc<dyn Model>>,
    pub weight: u32,
    pub self_check: Option<SelfCheck>,
    pub queue_depth: usize,
    /// The loaded variant's kind, or what its name implies while it is not loaded.
    pub kind: VariantKind,
}

#[derive(Clone, Debug)]
pub struct ModelView {
    pub name: String,
    pub task: Option<Task>,
    pub default_variant: String,
    pub reference: String,
    pub routing: Routing,
    pub variants: Vec<VariantView>,
}

pub struct Registry {
    models: RwLock<BTreeMap<String, ModelState>>,
    /// The model repository, where a model's files say which language pair it serves.
    root: PathBuf,
}

impl Registry {
    /// Every configured model of the repository at `root` with its variants, all still loading.
    pub fn new(root: &Path, models: &BTreeMap<String, ModelConfig>) -> Self {
        let registry = Self {
            models: RwLock::default(),
            root: root.to_path_buf(),
        };
        for (name, cfg) in models {
            registry.put_model(name, cfg.clone());
        }
        registry
    }

    fn read(&self) -> RwLockReadGuard<'_, BTreeMap<String, ModelState>> {
        self.models.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, BTreeMap<String, ModelState>> {
        self.models.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a model, or replaces a known model's configuration while keeping its loaded variants
    /// and its current routing (the caller loads the new variants, then sets the new routing, so
    /// no request is ever routed to a variant still loading).
    pub fn put_model(&self, name: &str, config: ModelConfig) {
        let pair = model_pair(&self.root, name, &config);
        let mut models = self.write();
        match models.get_mut(name) {
            Some(state) => {
                for v in config.all_variants() {
                    state.slots.entry(v).or_insert(Slot {
                        serving: None,
                        status: VariantStatus::Loading,
                        loading: false,
                        last_error: None,
                    });
                }
                state.config = config;
                state.pair = pair;
            }
            None => {
                models.insert(name.into(), ModelState::new(config, pair));
            }
        }
    }

    /// Forgets a model and all its variants (they finish their requests first).
    pub fn remove_model(&self, name: &str) -> bool {
        self.write().remove(name).is_some()
    }

    pub fn has_model(&self, model: &str) -> bool {
        self.read().contains_key(model)
    }

    pub fn model_names(&self) -> Vec<String> {
        self.read().keys().cloned().collect()
    }

    /// Every translator's language pair, by model name.
    pub fn pairs(&self) -> Vec<(String, (String, String))> {
        self.read()
            .iter()
            .filter_map(|(name, s)| Some((name.clone(), s.pair.clone()?)))
            .collect()
    }

    /// The model serving `source` → `target`.
    pub fn model_for_pair(&self, source: &str, target: &str) -> Option<String> {
        self.pairs()
            .into_iter()
            .find(|(_, (s, t))| s == source && t == target)
            .map(|(name, _)| name)
    }

    pub fn model_config(&self, model: &str) -> Option<ModelConfig> {
        self.read().get(model).map(|s| s.config.clone())
    }

    pub fn routing(&self, model: &str) -> Result<Routing, RuntimeError> {
        self.read()
            .get(model)
            .map(|s| s.routing.clone())
            .ok_or_else(|| RuntimeError::UnknownModel(model.into()))
    }

    /// Whether `model` has an entry (loaded, loading or failed) for `variant`.
    pub fn has_variant(&self, model: &str, variant: &str) -> bool {
        self.read()
            .get(model)
            .is_some_and(|s| s.slots.contains_key(variant))
    }

    /// The serving entry of `model`'s `variant`.
    pub fn resolve(&self, model: &str, variant: &str) -> Result<Arc<ModelEntry>, RuntimeError> {
        let models = self.read();
        let state = models
            .get(model)
            .ok_or_else(|| RuntimeError::UnknownModel(model.into()))?;
        let slot = state
            .slots
            .get(variant)
            .ok_or_else(|| RuntimeError::UnknownVariant {
                model: model.into(),
                variant: variant.into(),
            })?;
        match (&slot.serving, &slot.status) {
            (Some(e), _) => Ok(e.clone()),
            (None, VariantStatus::Failed(msg)) => Err(RuntimeError::VariantFailed(format!(
                "{model}/{variant} failed to load (load it again, or unload it): {msg}"
            ))),
            (None, _) => Err(RuntimeError::NotReady(format!(
                "{model}/{variant} is still loading"
            ))),
        }
    }

    /// The variant that serves a request: the one it names (if the model's routing allows
    /// overrides), else the one the routing's split assigns, sticky by the header `sticky_key`
    /// names, or the next loaded one in the user's order (a fallback).
    pub fn route(
        &self,
        model: &str,
        requested: Option<&str>,
        header: impl Fn(&str) -> Option<String>,
    ) -> Result<Routed, RuntimeError> {
        let models = self.read();
        let state = models
            .get(model)
            .ok_or_else(|| RuntimeError::UnknownModel(model.into()))?;
        let routing = &state.routing;
        let sticky_value = routing.sticky_key.as_deref().and_then(&header);
        let (settings, setup) = state.experiment_setup();
        if let Some(v) = requested {
            if !routing.allow_override {
                return Err(RuntimeError::Forbidden(format!(
                    "model `{model}` does not allow choosing a variant (its routing has \
                     allow_override = false); leave `variant` out"
                )));
            }
            drop(models);
            let entry = self.resolve(model, v)?;
            let choice = Choice {
                served: v.to_string(),
                assigned: None,
                fallback: false,
                sticky_value,
            };
            return Ok(Routed {
                entry,
                choice,
                settings,
                setup,
            });
        }
        let picked = routing.assign(model, sticky_value.as_deref(), |v| {
            state.serving(v).is_some()
        });
        match picked.and_then(|a| Some((a, state.serving(a.served)?))) {
            Some((a, entry)) => Ok(Routed {
                entry: entry.clone(),
                choice: Choice {
                    served: a.served.to_string(),
                    assigned: Some(a.assigned.to_string()),
                    fallback: a.fallback,
                    sticky_value,
                },
                settings,
                setup,
            }),
            None => {
                let live: Vec<&str> = routing.live_variants().collect();
                Err(RuntimeError::NotReady(format!(
                    "no variant of `{model}` in its routing split ({}) is ready",
                    live.join(", ")
                )))
            }
        }
    }

    /// What `model`'s experiment is configured with and what defines its analysis period.
    pub fn experiment_setup(&self, model: &str) -> Option<(ExperimentSettings, Setup)> {
        self.read().get(model).map(ModelState::experiment_setup)
    }

    /// Marks a load of `variant` as started; refused while another load of it runs, and for a
    /// new variant when the model already has `max_variants` (loaded, loading or failed).
    pub fn begin_load(
        &self,
        model: &str,
        variant: &str,
        max_variants: usize,
    ) -> Result<(), RuntimeError> {
        let mut models = self.write();
        let state = models
            .get_mut(model)
            .ok_or_else(|| RuntimeError::UnknownModel(model.into()))?;
        if !state.slots.contains_key(variant) && state.slots.len() >= max_variants {
            return Err(RuntimeError::Conflict(format!(
                "{model} has {} variants, the most server.max_variants_per_model allows; \
                 unload one first",
                state.slots.len()
            )));
        }
        let slot = state.slots.entry(variant.into()).or_insert(Slot {
            serving: None,
            status: VariantStatus::Loading,
            loading: false,
            last_error: None,
        });
        if slot.loading {
            return Err(RuntimeError::Conflict(format!(
                "{model}/{variant} is already being loaded"
            )));
        }
        slot.loading = true;
        if slot.serving.is_none() {
            slot.status = VariantStatus::Loading;
        }
        Ok(())
    }

    /// Ends a load: on success the new entry replaces any older one in one step (the old one
    /// finishes its requests); on failure an older copy keeps serving.
    pub fn finish_load(&self, model: &str, variant: &str, result: Result<Arc<ModelEntry>, String>) {
        let mut models = self.write();
        let Some(slot) = models.get_mut(model).and_then(|s| s.slots.get_mut(variant)) else {
            return; // the model was removed meanwhile: the entry is dropped here
        };
        slot.loading = false;
        match result {
            Ok(entry) => {
                slot.serving = Some(entry);
                slot.status = VariantStatus::Ready;
                slot.last_error = None;
            }
            Err(msg) => {
                if slot.serving.is_none() {
                    slot.status = VariantStatus::Failed(msg.clone());
                }
                slot.last_error = Some(msg);
            }
        }
    }

    /// Removes a variant. Refused while the routing sends it traffic or uses it as the shadow
    /// reference (change the routing first), so no request is ever routed to a missing variant.
    pub fn unload(&self, model: &str, variant: &str) -> Result<(), RuntimeError> {
        let mut models = self.write();
        let state = models
            .get_mut(model)
            .ok_or_else(|| RuntimeError::UnknownModel(model.into()))?;
        let Some(slot) = state.slots.get(variant) else {
            return Err(RuntimeError::UnknownVariant {
                model: model.into(),
                variant: variant.into(),
            });
        };
        if slot.loading {
            return Err(RuntimeError::Conflict(format!(
                "{model}/{variant} is being loaded; unload it once that finished"
            )));
        }
        // A failed entry serves nothing: removing it never leaves a request without a variant.
        if slot.serving.is_none() {
            state.slots.remove(variant);
            return Ok(());
        }
        if state.routing.live_variants().any(|v| v == variant) {
            return Err(RuntimeError::Conflict(format!(
                "{model}/{variant} has traffic in the routing split; give it weight 0 first"
            )));
        }
        if state
            .routing
            .shadow
            .as_ref()
            .is_some_and(|s| s.reference == variant)
        {
            return Err(RuntimeError::Conflict(format!(
                "{model}/{variant} is the shadow reference; change the routing first"
            )));
        }
        state.slots.remove(variant);
        Ok(())
    }

    /// Sets a model's routing; every variant with weight and the shadow reference must be
    /// serving, so the change never routes to a variant that cannot answer.
    pub fn set_routing(&self, model: &str, routing: Routing) -> Result<(), RuntimeError> {
        routing.validate().map_err(RuntimeError::BadRequest)?;
        let mut models = self.write();
        let state = models
            .get_mut(model)
            .ok_or_else(|| RuntimeError::UnknownModel(model.into()))?;
        let wanted = routing
            .live_variants()
            .chain(routing.shadow.as_ref().map(|s| s.reference.as_str()));
        for v in wanted {
            if state.serving(v).is_none() {
                return Err(RuntimeError::Conflict(format!(
                    "{model}/{v} is not loaded; load it first \
                     (POST /admin/models/{model}/variants/{v}:load)"
                )));
            }
        }
        state.routing = routing;
        Ok(())
    }

    /// Every model can answer: a variant of its routing split is serving.
    pub fn all_routable(&self) -> bool {
        self.read().values().all(|state| {
            state
                .routing
                .live_variants()
                .any(|v| state.serving(v).is_some())
        })
    }

    /// Variants of a model, in loading order: the reference first, then the default, then others.
    pub fn variants_to_load(&self, model: &str) -> Vec<String> {
        let models = self.read();
        let Some(state) = models.get(model) else {
            return Vec::new();
        };
        let mut all: Vec<String> = state.slots.keys().cloned().collect();
        let reference = &state.config.reference_variant;
        let default = &state.config.default_variant;
        all.sort_by_key(|v| (v != reference, v != default));
        all
    }

    pub fn views(&self, queue_depth: impl Fn(&QueueHandle) -> usize) -> Vec<ModelView> {
        self.read()
            .iter()
            .map(|(name, state)| {
                let variants = state
                    .slots
                    .iter()
                    .map(|(v, slot)| VariantView {
                        name: v.clone(),
                        status: slot.status.clone(),
                        reloading: slot.loading && slot.serving.is_some(),
                        last_error: slot.last_error.clone(),
                        engine: slot.serving.as_ref().map(|e| e.engine.clone()),
                        weight: state.routing.split.get(v).copied().unwrap_or(0),
                        self_check: slot.serving.as_ref().and_then(|e| e.self_check.clone()),
                        queue_depth: slot.serving.as_ref().map_or(0, |e| queue_depth(&e.queue)),
                        kind: slot
                            .serving
                            .as_ref()
                            .map_or_else(|| VariantKind::from_name(v), |e| e.kind.clone()),
                    })
                    .collect();
                ModelView {
                    name: name.clone(),
                    task: state.config.task.or_else(|| {
                        state
                            .slots
                            .values()
                            .find_map(|s| s.serving.as_ref().map(|e| e.engine.task()))
                    }),
                    default_variant: state.config.default_variant.clone(),
                    reference: state.config.reference_variant.clone(),
                    routing: state.routing.clone(),
                    variants,
                }
            })
            .collect()
    }
}
