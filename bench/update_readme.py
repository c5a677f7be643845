#!/usr/bin/env python3
"""Splice the latest benchmark table into README.md, between the markers

    <!-- bench:begin -->
    <!-- bench:end -->

    python bench/update_readme.py [NAME | PATH.md] [--readme README.md] [--check]

NAME defaults to ``full`` (bench/results/full.md, what ``python bench/run.py`` writes) when it
exists, else to the most recently written bench/results/*.md.
Only the text between the markers is replaced (the markers stay); everything else in the
README is left byte for byte as it was.  --check exits 1 if the README is not up to date,
without writing it.
"""

import argparse
import glob
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BEGIN = "<!-- bench:begin -->"
END = "<!-- bench:end -->"


def latest(results):
    """results/full.md (the full run) if there is one, else the newest results/*.md, or
    None."""
    full = os.path.join(results, "full.md")
    if os.path.exists(full):
        return full
    files = glob.glob(os.path.join(results, "*.md"))
    return max(files, key=os.path.getmtime) if files else None


def section(md_path):
    """The text to put between the markers: the results table (its own title dropped, the
    README's section heading is above the markers) and where it came from."""
    with open(md_path) as f:
        lines = f.read().rstrip("\n").split("\n")
    if lines and lines[0].startswith("# "):
        lines = lines[1:]
        while lines and not lines[0].strip():
            lines = lines[1:]
    rel = os.path.relpath(md_path, ROOT)
    png = os.path.splitext(rel)[0] + ".png"
    head = ["", "Latest results (`%s`, written by `python bench/run.py`; chart: `%s`):" % (
        rel, png), ""]
    return "\n".join(head + lines) + "\n"


def splice(text, body):
    """``text`` with the part between the markers replaced by ``body``; ValueError if the
    markers are missing, doubled or out of order."""
    if text.count(BEGIN) != 1 or text.count(END) != 1:
        raise ValueError("README needs exactly one %s and one %s" % (BEGIN, END))
    i = text.index(BEGIN) + len(BEGIN)
    j = text.index(END)
    if j < i:
        raise ValueError("%s comes before %s" % (END, BEGIN))
    return text[:i] + "\n" + body.strip("\n") + "\n" + text[j:]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", nargs="?",
                    help="results name (bench/results/NAME.md) or a path to a .md file "
                         "(default: the newest bench/results/*.md)")
    ap.add_argument("--readme", default=os.path.join(ROOT, "README.md"))
    ap.add_argument("--check", action="store_true",
                    help="exit 1 if README.md differs from what would be written")
    a = ap.parse_args(argv)
    results = os.path.join(HERE, "results")
    if a.results is None:
        md = latest(results)
        if md is None:
            print("no bench/results/*.md yet: run python bench/run.py first", file=sys.stderr)
            return 2
    elif a.results.endswith(".md") or os.sep in a.results:
        md = a.results
    else:
        md = os.path.join(results, a.results + ".md")
    if not os.path.exists(md):
        print("%s: no such file" % md, file=sys.stderr)
        return 2
    with open(a.readme) as f:
        text = f.read()
    try:
        new = splice(text, section(md))
    except ValueError as e:
        print("%s: %s" % (a.readme, e), file=sys.stderr)
        return 2
    if a.check:
        if new != text:
            print("%s is not up to date with %s" % (a.readme, md), file=sys.stderr)
            return 1
        return 0
    if new != text:
        tmp = a.readme + ".tmp"
        with open(tmp, "w") as f:
            f.write(new)
        os.replace(tmp, a.readme)
    print("%s: benchmarks section from %s" % (a.readme, md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
