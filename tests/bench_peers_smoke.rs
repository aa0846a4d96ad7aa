//! `tools/bench_peers.py` reads quantserve's numbers only from `quantserve bench --json`: this
//! runs the real binary's `bench --json` for a moment (a classifier and a translator) and then
//! the script's `--self-test` on those files (python3, standard library only; no peers), so a
//! renamed or removed JSON field breaks `cargo test` instead of the next benchmark run. Speed is
//! not asserted.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn out_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("quantserve-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `quantserve bench ... --json FILE` with a very short measuring time.
fn bench_json(out: &Path, args: &[&str]) {
    let status = Command::new(env!("CARGO_BIN_EXE_quantserve"))
        .current_dir(repo())
        .args([
            "bench",
            "--models",
            "models",
            "--seconds",
            "0.05",
            "--threads",
            "1",
        ])
        .args(args)
        .arg("--json")
        .arg(out)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("running quantserve bench");
    assert!(status.success(), "quantserve bench {args:?} failed");
}

fn self_test(files: &[&Path]) -> std::process::Output {
    Command::new("python3")
        .current_dir(repo())
        .arg("tools/bench_peers.py")
        .arg("--self-test")
        .args(files)
        .output()
        .expect("python3 is needed to run tools/bench_peers.py --self-test")
}

#[test]
fn bench_peers_self_test_reads_real_bench_json() {
    let dir = out_dir("bench-smoke");
    let cls = dir.join("sentiment.json");
    let tr = dir.join("tiny-marian.json");
    bench_json(
        &cls,
        &[
            "--model",
            "sentiment",
            "--variants",
            "int8",
            "--batch",
            "2",
            "--seq-len",
            "16",
        ],
    );
    bench_json(
        &tr,
        &[
            "--model",
            "tiny-marian",
            "--variants",
            "int8",
            "--batch",
            "2",
        ],
    );
    let out = self_test(&[&cls, &tr]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "self-test failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("bench_peers self-test:") && stdout.contains(" passed, 0 failed"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bench_peers_self_test_rejects_a_renamed_field() {
    let dir = out_dir("bench-renamed");
    let good = dir.join("good.json");
    bench_json(
        &good,
        &[
            "--model",
            "sentiment",
            "--variants",
            "int8",
            "--batch",
            "1",
            "--seq-len",
            "8",
        ],
    );
    let text = std::fs::read_to_string(&good).unwrap();
    assert!(text.contains("\"items_per_s\""), "bench --json: {text}");
    let bad = dir.join("renamed.json");
    std::fs::write(&bad, text.replace("\"items_per_s\"", "\"per_second\"")).unwrap();
    let out = self_test(&[&bad]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a renamed field passed the self-test"
    );
    assert!(
        stderr.contains("missing field `items_per_s`"),
        "unclear error: {stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
