// The console's behaviour: tabs, the Try tab (one variant, or every variant compared), the
// Variants tab (status and admin actions) and the A/B tab (charts over polled reports). Talks
// only to this server's own API; keys live in the inputs and this script's memory, never in
// storage or cookies.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const state = {
    models: [],
    // Variants seen per model, so an unloaded one can be loaded again from the page.
    seen: {},
    // A/B reports polled per model: [{t, report}].
    history: {},
    pollTimer: null,
    lastExample: null,
  };
  const HISTORY = 300;
  const EXAMPLES = {
    en: "The weather is lovely today and the food was great.",
    pt: "O tempo está ótimo hoje e a comida estava deliciosa.",
    classify: "This film was a complete waste of time, the plot made no sense.",
    embed: "A quantized model answers almost exactly like the full one.",
  };

  // ---------- small helpers ----------
  function h(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v == null || v === false) continue;
      if (k === "class") e.className = v;
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else if (k === "text") e.textContent = v;
      else e.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children.flat()) if (c != null) e.append(c instanceof Node ? c : String(c));
    return e;
  }

  function status(message, isError) {
    const s = $("status");
    s.textContent = message || "";
    s.className = isError ? "error" : "";
  }

  function fmtBytes(b) {
    if (b == null) return "–";
    return b >= 1e6 ? (b / 1e6).toFixed(1) + " MB" : (b / 1e3).toFixed(0) + " kB";
  }

  const ms = (s) => (s == null ? null : s * 1000);

  // A call to this server's API; throws an Error with the server's message on failure.
  async function api(path, opts) {
    opts = opts || {};
    const headers = { Accept: "application/json" };
    const key = opts.admin ? $("admin-key").value.trim() || $("api-key").value.trim() : $("api-key").value.trim();
    if (key) headers.Authorization = "Bearer " + key;
    if (opts.body !== undefined) headers["Content-Type"] = "application/json";
    const started = performance.now();
    const resp = await fetch(path, {
      method: opts.method || (opts.body !== undefined ? "POST" : "GET"),
      headers,
      body: opts.body !== undefined ? JSON.stringify(opts.body) : undefined,
      credentials: "omit",
      cache: "no-store",
    });
    const elapsed = performance.now() - started;
    let body = null;
    try {
      body = await resp.json();
    } catch (_) {
      body = null;
    }
    if (!resp.ok) {
      let msg = body && body.error ? (typeof body.error === "string" ? body.error : body.error.message) : resp.statusText;
      if (resp.status === 401) msg += opts.admin ? " (type the admin key)" : " (type the API key at the top)";
      const err = new Error(`${resp.status}: ${msg}`);
      err.status = resp.status;
      throw err;
    }
    return { body, headers: resp.headers, elapsed };
  }

  // ---------- tabs ----------
  const tabs = ["try", "variants", "ab"];
  function showTab(name, focus) {
    for (const t of tabs) {
      const on = t === name;
      const tab = $("tab-" + t);
      tab.setAttribute("aria-selected", on ? "true" : "false");
      tab.tabIndex = on ? 0 : -1;
      $("panel-" + t).hidden = !on;
      if (on && focus) tab.focus();
    }
    if (name === "variants") loadModels().then(renderVariants);
    if (name === "ab") refreshAb();
    schedulePoll();
  }
  for (const t of tabs) {
    $("tab-" + t).addEventListener("click", () => showTab(t));
    $("tab-" + t).addEventListener("keydown", (e) => {
      const i = tabs.indexOf(t);
      const next = { ArrowRight: i + 1, ArrowLeft: i - 1, Home: 0, End: tabs.length - 1 }[e.key];
      if (next === undefined) return;
      e.preventDefault();
      showTab(tabs[(next + tabs.length) % tabs.length], true);
    });
  }

  // ---------- the model listing ----------
  // Whether the last listing was refused for want of a key: polling stops until one is typed.
  let needsKey = false;

  async function loadModels() {
    try {
      const { body } = await api("/v1/models");
      needsKey = false;
      state.models = body.models || [];
      for (const m of state.models) {
        const seen = (state.seen[m.name] = state.seen[m.name] || new Set());
        m.variants.forEach((v) => seen.add(v.name));
      }
      fillModelSelects();
      const shown = $("status").textContent;
      if (shown.startsWith("Loading the model list") || shown.startsWith("Could not list")) status("");
    } catch (e) {
      needsKey = e.status === 401;
      status("Could not list the models: " + e.message, true);
    }
  }

  const ready = (m) => m.variants.filter((v) => v.status === "ready");

  function fillModelSelects() {
    for (const id of ["try-model", "ab-model"]) {
      const sel = $(id);
      const keep = sel.value;
      sel.replaceChildren(
        ...state.models.map((m) =>
          h("option", { value: m.name, disabled: ready(m).length === 0 && id === "try-model" },
            `${m.name} (${m.task || "loading"}, ${ready(m).length} of ${m.variants.length} variants ready)`)
        )
      );
      if (keep && state.models.some((m) => m.name === keep)) sel.value = keep;
      else {
        const first = state.models.find((m) => ready(m).length > 0);
        if (first) sel.value = first.name;
      }
    }
    fillVariantSelect();
  }

  function currentModel(id) {
    return state.models.find((m) => m.name === $(id || "try-model").value);
  }

  function fillVariantSelect() {
    const m = currentModel();
    const sel = $("try-variant");
    const keep = sel.value;
    sel.replaceChildren(h("option", { value: "" }, "routing's pick"));
    if (!m) return;
    for (const v of ready(m)) sel.append(h("option", { value: v.name }, `${v.name} (${v.scheme})`));
    if ([...sel.options].some((o) => o.value === keep)) sel.value = keep;
    // An example matching the task, unless the user typed their own text.
    const input = $("try-input");
    const lang = m.name.split("-")[0];
    const example = m.task === "translate" ? EXAMPLES[lang] || EXAMPLES.en : EXAMPLES[m.task] || EXAMPLES.en;
    if (input.value === "" || Object.values(EXAMPLES).includes(input.value)) input.value = example;
    $("try-compare").disabled = ready(m).length < 1;
  }
  $("try-model").addEventListener("change", fillVariantSelect);

  // ---------- Try: one variant ----------
  $("try-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const m = currentModel();
    const text = $("try-input").value;
    if (!m || !text.trim()) return status("Choose a model and type some text.", true);
    const variant = $("try-variant").value || undefined;
    const out = $("try-result");
    out.replaceChildren(h("p", { class: "hint" }, "Running…"));
    status("");
    try {
      let result;
      if (m.task === "translate") {
        const r = await api("/v1/translate", { body: { q: text, model: m.name, variant } });
        result = [h("p", { class: "output", id: "single-output" }, r.body.translatedText)];
        result.meta = r;
      } else if (m.task === "classify") {
        const r = await api("/v1/classify", { body: { inputs: text, model: m.name, variant, top_k: 5 } });
        const res = r.body.results[0];
        result = [
          h("p", { class: "output", id: "single-output" }, h("strong", {}, res.label), ` ${res.score.toFixed(4)}`),
          scoreBars(res.scores),
          feedbackButtons(r.headers.get("x-request-id"), res.label),
        ];
        result.meta = r;
      } else if (m.task === "embed") {
        const r = await api("/embed", { body: { inputs: text, model: m.name, variant } });
        const v = r.body[0];
        result = [h("p", { class: "output", id: "single-output" }, vectorSummary(v.length, norm(v), v.slice(0, 8)))];
        result.meta = r;
      } else {
        throw new Error(`model ${m.name} has no task yet (still loading?)`);
      }
      const served = result.meta.headers.get("x-quantserve-variant") || "?";
      out.replaceChildren(
        h("div", { class: "result" },
          h("p", { class: "hint" }, `${m.name} / ${served} · ${result.meta.elapsed.toFixed(1)} ms round trip`),
          ...result)
      );
    } catch (err) {
      out.replaceChildren(h("p", { class: "error-text" }, err.message));
    }
  });

  const norm = (v) => Math.sqrt(v.reduce((a, x) => a + x * x, 0));
  function vectorSummary(dims, n, head) {
    return `${dims} dimensions, norm ${n.toFixed(3)}, first values [${head.map((x) => x.toFixed(3)).join(", ")}, …]`;
  }

  function scoreBars(scores) {
    return h("table", { class: "scores" },
      h("tbody", {}, ...(scores || []).map((s) =>
        h("tr", {},
          h("td", {}, s.label),
          h("td", { class: "num" }, s.score.toFixed(4)),
          h("td", {}, percentBar(s.score))))));
  }

  function percentBar(fraction) {
    const bar = h("div", { class: "bar", role: "presentation" });
    const fill = h("span");
    fill.style.width = `${Math.max(0, Math.min(1, fraction)) * 100}%`;
    bar.append(fill);
    return bar;
  }

  // Ground truth for the A/B report's online accuracy: was the served label right?
  function feedbackButtons(requestId, label) {
    if (!requestId) return null;
    const note = h("span", { class: "hint" });
    const send = async (correct) => {
      try {
        await api("/v1/feedback", { body: { request_id: requestId, correct } });
        note.textContent = ` Thanks: recorded as ${correct ? "right" : "wrong"} for the A/B report.`;
      } catch (e) {
        note.textContent = " " + e.message;
      }
    };
    return h("p", { class: "actions" },
      h("span", {}, `Was “${label}” right?`),
      h("button", { type: "button", class: "small secondary", onclick: () => send(true) }, "Right"),
      h("button", { type: "button", class: "small secondary", onclick: () => send(false) }, "Wrong"),
      note);
  }

  // ---------- Try: compare every variant ----------
  $("try-compare").addEventListener("click", async () => {
    const m = currentModel();
    const text = $("try-input").value;
    if (!m || !text.trim()) return status("Choose a model and type some text.", true);
    const out = $("try-result");
    out.replaceChildren(h("p", { class: "hint" }, `Running on ${ready(m).length} variants, one after another…`));
    status("");
    try {
      const { body } = await api("/v1/compare", { body: { model: m.name, input: text } });
      out.replaceChildren(compareTable(body));
    } catch (err) {
      out.replaceChildren(h("p", { class: "error-text" }, err.message));
    }
  });

  function compareTable(c) {
    const ref = c.results.find((r) => r.variant === c.reference);
    const maxLatency = Math.max(...c.results.map((r) => r.latency_ms), 0.001);
    const rows = c.results.map((r) => {
      const isRef = r.variant === c.reference;
      return h("tr", { "data-variant": r.variant },
        h("td", { "data-label": "variant" },
          h("strong", {}, r.variant), " ", isRef ? h("span", { class: "badge ref" }, "reference") : null,
          h("div", { class: "hint" }, `${r.scheme}${r.bits ? `, ${r.bits} bits` : ""}`)),
        h("td", { "data-label": "output", class: "output-cell" },
          r.error ? h("span", { class: "error-text" }, r.error) : outputView(c.task, r, isRef ? null : ref)),
        h("td", { "data-label": "latency", class: "num" }, `${r.latency_ms.toFixed(1)} ms`, percentBar(r.latency_ms / maxLatency)),
        h("td", { "data-label": "agreement", class: "agreement" }, agreementView(r, isRef)));
    });
    return h("div", { class: "result", id: "compare-result" },
      h("p", { class: "hint" },
        `${c.model}: the same input on ${c.results.length} variants, run one after another; ` +
        (c.reference ? `compared with ${c.reference}. ` : "the reference variant is not loaded, so nothing is compared. ") +
        (c.task === "translate" ? "Words not in the reference's translation are marked, its missing words struck through." : "")),
      h("div", { class: "table-wrap" },
        h("table", { class: "cards compare" },
          h("thead", {}, h("tr", {},
            h("th", {}, "variant"), h("th", {}, "output"), h("th", { class: "num" }, "latency"), h("th", {}, "agreement"))),
          h("tbody", {}, ...rows))));
  }

  function outputView(task, r, ref) {
    const o = r.output;
    if (task === "translate") {
      if (!ref || !ref.output) return h("span", { class: "output" }, o.text);
      return h("span", { class: "output" }, ...wordDiff(ref.output.text, o.text));
    }
    if (task === "classify") {
      const differs = ref && ref.output && ref.output.label !== o.label;
      return h("span", {},
        differs ? h("mark", { class: "add" }, o.label) : h("strong", {}, o.label),
        ` p = ${o.score.toFixed(4)}`,
        ref && ref.output ? h("span", { class: "hint" }, ` (reference ${ref.output.score.toFixed(4)})`) : null);
    }
    return h("span", {}, vectorSummary(o.dims, o.norm, o.head));
  }

  function agreementView(r, isRef) {
    const a = r.agreement;
    if (isRef) return h("span", { class: "hint" }, "—");
    if (!a) return h("span", { class: "hint" }, "not compared");
    if (a.kind === "text") {
      return h("span", {},
        `chrF ${a.chrf.toFixed(1)} `,
        h("span", { class: "badge " + (a.exact ? "good" : "bad") }, a.exact ? "identical" : "differs"));
    }
    if (a.kind === "classes") {
      return h("span", {},
        h("span", { class: "badge " + (a.agree ? "good" : "bad") }, a.agree ? "same label" : "other label"),
        h("div", { class: "hint" }, `mean |Δp| ${a.mean_abs_diff.toFixed(4)} · JS ${a.js_divergence.toFixed(4)} bits`));
    }
    return h("span", {},
      `cosine ${a.cosine.toFixed(5)} `,
      h("span", { class: "badge " + (a.cosine >= 0.99 ? "good" : "bad") }, a.cosine >= 0.99 ? "agrees" : "drifts"));
  }

  // Word-level diff (longest common subsequence): the variant's words, with words the reference
  // lacks marked and the reference's missing words struck through where they would be.
  function wordDiff(refText, text) {
    const a = refText.split(/\s+/).filter(Boolean);
    const b = text.split(/\s+/).filter(Boolean);
    if (a.length * b.length > 250000) return [text];
    const n = a.length, m = b.length;
    const L = Array.from({ length: n + 1 }, () => new Uint16Array(m + 1));
    for (let i = n - 1; i >= 0; i--)
      for (let j = m - 1; j >= 0; j--)
        L[i][j] = a[i] === b[j] ? L[i + 1][j + 1] + 1 : Math.max(L[i + 1][j], L[i][j + 1]);
    const out = [];
    let i = 0, j = 0;
    const word = (node) => { if (out.length) out.push(" "); out.push(node); };
    while (i < n || j < m) {
      if (i < n && j < m && a[i] === b[j]) { word(b[j]); i++; j++; }
      else if (j < m && (i === n || L[i][j + 1] >= L[i + 1][j])) { word(h("mark", { class: "add" }, b[j])); j++; }
      else { word(h("del", { class: "gone" }, a[i])); i++; }
    }
    return out;
  }

  // ---------- Variants ----------
  $("variants-refresh").addEventListener("click", () => loadModels().then(renderVariants));
  $("admin-key").addEventListener("input", () => renderVariants());

  function renderVariants() {
    const body = $("variants-body");
    const canAdmin = $("admin-key").value.trim() !== "";
    body.replaceChildren(...state.models.map((m) => modelCard(m, canAdmin)));
    if (!state.models.length) body.append(h("p", { class: "hint" }, "No models configured."));
  }

  function selfCheckText(sc) {
    if (!sc) return "reference";
    const pass = sc.agreement >= sc.min_agreement;
    return h("span", {},
      `${sc.measure} ${sc.agreement.toFixed(3)} `,
      h("span", { class: "badge " + (pass ? "good" : "bad") }, `min ${sc.min_agreement}`),
      h("div", { class: "hint" }, `${sc.samples} texts vs ${sc.reference}`));
  }

  function modelCard(m, canAdmin) {
    const listed = new Set(m.variants.map((v) => v.name));
    const gone = [...(state.seen[m.name] || [])].filter((v) => !listed.has(v));
    const rows = m.variants.map((v) => {
      const isReady = v.status === "ready";
      const actions = h("td", { "data-label": "actions" },
        isReady
          ? h("button", { type: "button", class: "small secondary", disabled: !canAdmin, "aria-label": `Unload ${m.name} ${v.name}`,
              onclick: () => adminAction(m.name, v.name, "unload") }, "Unload")
          : h("button", { type: "button", class: "small", disabled: !canAdmin || v.status === "loading", "aria-label": `Load ${m.name} ${v.name}`,
              onclick: () => adminAction(m.name, v.name, "load") }, "Load"));
      return h("tr", { "data-variant": v.name },
        h("td", { "data-label": "variant" }, h("strong", {}, v.name),
          v.name === m.reference_variant ? h("span", { class: "badge ref" }, " reference") : null),
        h("td", { "data-label": "scheme" }, v.scheme),
        h("td", { "data-label": "bits", class: "num" }, v.bits == null ? "–" : v.bits),
        h("td", { "data-label": "size", class: "num" }, fmtBytes(v.bytes)),
        h("td", { "data-label": "self-check" }, v.status === "ready" ? selfCheckText(v.self_check) : "–"),
        h("td", { "data-label": "status", class: "status" },
          h("span", { class: "badge " + (isReady ? "good" : v.status === "failed" ? "bad" : "") }, v.status),
          v.error || v.last_error ? h("div", { class: "error-text" }, v.error || v.last_error) : null),
        h("td", { "data-label": "weight", class: "num" }, v.weight),
        h("td", { "data-label": "queue", class: "num" }, v.queue_depth),
        actions);
    });
    for (const name of gone) {
      rows.push(h("tr", { "data-variant": name },
        h("td", { "data-label": "variant" }, h("strong", {}, name)),
        h("td", {}, "–"), h("td", {}, ""), h("td", {}, ""), h("td", {}, ""),
        h("td", { "data-label": "status" }, h("span", { class: "badge" }, "unloaded")),
        h("td", {}, ""), h("td", {}, ""),
        h("td", { "data-label": "actions" },
          h("button", { type: "button", class: "small", disabled: !canAdmin, "aria-label": `Load ${m.name} ${name}`,
            onclick: () => adminAction(m.name, name, "load") }, "Load"))));
    }
    const loadInput = h("input", { type: "text", placeholder: "e.g. int4-g64", "aria-label": `Variant of ${m.name} to load`, size: 12 });
    return h("div", { class: "model", "data-model": m.name },
      h("h2", {}, m.name),
      h("p", { class: "hint" },
        `task ${m.task || "?"} · default ${m.default_variant} · reference ${m.reference_variant}` +
        (m.routing.shadow ? ` · shadow on ${m.routing.shadow.reference} at ${m.routing.shadow.sample_rate}` : "")),
      h("div", { class: "table-wrap" },
        h("table", { class: "cards variants" },
          h("thead", {}, h("tr", {}, ...["variant", "scheme", "bits", "size", "self-check", "status", "weight", "queue", ""].map((t, i) =>
            h("th", { class: [2, 3, 6, 7].includes(i) ? "num" : null }, t)))),
          h("tbody", {}, ...rows))),
      routingForm(m, canAdmin),
      h("div", { class: "routing" },
        h("label", {}, "Load another variant", loadInput),
        h("button", { type: "button", class: "small", disabled: !canAdmin,
          onclick: () => loadInput.value.trim() && adminAction(m.name, loadInput.value.trim(), "load") }, "Load")));
  }

  function routingForm(m, canAdmin) {
    const readyNames = ready(m).map((v) => v.name);
    const weights = readyNames.map((name) => {
      const input = h("input", { type: "number", min: 0, max: 1000, step: 1, value: m.routing.split[name] || 0, "data-variant": name });
      return { name, input, label: h("label", {}, `${name} weight`, input) };
    });
    const shadowRef = h("select", {},
      h("option", { value: "" }, "off"), ...readyNames.map((n) => h("option", { value: n }, n)));
    shadowRef.value = m.routing.shadow ? m.routing.shadow.reference : "";
    const rate = h("input", { type: "number", min: 0, max: 1, step: 0.05, value: m.routing.shadow ? m.routing.shadow.sample_rate : 0.1 });
    const apply = async () => {
      const split = {};
      for (const w of weights) {
        const n = Number(w.input.value);
        if (n > 0) split[w.name] = n;
      }
      const routing = Object.assign({}, m.routing, {
        split,
        shadow: shadowRef.value ? { reference: shadowRef.value, sample_rate: Number(rate.value) } : null,
      });
      try {
        await api(`/admin/models/${encodeURIComponent(m.name)}/routing`, { method: "PUT", body: routing, admin: true });
        status(`Routing of ${m.name} updated.`);
      } catch (e) {
        status(`Routing of ${m.name}: ${e.message}`, true);
      }
      await loadModels();
      renderVariants();
    };
    return h("div", { class: "routing" },
      ...weights.map((w) => w.label),
      h("label", {}, "shadow reference", shadowRef),
      h("label", {}, "shadow sample rate", rate),
      h("button", { type: "button", class: "small", disabled: !canAdmin, onclick: apply }, "Apply routing"));
  }

  async function adminAction(model, variant, verb) {
    status(`${verb === "load" ? "Loading" : "Unloading"} ${model}/${variant}…`);
    try {
      await api(`/admin/models/${encodeURIComponent(model)}/variants/${encodeURIComponent(variant)}:${verb}`, { method: "POST", admin: true });
      (state.seen[model] = state.seen[model] || new Set()).add(variant);
      status(`${model}/${variant}: ${verb === "load" ? "loaded, checked and active" : "unloaded"}.`);
    } catch (e) {
      status(`${model}/${variant}: ${e.message}`, true);
    }
    await loadModels();
    renderVariants();
  }

  // ---------- A/B ----------
  $("ab-model").addEventListener("change", () => refreshAb());
  $("ab-refresh").addEventListener("click", () => refreshAb());
  $("ab-poll").addEventListener("change", schedulePoll);

  function schedulePoll() {
    clearInterval(state.pollTimer);
    state.pollTimer = null;
    if (!$("panel-ab").hidden && $("ab-poll").checked) state.pollTimer = setInterval(refreshAb, 2000);
  }

  async function refreshAb() {
    const model = $("ab-model").value;
    if (!model) return;
    try {
      const { body } = await api(`/v1/models/${encodeURIComponent(model)}/ab?format=json`);
      const hist = (state.history[model] = state.history[model] || []);
      hist.push({ t: Date.now(), report: body });
      if (hist.length > HISTORY) hist.shift();
      renderAb(body, hist);
    } catch (e) {
      $("ab-body").replaceChildren(h("p", { class: "error-text" }, e.message));
    }
  }

  function figure(caption, chart, names) {
    return h("figure", {}, h("figcaption", {}, caption), chart, names ? Charts.legend(names) : null);
  }

  function renderAb(report, hist) {
    const vs = report.variants;
    const names = vs.map((v) => v.variant);
    const latency = Charts.bars(
      vs.map((v) => ({ label: v.variant, values: [ms(v.latency_p50), ms(v.latency_p95), ms(v.latency_p99)] })),
      ["p50", "p95", "p99"],
      { label: "Latency percentiles per variant, in milliseconds", unit: "ms", emptyText: "no requests yet" });
    const interval = (p) => (p ? { value: p.value, lo: p.ci95[0], hi: p.ci95[1], n: p.n } : { value: null });
    const shadow = Charts.intervals(
      vs.filter((v) => v.variant !== report.reference_variant).map((v) => Object.assign({ label: v.variant }, interval(v.shadow_agreement))),
      { label: "Shadow agreement with the reference, with 95% intervals", emptyText: report.routing.shadow ? "no shadowed requests yet" : "shadow traffic is off (Variants tab)" });
    const accuracy = Charts.intervals(
      vs.map((v) => Object.assign({ label: v.variant }, interval(v.online_accuracy))),
      { label: "Online accuracy from feedback, with 95% intervals", emptyText: "no feedback yet (Right/Wrong after a classification)" });
    // Over time, from the polled counters: p50 latency, and requests per second between polls.
    const series = (f) => names.map((name) => ({
      name,
      points: hist.map((s, i) => ({ t: s.t, v: f(s, i, name) })),
    }));
    const find = (s, name) => s.report.variants.find((v) => v.variant === name);
    const p50 = series((s, _i, name) => { const v = find(s, name); return v ? ms(v.latency_p50) : null; });
    const rate = series((s, i, name) => {
      if (i === 0) return null;
      const a = find(hist[i - 1], name), b = find(s, name);
      if (!a || !b) return null;
      return Math.max(0, (b.requests - a.requests) / ((s.t - hist[i - 1].t) / 1000));
    });
    const legendNames = names;
    const leader = report.leader
      ? `Ahead on ${report.leader.metric}: ${report.leader.variant} over ${report.leader.over}, confidence ${report.leader.confidence.toFixed(3)}.`
      : "Ahead: not known yet (needs feedback for two variants).";
    $("ab-body").replaceChildren(
      h("p", { class: "hint" },
        `Reference ${report.reference_variant}; split ${Object.entries(report.routing.split).map(([k, v]) => `${k} ${v}`).join(", ") || "default variant only"}; ` +
        `shadow ${report.routing.shadow ? `on ${report.routing.shadow.reference} at ${report.routing.shadow.sample_rate}` : "off"}. ${leader}`),
      h("div", { class: "charts", id: "ab-charts" },
        figure("Latency percentiles (ms)", latency, ["p50", "p95", "p99"]),
        figure("Shadow agreement with the reference (95% CI)", shadow, null),
        figure("Online accuracy (95% CI)", accuracy, null),
        figure("p50 latency over time (ms)", Charts.lines(p50, { label: "p50 latency over time per variant", unit: "ms" }), legendNames),
        figure("Requests per second over time", Charts.lines(rate, { label: "Requests per second per variant", unit: "req/s" }), legendNames)),
      verdicts(report.comparisons || []),
      h("div", { class: "table-wrap" },
        h("table", { class: "cards ab" },
          h("thead", {}, h("tr", {}, ...["variant", "requests", "errors", "p50 ms", "p95 ms", "p99 ms", "shadow agreement", "online accuracy"].map((t) => h("th", {}, t)))),
          h("tbody", {}, ...vs.map((v) => h("tr", {},
            h("td", { "data-label": "variant" }, v.variant),
            h("td", { "data-label": "requests", class: "num" }, v.requests),
            h("td", { "data-label": "errors", class: "num" }, v.errors),
            ...[v.latency_p50, v.latency_p95, v.latency_p99].map((x, i) =>
              h("td", { "data-label": ["p50", "p95", "p99"][i] + " ms", class: "num" }, x == null ? "–" : ms(x).toFixed(1))),
            h("td", { "data-label": "shadow agreement" }, propText(v.shadow_agreement)),
            h("td", { "data-label": "online accuracy" }, propText(v.online_accuracy))))))));
  }

  // The experiment's verdicts: each variant against the reference (non-inferiority within the
  // margin, always-valid intervals, Holm-adjusted), as /ab computes them.
  function verdicts(comparisons) {
    if (!comparisons.length) {
      return h("p", { class: "hint", id: "ab-verdicts" },
        "Verdicts: none yet (they need shadow comparisons or feedback on two variants).");
    }
    const pct = (x) => (100 * x).toFixed(2);
    return h("div", { class: "table-wrap" },
      h("table", { class: "cards ab", id: "ab-verdicts" },
        h("caption", {}, "Verdicts against the reference"),
        h("thead", {}, h("tr", {}, ...["variant", "metric", "difference (pp)", "interval (pp)", "margin (pp)", "trials", "verdict"].map((t) => h("th", {}, t)))),
        h("tbody", {}, ...comparisons.map((c) => h("tr", {},
          h("td", { "data-label": "variant" }, `${c.variant} vs ${c.reference}`),
          h("td", { "data-label": "metric" }, String(c.metric)),
          // A withheld verdict's estimate is not worth reading (too little data).
          h("td", { "data-label": "difference (pp)", class: "num" }, c.withheld ? "–" : pct(c.difference)),
          h("td", { "data-label": "interval (pp)", class: "num" }, c.withheld ? "–" : `[${pct(c.ci_low)}, ${pct(c.ci_high)}]`),
          h("td", { "data-label": "margin (pp)", class: "num" }, pct(c.margin)),
          h("td", { "data-label": "trials", class: "num" }, `${c.trials} / ${c.reference_trials}`),
          h("td", { "data-label": "verdict" }, c.withheld ? `${c.verdict} (withheld: ${c.withheld})` : String(c.verdict)))))));
  }

  function propText(p) {
    return p ? `${p.value.toFixed(3)} [${p.ci95[0].toFixed(3)}, ${p.ci95[1].toFixed(3)}] n=${p.n}` : "–";
  }

  // ---------- start ----------
  status("Loading the model list…");
  loadModels();
  $("api-key").addEventListener("change", () => loadModels());
  // Models load in the background after start: refresh the listing until every one settled.
  // (Not while the server wants a key nobody typed: the key's change event lists them again.)
  const settle = setInterval(async () => {
    if (state.models.length && state.models.every((m) => m.variants.every((v) => v.status !== "loading"))) {
      clearInterval(settle);
      return;
    }
    if (!needsKey) await loadModels();
  }, 3000);
})();
