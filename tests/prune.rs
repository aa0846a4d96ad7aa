//! FullyQT structured FFN pruning (`quantserve quantize --prune-lambda λ --calibration FILE`) on
//! the real models and calibration text: the rule, the edited tensors, the metadata, loading.

mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use quantserve::format::marian_bin::MarianBin;
use quantserve::format::{Tensor, TensorStore};
use quantserve::format::{VARIANT_FILE, VariantInfo, write_store};
use quantserve::models::bert::BertClassifier;
use quantserve::models::marian::{MarianTranslator, SearchOptions};
use quantserve::models::tokenizer::Overflow;
use quantserve::quant::calibrate::observe;
use quantserve::quant::convert::{
    PruneOptions, QuantizeOptions, QuantizeReport, quantize_dir, quantize_dir_with,
};
use quantserve::quant::prune::PruneRecord;
use quantserve::quant::recipe::Recipe;
use quantserve::repo::fetch::sha256_file;
use quantserve::repo::{load_classifier, load_translator};

const SENTIMENT_CORPUS: &str = "data/corpus/sentiment-train.txt";
const BIBLE_EN: &str = "data/corpus/bible-en.txt";

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("quantserve-prune-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn prune(
    src: &Path,
    scheme: &str,
    lambda: f32,
    corpus: &str,
    n: usize,
    out: &Path,
) -> QuantizeReport {
    let options = QuantizeOptions {
        prune: Some(PruneOptions {
            lambda,
            calibration: common::path(corpus),
            max_sentences: n,
        }),
        ..QuantizeOptions::default()
    };
    quantize_dir_with(src, scheme, &options, out).unwrap()
}

fn calibration(corpus: &str, n: usize) -> Vec<String> {
    std::fs::read_to_string(common::path(corpus))
        .unwrap()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .take(n)
        .map(String::from)
        .collect()
}

/// The rule for λ > 0, computed here: units whose maximum is ≥ λ · population std of the
/// layer's maxima.
fn expected_kept(maxima: &[f32], lambda: f32) -> Vec<usize> {
    let n = maxima.len() as f64;
    let mean = maxima.iter().map(|&m| m as f64).sum::<f64>() / n;
    let std = (maxima
        .iter()
        .map(|&m| (m as f64 - mean).powi(2))
        .sum::<f64>()
        / n)
        .sqrt();
    (0..maxima.len())
        .filter(|&j| maxima[j] as f64 >= lambda as f64 * std)
        .collect()
}

fn record(dir: &Path) -> PruneRecord {
    let store = TensorStore::from_safetensors(&dir.join(VARIANT_FILE)).unwrap();
    PruneRecord::from_metadata(&store.metadata)
        .unwrap()
        .expect("a pruned variant records its pruning")
}

fn file_size(dir: &Path) -> u64 {
    std::fs::metadata(dir.join(VARIANT_FILE)).unwrap().len()
}

/// Checks that `pruned` holds exactly the units `kept` of `source` for one FFN.
fn assert_units(
    source: &mut TensorStore,
    pruned: &mut TensorStore,
    [w1, b1, w2]: [&str; 3],
    kept: &[usize],
) {
    let take = |s: &mut TensorStore, n: &str| {
        let shape = s.shape(n).unwrap_or_else(|| panic!("{n} missing")).to_vec();
        (s.take(n, &shape).unwrap(), shape)
    };
    let ((sw1, s1), (pw1, p1)) = (take(source, w1), take(pruned, w1));
    let (width, dim) = (s1[0], s1[1]);
    assert_eq!(p1, vec![kept.len(), dim], "{w1}");
    for (r, &j) in kept.iter().enumerate() {
        assert_eq!(
            pw1[r * dim..(r + 1) * dim],
            sw1[j * dim..(j + 1) * dim],
            "{w1} row {r}"
        );
    }
    let ((sb1, _), (pb1, _)) = (take(source, b1), take(pruned, b1));
    assert_eq!(
        pb1,
        kept.iter().map(|&j| sb1[j]).collect::<Vec<_>>(),
        "{b1}"
    );
    let ((sw2, _), (pw2, p2)) = (take(source, w2), take(pruned, w2));
    assert_eq!(p2, vec![dim, kept.len()], "{w2}");
    for r in 0..dim {
        let want: Vec<f32> = kept.iter().map(|&j| sw2[r * width + j]).collect();
        assert_eq!(
            pw2[r * kept.len()..(r + 1) * kept.len()],
            want,
            "{w2} row {r}"
        );
    }
}

fn dev_set(n: usize) -> Vec<(String, String)> {
    std::fs::read_to_string(common::path("data/sentiment/dev.tsv"))
        .unwrap()
        .lines()
        .take(n)
        .map(|l| {
            let (label, text) = l.split_once('\t').unwrap();
            (label.to_string(), text.to_string())
        })
        .collect()
}

fn accuracy(model: &BertClassifier, dev: &[(String, String)]) -> f64 {
    let texts: Vec<&str> = dev.iter().map(|(_, t)| t.as_str()).collect();
    let out = model.classify(&texts, Overflow::Truncate).unwrap();
    let right = out
        .iter()
        .zip(dev)
        .filter(|(o, (label, _))| &model.labels[o.label] == label)
        .count();
    right as f64 / dev.len() as f64
}

#[test]
fn bert_lambda_zero_prunes_nothing_and_changes_nothing() {
    let src = common::path("models/sentiment/fp32");
    let (plain, zero) = (scratch("bert-int8"), scratch("bert-zero"));
    quantize_dir(&src, "int8", &plain).unwrap();
    let report = prune(&src, "int8", 0.0, SENTIMENT_CORPUS, 100, &zero);
    assert_eq!(report.notes.len(), 7, "{:?}", report.notes);
    assert_eq!(
        report.notes[0],
        "encoder layer 1 FFN: pruned 0 / 1536 units (0.0 %)"
    );
    assert!(report.notes[6].contains("pruned 0 / 9216 units (0.0 %)"));
    let rec = record(&zero);
    assert_eq!(rec.encoder, vec![1536; 6]);
    assert!(rec.decoder.is_empty());
    let dev = dev_set(64);
    let texts: Vec<&str> = dev.iter().map(|(_, t)| t.as_str()).collect();
    let (a, b) = (
        BertClassifier::load(&plain).unwrap(),
        BertClassifier::load(&zero).unwrap(),
    );
    assert_eq!(
        a.classify(&texts, Overflow::Truncate).unwrap(),
        b.classify(&texts, Overflow::Truncate).unwrap()
    );
    std::fs::remove_dir_all(&plain).unwrap();
    std::fs::remove_dir_all(&zero).unwrap();
}

#[test]
fn bert_pruning_keeps_exactly_the_units_at_or_above_lambda_std() {
    let src = common::path("models/sentiment/fp32");
    let (lambda, n) = (1.0, 200);
    let out = scratch("bert-fp32-pruned");
    let report = prune(&src, "fp32", lambda, SENTIMENT_CORPUS, n, &out);

    // A second pass, one sentence per batch, through the model's own FFN layers.
    let mut model = BertClassifier::load(&src).unwrap();
    let observers: Vec<_> = model.ffn_inputs_mut().into_iter().map(observe).collect();
    for s in calibration(SENTIMENT_CORPUS, n) {
        model.classify(&[s.as_str()], Overflow::Truncate).unwrap();
    }
    let kept: Vec<Vec<usize>> = observers
        .iter()
        .map(|o| expected_kept(&o.get(), lambda))
        .collect();

    let mut source = TensorStore::from_safetensors(&src.join("model.safetensors")).unwrap();
    let mut pruned = TensorStore::from_safetensors(&out.join(VARIANT_FILE)).unwrap();
    for (i, k) in kept.iter().enumerate() {
        let p = format!("bert.encoder.layer.{i}");
        assert_units(
            &mut source,
            &mut pruned,
            [
                &format!("{p}.intermediate.dense.weight"),
                &format!("{p}.intermediate.dense.bias"),
                &format!("{p}.output.dense.weight"),
            ],
            k,
        );
        let dropped = 1536 - k.len();
        assert_eq!(
            report.notes[i],
            format!(
                "encoder layer {} FFN: pruned {dropped} / 1536 units ({:.1} %)",
                i + 1,
                100.0 * dropped as f64 / 1536.0
            )
        );
    }
    let widths: Vec<usize> = kept.iter().map(Vec::len).collect();
    assert!(widths.iter().any(|&w| w < 1536), "{widths:?}");
    assert!(
        widths.iter().collect::<HashSet<_>>().len() > 1,
        "fractions differ per layer: {widths:?}"
    );
    // The metadata says what was done, and the pruned fp32 variant loads and classifies.
    let rec = record(&out);
    assert_eq!(
        rec,
        PruneRecord {
            lambda,
            calibration_sha256: sha256_file(&common::path(SENTIMENT_CORPUS)).unwrap(),
            sentences: n,
            width: 1536,
            encoder: widths,
            decoder: Vec::new(),
        }
    );
    let m = BertClassifier::load(&out).unwrap();
    assert!(accuracy(&m, &dev_set(200)) > 0.8);
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn bert_pruned_int8_variant_loads_like_any_variant_and_is_smaller() {
    let src = common::path("models/sentiment/fp32");
    let root = scratch("bert-repo");
    let (plain, pruned) = (
        root.join("sentiment/int8"),
        root.join("sentiment/pruned-int8"),
    );
    quantize_dir(&src, "int8", &plain).unwrap();
    let report = prune(&src, "int8", 1.0, SENTIMENT_CORPUS, 500, &pruned);
    assert_eq!(report.info.scheme, "int8");
    assert!(file_size(&pruned) < file_size(&plain));
    // The repository path the server's loader takes.
    let m = load_classifier(&root, "sentiment", "pruned-int8").unwrap();
    let base = load_classifier(&root, "sentiment", "int8").unwrap();
    assert!(m.weight_bytes() < base.weight_bytes());
    let dev = dev_set(200);
    let (acc, base_acc) = (accuracy(&m, &dev), accuracy(&base, &dev));
    assert!(acc > base_acc - 0.05, "pruned {acc} vs int8 {base_acc}");

    // With a recipe: the same calibration selects the same units, then each block its scheme.
    let mixed = root.join("sentiment/pruned-ffn4");
    let options = QuantizeOptions {
        recipe: Some(Recipe::from_file(&common::path("config/recipes/ffn4.toml")).unwrap()),
        prune: Some(PruneOptions {
            lambda: 1.0,
            calibration: common::path(SENTIMENT_CORPUS),
            max_sentences: 500,
        }),
        ..QuantizeOptions::default()
    };
    let report = quantize_dir_with(&src, "int8", &options, &mixed).unwrap();
    assert_eq!(report.info.scheme, "mixed");
    assert_eq!(record(&mixed), record(&pruned));
    let m = load_classifier(&root, "sentiment", "pruned-ffn4").unwrap();
    assert!(accuracy(&m, &dev) > base_acc - 0.05);
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn marian_pruning_rule_metadata_and_variants() {
    let src = common::model_dir("en-pt");
    let root = scratch("marian-repo");
    let dir = |v: &str| root.join("en-pt").join(v);
    let opts = SearchOptions::default();
    let texts = [
        "How are you today?",
        "In the beginning was the Word, and the Word was with God.",
        "And God said, Let there be light: and there was light.",
    ];

    // λ = 0 prunes nothing: the same translations as the unpruned int8 variant.
    quantize_dir(&src, "int8", &dir("int8")).unwrap();
    let report = prune(&src, "int8", 0.0, BIBLE_EN, 30, &dir("zero-int8"));
    assert_eq!(report.notes.len(), 6 + 2 + 1, "{:?}", report.notes);
    assert_eq!(
        report.notes[6],
        "decoder layer 1 FFN: pruned 0 / 1536 units (0.0 %)"
    );
    let plain = load_translator(&root, "en-pt", "int8").unwrap();
    let zero = load_translator(&root, "en-pt", "zero-int8").unwrap();
    assert_eq!(
        plain.translate(&texts, &opts, Overflow::Error).unwrap(),
        zero.translate(&texts, &opts, Overflow::Error).unwrap()
    );

    // λ = 2 on an fp32 variant: exactly the units the rule keeps, encoder and decoder.
    let (lambda, n) = (2.0, 100);
    let report = prune(&src, "fp32", lambda, BIBLE_EN, n, &dir("pruned-fp32"));
    let mut model = MarianTranslator::load(&src).unwrap();
    let (enc, dec) = model.ffn_inputs_mut();
    let (enc, dec): (Vec<_>, Vec<_>) = (
        enc.into_iter().map(observe).collect(),
        dec.into_iter().map(observe).collect(),
    );
    let greedy = SearchOptions {
        beam_size: 1,
        ..model.defaults.clone()
    };
    for s in calibration(BIBLE_EN, n) {
        model
            .translate(&[s.as_str()], &greedy, Overflow::Truncate)
            .unwrap();
    }
    let model_file = std::fs::read_dir(&src)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            let n = p.to_string_lossy();
            n.ends_with(".bin") && !n.ends_with(".s2t.bin")
        })
        .unwrap();
    let mut source = MarianBin::read(&model_file).unwrap().tensors;
    let mut pruned = TensorStore::from_safetensors(&dir("pruned-fp32").join(VARIANT_FILE)).unwrap();
    let mut widths = (Vec::new(), Vec::new());
    for (side, observers, out) in [
        ("encoder", &enc, &mut widths.0),
        ("decoder", &dec, &mut widths.1),
    ] {
        for (i, o) in observers.iter().enumerate() {
            let maxima = o.get();
            assert!(maxima.iter().all(|&m| m >= 0.0), "ReLU outputs");
            let kept = expected_kept(&maxima, lambda);
            let p = format!("{side}_l{}_ffn", i + 1);
            assert_units(
                &mut source,
                &mut pruned,
                [&format!("{p}_W1"), &format!("{p}_b1"), &format!("{p}_W2")],
                &kept,
            );
            out.push(kept.len());
        }
    }
    assert_eq!(
        record(&dir("pruned-fp32")),
        PruneRecord {
            lambda,
            calibration_sha256: sha256_file(&common::path(BIBLE_EN)).unwrap(),
            sentences: n,
            width: 1536,
            encoder: widths.0.clone(),
            decoder: widths.1.clone(),
        }
    );
    assert!(
        widths.0.iter().any(|&w| w < 1536),
        "λ = 2 prunes: {widths:?}"
    );
    assert!(
        widths.0.iter().collect::<HashSet<_>>().len() > 1,
        "fractions differ per layer: {widths:?}"
    );
    assert_eq!(report.notes.len(), 9);
    let fp32 = MarianTranslator::load(&dir("pruned-fp32")).unwrap();
    assert!(!fp32.translate(&texts, &opts, Overflow::Error).unwrap()[0].is_empty());

    // Pruned int8 and shipped-int8 variants load through the repository and translate.
    for scheme in ["int8", "int8-shipped"] {
        let name = format!("pruned-{scheme}");
        prune(&src, scheme, lambda, BIBLE_EN, n, &dir(&name));
        assert_eq!(record(&dir(&name)).encoder, widths.0);
        assert!(file_size(&dir(&name)) < file_size(&dir("int8")), "{scheme}");
        let tr = load_translator(&root, "en-pt", &name).unwrap();
        let got = tr.translate(&texts, &opts, Overflow::Error).unwrap();
        assert!(got[0].contains("hoje"), "{scheme}: {got:?}");
    }
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn bad_calibration_and_options_are_clear_errors() {
    let src = common::path("models/sentiment/fp32");
    let out = scratch("bad");
    let run = |lambda: f32, calibration: PathBuf, scheme: &str| {
        let options = QuantizeOptions {
            prune: Some(PruneOptions {
                lambda,
                calibration,
                max_sentences: 10,
            }),
            ..QuantizeOptions::default()
        };
        format!(
            "{:#}",
            quantize_dir_with(&src, scheme, &options, &out).unwrap_err()
        )
    };
    let missing = out.join("no-such-file.txt");
    let e = run(0.5, missing.clone(), "int8");
    assert!(e.contains(&missing.display().to_string()), "{e}");
    std::fs::create_dir_all(&out).unwrap();
    let empty = out.join("empty.txt");
    std::fs::write(&empty, "\n  \n").unwrap();
    let e = run(0.5, empty.clone(), "int8");
    assert!(
        e.contains("has no sentences") && e.contains(&empty.display().to_string()),
        "{e}"
    );
    let e = run(-1.0, common::path(SENTIMENT_CORPUS), "int8");
    assert!(e.contains("--prune-lambda"), "{e}");
    // fp32 without pruning is the source itself.
    let e = format!("{:#}", quantize_dir(&src, "fp32", &out).unwrap_err());
    assert!(e.contains("fp32"), "{e}");
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn loader_refuses_ffn_tensors_that_disagree() {
    let src = common::path("models/sentiment/fp32");
    let out = scratch("bert-tampered");
    prune(&src, "fp32", 1.0, SENTIMENT_CORPUS, 50, &out);
    // The variant is rewritten on purpose below: without its manifest, so the shape checks run.
    std::fs::remove_file(out.join("SHA256SUMS")).unwrap();
    let path = out.join(VARIANT_FILE);
    let rewrite = |edit: &dyn Fn(&mut TensorStore)| {
        let mut store = TensorStore::from_safetensors(&path).unwrap();
        let info = VariantInfo::from_metadata(&store.metadata, "bert").unwrap();
        let extra = store.metadata.clone();
        edit(&mut store);
        write_store(&path, &store, &info, extra).unwrap();
    };
    let retake = |store: &mut TensorStore, name: &str, f: &dyn Fn(&[usize], Vec<f32>) -> Tensor| {
        let shape = store.shape(name).unwrap().to_vec();
        let data = store.take(name, &shape).unwrap();
        store.insert(name, f(&shape, data));
    };
    // A bias one unit short of its matrix: the error names the bias.
    let b1 = "bert.encoder.layer.0.intermediate.dense.bias";
    rewrite(&|s| {
        retake(s, b1, &|shape, mut data| {
            data.pop();
            Tensor {
                shape: vec![shape[0] - 1],
                data,
            }
        })
    });
    let e = format!("{:#}", BertClassifier::load(&out).err().unwrap());
    assert!(e.contains(b1), "{e}");
    // A first matrix wider than the configured FFN.
    let w1 = "bert.encoder.layer.1.intermediate.dense.weight";
    rewrite(&|s| {
        retake(s, b1, &|shape, mut data| {
            data.push(0.0);
            Tensor {
                shape: vec![shape[0] + 1],
                data,
            }
        });
        retake(s, w1, &|shape, mut data| {
            data.extend(vec![0.0; 384 * (1537 - shape[0])]);
            Tensor {
                shape: vec![1537, 384],
                data,
            }
        });
    });
    let e = format!("{:#}", BertClassifier::load(&out).err().unwrap());
    assert!(e.contains(w1) && e.contains("1536"), "{e}");
    std::fs::remove_dir_all(&out).unwrap();
}
