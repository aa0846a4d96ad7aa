//! Which queued items form the next batch: a pure function of the queue, so the policy can be
//! tested without threads or models.
//!
//! The oldest item always goes first, so every item eventually leads a batch and none starves.
//! Items that have waited past the age bound follow in arrival order; the rest are picked by how
//! close their length is to the leader's, which keeps padding (and wasted compute once kernels
//! pad) low. Everything stays under the padded-token budget: batch size × longest sequence.

use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug)]
pub struct BatchLimits {
    pub max_batch_tokens: usize,
    pub max_batch_size: usize,
    pub age_bound: Duration,
}

/// What the planner needs to know of a queued item.
#[derive(Clone, Copy, Debug)]
pub struct Candidate {
    /// Sequence length in tokens.
    pub len: usize,
    pub enqueued: Instant,
    /// Whether it may share a batch with the oldest item (same decoding settings).
    pub compatible: bool,
}

#[derive(Debug, PartialEq)]
pub struct Plan {
    /// Queue positions of the batch's items, the oldest item first.
    pub picks: Vec<usize>,
    /// Padded tokens of the batch: size × longest.
    pub padded_tokens: usize,
    /// No further item could join: waiting for more requests would not grow the batch.
    pub full: bool,
}

/// Plans a batch from `queue` (in arrival order; position 0 is the oldest). Empty queue: no picks.
pub fn plan(queue: &[Candidate], limits: &BatchLimits, now: Instant) -> Plan {
    let Some(head) = queue.first() else {
        return Plan {
            picks: Vec::new(),
            padded_tokens: 0,
            full: false,
        };
    };
    // The oldest item goes even when it alone exceeds the budget: it could never run otherwise.
    let mut picks = vec![0];
    let mut longest = head.len;
    let is_old = |c: &Candidate| now.saturating_duration_since(c.enqueued) >= limits.age_bound;
    let mut old: Vec<usize> = Vec::new();
    let mut rest: Vec<usize> = Vec::new();
    for (i, c) in queue
        .iter()
        .enumerate()
        .skip(1)
        .filter(|(_, c)| c.compatible)
    {
        if is_old(c) { old.push(i) } else { rest.push(i) }
    }
    rest.sort_by_key(|&i| (queue[i].len.abs_diff(head.len), i));
    for i in old.into_iter().chain(rest) {
        if picks.len() >= limits.max_batch_size {
            break;
        }
        let grown = longest.max(queue[i].len);
        if (picks.len() + 1) * grown <= limits.max_batch_tokens {
            picks.push(i);
            longest = grown;
        }
    }
    let full = picks.len() >= limits.max_batch_size
        || (picks.len() + 1) * longest > limits.max_batch_tokens;
    Plan {
        padded_tokens: picks.len() * longest,
        picks,
        full,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(lens: &[usize], t0: Instant) -> Vec<Candidate> {
        lens.iter()
            .map(|&len| Candidate {
                len,
                enqueued: t0,
                compatible: true,
            })
            .collect()
    }

    fn limits(tokens: usize, size: usize) -> BatchLimits {
        BatchLimits {
            max_batch_tokens: tokens,
            max_batch_size: size,
            age_bound: Duration::from_secs(10),
        }
    }

    #[test]
    fn empty_queue_plans_nothing() {
        assert!(plan(&[], &limits(100, 4), Instant::now()).picks.is_empty());
    }

    #[test]
    fn oldest_goes_first_even_when_over_budget() {
        let now = Instant::now();
        let p = plan(&queue(&[500, 10], now), &limits(100, 8), now);
        assert_eq!(p.picks, vec![0]);
        assert_eq!(p.padded_tokens, 500);
        assert!(p.full);
    }

    #[test]
    fn groups_by_length_under_the_padded_budget() {
        let now = Instant::now();
        // Leader 10 tokens; 11 and 9 fit best, 100 would blow the budget of 40.
        let p = plan(&queue(&[10, 100, 11, 30, 9], now), &limits(40, 8), now);
        assert_eq!(p.picks, vec![0, 2, 4]);
        assert_eq!(p.padded_tokens, 33);
        assert!(p.full);
    }

    #[test]
    fn respects_the_batch_size() {
        let now = Instant::now();
        let p = plan(&queue(&[5; 10], now), &limits(1000, 4), now);
        assert_eq!(p.picks, vec![0, 1, 2, 3]);
        assert!(p.full);
        let p = plan(&queue(&[5; 2], now), &limits(1000, 4), now);
        assert!(!p.full);
    }

    #[test]
    fn old_items_go_before_better_fitting_ones() {
        let t0 = Instant::now();
        let now = t0 + Duration::from_secs(20);
        let mut q = queue(&[10, 50, 10], now);
        q[1].enqueued = t0; // waited 20 s, past the 10 s bound
        let p = plan(&q, &limits(100, 2), now);
        assert_eq!(p.picks, vec![0, 1]);
    }

    #[test]
    fn incompatible_items_wait() {
        let now = Instant::now();
        let mut q = queue(&[5, 5, 5], now);
        q[1].compatible = false;
        assert_eq!(plan(&q, &limits(1000, 8), now).picks, vec![0, 2]);
    }
}
