//! The command line as a person uses it: the binary itself, spawned with pipes (so stderr is not
//! a terminal and no progress bar may be drawn).

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

fn quantserve() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_quantserve"));
    cmd.current_dir(common::repo_root())
        .env_remove("QUANTSERVE_MODELS")
        .env_remove("QUANTSERVE_THREADS");
    cmd
}

fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null()).output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Nothing a terminal would draw: no carriage returns, no escape sequences.
fn assert_no_progress_bar(stderr: &str) {
    assert!(
        !stderr.contains('\r') && !stderr.contains('\x1b'),
        "terminal drawing in a piped stderr: {stderr:?}"
    );
}

fn empty_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn a_missing_model_is_explained_and_nothing_is_downloaded() {
    let elsewhere = empty_dir("cli-elsewhere");
    // In another folder, with the default repository `models` (absent there).
    for (args, model) in [
        (vec!["translate", "Hello"], "en-pt"),
        (vec!["classify", "Fine"], "sentiment"),
        (vec!["eval", "--model", "pt-en"], "pt-en"),
    ] {
        let out = run(quantserve().current_dir(&elsewhere).args(&args));
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = text(&out.stderr);
        for part in [
            &format!("model `{model}`"),
            "--models",
            "QUANTSERVE_MODELS",
            "quantserve fetch",
        ] {
            assert!(err.contains(part), "{part} missing: {err}");
        }
        assert!(!err.contains("panicked"), "{err}");
    }
    // No silent download: the folder is as empty as before.
    assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);

    // An explicit repository without the model says so too.
    let out = run(quantserve()
        .args(["translate", "--models"])
        .arg(&elsewhere)
        .arg("Hi"));
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains(&elsewhere.display().to_string()));
}

#[test]
fn classify_and_translate_print_json_with_the_int8_default() {
    common::model_dir("en-pt");
    let out = run(quantserve().args([
        "classify",
        "--json",
        "--threads",
        "2",
        "What a wonderful, moving film.",
        "Dull, boring and far too long.",
    ]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines: Vec<Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["label"], "positive");
    assert_eq!(lines[1]["label"], "negative");
    assert_eq!(lines[0]["text"], "What a wonderful, moving film.");
    let score = lines[0]["score"].as_f64().unwrap();
    assert!(score > 0.5 && score <= 1.0, "{score}");
    assert!(lines[0]["scores"]["negative"].is_number());
    assert_no_progress_bar(&text(&out.stderr));

    let out = run(quantserve().args([
        "translate",
        "--json",
        "--threads",
        "2",
        "How are you today?",
    ]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: Value = serde_json::from_str(text(&out.stdout).trim()).unwrap();
    assert_eq!(v["text"], "How are you today?");
    assert!(!v["translation"].as_str().unwrap().is_empty());
}

#[test]
fn eval_json_goes_to_stdout() {
    let out = run(quantserve().args(["eval", "--json", "--split", "dev", "--threads", "2"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["total"], 1000);
    assert!(report["accuracy"].as_f64().unwrap() > 80.0, "{report}");
    // The summary goes to stderr, which gets no progress bar either.
    let err = text(&out.stderr);
    assert!(err.contains("sentiment int8 dev: accuracy"), "{err}");
    assert_no_progress_bar(&err);
}

#[test]
fn quantize_draws_no_bar_into_a_pipe() {
    let out_dir = empty_dir("cli-quantize").join("int8");
    let out = run(quantserve()
        .args(["quantize", "--model", "models/sentiment/fp32", "--out"])
        .arg(&out_dir));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("tensors quantized"));
    assert_no_progress_bar(&text(&out.stderr));
    assert!(out_dir.join("variant.safetensors").exists() || has_files(&out_dir));
}

fn has_files(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some())
}

#[test]
fn a_closed_stdout_ends_quietly() {
    common::model_dir("en-pt");
    let mut child = quantserve()
        .args(["translate", "--threads", "2"])
        .args(["Good morning.", "Thank you.", "See you tomorrow."])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Like `| head -c0`: the reader is gone before anything is written.
    drop(child.stdout.take());
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}: {err}");
    assert!(
        !err.contains("panicked") && !err.contains("Broken pipe"),
        "{err}"
    );
}
