//! Server configuration: `config/quantserve.toml`, then `QUANTSERVE_*` environment variables
//! (`config_sources.rs`: `QUANTSERVE_SECTION__KEY` for any key), then command-line flags, each
//! overriding the one before. Every field has a default, so an empty file (or none) is a valid
//! configuration.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use serde::Deserialize;

use super::routing::Routing;

pub use crate::models::Task;

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub limits: Limits,
    pub batching: BatchingConfig,
    pub workers: WorkersConfig,
    pub translation: TranslationConfig,
    pub libretranslate: LibreTranslateConfig,
    pub defaults: Defaults,
    pub log: LogConfig,
    pub cors: CorsConfig,
    /// Served models by name (the folder under `models_dir`).
    pub models: BTreeMap<String, ModelConfig>,
    /// Where this configuration came from, so SIGHUP and `/admin/reload` can read it again.
    #[serde(skip)]
    pub source: Option<(PathBuf, Overrides)>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    pub http_addr: String,
    /// A listener of its own for gRPC; when `None`, gRPC shares `http_addr` (h2c, told apart by
    /// its `content-type`).
    pub grpc_addr: Option<String>,
    /// Model repository: `<models_dir>/<model>/<variant>/`.
    pub models_dir: PathBuf,
    /// When set, every inference and model-listing request needs `Authorization: Bearer <key>`.
    pub api_key: Option<String>,
    /// When set, the `/admin/...` endpoints need `Authorization: Bearer <admin_key>`.
    pub admin_key: Option<String>,
    /// Default per-request deadline; a request may ask for another (`timeout_ms`, `x-timeout-ms`).
    pub timeout_ms: u64,
    /// Upper bound on the deadline a request may ask for.
    pub max_timeout_ms: u64,
    /// How long a graceful shutdown waits for queued and in-flight requests.
    pub drain_seconds: u64,
    /// Threads of the async executor that parses HTTP and JSON (inference never runs there).
    pub http_threads: usize,
    /// Connections open at once over every listener; more are answered 503 and closed (capped
    /// below the process's open-file limit at start).
    pub max_connections: usize,
    /// An HTTP/1 request head must arrive within this long of the server waiting for it (so
    /// also the longest an HTTP/1 keep-alive connection may sit idle).
    pub header_read_timeout_ms: u64,
    /// Any connection (HTTP/2 and gRPC too) with no request in progress this long is closed.
    pub idle_timeout_seconds: u64,
    /// The `/admin` API on a listener of its own (then not on `http_addr`).
    pub admin_addr: Option<String>,
    /// Variants (loaded, loading or failed) a model may have at once; more loads are refused.
    pub max_variants_per_model: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            http_addr: "127.0.0.1:8080".into(),
            grpc_addr: None,
            models_dir: PathBuf::from("models"),
            api_key: None,
            admin_key: None,
            timeout_ms: 30_000,
            max_timeout_ms: 300_000,
            drain_seconds: 30,
            http_threads: 2,
            max_connections: 4096,
            header_read_timeout_ms: 10_000,
            idle_timeout_seconds: 60,
            admin_addr: None,
            max_variants_per_model: 8,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    pub max_body_bytes: usize,
    /// Texts per request.
    pub max_inputs: usize,
    /// Characters per text, checked before tokenizing.
    pub max_input_chars: usize,
    pub max_beam_size: usize,
    /// Largest `max_length` (output tokens) a translation request may ask for.
    pub max_output_tokens: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 1 << 20,
            max_inputs: 64,
            max_input_chars: 10_000,
            max_beam_size: 8,
            max_output_tokens: 512,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BatchingConfig {
    /// Budget of one batch in padded tokens: batch size × longest sequence.
    pub max_batch_tokens: usize,
    pub max_batch_size: usize,
    /// How long a worker may hold a batch that is not full, hoping for more requests. 0 = never.
    pub max_wait_ms: u64,
    /// Items waiting longer than this join the next batch of their queue before any other.
    pub age_bound_ms: u64,
    /// Items (texts or sentences) a model's queue holds; more are refused with 429.
    pub queue_capacity: usize,
    /// Items a variant's shadow queue holds; shadow copies beyond it are dropped (and counted).
    pub shadow_queue_capacity: usize,
    /// Share of batches shadow copies get while they wait, however busy live traffic is (0:
    /// only when no live request waits). Live traffic keeps the rest.
    pub shadow_min_share: f64,
}

impl Default for BatchingConfig {
    fn default() -> Self {
        Self {
            max_batch_tokens: 4096,
            max_batch_size: 32,
            max_wait_ms: 0,
            age_bound_ms: 200,
            queue_capacity: 1024,
            shadow_queue_capacity: 64,
            shadow_min_share: 0.05,
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkersConfig {
    /// Inference worker threads (0 = as many as fit the cores with `threads` each).
    pub count: usize,
    /// Intra-op threads per worker (0 = the cores divided among the workers).
    pub threads: usize,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TranslationConfig {
    /// Translate each sentence of a text on its own (the models are trained on sentences), then
    /// join them with the original whitespace.
    pub split_sentences: bool,
}

impl Default for TranslationConfig {
    fn default() -> Self {
        Self {
            split_sentences: true,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Defaults {
    /// Model `/classify` (and TEI's `/predict`) uses when a request names none.
    pub classify_model: String,
    /// Model TEI's `/embed` and OpenAI's `/v1/embeddings` use when a request names none.
    pub embed_model: String,
    /// Model TEI's `/info`, `/tokenize` and `/decode` describe when a request names none (TEI
    /// serves one model; a TEI client of a classifier expects the classifier there).
    pub tei_model: String,
}

impl Default for Defaults {
    fn default() -> Self {
        Self {
            classify_model: "sentiment".into(),
            embed_model: "minilm".into(),
            tei_model: "sentiment".into(),
        }
    }
}

/// The LibreTranslate-compatible API (`/languages`, `/detect`, `/translate`, `/translate_file`,
/// `/frontend/settings`).
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LibreTranslateConfig {
    /// `POST /translate` answers as LibreTranslate where quantserve's own API differs: `source:
    /// "auto"` is detected, `format: "html"` is translated, and an unsupported pair is a 400.
    /// Off, those are 422 `unsupported` (quantserve's API before LibreTranslate compatibility;
    /// the shipped configuration turns it on). The LibreTranslate-only routes, form and
    /// multipart bodies, `alternatives`, `api_key` and regional codes work either way.
    pub enabled: bool,
    /// `POST /translate_file` (and downloading its results) is offered.
    pub files: bool,
    /// Translated files are kept this long for `/download_file`, then deleted.
    pub file_ttl_seconds: u64,
}

impl Default for LibreTranslateConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            files: true,
            file_ttl_seconds: 1800,
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `text` (one human-readable line per event) or `json` (one JSON object per line, for log
    /// collectors). The filter is `QUANTSERVE_LOG` / `RUST_LOG`.
    pub format: LogFormat,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            _ => anyhow::bail!("log format {s:?} is neither `text` nor `json`"),
        }
    }
}

/// Cross-origin requests from browser front ends served elsewhere. Off (no CORS headers, OPTIONS
/// is 405) until origins are listed.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CorsConfig {
    /// Origins allowed to call the API, e.g. `["https://app.example.com"]`; `["*"]` allows any.
    pub allowed_origins: Vec<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Variant used when a request names none and the model has no routing split.
    #[serde(default = "fp32")]
    pub default_variant: String,
    /// Variants to load (default: just the default variant; the routing's variants are added).
    #[serde(default)]
    pub variants: Vec<String>,
    /// Detected from the model's files when absent.
    #[serde(default)]
    pub task: Option<Task>,
    /// The variant others are checked against when they load (loaded for the check if it is
    /// not served).
    #[serde(default = "fp32")]
    pub reference_variant: String,
    /// A variant whose self-check agreement with the reference is below this is not activated.
    #[serde(default = "default_min_agreement")]
    pub min_agreement: f64,
    /// Texts for the self-check, one per line (default: built-in sentences in the source
    /// language).
    #[serde(default)]
    pub self_check_file: Option<PathBuf>,
    /// A/B split, sticky key, override policy and shadow traffic; default: all traffic to
    /// `default_variant`, overrides allowed.
    #[serde(default)]
    pub routing: Option<Routing>,
    /// A translator's language pair, `source-target` (e.g. `en-pt`); default: from the model's
    /// files (`repo::language_pair`), else its name.
    #[serde(default)]
    pub pair: Option<String>,
}

fn fp32() -> String {
    "fp32".into()
}

fn default_min_agreement() -> f64 {
    0.8
}

impl ModelConfig {
    pub fn fp32() -> Self {
        Self {
            default_variant: fp32(),
            variants: Vec::new(),
            task: None,
            reference_variant: fp32(),
            min_agreement: default_min_agreement(),
            self_check_file: None,
            routing: None,
            pair: None,
        }
    }

    /// The variants to load, default first, then the listed ones, then any the routing uses.
    pub fn all_variants(&self) -> Vec<String> {
        let routing = self.effective_routing();
        let mut all = vec![self.default_variant.clone()];
        let more = self
            .variants
            .iter()
            .chain(routing.split.keys())
            .chain(routing.shadow.as_ref().map(|s| &s.reference));
        for v in more {
            if !all.contains(v) {
                all.push(v.clone());
            }
        }
        all
    }

    /// The configured routing, or everything to the default variant.
    pub fn effective_routing(&self) -> Routing {
        self.routing
            .clone()
            .unwrap_or_else(|| Routing::single(&self.default_variant))
    }
}

/// A model or variant name that is safe as one folder of the model repository.
pub fn is_folder_name(name: &str) -> bool {
    !name.is_empty() && !name.contains(['/', '\\']) && name != "." && name != ".."
}

/// Command-line overrides (the highest precedence).
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub http_addr: Option<String>,
    pub grpc_addr: Option<String>,
    pub models_dir: Option<PathBuf>,
    pub log_format: Option<LogFormat>,
}

impl Config {
    /// The built-in configuration: the shipped `config/quantserve.toml` (the sentiment
    /// classifier, both translation directions and the embedder, int8 serving).
    pub fn with_default_models() -> Self {
        Self::from_toml(super::config_sources::BUILT_IN).expect("the built-in configuration parses")
    }

    /// Reads a TOML file (or the built-in defaults when `path` is `None`), applies environment
    /// and command-line overrides, and validates the result.
    pub fn load(path: Option<&Path>, overrides: &Overrides) -> Result<Self> {
        Self::load_with_env(path, overrides, std::env::vars())
    }

    /// `load` with the environment given (so tests need not touch the process's).
    pub fn load_with_env(
        path: Option<&Path>,
        overrides: &Overrides,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self> {
        let mut cfg = super::config_sources::extract(path, env)?;
        cfg.source = path.map(|p| (p.to_path_buf(), overrides.clone()));
        if let Some(a) = &overrides.http_addr {
            cfg.server.http_addr = a.clone();
        }
        if let Some(a) = &overrides.grpc_addr {
            cfg.server.grpc_addr = Some(a.clone());
        }
        if let Some(m) = &overrides.models_dir {
            cfg.server.models_dir = m.clone();
        }
        if let Some(f) = overrides.log_format {
            cfg.log.format = f;
        }
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn from_toml(text: &str) -> Result<Self> {
        toml::from_str(text).context("parsing the configuration")
    }

    pub fn validate(&self) -> Result<()> {
        let l = &self.limits;
        let b = &self.batching;
        ensure!(
            l.max_body_bytes > 0 && l.max_inputs > 0 && l.max_input_chars > 0,
            "limits must be positive"
        );
        ensure!(
            l.max_beam_size > 0 && l.max_output_tokens > 0,
            "limits must be positive"
        );
        ensure!(
            b.max_batch_tokens > 0 && b.max_batch_size > 0 && b.queue_capacity > 0,
            "batching limits must be positive"
        );
        ensure!(
            (0.0..=0.5).contains(&b.shadow_min_share),
            "batching.shadow_min_share must be between 0 and 0.5, not {}",
            b.shadow_min_share
        );
        ensure!(
            self.server.timeout_ms > 0 && self.server.max_timeout_ms >= self.server.timeout_ms,
            "bad timeouts"
        );
        ensure!(
            self.server.http_threads > 0,
            "server.http_threads must be at least 1"
        );
        let s = &self.server;
        ensure!(
            s.max_connections > 0
                && s.header_read_timeout_ms > 0
                && s.idle_timeout_seconds > 0
                && s.max_variants_per_model > 0,
            "server.max_connections, header_read_timeout_ms, idle_timeout_seconds and \
             max_variants_per_model must be positive"
        );
        for (name, m) in &self.models {
            ensure!(
                is_folder_name(name),
                "model name {name:?} is not a folder name"
            );
            for v in m.all_variants() {
                ensure!(
                    is_folder_name(&v),
                    "variant {v:?} of {name} is not a folder name"
                );
            }
            ensure!(
                (0.0..=1.0).contains(&m.min_agreement),
                "models.{name}.min_agreement must be between 0 and 1"
            );
            if let Some(r) = &m.routing {
                r.validate()
                    .map_err(|e| anyhow::anyhow!("models.{name}.routing: {e}"))?;
            }
        }
        for o in &self.cors.allowed_origins {
            ensure!(
                !o.is_empty() && o.bytes().all(|b| b.is_ascii_graphic()),
                "cors.allowed_origins: {o:?} is not an origin (like https://app.example.com) or *"
            );
        }
        if let Some(k) = &self.server.api_key {
            ensure!(
                !k.is_empty(),
                "server.api_key is empty (leave it out to disable authentication)"
            );
        }
        if let Some(k) = &self.server.admin_key {
            ensure!(
                !k.is_empty(),
                "server.admin_key is empty (leave it out to leave /admin open)"
            );
        }
        Ok(())
    }

    /// (workers, intra-op threads per worker, adaptive). Unset (both 0): the adaptive layout, one
    /// worker per core, each batch on every core when it runs alone, else on its worker's core
    /// (measured in README "Worker layout": the best of 1 × cores for one request at a time and
    /// cores × 1 under concurrent load). Otherwise a fixed layout that shares the cores without
    /// oversubscribing them, since every worker keeps all of its threads busy.
    pub fn worker_layout(&self) -> (usize, usize, bool) {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        match (self.workers.count, self.workers.threads) {
            (0, 0) => (cores, cores, cores > 1),
            (0, t) => ((cores / t).max(1), t, false),
            (w, 0) => (w, (cores / w).max(1), false),
            (w, t) => (w, t, false),
        }
    }

    pub fn default_timeout(&self) -> Duration {
        Duration::from_millis(self.server.timeout_ms)
    }

    pub fn max_timeout(&self) -> Duration {
        Duration::from_millis(self.server.max_timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_defaults() {
        let cfg = Config::from_toml("").unwrap();
        assert_eq!(cfg.server.http_addr, "127.0.0.1:8080");
        assert_eq!(cfg.server.grpc_addr, None);
        assert!(cfg.models.is_empty());
        cfg.validate().unwrap();
    }

    #[test]
    fn the_shipped_config_parses() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/config/quantserve.toml"
        ))
        .unwrap();
        let cfg = Config::from_toml(&text).unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.models["en-pt"].default_variant, "int8");
        assert!(cfg.models["en-pt"].variants.iter().any(|v| v == "fp32"));
        assert!(cfg.models.contains_key(&cfg.defaults.classify_model));
        assert!(cfg.models.contains_key(&cfg.defaults.embed_model));
        assert_eq!(cfg.models["minilm"].default_variant, "int8");
        assert!(cfg.libretranslate.enabled);
    }

    #[test]
    fn unknown_keys_and_bad_names_are_refused() {
        assert!(Config::from_toml("[server]\nhttp_adr = \"x\"\n").is_err());
        let cfg = Config::from_toml("[models.\"../etc\"]\n").unwrap();
        assert!(cfg.validate().is_err());
        // Shadow copies may not take more than half the batches.
        let cfg = Config::from_toml("[batching]\nshadow_min_share = 0.6\n").unwrap();
        assert!(cfg.validate().is_err());
        let cfg = Config::from_toml("[batching]\nshadow_min_share = 0.1\n").unwrap();
        cfg.validate().unwrap();
    }

    #[test]
    fn worker_layout_fills_the_cores() {
        let fixed = Config {
            workers: WorkersConfig {
                count: 2,
                threads: 3,
            },
            ..Config::default()
        };
        assert_eq!(fixed.worker_layout(), (2, 3, false));
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(Config::default().worker_layout(), (cores, cores, cores > 1));
    }
}
