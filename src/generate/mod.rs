//! Text generation over any step decoder: greedy search, Marian's beam search and transformers'
//! beam search, with banned tokens, forced EOS, length caps and per-sentence output columns (a
//! vocabulary shortlist).
//!
//! A model provides a [`StepDecoder`] (logits of every row's next token, and how to keep the
//! rows' states when the search picks survivors); everything about choosing tokens lives here.

mod greedy;
mod hf_beam;
mod logits;
mod marian_beam;

use anyhow::{Context, Result};

/// How the next tokens are chosen, where the two implementations differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Search {
    /// Marian: banned tokens are masked before the log-softmax; a finished hypothesis shrinks the
    /// sentence's beam.
    Marian,
    /// transformers `generate`: log-softmax, then banned tokens masked; 2·beam candidates per
    /// step so the beam stays full, finished hypotheses kept apart with the early-stop heuristic.
    HuggingFace,
}

/// Decoding settings: Marian's defaults from the model's `config.*.yml` where present.
#[derive(Clone, Debug)]
pub struct SearchOptions {
    pub beam_size: usize,
    /// Length normalisation exponent: hypotheses are ranked by `score / len^normalize`.
    pub normalize: f32,
    /// Output length cap as a multiple of the source length (EOS included).
    pub max_length_factor: f32,
    /// Absolute output length cap in tokens, on top of the factor.
    pub max_length: Option<usize>,
    /// Restrict the output vocabulary to the lexical shortlist (when the model has one).
    pub shortlist: bool,
    /// EOS is not generated before this many output tokens (transformers' `min_length`).
    pub min_length: usize,
}

impl Default for SearchOptions {
    fn default() -> Self {
        Self {
            beam_size: 1,
            normalize: 1.0,
            max_length_factor: 2.5,
            max_length: None,
            shortlist: true,
            min_length: 0,
        }
    }
}

/// Token-level generation rules of a model.
#[derive(Clone, Debug)]
pub struct Rules {
    pub eos: u32,
    /// The first decoder input: a token (HF `decoder_start_token_id`) or, for Marian, none (a
    /// zero embedding).
    pub start: Option<u32>,
    /// Token sequences never generated: the last token is banned after the others (HF
    /// `bad_words_ids`, the pad token; Marian's `<unk>`).
    pub banned: Vec<Vec<u32>>,
    /// The last position allowed by the length cap must be EOS (HF `forced_eos_token_id`).
    pub forced_eos: bool,
    pub search: Search,
    /// Longest output the model can produce (EOS included): its position table's size.
    pub max_target_len: usize,
}

impl Rules {
    /// Tokens banned after `prefix`.
    fn banned_after<'a>(&'a self, prefix: &'a [u32]) -> impl Iterator<Item = u32> + 'a {
        self.banned.iter().filter_map(move |seq| {
            let (last, before) = seq.split_last()?;
            prefix.ends_with(before).then_some(*last)
        })
    }

    /// The output cap of a sentence with `src_len` source tokens (EOS included): Marian stops
    /// once the output reaches factor × source length; `max_length` and the model's position
    /// table cap it further.
    pub fn max_len(&self, src_len: usize, opts: &SearchOptions) -> usize {
        let by_factor = (opts.max_length_factor * src_len as f32).ceil() as usize;
        opts.max_length
            .map_or(by_factor, |m| m.min(by_factor))
            .min(self.max_target_len)
            .max(1)
    }
}

/// A partial hypothesis (one decoder row).
#[derive(Clone, Debug)]
pub struct Hyp {
    pub sentence: usize,
    pub tokens: Vec<u32>,
    pub score: f32,
}

/// What the search knows of each sentence of the batch.
#[derive(Clone, Debug)]
pub struct Target {
    /// Output length cap, EOS included.
    pub max_len: usize,
    /// Positions of the sentence's allowed tokens among the output columns (sorted; `None`:
    /// every column).
    pub allowed: Option<Vec<u32>>,
}

/// A model's decoder, one step at a time.
pub trait StepDecoder {
    /// Writes the logits of the next token for every row into `logits` (resized to
    /// `[hyps.len()][columns]`; one buffer serves every step); `step` is the position being
    /// generated. Rows start from the rules' start input (`Hyp::tokens` empty).
    fn step(&mut self, hyps: &[Hyp], step: usize, logits: &mut Vec<f32>);
    /// Keeps the states of the surviving rows: new row `i` continues old row `parents[i]`.
    fn reorder(&mut self, parents: &[usize]);
}

/// The output columns: every token (`None`), or the listed token ids (sorted).
#[derive(Clone, Copy)]
pub struct Columns<'a>(pub Option<&'a [u32]>);

impl Columns<'_> {
    fn token(&self, c: usize) -> u32 {
        self.0.map_or(c as u32, |cols| cols[c])
    }

    fn column(&self, t: u32) -> Option<usize> {
        match self.0 {
            Some(cols) => cols.binary_search(&t).ok(),
            None => Some(t as usize),
        }
    }
}

/// One search over a batch: what every strategy reads.
struct Batch<'a> {
    rules: &'a Rules,
    opts: &'a SearchOptions,
    targets: &'a [Target],
    columns: Columns<'a>,
    n_cols: usize,
    eos_column: usize,
}

impl Batch<'_> {
    /// The columns row `h` may not output next (banned sequences, EOS before `min_length`).
    fn banned(&self, h: &Hyp) -> Vec<usize> {
        let too_short = (h.tokens.len() < self.opts.min_length).then_some(self.rules.eos);
        self.rules
            .banned_after(&h.tokens)
            .chain(too_short)
            .filter_map(|t| self.columns.column(t))
            .collect()
    }

    /// Whether row `h` must output EOS now (the length cap's last position, HF forced EOS).
    fn forced(&self, h: &Hyp) -> bool {
        self.rules.forced_eos && h.tokens.len() + 1 >= self.targets[h.sentence].max_len
    }

    /// The score a finished hypothesis of `len` tokens (EOS included) is ranked by.
    fn normalized(&self, score: f32, len: usize) -> f32 {
        score / (len as f32).powf(self.opts.normalize)
    }
}

/// Finished hypotheses per sentence: (normalized score, tokens without EOS).
type Finished = Vec<Vec<(f32, Vec<u32>)>>;

/// Generates for every target sentence; returns each one's best tokens without EOS. The
/// decoder's logits cover `columns`; `n_cols` is their count.
pub fn search(
    decoder: &mut dyn StepDecoder,
    targets: &[Target],
    columns: Columns,
    n_cols: usize,
    rules: &Rules,
    opts: &SearchOptions,
) -> Result<Vec<Vec<u32>>> {
    let best = search_n(decoder, targets, columns, n_cols, rules, opts, 1)?;
    Ok(best
        .into_iter()
        .map(|mut n| n.drain(..).next().unwrap_or_default())
        .collect())
}

/// Like [`search`], but each sentence's `n` best finished hypotheses (distinct, best first; at
/// most the beam size: greedy search has one).
pub fn search_n(
    decoder: &mut dyn StepDecoder,
    targets: &[Target],
    columns: Columns,
    n_cols: usize,
    rules: &Rules,
    opts: &SearchOptions,
    n: usize,
) -> Result<Vec<Vec<Vec<u32>>>> {
    let eos_column = columns
        .column(rules.eos)
        .context("EOS is not an output column")?;
    let batch = Batch {
        rules,
        opts,
        targets,
        columns,
        n_cols,
        eos_column,
    };
    let sentences = targets.len();
    let mut hyps: Vec<Hyp> = (0..sentences)
        .map(|s| Hyp {
            sentence: s,
            tokens: Vec::new(),
            score: 0.0,
        })
        .collect();
    let beam = opts.beam_size.max(1);
    let mut live_beam = vec![beam; sentences];
    // HF search: whether the early-stop heuristic still allows better finished hypotheses.
    let mut open = vec![true; sentences];
    let mut finished: Finished = vec![Vec::new(); sentences];
    let mut step = 0;
    let mut logits = Vec::new();
    while !hyps.is_empty() {
        if hyps.iter().all(|h| batch.forced(h)) {
            // Every row must end now, with EOS scored 0 (as transformers forces it): the
            // decoder step would change nothing, so it is not run.
            for h in &hyps {
                if open[h.sentence] {
                    let score = batch.normalized(h.score, h.tokens.len() + 1);
                    finished[h.sentence].push((score, h.tokens.clone()));
                }
            }
            break;
        }
        decoder.step(&hyps, step, &mut logits);
        step += 1;
        let (next, parents) = if beam == 1 {
            let chosen = greedy::choose(&batch, &hyps, &mut logits);
            advance(&batch, &hyps, chosen, &mut live_beam, &mut finished)
        } else if rules.search == Search::HuggingFace {
            hf_beam::step(&batch, &hyps, &mut logits, beam, &mut open, &mut finished)
        } else {
            let chosen = marian_beam::choose(&batch, &hyps, &mut logits, &live_beam);
            advance(&batch, &hyps, chosen, &mut live_beam, &mut finished)
        };
        decoder.reorder(&parents);
        hyps = next;
    }
    Ok(finished
        .into_iter()
        .map(|mut f| {
            // Stable: among equal scores the earlier-finished hypothesis wins, as in HF.
            f.sort_by(|a, b| b.0.total_cmp(&a.0));
            let mut best: Vec<Vec<u32>> = Vec::with_capacity(n);
            for (_, t) in f {
                if best.len() == n.max(1) {
                    break;
                }
                if !best.contains(&t) {
                    best.push(t);
                }
            }
            if best.is_empty() {
                best.push(Vec::new());
            }
            best
        })
        .collect())
}

/// A chosen continuation: (sentence, parent row, token, score).
type Candidate = (usize, usize, u32, f32);

/// Extends the parents by the chosen tokens: a row that ends (EOS or the length cap) joins its
/// sentence's finished list and shrinks its live beam; the others are the next rows. Returns
/// them and their parents.
fn advance(
    batch: &Batch,
    hyps: &[Hyp],
    chosen: Vec<Candidate>,
    live_beam: &mut [usize],
    finished: &mut Finished,
) -> (Vec<Hyp>, Vec<usize>) {
    let mut next = Vec::new();
    let mut parents = Vec::new();
    for (s, parent, tok, score) in chosen {
        let mut tokens = hyps[parent].tokens.clone();
        if tok == batch.rules.eos || tokens.len() + 1 >= batch.targets[s].max_len {
            if tok != batch.rules.eos {
                tokens.push(tok);
            }
            let score = batch.normalized(score, tokens.len() + 1);
            finished[s].push((score, tokens));
            live_beam[s] -= 1;
        } else {
            tokens.push(tok);
            next.push(Hyp {
                sentence: s,
                tokens,
                score,
            });
            parents.push(parent);
        }
    }
    (next, parents)
}
