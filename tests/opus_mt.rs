//! Opus-MT (Hugging Face Marian) end to end on the committed tiny models: `quantserve quantize`
//! writes variant folders for every scheme and a recipe that load without the fp32 source and
//! equal the variants derived at load; `quantserve fetch PATH` registers a folder or an archive
//! under `models/<pair>/fp32`; a vocabulary map built from a corpus restricts decoding to it.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};

use quantserve::models::marian::vmap::{self, VMAP_FILE, VmapOptions};
use quantserve::models::marian::{MarianTranslator, SearchOptions};
use quantserve::models::spm::marian_tokenizer;
use quantserve::models::tokenizer::Overflow;
use quantserve::quant::convert::{quantize_dir, quantize_dir_recipe};
use quantserve::quant::recipe::Recipe;
use quantserve::repo::import::import_marian;
use quantserve::schemes::SchemeRef;

const SENTENCES: &[&str] = &[
    "Listen; Behold, there went out a sower to sow:",
    "And he said unto them, Take heed what ye hear.",
    "The light shines in the darkness.",
];

fn tmp(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("opus-mt")
        .join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn opts(shortlist: bool) -> SearchOptions {
    SearchOptions {
        beam_size: 1,
        max_length: Some(24),
        shortlist,
        ..SearchOptions::default()
    }
}

fn ids(model: &MarianTranslator, shortlist: bool) -> Vec<Vec<u32>> {
    let sources: Vec<Vec<u32>> = SENTENCES
        .iter()
        .map(|s| model.tokenize(s, Overflow::Truncate).unwrap())
        .collect();
    model.translate_ids(&sources, &opts(shortlist)).unwrap()
}

#[test]
fn quantize_writes_variants_that_load_on_their_own() {
    let src = common::path("models/tiny-marian/fp32");
    for scheme in ["int8", "int6", "int4", "int4-g64", "ternary", "bcq2"] {
        let out = tmp(scheme);
        let report = quantize_dir(&src, scheme, &out).unwrap();
        assert!(report.quantized_tensors > 0, "{scheme}");
        assert!(
            !out.join("model.safetensors").exists(),
            "no fp32 copy in the variant"
        );
        let disk = MarianTranslator::load(&out).unwrap();
        let derived =
            MarianTranslator::load_as(&src, Some(&SchemeRef::parse(scheme).unwrap())).unwrap();
        assert_eq!(
            ids(&disk, false),
            ids(&derived, false),
            "{scheme}: file = derived"
        );
    }
    let recipe = Recipe::from_file(&common::path("config/recipes/low.toml")).unwrap();
    let out = tmp("mixed-low");
    let r = quantize_dir_recipe(&src, &recipe, &out).unwrap();
    assert!(r.avg_bits > 4.0 && r.avg_bits < 8.5, "{}", r.avg_bits);
    let model = MarianTranslator::load(&out).unwrap();
    assert_eq!(ids(&model, false).len(), SENTENCES.len());
    // The recipe's blocks reach HF Marian's tensor names.
    assert_eq!(
        recipe
            .scheme_for("model.encoder.layers.0.fc1.weight")
            .name(),
        "int4-g64"
    );
    assert_eq!(
        recipe
            .scheme_for("model.decoder.layers.0.encoder_attn.q_proj.weight")
            .name(),
        recipe.scheme_for("encoder_l1_context_Wq").name()
    );
}

fn zip_folder(dir: &Path, zip_path: &Path) {
    let file = std::fs::File::create(zip_path).unwrap();
    let mut zip = zip::ZipWriter::new(file);
    let options = zip::write::SimpleFileOptions::default();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let name = format!("opus-mt-en-pt/{}", e.file_name().to_string_lossy());
        zip.start_file(name, options).unwrap();
        zip.write_all(&std::fs::read(e.path()).unwrap()).unwrap();
    }
    zip.finish().unwrap();
}

#[test]
fn fetch_registers_folders_and_archives_by_their_pair() {
    let src = common::path("models/tiny-marian/fp32");
    // A folder: the pair comes from tokenizer_config.json (en → pt).
    let root = tmp("repo-folder");
    let (name, dir) = import_marian(&root, &src, None).unwrap();
    assert_eq!(
        (name.as_str(), dir.clone()),
        ("en-pt", root.join("en-pt/fp32"))
    );
    MarianTranslator::load(&dir).unwrap();
    assert!(
        import_marian(&root, &src, None).is_err(),
        "no silent overwrite"
    );
    // A zip archive with the model one folder down, under a pair given by hand.
    let root = tmp("repo-zip");
    let archive = root.join("opus-mt-en-pt.zip");
    zip_folder(&src, &archive);
    let (name, _) = import_marian(&root, &archive, Some("en-xx")).unwrap();
    assert_eq!(name, "en-xx");
    assert!(root.join("en-xx/fp32/config.json").is_file());
    // A tar.gz archive (system tar).
    let root = tmp("repo-tar");
    let tar = root.join("m.tar.gz");
    let status = std::process::Command::new("tar")
        .arg("-czf")
        .arg(&tar)
        .arg("-C")
        .arg(src.parent().unwrap())
        .arg("fp32")
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(import_marian(&root, &tar, None).unwrap().0, "en-pt");
    // Not a model, not an archive, a bad pair.
    assert!(import_marian(&root, &common::path("data"), None).is_err());
    assert!(import_marian(&root, &common::path("Cargo.toml"), None).is_err());
    assert!(import_marian(&tmp("repo-bad"), &src, Some("enpt")).is_err());
}

#[test]
fn a_vocabulary_map_restricts_decoding() {
    let dir = tmp("vmap");
    for e in std::fs::read_dir(common::path("models/tiny-marian/fp32"))
        .unwrap()
        .flatten()
    {
        std::fs::copy(e.path(), dir.join(e.file_name())).unwrap();
    }
    let read = |p: &str| -> Vec<String> {
        std::fs::read_to_string(common::path(p))
            .unwrap()
            .lines()
            .take(300)
            .map(String::from)
            .collect()
    };
    let (src, tgt) = (
        read("data/corpus/bible-en.txt"),
        read("data/corpus/bible-pt.txt"),
    );
    let vocab = dir.join("vocab.json");
    let n = quantserve::models::marian::hf::vocab_size(&dir).unwrap();
    let s_tok = marian_tokenizer(&dir.join("source.spm"), &vocab, n).unwrap();
    let t_tok = marian_tokenizer(&dir.join("target.spm"), &vocab, n).unwrap();
    let sources: Vec<Vec<u32>> = src
        .iter()
        .map(|s| s_tok.encode(s, false).unwrap())
        .collect();
    let targets: Vec<Vec<u32>> = tgt
        .iter()
        .map(|t| t_tok.encode(t, false).unwrap())
        .collect();
    let eos = t_tok.token_id("</s>").unwrap();
    let opts = VmapOptions {
        per_token: 10,
        always: 50,
    };
    let map = vmap::build(&sources, &targets, &t_tok, &[eos], opts);
    assert!(map.keys > 100 && map.pairs > 0);
    let full = MarianTranslator::load(&dir).unwrap();
    assert!(!full.has_shortlist());
    std::fs::write(dir.join(VMAP_FILE), &map.text).unwrap();
    let mapped = MarianTranslator::load(&dir).unwrap();
    assert!(mapped.has_shortlist() && mapped.defaults.shortlist);
    // Every generated token is in the map's lists for that sentence (or always allowed).
    let shortlist = vmap::read(&dir.join(VMAP_FILE), &mapped.tokenizer, 3773).unwrap();
    for (s, out) in SENTENCES.iter().zip(ids(&mapped, true)) {
        let src_ids = mapped.tokenize(s, Overflow::Truncate).unwrap();
        let allowed = shortlist.allowed_targets(&src_ids, 3773, &[eos]);
        assert!(
            out.iter().all(|t| allowed.binary_search(t).is_ok()),
            "{s}: {out:?}"
        );
    }
    // Without it (the same model, shortlist off) decoding is the full-vocabulary one.
    assert_eq!(ids(&mapped, false), ids(&full, false));
}
