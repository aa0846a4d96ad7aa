//! The translate task: its plan (sentences, HTML text nodes, beam alternatives) and the
//! routing of a request to the model serving its language pair.

use std::sync::Arc;

use super::Runtime;
use super::ab::ticket::Ticket;
use super::config::Limits;
use super::detect::base_language;
use super::error::RuntimeError;
use super::html;
use super::registry::ModelEntry;
use super::request::{Served, TextFormat, TranslateRequest, TranslateResponse};
use super::segment::{self, Piece};
use super::service::{Common, Planned, TaskPlan, tokenize};
use crate::models::tokenizer::Overflow;
use crate::models::{Model, Output, RunParams, Task, Translation};

struct Translate {
    split_sentences: bool,
    beam_size: Option<usize>,
    max_length: Option<usize>,
    alternatives: usize,
    format: TextFormat,
}

/// A part of an input text's rebuilt translation.
enum Slot {
    Verbatim(String),
    Item(usize),
}

/// An input text as planned: its text parts (the whole text, or an HTML document's text nodes),
/// each as sentences and the whitespace between them.
struct Document {
    /// The HTML source the parts go back into (`format: "html"`).
    html: Option<String>,
    parts: Vec<Vec<Slot>>,
}

impl Translate {
    /// The slots of one text part: sentences to translate (their ids and texts appended) and the
    /// whitespace kept between them. A blank part becomes `blank` (what its translation is).
    fn slots(
        &self,
        model: &dyn Model,
        index: usize,
        text: &str,
        blank: &str,
        overflow: Overflow,
        (ids, sentences): (&mut Vec<Vec<u32>>, &mut Vec<String>),
    ) -> Result<Vec<Slot>, RuntimeError> {
        let pieces = if text.trim().is_empty() {
            return Ok(vec![Slot::Verbatim(blank.to_string())]);
        } else if self.split_sentences {
            segment::split(text)
        } else if self.format == TextFormat::Html {
            // One sentence, but the whitespace around an HTML text node stays where it was.
            let (start, end) = (text.len() - text.trim_start().len(), text.trim_end().len());
            vec![
                Piece::Gap(&text[..start]),
                Piece::Sentence(&text[start..end]),
                Piece::Gap(&text[end..]),
            ]
        } else {
            vec![Piece::Sentence(text)]
        };
        let mut slots = Vec::with_capacity(pieces.len());
        for piece in pieces {
            match piece {
                Piece::Gap(g) => slots.push(Slot::Verbatim(g.into())),
                Piece::Sentence(s) => {
                    ids.push(tokenize(model, index, s, overflow)?);
                    sentences.push(s.to_string());
                    slots.push(Slot::Item(ids.len() - 1));
                }
            }
        }
        Ok(slots)
    }
}

/// The decoding settings asked for, against the configured limits (whatever the model).
fn check_decoding(
    limits: &Limits,
    beam_size: Option<usize>,
    max_length: Option<usize>,
    alternatives: usize,
) -> Result<(), RuntimeError> {
    if let Some(b) = beam_size
        && (b == 0 || b > limits.max_beam_size)
    {
        return Err(RuntimeError::BadRequest(format!(
            "beam_size must be between 1 and {}",
            limits.max_beam_size
        )));
    }
    match max_length {
        Some(0) => {
            return Err(RuntimeError::BadRequest(
                "max_length must be at least 1".into(),
            ));
        }
        Some(n) if n > limits.max_output_tokens => {
            return Err(RuntimeError::BadRequest(format!(
                "max_length must be at most {}",
                limits.max_output_tokens
            )));
        }
        _ => {}
    }
    if alternatives >= limits.max_beam_size {
        return Err(RuntimeError::BadRequest(format!(
            "alternatives must be at most {}",
            limits.max_beam_size.saturating_sub(1)
        )));
    }
    Ok(())
}

impl TaskPlan for Translate {
    const TASK: Task = Task::Translate;
    /// Per input text, its parts' sentences and the whitespace between them.
    type Layout = Vec<Document>;
    type Item = Translation;

    /// Blank texts come back as they are, even when all are (LibreTranslate answers a list of
    /// blank texts so); an API that wants blank input refused says so itself.
    fn check(&self, _inputs: &[String]) -> Result<(), RuntimeError> {
        Ok(())
    }

    fn params(&self, rt: &Runtime, model: &dyn Model) -> Result<RunParams, RuntimeError> {
        let limits = &rt.config.limits;
        let defaults = model.default_params();
        let beam_size = self.beam_size.unwrap_or(defaults.beam_size);
        check_decoding(limits, Some(beam_size), self.max_length, self.alternatives)?;
        let max_length = self.max_length.or(defaults.max_length);
        // n alternatives need a beam of at least n + 1 hypotheses (as LibreTranslate's argos
        // asks for num_hypotheses = alternatives + 1).
        let beam_size = if self.alternatives > 0 {
            beam_size
                .max(self.alternatives + 1)
                .min(limits.max_beam_size.max(1))
        } else {
            beam_size
        };
        Ok(RunParams {
            beam_size,
            max_length,
            alternatives: self.alternatives,
            raw_scores: false,
        })
    }

    /// Each text's layout (sentences and the whitespace between them) and the token ids of all
    /// sentences to translate, in order. An HTML text is taken apart into its text nodes first.
    fn plan(
        self,
        model: &dyn Model,
        inputs: Vec<String>,
        overflow: Overflow,
    ) -> Result<Planned<Self::Layout>, RuntimeError> {
        let mut layouts = Vec::with_capacity(inputs.len());
        let mut ids = Vec::new();
        let mut sentences = Vec::new();
        for (i, text) in inputs.into_iter().enumerate() {
            let document = if self.format == TextFormat::Html {
                let parts = html::texts(&text)?
                    .iter()
                    .map(|t| self.slots(model, i, t, t, overflow, (&mut ids, &mut sentences)))
                    .collect::<Result<_, _>>()?;
                Document {
                    html: Some(text),
                    parts,
                }
            } else {
                // Blank texts translate to themselves, as the model would give nothing.
                let slots =
                    self.slots(model, i, &text, "", overflow, (&mut ids, &mut sentences))?;
                Document {
                    html: None,
                    parts: vec![slots],
                }
            };
            layouts.push(document);
        }
        Ok(Planned {
            ids,
            texts: sentences,
            layout: layouts,
        })
    }

    fn item(output: Output) -> Option<Translation> {
        match output {
            Output::Translation(t) => Some(t),
            _ => None,
        }
    }
}

impl Runtime {
    /// The variant a translate request goes to: the one it names, or the routing's pick.
    pub fn route_translate(
        &self,
        req: &TranslateRequest,
    ) -> Result<(Arc<ModelEntry>, Ticket), RuntimeError> {
        let model = self.translation_model(req)?;
        self.route_ticketed(&model, req.variant.as_deref(), &req.headers)
    }

    /// Routes and runs a translate request.
    pub async fn translate(&self, req: TranslateRequest) -> Served<TranslateResponse> {
        let (entry, ticket) = match self.route_translate(&req) {
            Ok(e) => e,
            Err(e) => return Served::unrouted(e),
        };
        let result = self.translate_on(entry.clone(), ticket, req).await;
        Served::on(&entry, result)
    }

    /// What a translate request is checked against before any model runs (input and decoding
    /// limits), for answers given without one: LibreTranslate's identity translation is held to
    /// the same limits as a real one.
    pub fn check_translate_request(&self, req: &TranslateRequest) -> Result<(), RuntimeError> {
        self.check_inputs(&req.inputs)?;
        super::service::check_timeout(req.timeout)?;
        check_decoding(
            &self.config.limits,
            req.beam_size,
            req.max_length,
            req.alternatives,
        )
    }

    pub async fn translate_on(
        &self,
        entry: Arc<ModelEntry>,
        ticket: Ticket,
        req: TranslateRequest,
    ) -> Result<TranslateResponse, RuntimeError> {
        let plan = Translate {
            split_sentences: self.config.translation.split_sentences,
            beam_size: req.beam_size,
            max_length: req.max_length,
            alternatives: req.alternatives,
            format: req.format,
        };
        let common = Common {
            request_id: req.request_id,
            inputs: req.inputs,
            truncate: req.truncate,
            timeout: req.timeout,
            ticket,
        };
        let wanted = req.alternatives;
        let (documents, translated) = self.infer(&entry, common, plan).await?;
        // Part text with the best translation (`None`) or the j-th alternative of each sentence
        // (the best where a sentence has fewer).
        let join = |slots: &[Slot], alt: Option<usize>| -> String {
            slots
                .iter()
                .map(|s| match s {
                    Slot::Verbatim(t) => t.as_str(),
                    Slot::Item(i) => {
                        let t = &translated[*i];
                        alt.and_then(|j| t.alternatives.get(j)).unwrap_or(&t.text)
                    }
                })
                .collect()
        };
        let mut outputs = Vec::with_capacity(documents.len());
        let mut alternatives = Vec::with_capacity(documents.len());
        for doc in &documents {
            let parts: Vec<String> = doc.parts.iter().map(|p| join(p, None)).collect();
            match &doc.html {
                Some(source) => {
                    outputs.push(html::replace(source, &parts)?);
                    // As LibreTranslate: no alternatives for HTML.
                    alternatives.push(Vec::new());
                }
                None => {
                    outputs.push(parts.concat());
                    let slots = &doc.parts[0];
                    let mut alts: Vec<String> = Vec::new();
                    for j in 0..wanted {
                        let alt = join(slots, Some(j));
                        if alt != outputs[outputs.len() - 1] && !alts.contains(&alt) {
                            alts.push(alt);
                        }
                    }
                    alternatives.push(alts);
                }
            }
        }
        Ok(TranslateResponse {
            model: entry.key.model.clone(),
            variant: entry.key.variant.clone(),
            outputs,
            alternatives,
        })
    }

    /// The model named by the request, or the one serving its language pair. A named model
    /// with a `source` or `target` of another language is refused: translating into the
    /// model's own target instead would be silently wrong (`source: "auto"` is taken).
    fn translation_model(&self, req: &TranslateRequest) -> Result<String, RuntimeError> {
        if let Some(m) = &req.model {
            let pair = self
                .registry
                .pairs()
                .into_iter()
                .find(|(name, _)| name == m);
            if let Some((_, (own_source, own_target))) = pair {
                let source = req.source.as_deref().filter(|s| *s != "auto");
                let differs = |given: Option<&str>, own: &str| {
                    given.is_some_and(|code| base_language(code) != base_language(own))
                };
                if differs(source, &own_source) || differs(req.target.as_deref(), &own_target) {
                    return Err(RuntimeError::BadRequest(format!(
                        "model `{m}` translates {own_source}→{own_target}, not {}→{} (leave \
                         `source` and `target` out, or name the model of that pair)",
                        source.unwrap_or(&own_source),
                        req.target.as_deref().unwrap_or(&own_target)
                    )));
                }
            }
            return Ok(m.clone());
        }
        let (Some(source), Some(target)) = (req.source.as_deref(), req.target.as_deref()) else {
            return Err(RuntimeError::BadRequest(
                "`source` and `target` are required unless `model` is given".into(),
            ));
        };
        if source == "auto" {
            return Err(RuntimeError::Unsupported(
                "language detection (source \"auto\") is not supported".into(),
            ));
        }
        // `pt-BR`, `pt_BR`, `EN`: the pair as given, else its base languages (LibreTranslate
        // and Weblate send regional and upper-case codes).
        let (base_source, base_target) = (base_language(source), base_language(target));
        self.registry
            .model_for_pair(source, target)
            .or_else(|| self.registry.model_for_pair(&base_source, &base_target))
            .ok_or_else(|| {
                let pairs: Vec<String> = self
                    .registry
                    .pairs()
                    .into_iter()
                    .map(|(_, (s, t))| format!("{s}-{t}"))
                    .collect();
                RuntimeError::Unsupported(format!(
                    "language pair {source}→{target} is not supported (available: {})",
                    pairs.join(", ")
                ))
            })
    }
}
