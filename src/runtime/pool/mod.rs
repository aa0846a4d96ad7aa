//! The worker pool: one bounded queue per (model, variant) and dedicated OS threads that take
//! batches from them. Each worker owns a rayon pool, whose size is the intra-op thread count the
//! model code uses; inference never runs on the async executor.
//!
//! Self-clocking: a worker forms its next batch only when it is free, so batches grow by
//! themselves under load and stay small (low latency) when the server is idle.

use std::collections::{BTreeMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::batcher::{self, BatchLimits, Candidate};
use super::error::RuntimeError;
use super::pending::Pending;
use crate::metrics::Metrics;
use crate::models::{Model, Output, RunParams};

/// Names a queue: one per loaded (model, variant).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QueueKey {
    pub model: String,
    pub variant: String,
}

impl QueueKey {
    pub fn new(model: &str, variant: &str) -> Self {
        Self {
            model: model.into(),
            variant: variant.into(),
        }
    }

    fn labels(&self) -> [&str; 2] {
        [&self.model, &self.variant]
    }
}

impl std::fmt::Display for QueueKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.model, self.variant)
    }
}

/// One input (a text, or a sentence of one) waiting for its batch.
pub struct WorkItem {
    pub ids: Vec<u32>,
    pub params: RunParams,
    pub enqueued: Instant,
    /// Past it the item is dropped without computing.
    pub deadline: Instant,
    pub pending: Arc<Pending>,
    /// Position of this item's output in the request's reply.
    pub index: usize,
}

#[derive(Clone, Copy, Debug)]
pub struct PoolSettings {
    pub workers: usize,
    pub threads_per_worker: usize,
    /// Adaptive layout: each worker runs a batch on all `threads_per_worker` threads of one
    /// shared pool when it is the only batch running and nothing waits, else on its own thread
    /// (measured: one batch alone is fastest on every core, concurrent batches fastest side by
    /// side, README "Worker layout").
    pub adaptive: bool,
    pub limits: BatchLimits,
    pub max_wait: Duration,
    pub queue_capacity: usize,
    /// Items a low-priority (shadow) queue holds; more are dropped by `submit`'s caller.
    pub low_priority_capacity: usize,
    /// Share of batches low-priority work gets while it waits, however busy the live queues
    /// are (0: only when they are idle). Without it, shadow comparison starves at saturation.
    pub low_priority_min_share: f64,
}

/// Names one queue of the pool. A (model, variant) gets a new queue each time it is loaded, so a
/// reloaded variant never shares a queue with the copy it replaces.
pub type QueueId = u64;

struct ModelQueue {
    key: QueueKey,
    engine: Arc<dyn Model>,
    items: VecDeque<WorkItem>,
    /// Served only when no normal queue has work (shadow traffic).
    low_priority: bool,
    /// Its handle is gone: removed once empty.
    retired: bool,
}

struct State {
    queues: BTreeMap<QueueId, ModelQueue>,
    next_id: QueueId,
    /// Set by `close`: workers finish what is queued, then exit.
    closing: bool,
    /// Live batches taken since the last low-priority one while low-priority work waited.
    live_while_low_waits: u64,
}

struct Shared {
    state: Mutex<State>,
    /// Signalled when items arrive or the pool closes.
    work: Condvar,
    settings: PoolSettings,
    metrics: Arc<Metrics>,
    /// Batches being run right now.
    running: AtomicUsize,
}

/// A batch taken off a queue, ready to run.
struct Batch {
    key: QueueKey,
    engine: Arc<dyn Model>,
    items: Vec<WorkItem>,
    padded_tokens: usize,
}

pub struct WorkerPool {
    shared: Arc<Shared>,
    workers: Mutex<Vec<JoinHandle<()>>>,
}

/// An open queue. Dropping the handle retires the queue: it takes no new items, its queued ones
/// still run, and it is removed (releasing its engine) once empty.
pub struct QueueHandle {
    id: QueueId,
    shared: Arc<Shared>,
}

impl QueueHandle {
    pub fn id(&self) -> QueueId {
        self.id
    }
}

impl Drop for QueueHandle {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        if let Some(q) = state.queues.get_mut(&self.id) {
            q.retired = true;
            if q.items.is_empty() {
                state.queues.remove(&self.id);
            }
        }
    }
}

impl WorkerPool {
    pub fn start(settings: PoolSettings, metrics: Arc<Metrics>) -> Result<Self> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                queues: BTreeMap::new(),
                next_id: 0,
                closing: false,
                live_while_low_waits: 0,
            }),
            work: Condvar::new(),
            settings,
            metrics,
            running: AtomicUsize::new(0),
        });
        let mut workers = Vec::new();
        let build = |name: String, threads: usize| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads.max(1))
                .thread_name(move |i| format!("{name}-op{i}"))
                .build()
                .map(Arc::new)
                .context("starting a thread pool")
        };
        let wide = settings
            .adaptive
            .then(|| build("qs-wide".into(), settings.threads_per_worker))
            .transpose()?;
        for w in 0..settings.workers.max(1) {
            let own_threads = if wide.is_some() {
                1
            } else {
                settings.threads_per_worker
            };
            let pools = Pools {
                own: build(format!("qs-worker{w}"), own_threads)?,
                wide: wide.clone(),
            };
            let shared = shared.clone();
            let handle = std::thread::Builder::new()
                .name(format!("qs-worker{w}"))
                .spawn(move || worker_loop(&shared, &pools))
                .context("starting a worker thread")?;
            workers.push(handle);
        }
        Ok(Self {
            shared,
            workers: Mutex::new(workers),
        })
    }

    /// Opens a queue for a loaded model; `low_priority` queues run only when the others are idle.
    pub fn open_queue(
        &self,
        key: QueueKey,
        engine: Arc<dyn Model>,
        low_priority: bool,
    ) -> QueueHandle {
        let mut state = self.shared.lock();
        let id = state.next_id;
        state.next_id += 1;
        state.queues.insert(
            id,
            ModelQueue {
                key,
                engine,
                items: VecDeque::new(),
                low_priority,
                retired: false,
            },
        );
        QueueHandle {
            id,
            shared: self.shared.clone(),
        }
    }

    /// Queues all items of one request, or none of them.
    pub fn submit(&self, queue: &QueueHandle, items: Vec<WorkItem>) -> Result<(), RuntimeError> {
        let settings = &self.shared.settings;
        let mut state = self.shared.lock();
        if state.closing {
            return Err(RuntimeError::ShuttingDown);
        }
        let queue = state
            .queues
            .get_mut(&queue.id)
            .ok_or_else(|| RuntimeError::NotReady("the variant was unloaded".into()))?;
        let capacity = if queue.low_priority {
            settings.low_priority_capacity
        } else {
            settings.queue_capacity
        };
        if items.len() > capacity {
            return Err(RuntimeError::TooLarge(format!(
                "the request has {} items (texts or sentences), more than a queue holds ({capacity})",
                items.len()
            )));
        }
        if queue.items.len() + items.len() > capacity {
            return Err(RuntimeError::QueueFull(queue.key.to_string()));
        }
        queue.items.extend(items);
        if !queue.low_priority {
            self.shared
                .metrics
                .queue_depth
                .with_label_values(&queue.key.labels())
                .set(queue.items.len() as i64);
        }
        drop(state);
        self.shared.work.notify_all();
        Ok(())
    }

    pub fn queue_depth(&self, queue: &QueueHandle) -> usize {
        self.shared
            .lock()
            .queues
            .get(&queue.id)
            .map_or(0, |q| q.items.len())
    }

    /// Queues open or retiring (for tests of unloading).
    pub fn queue_count(&self) -> usize {
        self.shared.lock().queues.len()
    }

    /// Refuses new items; workers drain the queues and exit.
    pub fn close(&self) {
        self.shared.lock().closing = true;
        self.shared.work.notify_all();
    }

    /// Waits up to `timeout` for the workers to exit after `close`; false if some are still busy.
    pub fn join(&self, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        let mut workers = self.workers.lock().unwrap_or_else(|e| e.into_inner());
        while workers.iter().any(|h| !h.is_finished()) {
            if Instant::now() >= end {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        for h in workers.drain(..) {
            let _ = h.join();
        }
        true
    }
}

impl Drop for WorkerPool {
    fn drop(&mut self) {
        // Workers hold the shared state, not the pool: tell them to stop once idle.
        self.close();
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Inference runs outside this lock, so a panic can only poison it in trivial code.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Blocks until a batch is ready; `None` once the pool is closed and every queue is empty.
    /// The next batch to run, and whether it runs alone: no other batch running and no item
    /// left waiting (counted in `running` until the caller is done with it).
    fn next_batch(&self) -> Option<(Batch, bool)> {
        let mut state = self.lock();
        loop {
            let now = Instant::now();
            self.drop_dead_items(&mut state, now);
            // The queue whose oldest item has waited longest goes first, across models; shadow
            // queues when no live request waits, or when their minimum share is due.
            let oldest = |low: bool| {
                state
                    .queues
                    .iter()
                    .filter(|(_, q)| q.low_priority == low)
                    .filter_map(|(id, q)| q.items.front().map(|i| (i.enqueued, *id)))
                    .min_by_key(|(t, _)| *t)
            };
            let low_waits = oldest(true).is_some();
            let share = self.settings.low_priority_min_share;
            // One low-priority batch in every ceil(1 / share) batches while it waits.
            let low_due =
                share > 0.0 && (state.live_while_low_waits + 1) as f64 * share >= 1.0 - 1e-9;
            let pick = if low_due {
                oldest(true).or_else(|| oldest(false))
            } else {
                oldest(false).or_else(|| oldest(true))
            };
            let Some((_, id)) = pick else {
                if state.closing {
                    return None;
                }
                state = self.work.wait(state).unwrap_or_else(|e| e.into_inner());
                continue;
            };
            let closing = state.closing;
            let is_low = state.queues.get(&id).is_some_and(|q| q.low_priority);
            let queue = state.queues.get_mut(&id).expect("queue exists");
            let head_params = queue.items[0].params;
            let candidates: Vec<Candidate> = queue
                .items
                .iter()
                .map(|i| Candidate {
                    len: i.ids.len(),
                    enqueued: i.enqueued,
                    compatible: i.params == head_params,
                })
                .collect();
            let plan = batcher::plan(&candidates, &self.settings.limits, now);
            let hold_until = queue.items[0].enqueued + self.settings.max_wait;
            if !plan.full && now < hold_until && !closing {
                // Not full and still young: wait a little for company (woken early by arrivals).
                state = self
                    .work
                    .wait_timeout(state, hold_until - now)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
                continue;
            }
            state.live_while_low_waits = match (is_low, low_waits) {
                (false, true) => state.live_while_low_waits + 1,
                _ => 0,
            };
            let queue = state.queues.get_mut(&id).expect("queue exists");
            let mut picked = plan.picks.clone();
            picked.sort_unstable_by(|a, b| b.cmp(a));
            let mut taken: Vec<(usize, WorkItem)> = picked
                .into_iter()
                .map(|i| {
                    (
                        i,
                        queue
                            .items
                            .remove(i)
                            .expect("planned index is in the queue"),
                    )
                })
                .collect();
            // Back to the plan's order (the oldest first).
            taken.sort_by_key(|(i, _)| plan.picks.iter().position(|p| p == i));
            let items: Vec<WorkItem> = taken.into_iter().map(|(_, item)| item).collect();
            let engine = queue.engine.clone();
            let key = queue.key.clone();
            if !queue.low_priority {
                self.metrics
                    .queue_depth
                    .with_label_values(&key.labels())
                    .set(queue.items.len() as i64);
            }
            let now_empty = queue.items.is_empty();
            if now_empty && queue.retired {
                state.queues.remove(&id);
            }
            // Another worker may take the next batch while this one runs.
            if !now_empty {
                self.work.notify_one();
            }
            let waiting = state.queues.values().any(|q| !q.items.is_empty());
            let alone = self.running.fetch_add(1, Ordering::SeqCst) == 0 && !waiting;
            let batch = Batch {
                key,
                engine,
                items,
                padded_tokens: plan.padded_tokens,
            };
            return Some((batch, alone));
        }
    }

    /// Removes items nobody waits for (client gone, request already failed) and items past their
    /// deadline, which are answered with `DeadlineExceeded` without computing.
    fn drop_dead_items(&self, state: &mut State, now: Instant) {
        for queue in state.queues.values_mut() {
            let before = queue.items.len();
            queue.items.retain(|item| {
                if item.deadline <= now {
                    item.pending.fail(RuntimeError::DeadlineExceeded);
                    false
                } else {
                    !item.pending.is_abandoned()
                }
            });
            if queue.items.len() != before && !queue.low_priority {
                self.metrics
                    .queue_depth
                    .with_label_values(&queue.key.labels())
                    .set(queue.items.len() as i64);
            }
        }
        state
            .queues
            .retain(|_, q| !(q.retired && q.items.is_empty()));
    }
}

/// A worker's thread pools: its own, and in the adaptive layout the wide one all workers share.
struct Pools {
    own: Arc<rayon::ThreadPool>,
    wide: Option<Arc<rayon::ThreadPool>>,
}

fn worker_loop(shared: &Shared, pools: &Pools) {
    while let Some((batch, alone)) = shared.next_batch() {
        let pool = match &pools.wide {
            Some(wide) if alone => wide,
            _ => &pools.own,
        };
        run_batch(shared, pool, batch);
        shared.running.fetch_sub(1, Ordering::SeqCst);
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

fn run_batch(shared: &Shared, pool: &rayon::ThreadPool, batch: Batch) {
    let m = &shared.metrics;
    let labels = batch.key.labels();
    let started = Instant::now();
    for item in &batch.items {
        m.queue_duration
            .with_label_values(&labels)
            .observe(started.duration_since(item.enqueued).as_secs_f64());
    }
    let ids: Vec<Vec<u32>> = batch.items.iter().map(|i| i.ids.clone()).collect();
    let params = batch.items[0].params;
    let engine = &batch.engine;
    // A panic in model code fails this batch only; the worker and its queue carry on.
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
        pool.install(|| engine.run(&ids, params))
    }));
    m.inference_duration
        .with_label_values(&labels)
        .observe(started.elapsed().as_secs_f64());
    m.batch_size
        .with_label_values(&labels)
        .observe(batch.items.len() as f64);
    m.batch_tokens
        .with_label_values(&labels)
        .observe(batch.padded_tokens as f64);
    let outputs = match result {
        Ok(Ok(outputs)) if outputs.len() == batch.items.len() => outputs,
        Ok(Ok(outputs)) => {
            let msg = format!(
                "{} returned {} outputs for {} inputs",
                batch.key,
                outputs.len(),
                batch.items.len()
            );
            return fail_all(&batch.items, &msg);
        }
        Ok(Err(e)) => return fail_all(&batch.items, &format!("{}: {e:#}", batch.key)),
        Err(payload) => {
            return fail_all(
                &batch.items,
                &format!(
                    "{}: inference panicked: {}",
                    batch.key,
                    panic_message(&*payload)
                ),
            );
        }
    };
    let input_tokens: usize = ids.iter().map(Vec::len).sum();
    m.input_tokens_total
        .with_label_values(&labels)
        .inc_by(input_tokens as u64);
    let generated: usize = outputs.iter().map(Output::generated_tokens).sum();
    if generated > 0 {
        m.generated_tokens_total
            .with_label_values(&labels)
            .inc_by(generated as u64);
    }
    for (item, output) in batch.items.iter().zip(outputs) {
        item.pending.complete(item.index, output);
    }
}

fn fail_all(items: &[WorkItem], msg: &str) {
    tracing::error!("batch failed: {msg}");
    for item in items {
        item.pending.fail(RuntimeError::Internal(msg.to_string()));
    }
}

#[cfg(test)]
mod tests;
