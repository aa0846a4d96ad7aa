"""The data side of tools/bench_peers.py: reading `quantserve bench --json`, the peer workers'
result schema, the report rows (ratio to the best peer) and the report as Markdown and JSON.

Standard library only (it runs under the system python3 in `cargo test`, via
`tools/bench_peers.py --self-test`). A field renamed on either side makes a clear
`BenchFormatError` here, never an empty table.
"""
from __future__ import annotations

import json
import os
import statistics
import time

# `quantserve bench --json` (src/eval/bench.rs `BenchReport`): the schema it declares and the
# fields this script reads. Changing either side without the other fails the self-test.
QS_SCHEMA = 1
QS_FIELDS = {"schema": int, "model": str, "unit": str, "isa": str, "cpus": int, "rows": list}
QS_ROW_FIELDS = {"variant": str, "threads": int, "batch": int, "items_per_s": (int, float),
                 "tokens_per_s": (int, float, type(None)), "weight_bytes": int}

# What a peer worker emits (`@@RESULT {...}` on its stdout): one dict per measured config.
PEER_FIELDS = {"rows": list, "info": dict}
PEER_ROW_FIELDS = {"engine": str, "threads": int, "batch": int, "per_s": (int, float)}

# The whole report (`--json FILE`): bump when a field is removed or renamed.
REPORT_SCHEMA = 1


class BenchFormatError(Exception):
    """A benchmark document that does not have the fields this script reads."""


def _check_fields(obj, fields, what):
    if not isinstance(obj, dict):
        raise BenchFormatError(f"{what}: expected an object, got {type(obj).__name__}")
    for key, typ in fields.items():
        if key not in obj:
            raise BenchFormatError(f"{what}: missing field `{key}` (has {sorted(obj)})")
        if isinstance(obj[key], bool) or not isinstance(obj[key], typ):
            raise BenchFormatError(f"{what}: field `{key}` is {obj[key]!r}, expected {typ}")


def parse_quantserve_json(doc, source="quantserve bench --json"):
    """Checks a `quantserve bench --json` document and returns it. Raises BenchFormatError."""
    _check_fields(doc, QS_FIELDS, source)
    if doc["schema"] != QS_SCHEMA:
        raise BenchFormatError(f"{source}: schema {doc['schema']}, this script reads "
                               f"{QS_SCHEMA}")
    if not doc["rows"]:
        raise BenchFormatError(f"{source}: no rows")
    for i, row in enumerate(doc["rows"]):
        _check_fields(row, QS_ROW_FIELDS, f"{source}: rows[{i}]")
    return doc


def read_quantserve_json(path):
    with open(path, encoding="utf-8") as f:
        return parse_quantserve_json(json.load(f), path)


def quantserve_value(doc, variant, threads, batch, field="items_per_s"):
    """The `field` of the row for (variant, threads, batch); BenchFormatError when absent."""
    for row in doc["rows"]:
        if (row["variant"], row["threads"], row["batch"]) == (variant, threads, batch):
            if row[field] is None:
                raise BenchFormatError(f"quantserve bench: `{field}` is null for {variant} "
                                       f"threads {threads} batch {batch}")
            return float(row[field])
    raise BenchFormatError(f"quantserve bench: no row for variant {variant} threads {threads} "
                           f"batch {batch}")


def check_peer_result(res, what="peer worker"):
    """Checks a worker's result (`{"rows": [...], "info": {...}}`) and returns it."""
    _check_fields(res, PEER_FIELDS, what)
    for i, row in enumerate(res["rows"]):
        _check_fields(row, PEER_ROW_FIELDS, f"{what}: rows[{i}]")
    return res


def peer_value(res, engine, threads, batch):
    for row in res["rows"]:
        if (row["engine"], row["threads"], row["batch"]) == (engine, threads, batch):
            return float(row["per_s"])
    return None


# ---------------------------------------------------------------------------------------------
# Report rows


def new_row(row_id, workload, metric, threads, batch, target, target_ratio):
    """A report row. `metric` is what `value`s hold: a rate (`seq/s`, `tok/s`, `sent/s`; higher
    is better) or `ms` (a latency; lower is better). `ratio_to_best` is always quantserve's speed
    over the best peer's (> 1: quantserve is faster), as the issue's table states targets."""
    return {"id": row_id, "workload": workload, "metric": metric,
            "higher_is_better": metric != "ms", "threads": threads, "batch": batch,
            "target": target, "target_ratio": target_ratio,
            "quantserve": {"status": "not run", "value": None}, "peers": [],
            "best_peer": None, "ratio_to_best": None, "meets_target": None}


def peer_entry(engine, config, value=None, status="ok", **details):
    if status == "ok" and value is None:
        status = "failed: no measurement"
    return dict({"engine": engine, "config": config, "status": status,
                 "value": value if status == "ok" else None}, **details)


def finish_row(row):
    """Fills `best_peer`, `ratio_to_best` and `meets_target` from the measured values."""
    ok = [p for p in row["peers"] if p["status"] == "ok"]
    q = row["quantserve"].get("value")
    if not ok:
        return row
    pick = max if row["higher_is_better"] else min
    best = pick(ok, key=lambda p: p["value"])
    row["best_peer"] = f"{best['engine']} {best['config']}".strip()
    if q:
        r = q / best["value"] if row["higher_is_better"] else best["value"] / q
        row["ratio_to_best"] = round(r, 4)
        row["meets_target"] = r >= row["target_ratio"]
    for p in ok:  # each peer's own ratio too
        if q:
            p["quantserve_ratio"] = round(q / p["value"] if row["higher_is_better"]
                                          else p["value"] / q, 4)
    return row


# ---------------------------------------------------------------------------------------------
# The whole report


def cpu_model():
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def load_average():
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def new_report(seconds, command, quantserve_bin):
    return {"schema": REPORT_SCHEMA, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "finished": None, "wall_seconds": None, "command": command,
            "seconds_per_config": seconds,
            "machine": {"cpu_model": cpu_model(), "cpus": os.cpu_count(), "quantserve_isa": None,
                        "load_average_start": load_average(), "load_average_end": None},
            "quantserve_bin": quantserve_bin, "rows": [], "notes": []}


def close_report(report, t0):
    report["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    report["wall_seconds"] = round(time.time() - t0, 1)
    report["machine"]["load_average_end"] = load_average()
    return report


def _best_peer_entry(row):
    """The peer entry `finish_row` named best, or None when no peer ran."""
    return next((p for p in row["peers"] if row["best_peer"] and p["status"] == "ok"
                 and f"{p['engine']} {p['config']}".strip() == row["best_peer"]), None)


def _fmt(v, metric):
    if v is None:
        return "-"
    return f"{v:.2f}" if metric == "ms" or v < 10 else f"{v:.1f}"


def _ratio(r):
    return "-" if r is None else f"{r:.2f}×"


def markdown(report):
    m = report["machine"]
    la0 = m["load_average_start"] or ["?"] * 3
    la1 = m["load_average_end"] or ["?"] * 3
    out = [f"## Peer benchmark, {report['started']}", "",
           f"- CPU: {m['cpu_model']} ({m['cpus']} CPUs); quantserve kernels: "
           f"{m['quantserve_isa'] or '-'}",
           f"- Load average (1/5/15 min): at start {' / '.join(map(str, la0))}, at end "
           f"{' / '.join(map(str, la1))}",
           f"- {report['seconds_per_config']:g} s per configuration; wall time "
           f"{report['wall_seconds']} s; command: `{report['command']}`",
           "- ratio = quantserve speed ÷ the peer's (> 1: quantserve is faster; for latency rows "
           "the peer's ms ÷ quantserve's)", "",
           "| workload | threads | quantserve | best peer | ratio to best | target | met |",
           "|---|---:|---:|---|---:|---:|---|"]
    for r in report["rows"]:
        q = r["quantserve"]
        qv = (f"{_fmt(q['value'], r['metric'])} {r['metric']}" if q.get("value") is not None
              else q["status"])
        best = _best_peer_entry(r)
        bv = f"{r['best_peer']} {_fmt(best['value'], r['metric'])}" if best else "none measured"
        met = "-" if r["meets_target"] is None else ("yes" if r["meets_target"] else "**no**")
        out.append(f"| {r['workload']} | {r['threads']} | {qv} | {bv} | "
                   f"{_ratio(r['ratio_to_best'])} | {r['target']} | {met} |")
    out += ["", "### Every engine", "",
            "| workload | engine | config | status | value | quantserve ÷ engine | details |",
            "|---|---|---|---|---:|---:|---|"]
    for r in report["rows"]:
        q = r["quantserve"]
        extra = "".join(f"; {k} {v}" for k, v in q.items()
                        if k not in ("status", "variant", "value", "command"))
        out.append(f"| {r['workload']} | quantserve | {q.get('variant', '-')} | {q['status']} | "
                   f"{_fmt(q.get('value'), r['metric'])} | 1.00× | `{q.get('command', '')}`"
                   f"{extra} |")
        for p in r["peers"]:
            details = "; ".join(f"{k} {v}" for k, v in p.items() if k not in (
                "engine", "config", "status", "value", "quantserve_ratio"))
            out.append(f"| {r['workload']} | {p['engine']} | {p['config']} | {p['status']} | "
                       f"{_fmt(p['value'], r['metric'])} | {_ratio(p.get('quantserve_ratio'))} | "
                       f"{details} |")
    if report["notes"]:
        out += [""] + [f"- {n}" for n in report["notes"]]
    return "\n".join(out) + "\n"


def combine_markdown(reports):
    """One table over several reports of the same rows (e.g. back-to-back runs on a noisy
    machine): each run's quantserve value, best peer and ratio, and the median ratio, against
    which the target is judged. Rows are matched by `id`; a row missing from a run is shown as
    `-` there and left out of its median."""
    if not reports:
        raise BenchFormatError("--combine needs at least one report")
    for rep in reports:
        if rep.get("schema") != REPORT_SCHEMA:
            raise BenchFormatError(f"report schema {rep.get('schema')}, expected {REPORT_SCHEMA}")
    out = [f"## Peer benchmark, {len(reports)} runs: " +
           ", ".join(rep["started"] for rep in reports), "",
           f"- CPU: {reports[0]['machine']['cpu_model']}; load average at start of each run: " +
           "; ".join(" / ".join(map(str, rep["machine"]["load_average_start"] or ["?"]))
                     for rep in reports),
           "- ratio = quantserve ÷ the best peer of that run; the target is judged on the median",
           "", "| workload | threads | quantserve per run | best peer per run | ratio per run | "
           "median ratio | target | met |", "|---|---:|---:|---|---:|---:|---|---|"]
    seen = []
    for rep in reports:
        seen += [r["id"] for r in rep["rows"] if r["id"] not in seen]
    for row_id in seen:
        runs = [next((r for r in rep["rows"] if r["id"] == row_id), None) for rep in reports]
        first = next(r for r in runs if r)
        values, bests, ratios = [], [], []
        for r in runs:
            q = r and r["quantserve"].get("value")
            values.append(_fmt(q, first["metric"]) if q is not None else "-")
            best = r and _best_peer_entry(r)
            bests.append(f"{r['best_peer']} {_fmt(best['value'], r['metric'])}" if best else "-")
            ratio = r and r.get("ratio_to_best")
            ratios.append(ratio)
        measured = [x for x in ratios if x is not None]
        median = statistics.median(measured) if measured else None
        met = "-" if median is None else ("yes" if median >= first["target_ratio"] else "**no**")
        out.append(f"| {first['workload']} | {first['threads']} | {' / '.join(values)} "
                   f"{first['metric']} | {'; '.join(bests)} | "
                   f"{' / '.join(_ratio(x) for x in ratios)} | **{_ratio(median)}** | "
                   f"{first['target']} | {met} |")
    return "\n".join(out) + "\n"


def _esc(text):
    return (str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;"))


def svg_chart(report):
    """The report as a bar chart (SVG, no dependencies): one group per workload, one bar per
    engine that ran, its length the engine's speed relative to the fastest engine of that
    workload (for latency rows, the lowest ms is the fastest), labelled with the measured value.
    quantserve's bar is drawn first and in its own colour (targets are in the Markdown report)."""
    bar, gap, label_w, plot_w, value_w = 14, 3, 330, 420, 150
    width = label_w + plot_w + value_w
    groups = []
    for r in report["rows"]:
        bars = []
        q = r["quantserve"]
        if q.get("value"):
            bars.append((f"quantserve {q.get('variant', '')}".strip(), q["value"], True))
        bars += [(f"{p['engine']} {p['config']}".strip(), p["value"], False)
                 for p in r["peers"] if p["status"] == "ok" and p.get("value")]
        if bars:
            groups.append((r, bars))
    y = 46
    body = []
    for r, bars in groups:
        hib = r.get("higher_is_better", r["metric"] != "ms")
        best = max(v for _, v, _ in bars) if hib else min(v for _, v, _ in bars)
        title = f"{r['workload']}, {r['threads']} thread{'s' if r['threads'] > 1 else ''}"
        body.append(f'<text x="4" y="{y + 11}" font-weight="bold">{_esc(title)}</text>')
        y += 18
        for name, v, ours in bars:
            rel = v / best if hib else best / v
            w = max(1.0, rel * plot_w)
            colour = "#1f4e79" if ours else "#9bb4cc"
            body.append(f'<text x="{label_w - 6}" y="{y + 11}" text-anchor="end">{_esc(name)}'
                        "</text>")
            body.append(f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{bar}" '
                        f'fill="{colour}"/>')
            body.append(f'<text x="{label_w + w + 4:.1f}" y="{y + 11}">'
                        f"{_esc(_fmt(v, r['metric']))} {_esc(r['metric'])}</text>")
            y += bar + gap
        y += 10
    when = _esc(report.get("started", ""))
    head = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{y + 8}" '
            f'font-family="sans-serif" font-size="11">',
            f'<rect width="{width}" height="{y + 8}" fill="white"/>',
            f'<text x="4" y="16" font-size="13" font-weight="bold">quantserve and its peers, '
            f'{when}</text>',
            f'<text x="4" y="32">bar = speed relative to the fastest engine of the workload '
            f'(dark: quantserve); {_esc(report["machine"]["cpu_model"])}, '
            f'{report["machine"]["cpus"]} CPUs, kernels '
            f'{_esc(report["machine"]["quantserve_isa"] or "-")}</text>']
    return "\n".join(head + body + ["</svg>"]) + "\n"
