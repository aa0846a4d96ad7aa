//! Feedback for experiments: which request a feedback is about, whether it was right, and that
//! it is counted once.
//!
//! * A request served here is remembered by its id with its ticket, its predicted labels and the
//!   model's label set (the newest 200,000 ids). A label is matched to the model's labels
//!   ignoring case and counted in the model's spelling; an unknown label is refused (422).
//! * An id served twice (a reused `x-request-id`) cannot tell which request the feedback is
//!   about: its feedback is refused (409) rather than counted on two variants.
//! * One feedback per id (409 for the second), also for ids this replica did not serve.
//! * Across replicas: a request served elsewhere is counted from the `ticket` its response
//!   carried (`x-quantserve-ab-ticket`), or from `model` + `variant` (counted to the current
//!   period; bucket 0, so prefer the ticket when a sticky key is set). Without the prediction
//!   such feedback must say `correct`, or give `label` with `predicted` (the label served).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use super::ticket::Ticket;
use crate::runtime::error::RuntimeError;

/// Ids remembered (served or given feedback).
const WINDOW: usize = 200_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Open,
    Answered,
    /// Served more than once under this id.
    Reused,
}

struct Entry {
    /// `None`: an id only known from feedback (served by another replica).
    ticket: Option<Ticket>,
    predictions: Option<Vec<String>>,
    labels: Arc<Vec<String>>,
    state: State,
}

#[derive(Default)]
pub struct ServedMemory {
    inner: Mutex<(HashMap<String, Entry>, VecDeque<String>)>,
}

/// Ground truth for one request, as `POST /v1/feedback` gives it.
#[derive(Clone, Debug, Default)]
pub struct FeedbackInput {
    pub request_id: String,
    pub label: Option<String>,
    pub correct: Option<bool>,
    /// Which input of the request (default 0).
    pub index: usize,
    /// For a request served by another replica: its `x-quantserve-ab-ticket`, or model+variant.
    pub ticket: Option<String>,
    pub model: Option<String>,
    pub variant: Option<String>,
    /// The label the request was answered with (needed with `label` when not served here).
    pub predicted: Option<String>,
}

/// What was recorded.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub ticket: Ticket,
    pub correct: bool,
    /// The label in the model's spelling.
    pub label: Option<String>,
    /// Served by this replica.
    pub local: bool,
}

/// Finds `given` among `labels`: exactly, else ignoring case.
pub fn canonical_label(labels: &[String], given: &str) -> Option<String> {
    labels
        .iter()
        .find(|l| *l == given)
        .or_else(|| labels.iter().find(|l| l.eq_ignore_ascii_case(given)))
        .cloned()
}

fn unknown_label(given: &str, labels: &[String]) -> RuntimeError {
    RuntimeError::Unsupported(format!(
        "label {given:?} is not one of the model's labels ({})",
        labels.join(", ")
    ))
}

impl ServedMemory {
    fn insert(map: &mut (HashMap<String, Entry>, VecDeque<String>), id: &str, entry: Entry) {
        let (map, order) = map;
        if map.len() >= WINDOW
            && let Some(old) = order.pop_front()
        {
            map.remove(&old);
        }
        map.insert(id.to_string(), entry);
        order.push_back(id.to_string());
    }

    /// Remembers a served request; a second request under the same id poisons it.
    pub fn remember(
        &self,
        id: &str,
        ticket: Ticket,
        predictions: Option<Vec<String>>,
        labels: Arc<Vec<String>>,
    ) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = inner.0.get_mut(id) {
            if e.state == State::Open {
                e.state = State::Reused;
            }
            return;
        }
        let entry = Entry {
            ticket: Some(ticket),
            predictions,
            labels,
            state: State::Open,
        };
        Self::insert(&mut inner, id, entry);
    }

    /// The ticket of a request served here (for the response header).
    pub fn ticket(&self, id: &str) -> Option<Ticket> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.0.get(id).and_then(|e| e.ticket.clone())
    }

    /// Checks a feedback and marks its id answered. `remote` builds the ticket (and the model's
    /// labels) of a request served elsewhere from the feedback's own fields.
    pub fn answer(
        &self,
        fb: &FeedbackInput,
        remote: impl FnOnce(&FeedbackInput) -> Result<(Ticket, Arc<Vec<String>>), RuntimeError>,
    ) -> Result<Recorded, RuntimeError> {
        if fb.label.is_some() == fb.correct.is_some() {
            return Err(RuntimeError::BadRequest(
                "give exactly one of `label` and `correct`".into(),
            ));
        }
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = inner.0.get_mut(&fb.request_id) {
            match e.state {
                State::Answered => {
                    return Err(RuntimeError::Conflict(format!(
                        "feedback for request {:?} was already recorded",
                        fb.request_id
                    )));
                }
                State::Reused => {
                    return Err(RuntimeError::Conflict(format!(
                        "request id {:?} was used by more than one request: feedback cannot \
                         tell which one it is about (send a unique x-request-id)",
                        fb.request_id
                    )));
                }
                State::Open => {}
            }
            let ticket = e.ticket.clone().expect("open entries were served here");
            let (correct, label) = judge(fb, e.predictions.as_deref(), &e.labels)?;
            e.state = State::Answered;
            return Ok(Recorded {
                ticket,
                correct,
                label,
                local: true,
            });
        }
        if fb.ticket.is_none() && fb.variant.is_none() {
            return Err(RuntimeError::NotFound(format!(
                "no served request with id {:?} is remembered here (ids are kept for the last \
                 {WINDOW} requests); for a request served by another replica send its `ticket` \
                 (the x-quantserve-ab-ticket response header) or `model` and `variant`",
                fb.request_id
            )));
        }
        let (ticket, labels) = remote(fb)?;
        let predictions = fb.predicted.as_ref().map(|p| {
            let mut v = vec![String::new(); fb.index + 1];
            v[fb.index] = canonical_label(&labels, p).unwrap_or_else(|| p.clone());
            v
        });
        let (correct, label) = judge(fb, predictions.as_deref(), &labels)?;
        let entry = Entry {
            ticket: None,
            predictions: None,
            labels,
            state: State::Answered,
        };
        Self::insert(&mut inner, &fb.request_id, entry);
        Ok(Recorded {
            ticket,
            correct,
            label,
            local: false,
        })
    }
}

/// Whether the answer was right, and the label in the model's spelling.
fn judge(
    fb: &FeedbackInput,
    predictions: Option<&[String]>,
    labels: &[String],
) -> Result<(bool, Option<String>), RuntimeError> {
    let Some(given) = &fb.label else {
        return Ok((fb.correct.unwrap_or(false), None));
    };
    if labels.is_empty() {
        return Err(RuntimeError::BadRequest(
            "`label` applies to classification requests; send `correct` for a translation".into(),
        ));
    }
    let label = canonical_label(labels, given).ok_or_else(|| unknown_label(given, labels))?;
    let Some(predictions) = predictions else {
        return Err(RuntimeError::BadRequest(
            "this replica did not serve the request: send `correct`, or `label` with `predicted` \
             (the label it was answered with)"
                .into(),
        ));
    };
    let predicted = predictions.get(fb.index).ok_or_else(|| {
        RuntimeError::BadRequest(format!(
            "`index` {} is out of range: the request had {} inputs",
            fb.index,
            predictions.len()
        ))
    })?;
    Ok((*predicted == label, Some(label)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::ab::ticket::Kind;

    fn ticket(variant: &str) -> Ticket {
        Ticket {
            model: "m".into(),
            experiment: "m".into(),
            period: 1,
            assigned: variant.into(),
            served: variant.into(),
            bucket: 0,
            kind: Kind::Randomised,
        }
    }

    fn labels() -> Arc<Vec<String>> {
        Arc::new(vec!["negative".into(), "positive".into()])
    }

    fn fb(id: &str, label: &str) -> FeedbackInput {
        FeedbackInput {
            request_id: id.into(),
            label: Some(label.into()),
            ..FeedbackInput::default()
        }
    }

    #[test]
    fn labels_are_checked_case_is_forgiven_and_ids_count_once() {
        let m = ServedMemory::default();
        m.remember("a", ticket("int8"), Some(vec!["positive".into()]), labels());
        let err = m
            .answer(&fb("a", "Positiv"), |_| unreachable!())
            .unwrap_err();
        assert!(matches!(err, RuntimeError::Unsupported(_)), "{err:?}");
        let r = m.answer(&fb("a", "Positive"), |_| unreachable!()).unwrap();
        assert!(r.correct && r.local);
        assert_eq!(r.label.as_deref(), Some("positive"));
        let again = m.answer(&fb("a", "positive"), |_| unreachable!());
        assert!(matches!(again, Err(RuntimeError::Conflict(_))));
    }

    #[test]
    fn a_reused_id_is_never_counted_on_two_variants() {
        let m = ServedMemory::default();
        m.remember("x", ticket("int8"), Some(vec!["positive".into()]), labels());
        m.remember("x", ticket("fp32"), Some(vec!["negative".into()]), labels());
        let r = m.answer(&fb("x", "positive"), |_| unreachable!());
        assert!(matches!(r, Err(RuntimeError::Conflict(m)) if m.contains("more than one")));
    }

    #[test]
    fn requests_served_elsewhere_are_counted_from_their_ticket_once() {
        let m = ServedMemory::default();
        let unknown = m.answer(&fb("r", "positive"), |_| unreachable!());
        assert!(matches!(unknown, Err(RuntimeError::NotFound(_))));
        let remote = FeedbackInput {
            ticket: Some(ticket("int4").encode()),
            predicted: Some("NEGATIVE".into()),
            ..fb("r", "negative")
        };
        let r = m
            .answer(&remote, |f| {
                Ok((
                    Ticket::decode(f.ticket.as_ref().unwrap()).unwrap(),
                    labels(),
                ))
            })
            .unwrap();
        assert!(r.correct && !r.local);
        assert_eq!(r.ticket.served, "int4");
        let twice = m.answer(&remote, |_| unreachable!());
        assert!(matches!(twice, Err(RuntimeError::Conflict(_))));
        let no_prediction = FeedbackInput {
            ticket: Some(ticket("int4").encode()),
            ..fb("s", "negative")
        };
        let r = m.answer(&no_prediction, |f| {
            Ok((
                Ticket::decode(f.ticket.as_ref().unwrap()).unwrap(),
                labels(),
            ))
        });
        assert!(matches!(r, Err(RuntimeError::BadRequest(_))));
    }
}
