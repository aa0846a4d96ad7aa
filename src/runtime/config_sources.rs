//! Where configuration values come from, merged by `figment` (later sources win, tables merge
//! key by key): the TOML file (or the built-in defaults), the documented short variables of
//! earlier releases, then the one rule for every key:
//!
//! `QUANTSERVE_<SECTION>__<KEY>[__<KEY>...]`, e.g. `QUANTSERVE_BATCHING__MAX_WAIT_MS=2`,
//! `QUANTSERVE_MODELS__SENTIMENT__DEFAULT_VARIANT=fp32`.
//!
//! Names are matched in lower case; a value is read as a TOML value (`2`, `true`, `["a", "b"]`,
//! `{ int8 = 90, fp32 = 10 }`), anything else as a string (quote a string that looks like a
//! number: `'"123"'`). A value of the wrong type is an error naming its variable or file.

use std::path::Path;

use anyhow::{Context, Result};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider, Source};

use super::config::Config;

/// `quantserve serve` without `--config`: the shipped `config/quantserve.toml`, compiled in, so
/// a bare `serve` serves what the README's first command does (int8, with fp32 as the loaded
/// reference for the self-check and 5 % shadow traffic), not the code's per-key defaults (fp32).
pub const BUILT_IN: &str = include_str!("../../config/quantserve.toml");

/// The short names documented before the general rule (README, Dockerfile, Kubernetes
/// manifests), and the key each sets. The string ones are taken as written, never as numbers.
const SHORT_NAMES: &[(&str, &str, bool)] = &[
    ("QUANTSERVE_HTTP_ADDR", "server.http_addr", true),
    ("QUANTSERVE_GRPC_ADDR", "server.grpc_addr", true),
    ("QUANTSERVE_MODELS", "server.models_dir", true),
    ("QUANTSERVE_API_KEY", "server.api_key", true),
    ("QUANTSERVE_ADMIN_KEY", "server.admin_key", true),
    ("QUANTSERVE_TIMEOUT_MS", "server.timeout_ms", false),
    ("QUANTSERVE_WORKERS", "workers.count", false),
    ("QUANTSERVE_THREADS", "workers.threads", false),
];

const PREFIX: &str = "QUANTSERVE_";
const SEPARATOR: &str = "__";

/// The configuration from the file at `path` (or the built-in one) and the variables in `env`.
pub fn extract(
    path: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config> {
    let base = match path {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            TomlSource::parse(
                &text,
                // The path as given (made absolute), not figment's cwd-relative rendering of a
                // `Source::File`, which turns /tmp/x.toml into ../../tmp/x.toml.
                Metadata::from(
                    "TOML file",
                    Source::Custom(
                        std::path::absolute(p)
                            .unwrap_or_else(|_| p.to_path_buf())
                            .display()
                            .to_string(),
                    ),
                ),
            )
            .with_context(|| format!("in {}", p.display()))?
        }
        None => TomlSource::parse(BUILT_IN, Metadata::named("built-in configuration"))?,
    };
    let mut figment = Figment::from(base);
    for var in variables(env) {
        figment = figment.merge(var);
    }
    Ok(figment.extract::<Config>()?)
}

/// The variables that set configuration keys, short names first so the general rule wins.
fn variables(env: impl IntoIterator<Item = (String, String)>) -> Vec<EnvVar> {
    let mut short = Vec::new();
    let mut general = Vec::new();
    for (name, raw) in env {
        if let Some(&(_, key, as_string)) = SHORT_NAMES.iter().find(|(n, ..)| *n == name) {
            let value = if as_string {
                Value::from(raw)
            } else {
                parse_value(&raw)
            };
            short.push(EnvVar::new(name, key.to_string(), value));
        } else if let Some(rest) = name.strip_prefix(PREFIX).filter(|r| r.contains(SEPARATOR)) {
            let key: Vec<String> = rest.split(SEPARATOR).map(str::to_lowercase).collect();
            if key.iter().all(|k| !k.is_empty()) {
                let value = parse_value(&raw);
                general.push(EnvVar::new(name, key.join("."), value));
            }
        }
    }
    // The process environment has no order: sort so the result does not depend on it.
    general.sort_by(|a, b| a.name.cmp(&b.name));
    short.into_iter().chain(general).collect()
}

fn parse_value(raw: &str) -> Value {
    match raw.parse::<Value>() {
        Ok(v) => v,
        Err(never) => match never {},
    }
}

/// A TOML document (parsed by the `toml` crate the rest of the project uses) as a source that
/// names itself in errors.
struct TomlSource {
    table: toml::Table,
    metadata: Metadata,
}

impl TomlSource {
    fn parse(text: &str, metadata: Metadata) -> Result<Self> {
        let table = toml::from_str(text).context("parsing the configuration")?;
        Ok(Self { table, metadata })
    }
}

impl Provider for TomlSource {
    fn metadata(&self) -> Metadata {
        self.metadata.clone()
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        figment::providers::Serialized::defaults(&self.table).data()
    }
}

/// One environment variable setting one key, so an error names the variable exactly.
struct EnvVar {
    name: String,
    key: String,
    value: Value,
}

impl EnvVar {
    fn new(name: String, key: String, value: Value) -> Self {
        Self { name, key, value }
    }
}

impl Provider for EnvVar {
    fn metadata(&self) -> Metadata {
        Metadata::named(format!("environment variable {}", self.name))
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let dict = figment::util::nest(&self.key, self.value.clone())
            .into_dict()
            .unwrap_or_default();
        Ok(Profile::Default.collect(dict))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::config::{LogFormat, Overrides};
    use std::path::PathBuf;

    fn shipped() -> PathBuf {
        PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/config/quantserve.toml"
        ))
    }

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn load(path: Option<&Path>, pairs: &[(&str, &str)]) -> Result<Config> {
        Config::load_with_env(path, &Overrides::default(), vars(pairs))
    }

    #[test]
    fn any_key_nested_or_not_is_set_by_the_rule() {
        let cfg = load(
            Some(&shipped()),
            &[
                ("QUANTSERVE_MODELS__EN-PT__DEFAULT_VARIANT", "fp32"),
                (
                    "QUANTSERVE_MODELS__SENTIMENT__ROUTING__SHADOW__SAMPLE_RATE",
                    "0.5",
                ),
                ("QUANTSERVE_BATCHING__MAX_WAIT_MS", "7"),
                (
                    "QUANTSERVE_CORS__ALLOWED_ORIGINS",
                    r#"["https://a.example"]"#,
                ),
                ("QUANTSERVE_LOG__FORMAT", "json"),
                // Not configuration: other QUANTSERVE_ variables are left alone.
                ("QUANTSERVE_ISA", "avx2"),
                ("QUANTSERVE_LOG", "debug"),
            ],
        )
        .unwrap();
        // The override changes one key of the file's table; its siblings stay.
        assert_eq!(cfg.models["en-pt"].default_variant, "fp32");
        assert!(cfg.models["en-pt"].variants.iter().any(|v| v == "int8"));
        let shadow = cfg.models["sentiment"].routing.as_ref().unwrap();
        assert_eq!(shadow.shadow.as_ref().unwrap().sample_rate, 0.5);
        assert_eq!(cfg.batching.max_wait_ms, 7);
        assert_eq!(cfg.batching.max_batch_size, 32);
        assert_eq!(cfg.cors.allowed_origins, ["https://a.example"]);
        assert_eq!(cfg.log.format, LogFormat::Json);
    }

    #[test]
    fn the_documented_short_names_still_work_and_the_rule_wins() {
        let cfg = load(
            None,
            &[
                ("QUANTSERVE_HTTP_ADDR", "127.0.0.1:9"),
                ("QUANTSERVE_GRPC_ADDR", "127.0.0.1:10"),
                ("QUANTSERVE_API_KEY", "12345"),
                ("QUANTSERVE_THREADS", "3"),
                ("QUANTSERVE_WORKERS", "1"),
                ("QUANTSERVE_SERVER__TIMEOUT_MS", "5"),
                ("QUANTSERVE_TIMEOUT_MS", "9"),
            ],
        )
        .unwrap();
        assert_eq!(cfg.server.http_addr, "127.0.0.1:9");
        assert_eq!(cfg.server.grpc_addr.as_deref(), Some("127.0.0.1:10"));
        // A key of digits stays a string.
        assert_eq!(cfg.server.api_key.as_deref(), Some("12345"));
        assert_eq!((cfg.workers.count, cfg.workers.threads), (1, 3));
        assert_eq!(cfg.server.timeout_ms, 5);
        // Without a file: the shipped file's models, int8 serving.
        assert!(cfg.models.contains_key("en-pt") && cfg.libretranslate.enabled);
        assert_eq!(cfg.models["en-pt"].default_variant, "int8");
        assert_eq!(cfg.models["sentiment"].default_variant, "int8");
    }

    #[test]
    fn a_bad_value_is_named_with_its_variable_or_file() {
        let e = load(None, &[("QUANTSERVE_WORKERS", "many")]).unwrap_err();
        let msg = format!("{e:#}");
        assert!(msg.contains("QUANTSERVE_WORKERS"), "{msg}");
        let e = load(None, &[("QUANTSERVE_BATCHING__MAX_BATCH_SIZE", "-3")]).unwrap_err();
        let msg = format!("{e:#}");
        assert!(msg.contains("QUANTSERVE_BATCHING__MAX_BATCH_SIZE"), "{msg}");
        assert!(msg.contains("max_batch_size"), "{msg}");
        let e = load(None, &[("QUANTSERVE_SERVER__HTTP_ADR", "x")]).unwrap_err();
        assert!(
            format!("{e:#}").contains("QUANTSERVE_SERVER__HTTP_ADR"),
            "{e:#}"
        );

        let file = std::env::temp_dir().join(format!("qs-bad-config-{}.toml", std::process::id()));
        std::fs::write(&file, "[batching]\nmax_wait_ms = \"soon\"\n").unwrap();
        let e = load(Some(&file), &[]).unwrap_err();
        let msg = format!("{e:#}");
        let _ = std::fs::remove_file(&file);
        assert!(msg.contains(&file.display().to_string()), "{msg}");
        assert!(msg.contains("max_wait_ms"), "{msg}");
    }
}
