//! The LibreTranslate API over real sockets: the exact requests Mastodon and Weblate send,
//! `/languages`, `/detect`, `source: "auto"`, HTML, alternatives, form and multipart bodies,
//! regional codes, `api_key`, file translation and its download, `/frontend/settings`.

mod common;

use std::net::SocketAddr;
use std::sync::OnceLock;

use common::http_client::{Resp, get, post, request};
use common::server::{self, start};
use quantserve::api::serve::Server;
use quantserve::runtime::config::Config;
use serde_json::{Value, json};

const HOW_ARE_YOU: &str = "How are you today?";
const HOW_ARE_YOU_PT: &str = "Como você está hoje?";
const KEY: &str = "lt-key";

fn config() -> Config {
    let mut cfg = server::config(
        server::test_repository(),
        &server::fp32(&["en-pt", "pt-en"]),
    );
    cfg.libretranslate.enabled = true;
    cfg.server.api_key = Some(KEY.into());
    cfg
}

fn shared() -> SocketAddr {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| start(config())).addr()
}

fn json_post(addr: SocketAddr, path: &str, body: &Value, extra: &[(&str, &str)]) -> Resp {
    request(addr, "POST", path, extra, body.to_string().as_bytes())
}

fn form_post(addr: SocketAddr, path: &str, body: &str) -> Resp {
    request(
        addr,
        "POST",
        path,
        &[("content-type", "application/x-www-form-urlencoded")],
        body.as_bytes(),
    )
}

fn ok(r: &Resp) -> Value {
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.json()
}

/// LibreTranslate's error body: status and a non-empty `error`.
fn lt_error(r: &Resp, status: u16) -> String {
    assert_eq!(r.status, status, "{}", String::from_utf8_lossy(&r.body));
    let e = r.json()["error"].as_str().unwrap_or_default().to_string();
    assert!(!e.is_empty());
    e
}

#[test]
fn mastodon_requests_are_answered() {
    let addr = shared();
    // Mastodon's TranslationService::LibreTranslate: JSON (Oj.dump), format html, api_key, and
    // `auto` when the status has no language; older releases send `q` as a string, newer ones
    // as a list (status text, poll options, media descriptions).
    let status = r#"<p>How are you today? <a href="https://example.social/tags/rust" class="mention hashtag" rel="tag">#<span>rust</span></a></p><p>Thank you &amp; good night.</p>"#;
    let r = json_post(
        addr,
        "/translate",
        &json!({"q": status, "source": "en", "target": "pt", "format": "html", "api_key": KEY}),
        &[(
            "user-agent",
            "http.rb/5.1.1 (Mastodon/4.3.0; +https://example.social/)",
        )],
    );
    let out = ok(&r)["translatedText"].as_str().unwrap().to_string();
    assert!(out.starts_with(&format!("<p>{HOW_ARE_YOU_PT} <a href=\"https://example.social/tags/rust\" class=\"mention hashtag\" rel=\"tag\">#<span>")), "{out}");
    assert!(
        out.contains("</a></p><p>") && out.ends_with("</p>"),
        "{out}"
    );
    assert!(!out.contains("Thank you"), "translated: {out}");
    assert!(
        !out.contains("& ") || out.contains("&amp;"),
        "escaped: {out}"
    );

    let r = json_post(
        addr,
        "/translate",
        &json!({"q": [status, "<p>Good morning.</p>"], "source": "auto", "target": "pt", "format": "html", "api_key": KEY}),
        &[],
    );
    let b = ok(&r);
    let texts = b["translatedText"].as_array().unwrap();
    assert_eq!(texts.len(), 2);
    assert!(
        texts[1].as_str().unwrap().starts_with("<p>")
            && texts[1].as_str().unwrap().ends_with("</p>")
    );
    // Mastodon reads detectedLanguage[i].language in batch mode.
    let detected = b["detectedLanguage"].as_array().unwrap();
    assert_eq!(detected.len(), 2);
    assert_eq!(detected[0]["language"], "en");
    assert!(detected[0]["confidence"].as_f64().unwrap() > 0.0);

    // The same as a form body (form clients), and the api_key may be null without a key
    // configured... here one is, so a missing key is refused.
    let form = format!(
        "q={}&source=en&target=pt&format=html&api_key={KEY}",
        "%3Cp%3EGood+morning.%3C%2Fp%3E"
    );
    let out = ok(&form_post(addr, "/translate", &form));
    assert!(out["translatedText"].as_str().unwrap().starts_with("<p>"));
    let r = json_post(
        addr,
        "/translate",
        &json!({"q": "Hi", "source": "en", "target": "pt", "format": "html", "api_key": null}),
        &[],
    );
    assert_eq!(r.status, 401);
    assert!(!r.json()["error"].as_str().unwrap().is_empty());
}

#[test]
fn weblate_sequence_is_answered() {
    let addr = shared();
    let weblate = [
        ("referer", "https://weblate.example.org/"),
        ("accept", "application/json; charset=utf-8"),
        ("authorization", "Bearer lt-key"),
    ];
    // Weblate's LibreTranslateTranslation: GET /languages (codes only), then JSON translate with
    // q a list, api_key in the body; its codes use underscores (pt_BR) and fall back to pt.
    let langs = ok(&request(addr, "GET", "/languages", &weblate, b""));
    let codes: Vec<&str> = langs
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, vec!["en", "pt"]);
    for l in langs.as_array().unwrap() {
        assert!(l["name"].is_string());
        let targets: Vec<&str> = l["targets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap())
            .collect();
        assert_eq!(targets, vec!["en", "pt"], "{l}");
    }
    assert_eq!(langs[0]["name"], "English");
    assert_eq!(langs[1]["name"], "Portuguese");
    let body = json!({"api_key": KEY, "q": [HOW_ARE_YOU, "Thank you."], "source": "en", "target": "pt_BR"});
    let b = ok(&json_post(addr, "/translate", &body, &weblate[..2]));
    assert_eq!(b["translatedText"][0], HOW_ARE_YOU_PT);
    assert_eq!(b["translatedText"].as_array().unwrap().len(), 2);
    // Weblate validates a service with en → de: an unsupported pair is LibreTranslate's 400.
    let r = json_post(
        addr,
        "/translate",
        &json!({"api_key": KEY, "q": ["test"], "source": "en", "target": "de"}),
        &[],
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"], "de is not supported");
}

#[test]
fn detect_auto_alternatives_codes_and_errors() {
    let addr = shared();
    let auth = [("authorization", "Bearer lt-key")];
    // /detect: up to three served languages, LibreTranslate's 0-100 confidence, best first.
    let d = ok(&form_post(
        addr,
        "/detect",
        &format!("q=Eu+gosto+muito+de+ler+livros+pela+manh%C3%A3.&api_key={KEY}"),
    ));
    assert_eq!(d[0]["language"], "pt");
    let c: Vec<f64> = d
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["confidence"].as_f64().unwrap())
        .collect();
    assert!(
        c[0] > 50.0 && c[0] <= 100.0 && c.windows(2).all(|w| w[0] >= w[1]),
        "{d}"
    );
    let d = ok(&json_post(addr, "/detect", &json!({"q": "12345"}), &auth));
    assert_eq!(d, json!([{"confidence": 0.0, "language": "en"}]));
    assert_eq!(
        lt_error(&json_post(addr, "/detect", &json!({}), &auth), 400),
        "Invalid request: missing q parameter"
    );
    assert_eq!(
        lt_error(&json_post(addr, "/detect", &json!({"q": "hi"}), &[]), 403),
        "Invalid API key"
    );
    // More texts than `max_inputs` (64 by default): 413, as every list route (schemathesis
    // found 65 blank texts answered 200).
    let many = vec![""; 65];
    assert!(
        lt_error(&json_post(addr, "/detect", &json!({"q": many}), &auth), 413)
            .contains("65 texts, at most 64")
    );

    // source auto, a single string: detectedLanguage is an object.
    let b = ok(&json_post(
        addr,
        "/translate",
        &json!({"q": "Obrigado pela ajuda.", "source": "auto", "target": "en"}),
        &auth,
    ));
    assert_eq!(b["detectedLanguage"]["language"], "pt");
    assert!(
        b["translatedText"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("thank"),
        "{b}"
    );
    // Same language in and out: the text as it was (LibreTranslate's identity).
    let b = ok(&json_post(
        addr,
        "/translate",
        &json!({"q": HOW_ARE_YOU, "source": "EN", "target": "en"}),
        &auth,
    ));
    assert_eq!(b["translatedText"], HOW_ARE_YOU);

    // alternatives: n-best from the beam, distinct from the best.
    let b = ok(&json_post(
        addr,
        "/translate",
        &json!({"q": HOW_ARE_YOU, "source": "en", "target": "pt-BR", "alternatives": 2}),
        &auth,
    ));
    let best = b["translatedText"].as_str().unwrap();
    let alts = b["alternatives"].as_array().unwrap();
    assert!(!alts.is_empty() && alts.len() <= 2, "{b}");
    assert!(
        alts.iter()
            .all(|a| a.as_str().unwrap() != best && !a.as_str().unwrap().is_empty())
    );
    let b = ok(&json_post(
        addr,
        "/translate",
        &json!({"q": [HOW_ARE_YOU], "source": "en", "target": "pt", "alternatives": 1}),
        &auth,
    ));
    assert!(b["alternatives"][0].is_array());

    // Every new field is validated, with quantserve's error shape on /translate.
    for (body, status) in [
        (
            json!({"q": "Hi", "source": "en", "target": "pt", "alternatives": -1}),
            400,
        ),
        (
            json!({"q": "Hi", "source": "en", "target": "pt", "alternatives": "x"}),
            400,
        ),
        (
            json!({"q": "Hi", "source": "en", "target": "pt", "alternatives": 99}),
            400,
        ),
        (
            json!({"q": "Hi", "source": "en", "target": "pt", "format": "xml"}),
            400,
        ),
        (
            json!({"q": "Hi", "source": "en", "target": "pt", "api_key": ["k"]}),
            400,
        ),
        (json!({"q": "Hi", "source": "xx", "target": "pt"}), 400),
        (json!({"source": "en", "target": "pt"}), 400),
    ] {
        let r = json_post(addr, "/translate", &body, &auth);
        assert_eq!(
            r.status,
            status,
            "{body}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert!(!r.json()["error"].as_str().unwrap().is_empty(), "{body}");
        assert!(!r.code().is_empty(), "{body}");
    }
    let r = request(
        addr,
        "POST",
        "/translate",
        &[("content-type", "application/json")],
        b"[1, 2]",
    );
    assert_eq!(r.status, 400);
    // The query string is read too, as LibreTranslate reads request.values.
    let r = request(
        addr,
        "POST",
        "/translate?q=Thank+you.&source=en&target=pt&api_key=lt-key",
        &[("content-type", "application/x-www-form-urlencoded")],
        b"",
    );
    assert!(
        ok(&r)["translatedText"]
            .as_str()
            .unwrap()
            .contains("Obrigado")
    );
}

#[test]
fn files_and_frontend_settings() {
    let addr = shared();
    let boundary = "qsBOUNDARY";
    let multipart = |name: &str, content: &str, extra: &str| {
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"source\"\r\n\r\nen\r\n\
             --{boundary}\r\nContent-Disposition: form-data; name=\"target\"\r\n\r\npt\r\n\
             --{boundary}\r\nContent-Disposition: form-data; name=\"api_key\"\r\n\r\n{KEY}\r\n{extra}\
             --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n{content}\r\n--{boundary}--\r\n"
        )
    };
    let ct = format!("multipart/form-data; boundary={boundary}");
    let upload = |name: &str, content: &str| {
        request(
            addr,
            "POST",
            "/translate_file",
            &[("content-type", ct.as_str())],
            multipart(name, content, "").as_bytes(),
        )
    };
    let r = upload("notes.txt", &format!("{HOW_ARE_YOU}\n\nThank you."));
    let url = ok(&r)["translatedFileUrl"].as_str().unwrap().to_string();
    assert!(
        url.starts_with("http://test/download_file/") && url.ends_with(".notes_pt.txt"),
        "{url}"
    );
    let path = &url["http://test".len()..];
    let d = get(addr, path);
    assert_eq!(d.status, 200);
    assert_eq!(
        d.header("content-disposition"),
        Some("attachment; filename=\"notes_pt.txt\"")
    );
    let text = String::from_utf8(d.body).unwrap();
    assert!(text.starts_with(&format!("{HOW_ARE_YOU_PT}\n\n")), "{text}");

    let r = upload(
        "page.html",
        "<html><body><h1>Thank you.</h1><script>var x = 'Thank you.';</script></body></html>",
    );
    let url = ok(&r)["translatedFileUrl"].as_str().unwrap().to_string();
    let html = String::from_utf8(get(addr, &url["http://test".len()..]).body).unwrap();
    assert!(
        html.contains("<script>var x = 'Thank you.';</script>")
            && !html.contains("<h1>Thank you.</h1>"),
        "{html}"
    );

    assert_eq!(
        lt_error(&upload("slides.pptx", "x"), 400),
        "Invalid request: file format not supported"
    );
    assert_eq!(
        lt_error(&upload("", "x"), 400),
        "Invalid request: empty file"
    );
    assert_eq!(
        lt_error(&get(addr, "/download_file/..%2F..%2Fetc%2Fpasswd"), 400),
        "Invalid filename"
    );
    assert_eq!(get(addr, "/download_file/0000.missing_pt.txt").status, 404);

    let s = ok(&get(addr, "/frontend/settings"));
    assert_eq!(s["keyRequired"], true);
    assert_eq!(s["language"]["source"]["code"], "auto");
    assert!(s["charLimit"].as_u64().unwrap() > 0);
    assert_eq!(s["supportedFilesFormat"], json!([".txt", ".html"]));
    // GET /health (LibreTranslate's and TEI's).
    assert_eq!(ok(&get(addr, "/health"))["status"], "ok");
}

#[test]
fn compatibility_off_keeps_the_old_contract() {
    // Without [libretranslate] enabled, /translate answers as before: 422 for auto, html and
    // unsupported pairs; the rest of the API is there all the same.
    let mut cfg = config();
    cfg.libretranslate.enabled = false;
    cfg.server.api_key = None;
    cfg.models.remove("pt-en");
    let server = start(cfg);
    let addr = server.addr();
    for body in [
        json!({"q": "Hi", "source": "auto", "target": "pt"}),
        json!({"q": "Hi", "source": "en", "target": "pt", "format": "html"}),
        json!({"q": "Hi", "source": "en", "target": "de"}),
    ] {
        let r = post(addr, "/translate", &body);
        assert_eq!(
            (r.status, r.code()),
            (422, "unsupported".to_string()),
            "{body}"
        );
    }
    let b = ok(&form_post(
        addr,
        "/translate",
        "q=Thank+you.&source=en&target=pt-BR&alternatives=1",
    ));
    assert!(b["translatedText"].as_str().unwrap().contains("Obrigado"));
    assert!(b["alternatives"].is_array());
    server.shutdown();
    server.wait().unwrap();
}
