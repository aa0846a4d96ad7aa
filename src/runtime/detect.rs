//! Language identification for `source: "auto"` and LibreTranslate's `/detect`: whatlang's
//! trigram detector restricted to the languages the server can translate from, so a detection
//! is always one the server can act on (as LibreTranslate restricts to its installed languages).

use whatlang::{Detector, Lang};

/// ISO 639-1 codes (what the API speaks) and whatlang's ISO 639-3 languages, for the languages
/// translation models commonly serve.
const LANGS: &[(&str, Lang)] = &[
    ("en", Lang::Eng),
    ("pt", Lang::Por),
    ("es", Lang::Spa),
    ("fr", Lang::Fra),
    ("de", Lang::Deu),
    ("it", Lang::Ita),
    ("nl", Lang::Nld),
    ("ru", Lang::Rus),
    ("uk", Lang::Ukr),
    ("pl", Lang::Pol),
    ("cs", Lang::Ces),
    ("et", Lang::Est),
    ("bg", Lang::Bul),
    ("fi", Lang::Fin),
    ("sv", Lang::Swe),
    ("da", Lang::Dan),
    ("nb", Lang::Nob),
    ("tr", Lang::Tur),
    ("ro", Lang::Ron),
    ("hu", Lang::Hun),
    ("el", Lang::Ell),
    ("ja", Lang::Jpn),
    ("zh", Lang::Cmn),
    ("ko", Lang::Kor),
    ("ar", Lang::Ara),
    ("he", Lang::Heb),
    ("hi", Lang::Hin),
    ("fa", Lang::Pes),
];

fn lang_of(code: &str) -> Option<Lang> {
    LANGS.iter().find(|(c, _)| *c == code).map(|(_, l)| *l)
}

fn code_of(lang: Lang) -> Option<&'static str> {
    LANGS.iter().find(|(_, l)| *l == lang).map(|(c, _)| *c)
}

/// The base language of a code as clients send it: `pt-BR`, `pt_BR`, `PT` → `pt`.
pub fn base_language(code: &str) -> String {
    code.split(['-', '_'])
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// The English name of a language code (`"pt"` → `"Portuguese"`), the code itself when unknown.
pub fn language_name(code: &str) -> String {
    lang_of(code).map_or_else(|| code.to_string(), |l| l.eng_name().to_string())
}

/// The commonest words of some languages: trigram statistics say little about a few words
/// ("How are you today?" reads as Portuguese to them), so short texts are decided by these
/// first, as LibreTranslate does with its word lists (lexilang) below 20 characters.
const COMMON_WORDS: &[(&str, &str)] = &[
    (
        "en",
        "the a an and or of to in on at for with is are was were be been am i you he she it we they my your his her our their this that these those what who how why when where which not no yes do does did have has had will would can could should hello hi thanks thank please good morning night today very",
    ),
    (
        "pt",
        "o a os as um uma e ou de do da dos das em no na nos nas por para com é são foi era ser estar está estão eu tu ele ela nós eles elas meu minha seu sua nosso isto isso este esta que quem como porque quando onde não sim olá obrigado obrigada bom boa dia noite hoje muito você vocês",
    ),
    (
        "es",
        "el la los las un una y o de del en por para con es son fue era ser estar está están yo tú él ella nosotros ellos mi su este esta que quién cómo porque cuando donde no sí hola gracias buenos buenas día noche hoy muy usted",
    ),
    (
        "fr",
        "le la les un une et ou de du des en au aux par pour avec est sont était être je tu il elle nous vous ils elles mon ma son sa ce cette que qui comment pourquoi quand où ne pas non oui bonjour merci bonne nuit jour très",
    ),
    (
        "de",
        "der die das ein eine und oder von zu in im am auf für mit ist sind war sein ich du er sie es wir ihr mein dein sein dieser diese was wer wie warum wann wo nicht nein ja hallo danke guten gute nacht tag heute sehr",
    ),
    (
        "it",
        "il lo la i gli le un una e o di del della in nel per con è sono era essere io tu lui lei noi voi loro mio mia suo sua questo questa che chi come perché quando dove non no sì ciao grazie buongiorno buona notte oggi molto",
    ),
];

/// `candidates` scored by the common words in `text` (lower-cased, punctuation trimmed), best
/// first, each with its share of the matches, when one language leads.
fn by_common_words(text: &str, candidates: &[String]) -> Option<Vec<(String, f64)>> {
    let words: Vec<String> = text
        .split_whitespace()
        .map(|w| {
            w.trim_matches(|c: char| !c.is_alphanumeric())
                .to_lowercase()
        })
        .filter(|w| !w.is_empty())
        .collect();
    let mut scores: Vec<(String, usize)> = candidates
        .iter()
        .filter_map(|c| {
            let list = COMMON_WORDS.iter().find(|(code, _)| code == c)?.1;
            let n = words
                .iter()
                .filter(|w| list.split(' ').any(|l| l == w.as_str()))
                .count();
            Some((c.clone(), n))
        })
        .collect();
    scores.sort_by_key(|s| std::cmp::Reverse(s.1));
    let total: usize = scores.iter().map(|s| s.1).sum();
    let leads = match scores.as_slice() {
        [best, second, ..] => best.1 > second.1,
        [best] => best.1 > 0,
        [] => false,
    };
    leads.then(|| {
        scores
            .into_iter()
            .map(|(c, n)| (c, n as f64 / total as f64))
            .collect()
    })
}

/// Texts of fewer words than this are decided by common words when they can be.
const SHORT_TEXT_WORDS: usize = 8;

/// A detected language and LibreTranslate's confidence for it, in 0..=100.
#[derive(Clone, Debug, PartialEq)]
pub struct Detection {
    pub language: String,
    pub confidence: f64,
}

/// Up to three candidate languages among `candidates` (ISO 639-1 codes), most likely first.
/// whatlang gives one language and a confidence in [0, 1]; the runners-up are found by
/// detecting again without the languages already named, and share what confidence is left.
/// Empty when no candidate is known to the detector or the text has nothing to go on (no
/// letters): LibreTranslate then answers `{"confidence": 0, "language": "en"}`, done by the caller.
pub fn detect(text: &str, candidates: &[String]) -> Vec<Detection> {
    if text.split_whitespace().count() < SHORT_TEXT_WORDS
        && let Some(scored) = by_common_words(text, candidates)
    {
        return scored
            .into_iter()
            .take(3)
            .map(|(language, share)| Detection {
                language,
                confidence: (share * 100.0).round(),
            })
            .collect();
    }
    let mut left: Vec<Lang> = candidates.iter().filter_map(|c| lang_of(c)).collect();
    left.dedup();
    let mut out = Vec::new();
    let mut mass = 1.0f64;
    while out.len() < 3 && !left.is_empty() {
        let Some(info) = Detector::with_allowlist(left.clone()).detect(text) else {
            break;
        };
        let Some(code) = code_of(info.lang()) else {
            break;
        };
        let share = if left.len() == 1 {
            mass
        } else {
            mass * info.confidence()
        };
        out.push(Detection {
            language: code.to_string(),
            confidence: (share * 100.0).round(),
        });
        mass -= share;
        left.retain(|l| *l != info.lang());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn langs(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn detects_among_the_served_languages() {
        let served = langs(&["en", "pt"]);
        let en = detect("The weather is lovely today and we are going out.", &served);
        assert_eq!(en[0].language, "en");
        assert!(en[0].confidence > 50.0, "{en:?}");
        let pt = detect("O tempo está ótimo hoje e nós vamos sair.", &served);
        assert_eq!(pt[0].language, "pt");
        // Only served languages are named, at most three, best first.
        assert!(pt.iter().all(|d| served.contains(&d.language)));
        assert!(pt.windows(2).all(|w| w[0].confidence >= w[1].confidence));
        assert!(detect("1234 !!", &served).is_empty());
        // Short texts, where trigrams are unreliable.
        for (text, lang) in [
            ("How are you today?", "en"),
            ("Thank you very much.", "en"),
            ("Obrigado pela ajuda.", "pt"),
            ("Bom dia!", "pt"),
            ("Hello", "en"),
        ] {
            assert_eq!(detect(text, &served)[0].language, lang, "{text}");
        }
        assert!(detect("hello", &langs(&["xx"])).is_empty());
        assert_eq!(language_name("pt"), "Portuguese");
        assert_eq!(language_name("xx"), "xx");
        assert_eq!(base_language("pt-BR"), "pt");
        assert_eq!(base_language("pt_BR"), "pt");
        assert_eq!(base_language("EN"), "en");
    }
}
