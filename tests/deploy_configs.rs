//! The configuration files the deployment ships (ConfigMaps of deploy/k8s) are valid quantserve
//! configurations that listen on all interfaces and read the image's /models.

use quantserve::runtime::config::Config;

#[test]
fn kubernetes_configs_parse_and_point_at_the_image() {
    let root = env!("CARGO_MANIFEST_DIR");
    for file in [
        "deploy/k8s/base/quantserve.toml",
        "deploy/k8s/overlays/int8-only/quantserve.toml",
    ] {
        let path = format!("{root}/{file}");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let cfg = Config::from_toml(&text).unwrap_or_else(|e| panic!("{file}: {e:#}"));
        cfg.validate().unwrap_or_else(|e| panic!("{file}: {e:#}"));
        assert_eq!(cfg.server.http_addr, "0.0.0.0:8080", "{file}");
        assert_eq!(cfg.server.models_dir.to_str(), Some("/models"), "{file}");
        // terminationGracePeriodSeconds (45) covers preStop (5) and the drain.
        assert!(cfg.server.drain_seconds + 5 < 45, "{file}");
        assert!(cfg.libretranslate.enabled, "{file}");
        assert_eq!(cfg.models["minilm"].min_agreement, 0.98, "{file}");
        for model in ["sentiment", "en-pt", "pt-en", "minilm"] {
            assert_eq!(cfg.models[model].default_variant, "int8", "{file}: {model}");
        }
    }
}

/// The keys come from a Secret, never from the manifests or their ConfigMaps; with no admin key
/// the pod's public address leaves /admin disabled (tests/admin_lockdown.rs).
#[test]
fn kubernetes_keys_come_from_a_secret() {
    let root = env!("CARGO_MANIFEST_DIR");
    let deployment =
        std::fs::read_to_string(format!("{root}/deploy/k8s/base/deployment.yaml")).unwrap();
    for var in ["QUANTSERVE_ADMIN_KEY", "QUANTSERVE_API_KEY"] {
        let at = deployment
            .find(&format!("name: {var}"))
            .unwrap_or_else(|| panic!("{var} not set"));
        let entry = &deployment[at..at + 200.min(deployment.len() - at)];
        assert!(entry.contains("secretKeyRef:"), "{var}: {entry}");
    }
    for file in [
        "deploy/k8s/base/quantserve.toml",
        "deploy/k8s/overlays/int8-only/quantserve.toml",
    ] {
        let text = std::fs::read_to_string(format!("{root}/{file}")).unwrap();
        let cfg = Config::from_toml(&text).unwrap();
        assert!(
            cfg.server.admin_key.is_none() && cfg.server.api_key.is_none(),
            "{file}"
        );
        assert!(
            quantserve::api::admin::admin_disabled(&cfg.server),
            "{file}"
        );
    }
}
