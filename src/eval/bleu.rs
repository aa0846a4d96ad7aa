//! sacreBLEU-compatible corpus BLEU (13a tokenizer).
