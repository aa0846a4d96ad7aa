//! A tiny BERT sequence classifier with random weights, written to disk in the HF layout
//! (`config.json`, `model.safetensors`, `tokenizer.json`), so the classification endpoint can be
//! tested end to end without a trained model. Deterministic: the same files every time.

use std::path::Path;

use serde_json::{Value, json};

const HIDDEN: usize = 32;
const HEADS: usize = 4;
const INTERMEDIATE: usize = 64;
const LAYERS: usize = 2;
/// Also the longest accepted input, so "too long" is easy to reach.
pub const MAX_TOKENS: usize = 64;
pub const LABELS: [&str; 3] = ["negative", "neutral", "positive"];

fn vocab() -> Vec<String> {
    let mut v: Vec<String> = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for c in ('a'..='z').chain('0'..='9') {
        v.push(c.to_string());
        v.push(format!("##{c}"));
    }
    for p in ".,!?'\"-:;()".chars() {
        v.push(p.to_string());
    }
    for w in [
        "the", "good", "bad", "movie", "great", "terrible", "i", "it", "was", "is", "not",
    ] {
        if !v.iter().any(|x| x == w) {
            v.push(w.to_string());
        }
    }
    v
}

fn tokenizer_json(vocab: &[String]) -> Value {
    let ids: serde_json::Map<String, Value> = vocab
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), json!(i)))
        .collect();
    let special = |id: usize, content: &str| {
        json!({"id": id, "content": content, "single_word": false, "lstrip": false, "rstrip": false,
               "normalized": false, "special": true})
    };
    json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [special(0, "[PAD]"), special(1, "[UNK]"), special(2, "[CLS]"), special(3, "[SEP]")],
        "normalizer": {"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true,
                       "strip_accents": null, "lowercase": true},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                       {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": "[SEP]", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}},
                     {"SpecialToken": {"id": "[SEP]", "type_id": 1}}],
            "special_tokens": {
                "[CLS]": {"id": "[CLS]", "ids": [2], "tokens": ["[CLS]"]},
                "[SEP]": {"id": "[SEP]", "ids": [3], "tokens": ["[SEP]"]}
            }
        },
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": true},
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                  "max_input_chars_per_word": 100, "vocab": ids}
    })
}

/// Deterministic pseudo-random weights in [-scale, scale).
struct Lcg(u64);

impl Lcg {
    fn tensor(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n)
            .map(|_| {
                self.0 = self
                    .0
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((self.0 >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
            })
            .collect()
    }
}

fn write_safetensors(path: &Path, tensors: &[(String, Vec<usize>, Vec<f32>)]) {
    let mut header = serde_json::Map::new();
    let mut data = Vec::new();
    for (name, shape, values) in tensors {
        assert_eq!(shape.iter().product::<usize>(), values.len(), "{name}");
        let start = data.len();
        for v in values {
            data.extend_from_slice(&v.to_le_bytes());
        }
        header.insert(
            name.clone(),
            json!({"dtype": "F32", "shape": shape, "data_offsets": [start, data.len()]}),
        );
    }
    let mut header = serde_json::to_vec(&Value::Object(header)).unwrap();
    while !header.len().is_multiple_of(8) {
        header.push(b' ');
    }
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend(header);
    out.extend(data);
    std::fs::write(path, out).unwrap();
}

/// Writes the model into `dir` (created if needed).
pub fn write(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let vocab = vocab();
    let id2label: serde_json::Map<String, Value> = LABELS
        .iter()
        .enumerate()
        .map(|(i, l)| (i.to_string(), json!(l)))
        .collect();
    let config = json!({
        "vocab_size": vocab.len(), "hidden_size": HIDDEN, "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS, "intermediate_size": INTERMEDIATE, "hidden_act": "gelu",
        "max_position_embeddings": MAX_TOKENS, "type_vocab_size": 2, "layer_norm_eps": 1e-12,
        "id2label": id2label
    });
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_vec_pretty(&config).unwrap(),
    )
    .unwrap();
    std::fs::write(
        dir.join("tokenizer.json"),
        serde_json::to_vec(&tokenizer_json(&vocab)).unwrap(),
    )
    .unwrap();

    let mut rng = Lcg(42);
    let mut t: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
    let mut add = |name: String, shape: Vec<usize>, values: Vec<f32>| t.push((name, shape, values));
    let (h, i) = (HIDDEN, INTERMEDIATE);
    add(
        "bert.embeddings.word_embeddings.weight".into(),
        vec![vocab.len(), h],
        rng.tensor(vocab.len() * h, 1.0),
    );
    add(
        "bert.embeddings.position_embeddings.weight".into(),
        vec![MAX_TOKENS, h],
        rng.tensor(MAX_TOKENS * h, 0.1),
    );
    add(
        "bert.embeddings.token_type_embeddings.weight".into(),
        vec![2, h],
        rng.tensor(2 * h, 0.1),
    );
    let norm = |add: &mut dyn FnMut(String, Vec<usize>, Vec<f32>), p: &str| {
        add(format!("{p}.weight"), vec![h], vec![1.0; h]);
        add(format!("{p}.bias"), vec![h], vec![0.0; h]);
    };
    norm(&mut add, "bert.embeddings.LayerNorm");
    let mut linear =
        |add: &mut dyn FnMut(String, Vec<usize>, Vec<f32>), p: &str, n_out: usize, n_in: usize| {
            let scale = 1.0 / (n_in as f32).sqrt();
            add(
                format!("{p}.weight"),
                vec![n_out, n_in],
                rng.tensor(n_out * n_in, scale),
            );
            add(format!("{p}.bias"), vec![n_out], rng.tensor(n_out, 0.1));
        };
    for l in 0..LAYERS {
        let p = format!("bert.encoder.layer.{l}");
        for m in ["query", "key", "value"] {
            linear(&mut add, &format!("{p}.attention.self.{m}"), h, h);
        }
        linear(&mut add, &format!("{p}.attention.output.dense"), h, h);
        norm(&mut add, &format!("{p}.attention.output.LayerNorm"));
        linear(&mut add, &format!("{p}.intermediate.dense"), i, h);
        linear(&mut add, &format!("{p}.output.dense"), h, i);
        norm(&mut add, &format!("{p}.output.LayerNorm"));
    }
    linear(&mut add, "bert.pooler.dense", h, h);
    linear(&mut add, "classifier", LABELS.len(), h);
    write_safetensors(&dir.join("model.safetensors"), &t);
}
