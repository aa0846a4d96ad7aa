//! Calibration-only instrumentation: a `Linear` kernel wrapper that records, per output unit, the
//! largest value the layer produced. Pruning installs it on the FFN input layers of an fp32
//! model it loaded for itself; served models never hold one, so the serving path does not pay.

use std::sync::{Arc, Mutex};

use crate::kernels::epilogue::Activation;
use crate::layers::{Linear, LinearKernel};

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
#[derive(Debug)]
pub struct ObservedLinear {
    pub inner: Linear,
    pub maxima: Arc<UnitMaxima>,
}

impl LinearKernel for ObservedLinear {
    fn n_out(&self) -> usize {
        self.inner.n_out()
    }

    fn n_in(&self) -> usize {
        self.inner.n_in()
    }

    fn bytes(&self) -> usize {
        self.inner.bytes()
    }

    fn is_f32(&self) -> bool {
        self.inner.is_f32()
    }

    fn forward(&self, x: &[f32], rows: usize, out: &mut [f32], activation: Activation) {
        self.inner.forward_activated(x, rows, out, activation);
        let n = self.inner.n_out();
        self.maxima.record(&out[..rows * n], n);
    }

    /// The selection is a new layer; observation stays with the full one.
    fn select_outputs(&self, ids: &[u32]) -> Linear {
        self.inner.select_outputs(ids)
    }
}

/// Replaces `layer` by an observed copy of itself and returns the handle its maxima collect in.
pub fn observe(layer: &mut Linear) -> Arc<UnitMaxima> {
    let maxima = Arc::new(UnitMaxima::default());
    let inner = layer.clone();
    *layer = Linear::new(ObservedLinear {
        inner,
        maxima: maxima.clone(),
    });
    maxima
}
