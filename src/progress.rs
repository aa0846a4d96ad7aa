//! Progress bars for the long offline commands (fetch, quantize, pruning calibration, eval,
//! bench). The CLI turns them on; the server (which derives variants with the same code) never
//! does. `indicatif` draws on stderr and draws nothing when stderr is not a terminal, so logs
//! and pipes get no control characters.

use std::sync::atomic::{AtomicBool, Ordering};

use indicatif::{ProgressBar, ProgressStyle};

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Lets `bar` and `counter` draw (still only on a terminal).
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// A bar for `len` steps of `what` (e.g. "eval: sentences"); hidden unless enabled.
pub fn bar(len: u64, what: &str) -> ProgressBar {
    if !ENABLED.load(Ordering::Relaxed) {
        return ProgressBar::hidden();
    }
    let style =
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} ({elapsed}, about {eta} left)")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
    ProgressBar::new(len)
        .with_style(style)
        .with_message(what.to_owned())
}

/// A counter of steps whose number is not known ahead (e.g. tensors quantized).
pub fn counter(what: &str) -> ProgressBar {
    if !ENABLED.load(Ordering::Relaxed) {
        return ProgressBar::hidden();
    }
    let style = ProgressStyle::with_template("{spinner} {msg}: {pos} ({elapsed})")
        .unwrap_or_else(|_| ProgressStyle::default_spinner());
    ProgressBar::new_spinner()
        .with_style(style)
        .with_message(what.to_owned())
}

#[cfg(test)]
mod tests {
    #[test]
    fn bars_are_hidden_until_enabled() {
        // Enabling is process-wide and tests share the process: only the disabled state is
        // checked here; the CLI test checks a piped stderr gets no bar.
        if !super::ENABLED.load(std::sync::atomic::Ordering::Relaxed) {
            assert!(super::bar(10, "x").is_hidden());
            assert!(super::counter("x").is_hidden());
        }
    }
}
