//! Reassembles a request whose inputs were queued as separate items (and may run in different
//! batches, on different workers) and answers it once, through a oneshot channel.

use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use super::error::RuntimeError;
use crate::models::Output;

pub type Reply = Result<Vec<Output>, RuntimeError>;

pub struct Pending {
    state: Mutex<State>,
}

struct State {
    outputs: Vec<Option<Output>>,
    remaining: usize,
    /// Taken when the reply is sent: a request is answered once, success or failure.
    reply: Option<oneshot::Sender<Reply>>,
}

impl Pending {
    /// A request of `items` items, and where its reply will arrive.
    pub fn new(items: usize) -> (Arc<Self>, oneshot::Receiver<Reply>) {
        let (tx, rx) = oneshot::channel();
        let state = State {
            outputs: vec![None; items],
            remaining: items,
            reply: Some(tx),
        };
        (
            Arc::new(Self {
                state: Mutex::new(state),
            }),
            rx,
        )
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Nothing panics while holding this lock; recover from poisoning anyway.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Nobody needs this request's items any more: it was answered (failed) or its client left.
    pub fn is_abandoned(&self) -> bool {
        self.lock().reply.as_ref().is_none_or(|tx| tx.is_closed())
    }

    /// Records item `index`'s output; the last one sends the reply.
    pub fn complete(&self, index: usize, output: Output) {
        let mut s = self.lock();
        if s.reply.is_none() || index >= s.outputs.len() || s.outputs[index].is_some() {
            return;
        }
        s.outputs[index] = Some(output);
        s.remaining -= 1;
        if s.remaining == 0 {
            let outputs = s
                .outputs
                .drain(..)
                .map(|o| o.expect("every item completed"))
                .collect();
            if let Some(tx) = s.reply.take() {
                let _ = tx.send(Ok(outputs));
            }
        }
    }

    /// Fails the whole request (the first failure wins; later items are skipped).
    pub fn fail(&self, err: RuntimeError) {
        if let Some(tx) = self.lock().reply.take() {
            let _ = tx.send(Err(err));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::Translation;

    fn text(s: &str) -> Output {
        Output::Translation(Translation {
            text: s.into(),
            tokens: 1,
            alternatives: Vec::new(),
        })
    }

    #[test]
    fn replies_in_item_order_once_all_are_done() {
        let (p, mut rx) = Pending::new(2);
        p.complete(1, text("b"));
        assert!(rx.try_recv().is_err());
        p.complete(0, text("a"));
        assert_eq!(rx.try_recv().unwrap().unwrap(), vec![text("a"), text("b")]);
        assert!(p.is_abandoned());
    }

    #[test]
    fn first_failure_wins_and_abandons() {
        let (p, mut rx) = Pending::new(2);
        p.fail(RuntimeError::DeadlineExceeded);
        p.complete(0, text("a"));
        p.fail(RuntimeError::ShuttingDown);
        assert_eq!(rx.try_recv().unwrap(), Err(RuntimeError::DeadlineExceeded));
        assert!(p.is_abandoned());
    }

    #[test]
    fn dropped_receiver_abandons() {
        let (p, rx) = Pending::new(1);
        assert!(!p.is_abandoned());
        drop(rx);
        assert!(p.is_abandoned());
    }
}
