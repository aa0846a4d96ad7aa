//! The pool with a fake model: batching, deadlines, panics, low-priority queues, retiring.

use super::*;
use crate::models::tokenizer::Overflow;
use crate::models::{ModelError, Task, Translation};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Echoes each sequence's length; panics on a sequence starting with 666; sleeps on 777.
struct FakeModel {
    batches: AtomicUsize,
}

impl Model for FakeModel {
    fn task(&self) -> Task {
        Task::Translate
    }
    fn tokenize(&self, text: &str, _: Overflow) -> Result<Vec<u32>, ModelError> {
        Ok(text
            .split_whitespace()
            .map(|w| w.parse().unwrap_or(1))
            .collect())
    }
    fn default_params(&self) -> RunParams {
        RunParams {
            beam_size: 1,
            max_length: None,
            ..RunParams::default()
        }
    }
    fn run(&self, batch: &[Vec<u32>], _: RunParams) -> Result<Vec<Output>, ModelError> {
        self.batches.fetch_add(1, Ordering::SeqCst);
        if batch.iter().any(|s| s[0] == 666) {
            panic!("boom");
        }
        if batch.iter().any(|s| s[0] == 777) {
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(batch
            .iter()
            .map(|s| {
                Output::Translation(Translation {
                    text: s.len().to_string(),
                    tokens: s.len(),
                    alternatives: Vec::new(),
                })
            })
            .collect())
    }
    fn weight_bytes(&self) -> usize {
        0
    }
}

fn pool(capacity: usize) -> (WorkerPool, QueueHandle, Arc<FakeModel>) {
    pool_waiting(capacity, Duration::ZERO)
}

fn pool_waiting(capacity: usize, max_wait: Duration) -> (WorkerPool, QueueHandle, Arc<FakeModel>) {
    pool_with(capacity, max_wait, 0.0)
}

fn pool_with(
    capacity: usize,
    max_wait: Duration,
    low_priority_min_share: f64,
) -> (WorkerPool, QueueHandle, Arc<FakeModel>) {
    let settings = PoolSettings {
        workers: 1,
        threads_per_worker: 1,
        adaptive: false,
        limits: BatchLimits {
            max_batch_tokens: 1000,
            max_batch_size: 8,
            age_bound: Duration::from_millis(100),
        },
        max_wait,
        queue_capacity: capacity,
        low_priority_capacity: 2,
        low_priority_min_share,
    };
    let p = WorkerPool::start(settings, Arc::new(Metrics::new())).unwrap();
    let key = QueueKey::new("fake", "fp32");
    let engine = Arc::new(FakeModel {
        batches: AtomicUsize::new(0),
    });
    let queue = p.open_queue(key, engine.clone(), false);
    (p, queue, engine)
}

fn items(
    seqs: &[Vec<u32>],
    deadline: Duration,
) -> (
    Vec<WorkItem>,
    tokio::sync::oneshot::Receiver<crate::runtime::pending::Reply>,
) {
    let (pending, rx) = Pending::new(seqs.len());
    let now = Instant::now();
    let items = seqs
        .iter()
        .enumerate()
        .map(|(index, ids)| WorkItem {
            ids: ids.clone(),
            params: RunParams {
                beam_size: 1,
                max_length: None,
                ..RunParams::default()
            },
            enqueued: now,
            deadline: now + deadline,
            pending: pending.clone(),
            index,
        })
        .collect();
    (items, rx)
}

const LONG: Duration = Duration::from_secs(30);

#[test]
fn answers_in_order() {
    let (p, key, _) = pool(16);
    let (it, rx) = items(&[vec![1, 2, 3], vec![4]], LONG);
    p.submit(&key, it).unwrap();
    let out = rx.blocking_recv().unwrap().unwrap();
    assert_eq!(
        out,
        vec![
            Output::Translation(Translation {
                text: "3".into(),
                tokens: 3,
                alternatives: Vec::new(),
            }),
            Output::Translation(Translation {
                text: "1".into(),
                tokens: 1,
                alternatives: Vec::new(),
            })
        ]
    );
}

#[test]
fn max_wait_lets_a_batch_gather_company() {
    let (p, key, engine) = pool_waiting(16, Duration::from_millis(300));
    let (first, first_rx) = items(&[vec![1]], LONG);
    p.submit(&key, first).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    let (second, second_rx) = items(&[vec![2]], LONG);
    p.submit(&key, second).unwrap();
    assert!(first_rx.blocking_recv().unwrap().is_ok());
    assert!(second_rx.blocking_recv().unwrap().is_ok());
    assert_eq!(engine.batches.load(Ordering::SeqCst), 1);
}

#[test]
fn a_panic_fails_its_batch_and_the_worker_survives() {
    let (p, key, _) = pool(16);
    let (it, rx) = items(&[vec![666]], LONG);
    p.submit(&key, it).unwrap();
    assert!(
        matches!(rx.blocking_recv().unwrap(), Err(RuntimeError::Internal(m)) if m.contains("boom"))
    );
    let (it, rx) = items(&[vec![5]], LONG);
    p.submit(&key, it).unwrap();
    assert!(rx.blocking_recv().unwrap().is_ok());
}

#[test]
fn full_queue_refuses_and_expired_or_abandoned_items_are_not_computed() {
    let (p, key, engine) = pool(3);
    // Occupy the only worker.
    let (busy, busy_rx) = items(&[vec![777]], LONG);
    p.submit(&key, busy).unwrap();
    while p.queue_depth(&key) > 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
    let (expiring, expiring_rx) = items(&[vec![1]], Duration::from_millis(1));
    p.submit(&key, expiring).unwrap();
    let (gone, gone_rx) = items(&[vec![2]], LONG);
    p.submit(&key, gone).unwrap();
    drop(gone_rx);
    let (kept, kept_rx) = items(&[vec![3]], LONG);
    p.submit(&key, kept).unwrap();
    let (over, _) = items(&[vec![4]], LONG);
    assert_eq!(
        p.submit(&key, over).err(),
        Some(RuntimeError::QueueFull("fake/fp32".into()))
    );
    assert!(busy_rx.blocking_recv().unwrap().is_ok());
    assert_eq!(
        expiring_rx.blocking_recv().unwrap(),
        Err(RuntimeError::DeadlineExceeded)
    );
    assert!(kept_rx.blocking_recv().unwrap().is_ok());
    // The busy batch and the kept item's batch ran; the other two were never computed.
    assert_eq!(engine.batches.load(Ordering::SeqCst), 2);
}

#[test]
fn close_drains_the_queue_then_stops_workers() {
    let (p, key, _) = pool(16);
    let (it, rx) = items(&[vec![777], vec![1]], LONG);
    p.submit(&key, it).unwrap();
    p.close();
    let (late, _) = items(&[vec![1]], LONG);
    assert_eq!(p.submit(&key, late).err(), Some(RuntimeError::ShuttingDown));
    assert!(p.join(Duration::from_secs(5)));
    assert!(rx.blocking_recv().unwrap().is_ok());
}

#[test]
fn low_priority_runs_only_when_live_queues_are_idle() {
    let (p, live, engine) = pool(16);
    let shadow = p.open_queue(QueueKey::new("fake", "fp32"), engine.clone(), true);
    // Occupy the worker, then queue shadow work before live work: live goes first anyway.
    let (busy, busy_rx) = items(&[vec![777]], LONG);
    p.submit(&live, busy).unwrap();
    while p.queue_depth(&live) > 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
    // Both slow (200 ms), so which finished first is plain to see.
    let (low, mut low_rx) = items(&[vec![777]], LONG);
    p.submit(&shadow, low).unwrap();
    let (high, mut high_rx) = items(&[vec![777, 2]], LONG);
    p.submit(&live, high).unwrap();
    assert!(busy_rx.blocking_recv().unwrap().is_ok());
    // The live reply arrives while the shadow item may still wait: poll both.
    let order = std::iter::from_fn(|| {
        std::thread::sleep(Duration::from_millis(1));
        Some((high_rx.try_recv().is_ok(), low_rx.try_recv().is_ok()))
    })
    .find(|(h, l)| *h || *l)
    .unwrap();
    assert_eq!(order, (true, false), "the live item ran first");
    // A full shadow queue refuses rather than growing.
    let (a, _a) = items(&[vec![1], vec![1], vec![1]], LONG);
    assert!(p.submit(&shadow, a).is_err());
}

#[test]
fn low_priority_gets_its_minimum_share_under_saturation() {
    // One low-priority batch in every 4 while it waits, with live work always queued.
    let (p, live, engine) = pool_with(64, Duration::ZERO, 0.25);
    let shadow = p.open_queue(QueueKey::new("fake", "fp32"), engine.clone(), true);
    let (busy, busy_rx) = items(&[vec![777]], LONG);
    p.submit(&live, busy).unwrap();
    while p.queue_depth(&live) > 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
    // 8 live items of 600 tokens (one per batch under the 1,000-token budget, 200 ms each),
    // then one shadow item.
    let slow_long: Vec<u32> = std::iter::once(777)
        .chain(std::iter::repeat_n(1, 599))
        .collect();
    let mut live_rx: Vec<_> = (0..8)
        .map(|_| {
            let (it, rx) = items(std::slice::from_ref(&slow_long), LONG);
            p.submit(&live, it).unwrap();
            rx
        })
        .collect();
    let (low, low_rx) = items(&[vec![777]], LONG);
    p.submit(&shadow, low).unwrap();
    assert!(busy_rx.blocking_recv().unwrap().is_ok());
    assert!(low_rx.blocking_recv().unwrap().is_ok());
    let live_done = live_rx
        .iter_mut()
        .map(|rx| rx.try_recv().is_ok())
        .filter(|done| *done)
        .count();
    // 3 live batches, then the shadow one (without the share it would wait for all 8).
    assert_eq!(live_done, 3, "live batches before the shadow batch");
}

#[test]
fn a_dropped_handle_retires_its_queue_after_the_queued_items_ran() {
    let (p, queue, _) = pool(16);
    let (busy, busy_rx) = items(&[vec![777]], LONG);
    p.submit(&queue, busy).unwrap();
    while p.queue_depth(&queue) > 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
    let (queued, queued_rx) = items(&[vec![1]], LONG);
    p.submit(&queue, queued).unwrap();
    drop(queue);
    assert_eq!(p.queue_count(), 1, "kept while an item waits");
    assert!(busy_rx.blocking_recv().unwrap().is_ok());
    assert!(queued_rx.blocking_recv().unwrap().is_ok());
    assert_eq!(p.queue_count(), 0);
}
