//! Splits a text into sentences for translation, keeping the whitespace between them so the
//! translations can be joined back into the same layout (paragraphs, line breaks).
//!
//! The rule is deliberately simple: a sentence ends at `.`, `!`, `?` or `…` (closing quotes and
//! brackets may follow) before whitespace and a character that can start a sentence, unless the
//! `.` ends a common abbreviation or an initial. Line breaks always end a sentence.

/// A piece of a text: a sentence to translate, or the whitespace around sentences, kept as is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Piece<'a> {
    Sentence(&'a str),
    Gap(&'a str),
}

const TERMINALS: &[char] = &['.', '!', '?', '…'];
const CLOSERS: &[char] = &['"', '\'', ')', ']', '»', '”', '’'];
const OPENERS: &[char] = &['"', '\'', '(', '[', '«', '“', '‘', '¿', '¡', '-', '—'];
/// Lower-cased words that end in a period without ending the sentence (English and Portuguese).
const ABBREVIATIONS: &[&str] = &[
    "mr", "mrs", "ms", "dr", "prof", "sr", "sra", "srta", "st", "jr", "vs", "etc", "e.g", "i.e",
    "no", "nr", "fig", "p", "pp", "vol", "ed", "inc", "ltd", "co", "av", "dra", "exmo", "exma",
    "gen", "gov", "cap",
];

pub fn split(text: &str) -> Vec<Piece<'_>> {
    let mut out = Vec::new();
    for line in text.split_inclusive('\n') {
        split_line(line, &mut out);
    }
    out
}

fn split_line<'a>(line: &'a str, out: &mut Vec<Piece<'a>>) {
    if line.trim().is_empty() {
        out.push(Piece::Gap(line));
        return;
    }
    let start = line.len() - line.trim_start().len();
    let end = line.trim_end().len();
    if start > 0 {
        out.push(Piece::Gap(&line[..start]));
    }
    let body = &line[start..end];
    let chars: Vec<(usize, char)> = body.char_indices().collect();
    let mut sentence_start = 0;
    let mut i = 0;
    while i < chars.len() {
        if !TERMINALS.contains(&chars[i].1) {
            i += 1;
            continue;
        }
        let mut j = i + 1;
        while j < chars.len() && (TERMINALS.contains(&chars[j].1) || CLOSERS.contains(&chars[j].1))
        {
            j += 1;
        }
        let mut k = j;
        while k < chars.len() && chars[k].1.is_whitespace() {
            k += 1;
        }
        let ends = k > j
            && k < chars.len()
            && starts_sentence(chars[k].1)
            && !(chars[i].1 == '.' && ends_abbreviation(&body[sentence_start..chars[i].0]));
        if ends {
            out.push(Piece::Sentence(&body[sentence_start..chars[j].0]));
            out.push(Piece::Gap(&body[chars[j].0..chars[k].0]));
            sentence_start = chars[k].0;
        }
        i = k.max(i + 1);
    }
    out.push(Piece::Sentence(&body[sentence_start..]));
    if end < line.len() {
        out.push(Piece::Gap(&line[end..]));
    }
}

fn starts_sentence(c: char) -> bool {
    c.is_uppercase() || c.is_ascii_digit() || OPENERS.contains(&c)
}

/// Whether the text before a period ends with an abbreviation or a single-letter initial.
fn ends_abbreviation(before: &str) -> bool {
    let word = before.rsplit(char::is_whitespace).next().unwrap_or("");
    let word = word.trim_start_matches(OPENERS).to_lowercase();
    (word.chars().count() == 1 && word.chars().all(char::is_alphabetic))
        || ABBREVIATIONS.contains(&word.as_str())
}

#[cfg(test)]
mod tests {
    use super::Piece::{Gap, Sentence};
    use super::*;

    fn join(pieces: &[Piece<'_>]) -> String {
        pieces
            .iter()
            .map(|p| match p {
                Sentence(s) | Gap(s) => *s,
            })
            .collect()
    }

    #[test]
    fn one_sentence_stays_whole() {
        assert_eq!(
            split("How are you today?"),
            vec![Sentence("How are you today?")]
        );
    }

    #[test]
    fn splits_sentences_and_keeps_layout() {
        let text = "  Hello there. How are you?\n\nI'm fine! \"Really,\" he said.\n";
        let pieces = split(text);
        assert_eq!(
            pieces,
            vec![
                Gap("  "),
                Sentence("Hello there."),
                Gap(" "),
                Sentence("How are you?"),
                Gap("\n"),
                Gap("\n"),
                Sentence("I'm fine!"),
                Gap(" "),
                Sentence("\"Really,\" he said."),
                Gap("\n"),
            ]
        );
        assert_eq!(join(&pieces), text);
    }

    #[test]
    fn abbreviations_initials_and_numbers_do_not_split() {
        assert_eq!(
            split("Mr. Smith met J. Doe at 3.5 p.m. today."),
            vec![Sentence("Mr. Smith met J. Doe at 3.5 p.m. today.")]
        );
        assert_eq!(
            split("It costs 5. Ok."),
            vec![Sentence("It costs 5."), Gap(" "), Sentence("Ok.")]
        );
        assert_eq!(
            split("wait... what? yes"),
            vec![Sentence("wait... what? yes")]
        );
    }

    #[test]
    fn any_text_round_trips() {
        for t in [
            "",
            " ",
            "a",
            "\n",
            "¿Qué? ¡Sí! Não.",
            "x.\u{3000}Y",
            "end.  ",
        ] {
            assert_eq!(join(&split(t)), t, "{t:?}");
        }
    }
}
