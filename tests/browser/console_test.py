"""The web console in a real browser (headless Chromium through chromedriver and Selenium).

Run by tests/console_browser.rs against a real server:
    console_test.py BASE_URL API_KEY ADMIN_KEY SCREENSHOT_DIR
Types a sentence, translates it, compares the variants, classifies and gives feedback, operates
a variant from the Variants tab, watches the A/B charts render, and looks at the page at phone
width. Writes screenshots to SCREENSHOT_DIR and prints one JSON report line (what the page
showed) for the Rust test to check against the server. Fails (exit 1) on any JavaScript error
or console error the page logged.
"""

import json
import os
import shutil
import sys
import time
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import Select, WebDriverWait

BASE, API_KEY, ADMIN_KEY, SHOTS = sys.argv[1:5]
WAIT = 180  # seconds: inference on a busy 2-core CI machine can be slow


def browser():
    opts = webdriver.ChromeOptions()
    opts.binary_location = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,1000", "--force-device-scale-factor=1", "--lang=en-US"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver_path = os.environ.get("CHROMEDRIVER") or shutil.which("chromedriver") or "/usr/bin/chromedriver"
    return webdriver.Chrome(service=Service(executable_path=driver_path), options=opts)


def classify(text):
    """A classify request straight to the server (not through the page), as other clients send."""
    req = urllib.request.Request(
        BASE + "/v1/classify", data=json.dumps({"inputs": text, "model": "sentiment"}).encode(),
        headers={"Content-Type": "application/json", "Authorization": "Bearer " + API_KEY})
    with urllib.request.urlopen(req, timeout=WAIT) as r:
        assert r.status == 200, r.status


def shot(d, name):
    os.makedirs(SHOTS, exist_ok=True)
    d.save_screenshot(os.path.join(SHOTS, name))


def main():
    d = browser()
    wait = WebDriverWait(d, WAIT)
    report = {}
    logs = []
    try:
        d.get(BASE + "/")
        assert d.title == "quantserve console", d.title
        # The server wants an API key: until it is typed the listing is refused (401) and the
        # page says so.
        wait.until(lambda _: "API key" in d.find_element(By.ID, "status").text)
        report["asked_for_key"] = d.find_element(By.ID, "status").text
        key_typed_at = time.time() * 1000
        logs += d.get_log("browser")
        key = d.find_element(By.ID, "api-key")
        key.send_keys(API_KEY)
        key.send_keys(Keys.TAB)  # fires `change`: the page lists the models again
        wait.until(lambda _: any(o.get_attribute("value") == "en-pt" and o.is_enabled()
                                 for o in d.find_elements(By.CSS_SELECTOR, "#try-model option")))
        assert d.find_element(By.ID, "status").text == "", d.find_element(By.ID, "status").text

        # Try: translate with the routing's pick, keyboard only.
        Select(d.find_element(By.ID, "try-model")).select_by_value("en-pt")
        text = d.find_element(By.ID, "try-input")
        text.clear()
        text.send_keys("The weather is lovely today and the food was great.")
        text.send_keys(Keys.TAB)  # focus moves to the Run button
        assert d.switch_to.active_element.get_attribute("id") == "try-run"
        d.switch_to.active_element.send_keys(Keys.ENTER)
        out = wait.until(EC.visibility_of_element_located((By.ID, "single-output")))
        served = d.find_element(By.CSS_SELECTOR, "#try-result .hint").text
        report["translate"] = {"text": out.text, "served": served}
        shot(d, "1-try-translate.png")

        # Compare: every loaded variant side by side.
        d.find_element(By.ID, "try-compare").click()
        wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "#compare-result tbody tr")))
        rows = d.find_elements(By.CSS_SELECTOR, "#compare-result tbody tr")
        report["compare_translate"] = [
            {
                "variant": r.get_attribute("data-variant"),
                "output": r.find_element(By.CSS_SELECTOR, ".output-cell").text,
                "agreement": r.find_element(By.CSS_SELECTOR, ".agreement").text,
                "latency": r.find_element(By.CSS_SELECTOR, "td.num").text,
                "marked_words": len(r.find_elements(By.CSS_SELECTOR, "mark.add, del.gone")),
            }
            for r in rows
        ]
        shot(d, "2-compare-translate.png")

        # Classify, then tell the server whether the label was right (online accuracy).
        Select(d.find_element(By.ID, "try-model")).select_by_value("sentiment")
        text = d.find_element(By.ID, "try-input")
        text.clear()
        text.send_keys("A gorgeous, witty, seductive movie.")
        d.find_element(By.ID, "try-run").click()
        out = wait.until(EC.visibility_of_element_located((By.ID, "single-output")))
        wait.until(lambda _: "sentiment" in d.find_element(By.CSS_SELECTOR, "#try-result .hint").text)
        out = d.find_element(By.ID, "single-output")
        report["classify"] = out.text
        d.find_element(By.XPATH, "//button[normalize-space()='Right']").click()
        wait.until(lambda _: "Thanks" in d.find_element(By.ID, "try-result").text)
        d.find_element(By.ID, "try-compare").click()
        wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "#compare-result tbody tr")))
        report["compare_classify"] = [
            {"variant": r.get_attribute("data-variant"),
             "output": r.find_element(By.CSS_SELECTOR, ".output-cell").text,
             "agreement": r.find_element(By.CSS_SELECTOR, ".agreement").text}
            for r in d.find_elements(By.CSS_SELECTOR, "#compare-result tbody tr")
        ]
        shot(d, "3-compare-classify.png")
        # A few more requests so the A/B report has latencies for both split variants.
        for _ in range(6):
            d.find_element(By.ID, "try-run").click()
            wait.until(lambda _: "round trip" in d.find_element(By.ID, "try-result").text)

        # Variants: the table, then load and unload a variant with the admin key.
        d.find_element(By.ID, "tab-variants").click()
        wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "[data-model='sentiment'] tbody tr")))
        load_buttons = d.find_elements(By.CSS_SELECTOR, "[data-model='sentiment'] button")
        report["admin_buttons_disabled_without_key"] = all(not b.is_enabled() for b in load_buttons)
        d.find_element(By.ID, "admin-key").send_keys(ADMIN_KEY)

        def table(model):
            return [
                {c.get_attribute("data-label"): c.text for c in r.find_elements(By.CSS_SELECTOR, "td[data-label]")}
                for r in d.find_elements(By.CSS_SELECTOR, f"[data-model='{model}'] tbody tr")
            ]

        report["variants"] = {m: table(m) for m in ("sentiment", "en-pt")}
        card = d.find_element(By.CSS_SELECTOR, "[data-model='sentiment']")
        card.find_element(By.CSS_SELECTOR, "input[type='text']").send_keys("int4-kd")
        card.find_element(By.XPATH, ".//button[normalize-space()='Load' and not(@aria-label)]").click()
        wait.until(lambda _: "int4-kd: loaded" in d.find_element(By.ID, "status").text)
        row = "[data-model='sentiment'] tr[data-variant='int4-kd']"
        report["loaded"] = d.find_element(By.CSS_SELECTOR, row).text
        shot(d, "4-variants.png")
        d.find_element(By.CSS_SELECTOR, row + " button").click()  # Unload
        wait.until(lambda _: "int4-kd: unloaded" in d.find_element(By.ID, "status").text)
        report["unloaded"] = d.find_element(By.CSS_SELECTOR, row + " .badge").text

        # A/B: charts from the report, then over time from a few polls.
        d.find_element(By.ID, "tab-ab").click()
        Select(d.find_element(By.ID, "ab-model")).select_by_value("sentiment")
        wait.until(lambda _: len(d.find_elements(By.CSS_SELECTOR, "#ab-charts path.line")) >= 1)
        # Traffic while the page polls, so the lines over time move.
        for i in range(12):
            classify(f"Request {i}: a sharp, funny and moving film.")
            time.sleep(0.25)
        time.sleep(4.5)  # two more polls after the traffic
        # One script reads the charts at one instant: the page redraws them on every poll, and
        # elements found before a redraw are gone after it (stale references).
        report["ab"] = d.execute_script("""
            const q = (s) => Array.from(document.querySelectorAll(s));
            return {
              bars: q('#ab-charts rect.col').length,
              points: q('#ab-charts circle.point').length,
              lines: q('#ab-charts path.line').map((p) => p.getAttribute('data-points')),
              line_max: q('#ab-charts path.line').map((p) => parseFloat(p.getAttribute('data-max'))),
              empty_charts: q('#ab-charts svg.no-data').length,
              table: document.querySelector('#ab-body table.ab:not(#ab-verdicts)').innerText,
              verdicts: (() => {
                const el = document.getElementById('ab-verdicts');
                if (!el) return null;
                return el.tagName === 'TABLE' ? el.querySelectorAll('tbody tr').length : 0;
              })(),
              verdict_text: (document.getElementById('ab-verdicts') || {}).innerText || null,
            };""")
        shot(d, "5-ab.png")

        # A phone: the compare view at 390 px wide, without sideways scrolling.
        d.find_element(By.ID, "tab-try").click()
        d.set_window_size(390, 844)
        Select(d.find_element(By.ID, "try-model")).select_by_value("en-pt")
        d.find_element(By.ID, "try-compare").click()
        wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "#compare-result tbody tr")))
        report["phone_overflow_px"] = d.execute_script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth")
        shot(d, "6-phone-compare.png")
        logs += d.get_log("browser")
    finally:
        d.quit()

    # Any error the page logged fails the run, except the refusals the page met before the key
    # was typed (the browser logs those 401s itself).
    errors = [
        e for e in logs
        if e["level"] == "SEVERE"
        and not (e.get("source") == "network" and " 401 " in e["message"] and e["timestamp"] <= key_typed_at)
    ]
    report["console_errors"] = [e["message"] for e in errors]
    report["console_entries"] = len(logs)
    print(json.dumps(report))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
