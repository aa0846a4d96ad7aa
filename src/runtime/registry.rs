//! The served models by (model, variant): their load status and, once loaded, their engines.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock, RwLock};

use super::config::Config;
use super::engine::Engine;
use super::error::RuntimeError;
use super::pool::QueueKey;

#[derive(Clone, Debug, PartialEq)]
pub enum ModelStatus {
    Loading,
    /// Loaded and warmed up: serving.
    Ready,
    Failed(String),
}

impl ModelStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            ModelStatus::Loading => "loading",
            ModelStatus::Ready => "ready",
            ModelStatus::Failed(_) => "failed",
        }
    }
}

pub struct ModelEntry {
    pub key: QueueKey,
    /// The variant requests get when they name none.
    pub is_default: bool,
    status: RwLock<ModelStatus>,
    engine: OnceLock<Arc<dyn Engine>>,
}

impl ModelEntry {
    fn new(key: QueueKey, is_default: bool) -> Self {
        Self {
            key,
            is_default,
            status: RwLock::new(ModelStatus::Loading),
            engine: OnceLock::new(),
        }
    }

    pub fn status(&self) -> ModelStatus {
        self.status
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn set_status(&self, status: ModelStatus) {
        *self.status.write().unwrap_or_else(|e| e.into_inner()) = status;
    }

    /// The engine once loaded, warmed up or not.
    pub fn engine(&self) -> Option<&Arc<dyn Engine>> {
        self.engine.get()
    }

    pub fn set_loaded(&self, engine: Arc<dyn Engine>) {
        let _ = self.engine.set(engine);
    }

    pub fn set_ready(&self) {
        self.set_status(ModelStatus::Ready);
    }

    pub fn set_failed(&self, message: String) {
        self.set_status(ModelStatus::Failed(message));
    }

    /// The engine, if this variant is serving.
    pub fn ready_engine(&self) -> Result<Arc<dyn Engine>, RuntimeError> {
        match (self.status(), self.engine.get()) {
            (ModelStatus::Ready, Some(e)) => Ok(e.clone()),
            (ModelStatus::Failed(msg), _) => Err(RuntimeError::NotReady(format!(
                "{} failed to load: {msg}",
                self.key
            ))),
            _ => Err(RuntimeError::NotReady(format!(
                "{} is still loading",
                self.key
            ))),
        }
    }

    /// Quantization scheme and bits, from the variant's name (`fp32`, `int8`, `int4-g32`, ...).
    pub fn scheme_and_bits(&self) -> (String, String) {
        let v = &self.key.variant;
        let scheme = v.split(['-', '_']).next().unwrap_or(v).to_string();
        let bits: String = scheme.chars().filter(char::is_ascii_digit).collect();
        (
            scheme,
            if bits.is_empty() {
                "unknown".into()
            } else {
                bits
            },
        )
    }
}

pub struct Registry {
    entries: BTreeMap<QueueKey, Arc<ModelEntry>>,
    default_variants: BTreeMap<String, String>,
}

impl Registry {
    /// Every configured (model, variant), all still loading.
    pub fn new(config: &Config) -> Self {
        let mut entries = BTreeMap::new();
        let mut default_variants = BTreeMap::new();
        for (name, m) in &config.models {
            default_variants.insert(name.clone(), m.default_variant.clone());
            for v in m.all_variants() {
                let key = QueueKey::new(name, &v);
                entries.insert(
                    key.clone(),
                    Arc::new(ModelEntry::new(key, v == m.default_variant)),
                );
            }
        }
        Self {
            entries,
            default_variants,
        }
    }

    pub fn has_model(&self, model: &str) -> bool {
        self.default_variants.contains_key(model)
    }

    /// The entry for `model` and `variant` (the model's default when `None`).
    pub fn resolve(
        &self,
        model: &str,
        variant: Option<&str>,
    ) -> Result<Arc<ModelEntry>, RuntimeError> {
        let default = self
            .default_variants
            .get(model)
            .ok_or_else(|| RuntimeError::UnknownModel(model.into()))?;
        let variant = variant.unwrap_or(default);
        self.entries
            .get(&QueueKey::new(model, variant))
            .cloned()
            .ok_or_else(|| RuntimeError::UnknownVariant {
                model: model.into(),
                variant: variant.into(),
            })
    }

    /// Entries by model name then variant, each model's default variant first.
    pub fn entries(&self) -> Vec<Arc<ModelEntry>> {
        let mut all: Vec<_> = self.entries.values().cloned().collect();
        all.sort_by(|a, b| {
            a.key
                .model
                .cmp(&b.key.model)
                .then(b.is_default.cmp(&a.is_default))
                .then(a.key.variant.cmp(&b.key.variant))
        });
        all
    }

    pub fn model_names(&self) -> Vec<String> {
        self.default_variants.keys().cloned().collect()
    }

    /// Every model's default variant is serving.
    pub fn defaults_ready(&self) -> bool {
        self.entries
            .values()
            .filter(|e| e.is_default)
            .all(|e| e.status() == ModelStatus::Ready)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::config::ModelConfig;

    #[test]
    fn resolves_defaults_and_reports_unknowns() {
        let mut cfg = Config::default();
        cfg.models.insert(
            "en-pt".into(),
            ModelConfig {
                variants: vec!["int8".into()],
                ..ModelConfig::fp32()
            },
        );
        let r = Registry::new(&cfg);
        assert_eq!(r.resolve("en-pt", None).unwrap().key.variant, "fp32");
        assert_eq!(
            r.resolve("en-pt", Some("int8")).unwrap().key.variant,
            "int8"
        );
        assert!(matches!(
            r.resolve("xx", None),
            Err(RuntimeError::UnknownModel(_))
        ));
        assert!(matches!(
            r.resolve("en-pt", Some("int3")),
            Err(RuntimeError::UnknownVariant { .. })
        ));
        assert!(!r.defaults_ready());
        assert!(matches!(
            r.resolve("en-pt", None).unwrap().ready_engine(),
            Err(RuntimeError::NotReady(_))
        ));
        assert_eq!(
            r.resolve("en-pt", Some("int8")).unwrap().scheme_and_bits(),
            ("int8".into(), "8".into())
        );
    }
}
