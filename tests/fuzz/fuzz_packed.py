"""atheris: the pool's packed result chunks (int64 / str / bytes lists a worker sends back
instead of a pickle), decoded by _core.Pool.unpack and _core.Pool.unpack_into. Every input must
decode or raise an ordinary exception, and a decoded str must be canonical.

    python tests/fuzz/fuzz_packed.py CORPUS_DIR -max_total_time=20   (libFuzzer flags)"""

import sys

import atheris

with atheris.instrument_imports():
    import _decode
    from gilfree import _core


def one_input(data):
    if len(data) < 2:
        return
    n, start, blob = data[0] % 8, data[1] % 5 - 1, data[2:]
    try:
        out = _core.Pool.unpack(blob)
    except Exception:
        out = None
    if out is not None:
        for s in out:
            if isinstance(s, str):
                assert max(map(ord, s), default=0) <= 0x10FFFF
                assert s == s.encode("utf-8", "surrogatepass").decode("utf-8", "surrogatepass")
    try:
        _core.Pool.unpack_into([None] * n, start, blob)
    except Exception:
        pass


def main():
    if len(sys.argv) > 1 and not sys.argv[1].startswith("-"):
        _decode.write_corpus(sys.argv[1], [b"\x03\x00" + s
                                           for s in _decode.fuzz_decode.packed_seeds()])
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
