//! Offline quantization work behind `quantserve quantize`: converting a model folder into a
//! variant folder, mixed-precision recipes, frequency tiers of embedding rows, FullyQT FFN
//! pruning and the calibration it runs. Nothing here is on the serving path.

pub mod calibrate;
pub mod convert;
pub mod prune;
pub mod recipe;
pub mod tiers;
