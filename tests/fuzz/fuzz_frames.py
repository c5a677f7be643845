"""atheris: transport frames received on a Queue or a Pipe end (the bytes another process put
in the ring: frame header, body, out-of-band buffer table; pickled payloads, error payloads).
The first input byte picks the receiver: Queue.get, Connection.recv, recv_bytes,
recv_bytes_into. Every input must decode or raise an ordinary exception; afterwards the ring
must still carry a message.

    python tests/fuzz/fuzz_frames.py CORPUS_DIR -max_total_time=20   (libFuzzer flags)"""

import sys

import atheris

with atheris.instrument_imports():
    import _decode
    import gilfree
    from gilfree import _core
    from gilfree.connection import Connection

Q = None
A = B = None
SINK = bytearray(1 << 16)


def one_input(data):
    global Q, A, B
    if Q is None:
        Q = gilfree.Queue()
        A, B = _core._pipe(Connection, True)
    if not data:
        return
    which, raw = data[0] % 4, _decode.fuzz_decode.sanitize(data[1:], _decode.arena_top())
    try:
        if which == 0:
            Q._put_raw(raw)
            Q.get(timeout=5)
        else:
            A._put_raw(raw)
            (B.recv, B.recv_bytes, lambda: B.recv_bytes_into(SINK))[which - 1]()
    except Exception:
        pass
    if len(data) % 64 == 0:  # now and then: the rings are still usable and empty
        Q.put(1)
        assert Q.get(timeout=5) == 1
        A.send(2)
        assert B.recv() == 2
        assert Q.empty() and not B.poll()


def main():
    if len(sys.argv) > 1 and not sys.argv[1].startswith("-"):
        seeds = [bytes([k]) + s for s in _decode.fuzz_decode.seeds() for k in range(4)]
        _decode.write_corpus(sys.argv[1], seeds)
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
