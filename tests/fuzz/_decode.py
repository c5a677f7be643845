"""What the atheris harnesses share: the receiving side of a message from another process,
fed raw bytes. The seeds, the frame layout and the buffer-offset sanitiser are the seeded
fuzz's (tests/python/data/fuzz_decode.py), imported from there."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python",
                                "data"))

import fuzz_decode  # noqa: E402  (tests/python/data/fuzz_decode.py)
from gilfree import _core  # noqa: E402


def write_corpus(path, seeds):
    """Seed files for libFuzzer's corpus directory (made once; libFuzzer adds its finds)."""
    os.makedirs(path, exist_ok=True)
    if not os.listdir(path):
        for i, s in enumerate(seeds):
            with open(os.path.join(path, "seed-%03d" % i), "wb") as f:
                f.write(s)


def arena_top():
    """An offset past every block a fuzzed frame could name (see fuzz_decode.sanitize)."""
    return _core.arena_stats()["top"] + (1 << 20)
