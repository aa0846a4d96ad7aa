//! What a served request remembers of its assignment, so that feedback arriving later (on this
//! replica or another) lands in the right experiment, period, variant and bucket. It travels to
//! the client in the `x-quantserve-ab-ticket` response header; `POST /v1/feedback` accepts it
//! back as `ticket`, which is how a replica that did not serve the request counts its feedback.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use serde::Serialize;

/// The response header carrying the encoded ticket.
pub const X_AB_TICKET: &str = "x-quantserve-ab-ticket";

/// How the serving variant was chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// By the split: part of the analysis.
    Randomised,
    /// The assigned variant was not loaded: served by the next in the user's order; counted to
    /// the assigned variant for SRM, left out of the comparisons.
    Fallback,
    /// The request named its variant: self-selected, left out of the analysis.
    Override,
}

impl Kind {
    fn code(self) -> &'static str {
        match self {
            Self::Randomised => "r",
            Self::Fallback => "f",
            Self::Override => "o",
        }
    }

    fn from_code(c: &str) -> Option<Self> {
        match c {
            "r" => Some(Self::Randomised),
            "f" => Some(Self::Fallback),
            "o" => Some(Self::Override),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Ticket {
    pub model: String,
    pub experiment: String,
    pub period: u32,
    /// The variant the split assigned (the named one for an override).
    pub assigned: String,
    pub served: String,
    /// Cluster bucket of the sticky key (0 without one).
    pub bucket: u32,
    pub kind: Kind,
}

/// Everything but unreserved characters is escaped, so `/` separates fields whatever the names.
const ESCAPED: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.');

impl Ticket {
    /// Counted in the comparisons.
    pub fn analysed(&self) -> bool {
        self.kind == Kind::Randomised
    }

    /// `v1/{model}/{experiment}/{period}/{assigned}/{served}/{bucket}/{kind}`, names escaped.
    pub fn encode(&self) -> String {
        let e = |s: &str| utf8_percent_encode(s, ESCAPED).to_string();
        format!(
            "v1/{}/{}/{}/{}/{}/{}/{}",
            e(&self.model),
            e(&self.experiment),
            self.period,
            e(&self.assigned),
            e(&self.served),
            self.bucket,
            self.kind.code()
        )
    }

    pub fn decode(s: &str) -> Result<Self, String> {
        let bad = || format!("`ticket` {s:?} is not a quantserve A/B ticket");
        let parts: Vec<&str> = s.split('/').collect();
        let [
            "v1",
            model,
            experiment,
            period,
            assigned,
            served,
            bucket,
            kind,
        ] = parts[..]
        else {
            return Err(bad());
        };
        let d = |p: &str| {
            percent_decode_str(p)
                .decode_utf8()
                .map(|c| c.into_owned())
                .ok()
                .filter(|v| !v.is_empty())
        };
        Ok(Self {
            model: d(model).ok_or_else(bad)?,
            experiment: d(experiment).ok_or_else(bad)?,
            period: period.parse().map_err(|_| bad())?,
            assigned: d(assigned).ok_or_else(bad)?,
            served: d(served).ok_or_else(bad)?,
            bucket: bucket.parse().map_err(|_| bad())?,
            kind: Kind::from_code(kind).ok_or_else(bad)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets_round_trip_whatever_the_names() {
        let t = Ticket {
            model: "en-pt".into(),
            experiment: "bits/2026 é".into(),
            period: 3,
            assigned: "int4-kd".into(),
            served: "fp32".into(),
            bucket: 63,
            kind: Kind::Fallback,
        };
        let s = t.encode();
        assert!(s.is_ascii() && !s.contains(' '), "{s}");
        assert_eq!(Ticket::decode(&s).unwrap(), t);
        for bad in [
            "",
            "v1/a/b/c",
            "v2/m/e/1/a/b/0/r",
            "v1/m/e/x/a/b/0/r",
            "v1/m/e/1/a/b/0/z",
        ] {
            assert!(Ticket::decode(bad).is_err(), "{bad}");
        }
    }
}
