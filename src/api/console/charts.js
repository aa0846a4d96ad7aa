// Small inline-SVG charts for the A/B tab: grouped bars, estimates with their intervals, and
// lines over time. Drawn with the DOM (no library); every chart is an <svg role="img"> with a
// text description, and its marks carry a <title> with the exact value.
"use strict";

const Charts = (() => {
  const NS = "http://www.w3.org/2000/svg";
  const W = 360;

  function el(name, attrs, parent) {
    const e = document.createElementNS(NS, name);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    if (parent) parent.appendChild(e);
    return e;
  }

  function text(parent, x, y, s, anchor) {
    const t = el("text", { x, y, "text-anchor": anchor || "start" }, parent);
    t.textContent = s;
    return t;
  }

  function tip(mark, s) {
    el("title", {}, mark).textContent = s;
  }

  function svg(height, label) {
    const s = el("svg", { viewBox: `0 0 ${W} ${height}`, class: "chart", role: "img", "aria-label": label });
    el("title", {}, s).textContent = label;
    return s;
  }

  function empty(label, why) {
    const s = svg(60, label);
    s.classList.add("no-data");
    text(s, W / 2, 35, why || "no data yet", "middle").setAttribute("class", "empty");
    return s;
  }

  // A "nice" upper bound for an axis: 1, 2 or 5 times a power of ten.
  function niceMax(v) {
    if (!(v > 0)) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 5, 10]) if (v <= m * p) return m * p;
    return 10 * p;
  }

  function fmt(v) {
    if (v === 0) return "0";
    const a = Math.abs(v);
    return a >= 100 ? v.toFixed(0) : a >= 10 ? v.toFixed(1) : a >= 1 ? v.toFixed(2) : v.toFixed(3);
  }

  // groups: [{label, values: [number|null per series]}]; series: names (e.g. p50, p95, p99).
  function bars(groups, series, opts) {
    const label = opts.label;
    const all = groups.flatMap((g) => g.values).filter((v) => v != null);
    if (!all.length) return empty(label, opts.emptyText);
    const H = 200, left = 40, right = 8, top = 10, bottom = 36;
    const s = svg(H, label);
    const max = niceMax(Math.max(...all));
    const y = (v) => top + (H - top - bottom) * (1 - v / max);
    for (let i = 0; i <= 4; i++) {
      const v = (max * i) / 4;
      el("line", { x1: left, x2: W - right, y1: y(v), y2: y(v), class: "grid" }, s);
      text(s, left - 4, y(v) + 4, fmt(v), "end");
    }
    const gw = (W - left - right) / groups.length;
    const bw = Math.min(28, (gw * 0.8) / series.length);
    groups.forEach((g, gi) => {
      const x0 = left + gi * gw + (gw - bw * series.length) / 2;
      g.values.forEach((v, si) => {
        if (v == null) return;
        const r = el("rect", {
          x: x0 + si * bw, y: y(v), width: bw - 2, height: Math.max(0, y(0) - y(v)),
          class: `col f${si % 6}`, "data-value": v,
        }, s);
        tip(r, `${g.label} ${series[si]}: ${fmt(v)}${opts.unit ? " " + opts.unit : ""}`);
      });
      text(s, left + gi * gw + gw / 2, H - bottom + 16, g.label, "middle");
    });
    el("line", { x1: left, x2: W - right, y1: y(0), y2: y(0), class: "axis" }, s);
    return s;
  }

  // items: [{label, value, lo, hi, n}] on [0, 1]; drawn as a dot with its 95% interval.
  function intervals(items, opts) {
    const label = opts.label;
    const shown = items.filter((it) => it.value != null);
    if (!shown.length) return empty(label, opts.emptyText);
    const row = 28, left = 70, right = 16, top = 8, bottom = 26;
    const H = top + bottom + row * items.length;
    const s = svg(H, label);
    const lo = Math.min(opts.min != null ? opts.min : 1, ...shown.map((it) => it.lo));
    const from = Math.max(0, Math.floor(lo * 10) / 10);
    const x = (v) => left + ((W - left - right) * (v - from)) / (1 - from || 1);
    for (let i = 0; i <= 5; i++) {
      const v = from + ((1 - from) * i) / 5;
      el("line", { x1: x(v), x2: x(v), y1: top, y2: H - bottom, class: "grid" }, s);
      text(s, x(v), H - bottom + 14, v.toFixed(2), "middle");
    }
    items.forEach((it, i) => {
      const cy = top + row * i + row / 2;
      text(s, left - 6, cy + 4, it.label, "end");
      if (it.value == null) {
        text(s, left + 4, cy + 4, "no data yet").setAttribute("class", "empty");
        return;
      }
      const w = el("line", { x1: x(it.lo), x2: x(it.hi), y1: cy, y2: cy, class: `whisker k${i % 6}` }, s);
      tip(w, `${it.label}: 95% interval [${it.lo.toFixed(3)}, ${it.hi.toFixed(3)}]`);
      for (const e of [it.lo, it.hi]) el("line", { x1: x(e), x2: x(e), y1: cy - 6, y2: cy + 6, class: `whisker k${i % 6}` }, s);
      const c = el("circle", { cx: x(it.value), cy, r: 5, class: `point f${i % 6}`, "data-value": it.value }, s);
      tip(c, `${it.label}: ${it.value.toFixed(3)} (n = ${it.n}), 95% interval [${it.lo.toFixed(3)}, ${it.hi.toFixed(3)}]`);
    });
    return s;
  }

  // series: [{name, points: [{t (ms since epoch), v}]}].
  function lines(series, opts) {
    const label = opts.label;
    const pts = series.flatMap((se) => se.points).filter((p) => p.v != null);
    const longest = Math.max(0, ...series.map((se) => se.points.filter((p) => p.v != null).length));
    if (longest < 2) return empty(label, opts.emptyText || "collecting: needs two samples");
    const H = 180, left = 40, right = 8, top = 10, bottom = 26;
    const s = svg(H, label);
    const t0 = Math.min(...pts.map((p) => p.t)), t1 = Math.max(...pts.map((p) => p.t));
    const max = niceMax(Math.max(...pts.map((p) => p.v)));
    const x = (t) => left + ((W - left - right) * (t - t0)) / (t1 - t0 || 1);
    const y = (v) => top + (H - top - bottom) * (1 - v / max);
    for (let i = 0; i <= 4; i++) {
      const v = (max * i) / 4;
      el("line", { x1: left, x2: W - right, y1: y(v), y2: y(v), class: "grid" }, s);
      text(s, left - 4, y(v) + 4, fmt(v), "end");
    }
    text(s, left, H - 8, `${Math.round((t1 - t0) / 1000)} s of history`);
    text(s, W - right, H - 8, "now", "end");
    series.forEach((se, i) => {
      const p = se.points.filter((q) => q.v != null);
      if (!p.length) return;
      const d = p.map((q, j) => `${j ? "L" : "M"}${x(q.t).toFixed(1)},${y(q.v).toFixed(1)}`).join(" ");
      const path = el("path", { d, class: `line k${i % 6}`, "data-points": p.length, "data-max": Math.max(...p.map((q) => q.v)) }, s);
      tip(path, `${se.name}: last ${fmt(p[p.length - 1].v)}${opts.unit ? " " + opts.unit : ""}`);
    });
    return s;
  }

  // A legend of coloured names, matching the charts' series colours.
  function legend(names) {
    const div = document.createElement("div");
    div.className = "legend";
    names.forEach((n, i) => {
      const span = document.createElement("span");
      const sw = document.createElement("i");
      sw.className = `c${i % 6}`;
      span.append(sw, n);
      div.appendChild(span);
    });
    return div;
  }

  return { bars, intervals, lines, legend };
})();
