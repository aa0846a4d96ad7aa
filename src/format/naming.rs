//! How a quantized matrix's companions are named inside a variant file.

/// The scale tensor that accompanies the codes of `name` (int8: one per row; low-bit: the
/// parameters of each row).
pub fn scale_name(name: &str) -> String {
    format!("{name}:scale")
}

/// The metadata key describing the low-bit tensor `name` (`<format descriptor>/<columns>`).
pub fn lowbit_key(name: &str) -> String {
    format!("quantserve.lowbit.{name}")
}

pub(super) const TIERS_PREFIX: &str = "quantserve.tiers.";

/// The metadata key of a matrix `name` stored in frequency tiers (`<tiers>/<rows>/<cols>`).
pub fn tiers_key(name: &str) -> String {
    format!("{TIERS_PREFIX}{name}")
}

/// The tensor holding tier `t` of the tiered matrix `name` (any stored form).
pub fn tier_name(name: &str, t: usize) -> String {
    format!("{name}#tier{t}")
}

/// The `I32` tensor of the row ids in tier `t` of `name`.
pub fn tier_rows_name(name: &str, t: usize) -> String {
    format!("{name}#tier{t}:rows")
}
