//! Opus-MT tokenization (source.spm converted to a `tokenizers` Unigram, ids through vocab.json)
//! against transformers' MarianTokenizer on 200 sentences (goldens: tools/make_hf_marian.py).

mod common;

use quantserve::models::spm::marian_tokenizer;

#[test]
fn ids_match_marian_tokenizer() {
    let dir = common::model_dir("tiny-marian");
    let n = quantserve::models::marian::hf::vocab_size(&dir).unwrap();
    let tok = marian_tokenizer(&dir.join("source.spm"), &dir.join("vocab.json"), n).unwrap();
    let eos = tok.token_id("</s>").unwrap();
    let g = common::golden("hf_marian_tokenizer.json");
    let cases = g["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 200);
    let mut wrong = Vec::new();
    for c in cases {
        let text = c["text"].as_str().unwrap();
        let mut ids = tok.encode(text, false).unwrap();
        ids.push(eos);
        if ids != common::ids(&c["ids"]) {
            wrong.push(format!("{text:?}\n  want {:?}\n  got  {ids:?}", c["ids"]));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of 200 differ:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}
