//! HTML translation (`format: "html"`), as LibreTranslate does it (argos-translate-files'
//! `translatehtml`): every text node is translated on its own, everything else stays as it was.
//!
//! lol_html (Cloudflare's streaming rewriter) parses the fragment; bytes we do not translate
//! (tags, attributes, comments, entities outside translated text) pass through exactly. Two
//! passes over the same string: the first collects the translatable text nodes in document
//! order, the second puts their translations back. Text inside `<script>`/`<style>` (raw text),
//! inside LibreTranslate's skip list (`address applet audio canvas code embed time video`) or
//! under `translate="no"` is left alone. Unlike LibreTranslate we do not unescape the result:
//! translated text is written HTML-escaped, so `&lt;` in a text node stays `&lt;`.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use lol_html::html_content::{ContentType, Element, TextChunk, TextType};
use lol_html::{RewriteStrSettings, doc_text, element, end_tag, rewrite_str};

use super::error::RuntimeError;

/// Elements whose text is never translated (LibreTranslate's list) and the `translate="no"`
/// attribute.
const SKIP: &str = "address, applet, audio, canvas, code, embed, time, video, [translate=no]";

/// Whether a chunk is text a reader sees (not script/style source).
fn is_prose(chunk: &TextChunk) -> bool {
    matches!(chunk.text_type(), TextType::Data | TextType::RCData)
}

/// A text node as collected: its decoded text, and whether it may be translated.
struct Node {
    text: String,
    translate: bool,
}

/// Runs the rewriter with `on_chunk(chunk, skipped)` called for every prose text chunk, where
/// `skipped` says whether it lies inside a skipped element.
fn walk(
    html: &str,
    mut on_chunk: impl FnMut(&mut TextChunk, bool),
) -> Result<String, RuntimeError> {
    // Depth of open skipped elements (void ones, e.g. <embed>, have no content to skip).
    let depth = Rc::new(Cell::new(0usize));
    let open = depth.clone();
    let settings = RewriteStrSettings::new()
        .append_element_content_handler(element!(SKIP, move |el: &mut Element| {
            if el.can_have_content() && !el.is_self_closing() {
                open.set(open.get() + 1);
                let close = open.clone();
                el.on_end_tag(end_tag!(move |_| {
                    close.set(close.get().saturating_sub(1));
                    Ok(())
                }))?;
            }
            Ok(())
        }))
        .append_document_content_handler(doc_text!(|chunk: &mut TextChunk| {
            if is_prose(chunk) {
                on_chunk(chunk, depth.get() > 0);
            }
            Ok(())
        }))
        .with_strict(false);
    rewrite_str(html, settings)
        .map_err(|e| RuntimeError::BadRequest(format!("the HTML could not be parsed: {e}")))
}

/// The text nodes of `html` in document order.
fn nodes(html: &str) -> Result<Vec<Node>, RuntimeError> {
    let nodes = RefCell::new(Vec::new());
    let current = RefCell::new(String::new());
    walk(html, |chunk, skipped| {
        current.borrow_mut().push_str(chunk.as_str());
        if chunk.last_in_text_node() {
            let raw = std::mem::take(&mut *current.borrow_mut());
            let text = html_escape::decode_html_entities(&raw).into_owned();
            let translate = !skipped && text.chars().any(char::is_alphabetic);
            nodes.borrow_mut().push(Node { text, translate });
        }
    })?;
    Ok(nodes.into_inner())
}

/// The texts to translate in `html` (decoded, in document order; whitespace around them kept).
pub fn texts(html: &str) -> Result<Vec<String>, RuntimeError> {
    Ok(nodes(html)?
        .into_iter()
        .filter(|n| n.translate)
        .map(|n| n.text)
        .collect())
}

/// `html` with the texts `texts` returned replaced by `translations`, in the same order.
pub fn replace(html: &str, translations: &[String]) -> Result<String, RuntimeError> {
    let translate: Vec<bool> = nodes(html)?.iter().map(|n| n.translate).collect();
    let (node, next, first) = (Cell::new(0usize), Cell::new(0usize), Cell::new(true));
    walk(html, |chunk, _| {
        let i = node.get();
        if translate.get(i).copied().unwrap_or(false) {
            if first.get() {
                let text = translations.get(next.get()).map_or("", String::as_str);
                chunk.replace(text, ContentType::Text);
                next.set(next.get() + 1);
            } else {
                chunk.remove();
            }
        }
        first.set(false);
        if chunk.last_in_text_node() {
            node.set(i + 1);
            first.set(true);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upper(html: &str) -> String {
        let t: Vec<String> = texts(html)
            .unwrap()
            .iter()
            .map(|s| s.to_uppercase())
            .collect();
        replace(html, &t).unwrap()
    }

    #[test]
    fn translates_text_nodes_and_keeps_the_rest() {
        let html = r#"<p class="x">Hello <b>bold</b> &amp; world</p><script>var a = "no";</script><style>p{}</style><code>keep me</code>"#;
        assert_eq!(
            texts(html).unwrap(),
            vec!["Hello ", "bold", " & world"],
            "entities decoded, script/style/code skipped"
        );
        assert_eq!(
            upper(html),
            r#"<p class="x">HELLO <b>BOLD</b> &amp; WORLD</p><script>var a = "no";</script><style>p{}</style><code>keep me</code>"#
        );
    }

    #[test]
    fn skips_translate_no_and_symbols_and_survives_broken_html() {
        let html = r#"<a href="https://x.y" class="mention">@<span>user</span></a> <span translate="no">Name</span> <i>42</i><br>text"#;
        assert_eq!(texts(html).unwrap(), vec!["user", "text"]);
        assert_eq!(
            upper(html),
            r#"<a href="https://x.y" class="mention">@<span>USER</span></a> <span translate="no">Name</span> <i>42</i><br>TEXT"#
        );
        for broken in [
            "<p>unclosed <b>tags",
            "</div></div>",
            "<<>>",
            "",
            "<!-- c -->",
            "a < b",
        ] {
            let t = texts(broken).unwrap();
            let back = replace(broken, &t).unwrap();
            assert_eq!(back, broken.replace("a < b", "a &lt; b"), "{broken}");
        }
    }
}
