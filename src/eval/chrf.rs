//! sacreBLEU-compatible chrF.
