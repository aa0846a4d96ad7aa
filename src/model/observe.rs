//! Calibration-only instrumentation: a `Linear` wrapper that records, per output unit, the
//! largest value the layer produced. Pruning installs it on the FFN input layers of an fp32
//! model it loaded for itself; served models never hold one, so the serving path does not pay.

use std::sync::{Arc, Mutex};

use super::linear::Linear;

/// Per-unit maxima over every row a layer has produced since it was observed.
#[derive(Debug, Default)]
pub struct UnitMaxima {
    maxima: Mutex<Vec<f32>>,
}

impl UnitMaxima {
    /// The maxima so far (−∞ for a unit that has seen no row yet).
    pub fn get(&self) -> Vec<f32> {
        self.lock().clone()
    }

    /// Folds `out` (`rows × n` row-major, `n` the layer's width) into the maxima.
    fn record(&self, out: &[f32], n: usize) {
        let mut maxima = self.lock();
        if maxima.len() != n {
            *maxima = vec![f32::NEG_INFINITY; n];
        }
        for row in out.chunks_exact(n.max(1)) {
            for (m, &v) in maxima.iter_mut().zip(row) {
                *m = m.max(v);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<f32>> {
        // A panic elsewhere while holding the lock leaves plain numbers behind: still usable.
        self.maxima.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A layer whose outputs (after its activation, when run through `forward_activated`) are folded
/// into `maxima`.
#[derive(Clone, Debug)]
pub struct ObservedLinear {
    pub inner: Linear,
    pub maxima: Arc<UnitMaxima>,
}

impl ObservedLinear {
    pub(super) fn record(&self, out: &[f32], rows: usize) {
        let n = self.inner.n_out();
        self.maxima.record(&out[..rows * n], n);
    }
}

/// Replaces `layer` by an observed copy of itself and returns the handle its maxima collect in.
pub fn observe(layer: &mut Linear) -> Arc<UnitMaxima> {
    let maxima = Arc::new(UnitMaxima::default());
    let inner = std::mem::replace(layer, Linear::f32(Vec::new(), None, 0, 0));
    *layer = Linear::Observed(Box::new(ObservedLinear {
        inner,
        maxima: maxima.clone(),
    }));
    maxima
}
