"""Fuzz what a receiving process parses beyond the C frame parser (tests/c/fuzz_frame.c):
transport decoding (Queue.get, Connection.recv / recv_bytes / recv_bytes_into on mutated and
truncated frames) and the pool's packed result chunks (_core.Pool.unpack / unpack_into). A
seeded mutation loop (tests/python/data/fuzz_decode.py) with a fixed iteration count, run in a
subprocess so that a crash fails the test with its seed instead of killing pytest."""

import os
import struct
import subprocess
import sys

import pytest

from gilfree import _core

FUZZ = os.path.join(os.path.dirname(__file__), "data", "fuzz_decode.py")


@pytest.mark.parametrize("seed", [1, 2])
def test_fuzz_decode(seed):
    iters = 1500 if os.environ.get("GILFREE_ASAN") else 3000
    r = subprocess.run([sys.executable, FUZZ, str(seed), str(iters)], capture_output=True,
                       text=True, timeout=240)
    assert r.returncode == 0 and ("ok %d" % iters) in r.stdout, (
        "seed %d: rc %d\n%s\n%s" % (seed, r.returncode, r.stdout, r.stderr[-4000:]))


def _packed_str(code_units, nchars, kind_code):
    tab = struct.pack("<I", nchars << 2 | kind_code)
    tab += b"\0" * (-(16 + len(tab)) % 8)
    return struct.pack("<IB3xQ", 0x4C504647, 2, 1) + tab + code_units


def test_packed_str_chunk_is_validated():
    # Found by this fuzz: pool.c once built str objects from unchecked code units (an ASCII
    # string holding 0xE9, a UCS2 'é' unequal to 'é', a code point past U+10FFFF).
    unpack = getattr(_core.Pool, "unpack", None)
    if unpack is None:
        pytest.skip("no _core.Pool.unpack")
    # Each malformed chunk must be rejected or decode to a canonical str.
    for units, n, kc in ((b"\xe9", 1, 0),                           # non-ASCII in ASCII kind
                         ("\xe9".encode("utf-16-le"), 1, 2),        # latin-1 char as UCS2
                         (struct.pack("<I", 0x7FFFFFFF), 1, 3)):    # beyond U+10FFFF
        try:
            s = unpack(_packed_str(units, n, kc))[0]
        except (ValueError, RuntimeError):
            continue
        assert s == s.encode("utf-8", "surrogatepass").decode("utf-8", "surrogatepass")
        assert max(map(ord, s)) <= 0x10FFFF
