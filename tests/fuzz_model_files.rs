//! Fuzzing (issue 17) on stable Rust: the model-file readers (Marian `.bin`, safetensors with
//! the variant metadata, the binary shortlist, SentencePiece models and their charsmap) on
//! mutations of real files never panic and never allocate from an unchecked length field (an
//! over-allocation would abort this process). Bounded case counts: seconds in `cargo test`.

mod common;

use std::path::PathBuf;
use std::sync::OnceLock;

use common::crafted::{MarianBinParts, Safetensors, spm_charsmap, spm_with_charsmap};
use proptest::prelude::*;
use proptest::sample::Index;
use quantserve::format::TensorStore;
use quantserve::format::marian_bin::MarianBin;
use quantserve::models::marian::Shortlist;
use quantserve::models::spm::unigram_from_spm;

fn mutate(base: &[u8], window: usize, edits: &[(Index, u8)], cut: Option<Index>) -> Vec<u8> {
    let mut b = base.to_vec();
    let window = window.min(b.len()).max(1);
    for (at, v) in edits {
        let i = at.index(window);
        if i < b.len() {
            b[i] = *v;
        }
    }
    if let Some(c) = cut {
        b.truncate(c.index(b.len() + 1));
    }
    b
}

/// A small Marian `.bin`: the en-pt model's header and its first tensors, rebuilt.
fn small_bin() -> &'static Vec<u8> {
    static BIN: OnceLock<Vec<u8>> = OnceLock::new();
    BIN.get_or_init(|| {
        let path = common::model_dir("en-pt").join("model.enpt.intgemm.alphas.bin");
        let mut parts = MarianBinParts::parse(&std::fs::read(path).unwrap());
        let yml = parts
            .tensors
            .iter()
            .position(|t| t.0.starts_with(b"special:model.yml"))
            .unwrap();
        let mut keep: Vec<_> = parts
            .tensors
            .iter()
            .filter(|t| t.3.len() < 4096 && !t.0.starts_with(b"special:"))
            .take(23)
            .cloned()
            .collect();
        keep.push(parts.tensors[yml].clone());
        parts.tensors = keep;
        let bytes = parts.to_bytes();
        MarianBin::parse(&bytes).unwrap();
        bytes
    })
}

/// An int4 variant of the tiny Marian model, with a tiered matrix added through its metadata.
fn variant() -> &'static Safetensors {
    static V: OnceLock<Safetensors> = OnceLock::new();
    V.get_or_init(|| {
        let dir = common::crafted::temp_dir("fuzz-variant");
        quantserve::quant::convert::quantize_dir(
            &common::path("models/tiny-marian/fp32"),
            "int4-g64",
            &dir,
        )
        .unwrap();
        Safetensors::read(&dir.join("variant.safetensors"))
    })
}

fn scratch_file(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("qs-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn spm() -> &'static Vec<u8> {
    static S: OnceLock<Vec<u8>> = OnceLock::new();
    S.get_or_init(|| std::fs::read(common::path("models/tiny-marian/fp32/source.spm")).unwrap())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn marian_bin_mutations_never_panic(
        edits in proptest::collection::vec((any::<Index>(), any::<u8>()), 1..12),
        cut in proptest::option::of(any::<Index>()),
        header_only in any::<bool>(),
    ) {
        let base = small_bin();
        // Most cases hit the header (counts, lengths, shapes), where the sizes are.
        let window = if header_only { 2048 } else { base.len() };
        let _ = MarianBin::parse(&mutate(base, window, &edits, cut));
    }

    #[test]
    fn variant_metadata_values_never_panic(
        which in any::<Index>(),
        value in prop_oneof![
            "(uniform|ternary|bcq):[0-9]{0,20}:[0-9]{0,20}/[0-9]{0,21}",
            "uniform:[2-8]:(0|64|128|4194304|1073741824)/[0-9]{1,21}",
            "bcq:[0-9]{1,3}/[0-9]{1,21}",
            "[0-9]{1,20}/[0-9]{1,20}/[0-9]{1,20}",
            ".{0,30}",
        ],
        tiers in any::<bool>(),
    ) {
        let mut st = Safetensors::parse(&variant().to_bytes());
        let keys: Vec<String> = st.header["__metadata__"].as_object().unwrap().keys()
            .filter(|k| k.starts_with("quantserve.lowbit.")).cloned().collect();
        let key = &keys[which.index(keys.len())];
        let key = if tiers { key.replace("quantserve.lowbit.", "quantserve.tiers.") } else { key.clone() };
        st.set_metadata(&key, &value);
        let file = scratch_file("meta.safetensors");
        st.write(&file);
        let _ = TensorStore::from_safetensors(&file);
    }

    #[test]
    fn safetensors_byte_mutations_never_panic(
        edits in proptest::collection::vec((any::<Index>(), any::<u8>()), 1..8),
        cut in proptest::option::of(any::<Index>()),
    ) {
        let base = variant().to_bytes();
        let header = 8 + u64::from_le_bytes(base[..8].try_into().unwrap()) as usize;
        let file = scratch_file("bytes.safetensors");
        std::fs::write(&file, mutate(&base, header + 64, &edits, cut)).unwrap();
        let _ = TensorStore::from_safetensors(&file);
    }

    #[test]
    fn shortlist_mutations_never_panic(
        fields in proptest::collection::vec((0usize..6, any::<u64>()), 0..4),
        edits in proptest::collection::vec((any::<Index>(), any::<u8>()), 0..8),
        cut in proptest::option::of(any::<Index>()),
    ) {
        // A small valid shortlist: header, 4 offsets, 6 ids.
        let mut b = Vec::new();
        let header = [0xF11A48D5013417F5u64, 1, 100, 3, 4, 6];
        for h in header { b.extend(h.to_le_bytes()); }
        for o in [0u64, 2, 4, 6] { b.extend(o.to_le_bytes()); }
        for id in [1u32, 2, 3, 4, 5, 6] { b.extend(id.to_le_bytes()); }
        for (i, v) in &fields {
            b[i * 8..i * 8 + 8].copy_from_slice(&v.to_le_bytes());
        }
        let b = mutate(&b, 48, &edits, cut);
        if let Ok(s) = Shortlist::parse(&b) {
            let _ = s.allowed_targets(&[0, 1, 2, 3, 4, 1000], 10, &[0]);
        }
    }

    #[test]
    fn sentencepiece_mutations_never_panic(
        edits in proptest::collection::vec((any::<Index>(), any::<u8>()), 1..12),
        cut in proptest::option::of(any::<Index>()),
    ) {
        if let Ok(tok) = unigram_from_spm(&mutate(spm(), spm().len(), &edits, cut)) {
            let _ = tok.encode("Hello wörld ① ｆｕｌｌ", false);
        }
    }

    #[test]
    fn charsmap_mutations_never_panic_on_encode(
        edits in proptest::collection::vec((any::<Index>(), any::<u8>()), 1..12),
        cut in proptest::option::of(any::<Index>()),
        text in "\\PC{0,12}",
    ) {
        let real = spm_charsmap(spm());
        let crafted = mutate(&real, real.len(), &edits, cut);
        // Whatever loads must encode anything.
        if let Ok(tok) = unigram_from_spm(&spm_with_charsmap(spm(), &crafted)) {
            let _ = tok.encode(text.as_str(), false);
            let _ = tok.encode("ｆｕｌｌ ① ﬁ", false);
        }
    }
}
