"""The object transport: frames, validation of what comes from another process, pickling
fallbacks, references taken by reducers given back when a message is not sent."""

import pickle
import socket
import struct
import threading

import pytest

import gilfree
from conftest import live_blocks

MAGIC = 0x4647
KIND = {"RAW": 0, "BYTES": 1, "STR": 2, "INT": 3, "FLOAT": 4, "PICKLE": 5, "NONE": 6}


def frame(kind, body=b"", bufs=(), magic=MAGIC, body_len=None):
    hdr = struct.pack("<HBBIQ", magic, kind, 0, len(bufs),
                      len(body) if body_len is None else body_len)
    return hdr + body + b"".join(struct.pack("<QQ", off, n) for off, n in bufs)


@pytest.mark.timeout(10)
def test_well_formed_raw_frames_decode():
    q = gilfree.Queue()
    q._put_raw(frame(KIND["INT"], struct.pack("<q", -42)))
    q._put_raw(frame(KIND["STR"], "é".encode()))
    q._put_raw(frame(KIND["NONE"]))
    q._put_raw(frame(KIND["PICKLE"], pickle.dumps({"a": 1}, protocol=5)))
    assert q.get_many(10) == [-42, "é", None, {"a": 1}]


MALFORMED = [
    b"",
    b"xx",
    b"\0" * 16,
    frame(KIND["BYTES"], b"abc", magic=0x1234),
    frame(99, b"abc"),
    frame(KIND["BYTES"], b"abc", body_len=1000),
    frame(KIND["BYTES"], b"abc", body_len=2),          # trailing garbage
    frame(KIND["INT"], b"\1\2\3\4"),                    # wrong scalar size
    frame(KIND["NONE"], b"x"),
    frame(KIND["PICKLE"], b"\x80\x05N.", bufs=[(12345, 10)]),   # forged buffer offset
    frame(KIND["PICKLE"], b"\x80\x05N.", bufs=[(1 << 40, 10)]),
    frame(KIND["BYTES"], b"abc", bufs=[(0, 0)]),        # buffers on a non-pickle frame
]


@pytest.mark.timeout(10)
@pytest.mark.parametrize("raw", MALFORMED)
def test_malformed_message_raises_protocol_error_and_queue_survives(raw):
    q = gilfree.Queue()
    q._put_raw(raw)
    q.put("next")
    with pytest.raises(gilfree.ProtocolError):
        q.get()
    assert q.get() == "next"


@pytest.mark.timeout(10)
def test_garbage_pickle_body_raises_unpickling_error():
    q = gilfree.Queue()
    q._put_raw(frame(KIND["PICKLE"], b"\x80\x05garbage"))
    with pytest.raises(Exception):
        q.get()
    q.put(1)
    assert q.get() == 1


@pytest.mark.timeout(10)
def test_forking_pickler_fallback_for_stdlib_reducers():
    # plain pickle refuses sockets; multiprocessing's reducers (DupFd) accept them
    q = gilfree.Queue()
    s1, s2 = socket.socketpair()
    try:
        q.put(s1)
        s3 = q.get()
        try:
            s3.sendall(b"ping")
            assert s2.recv(4) == b"ping"
        finally:
            s3.close()
    finally:
        s1.close()
        s2.close()


@pytest.mark.timeout(10)
def test_failed_message_gives_back_references_taken_for_receiver():
    a, b = gilfree.Pipe()
    q = gilfree.Queue()
    with pytest.raises(TypeError):
        q.put([b, threading.Lock()])  # b's reducer took a "transit" count, then pickling failed
    assert q.empty()
    b.close()
    # had the transit count leaked, the end would never read as abandoned
    assert a.poll(2) is True
    with pytest.raises(EOFError):
        a.recv()


@pytest.mark.timeout(10)
def test_full_queue_gives_back_references_and_blocks():
    before = live_blocks()
    q = gilfree.Queue(maxsize=1)
    q.put(0)
    a, b = gilfree.Pipe()
    with pytest.raises(Exception):
        q.put((b, pickle.PickleBuffer(bytearray(1 << 20))), timeout=0.05)
    b.close()
    assert a.poll(2) is True
    a.close()
    q.get()
    q.close()
    del a, b, q
    assert live_blocks() == before


@pytest.mark.timeout(10)
def test_blocks_freed_after_round_trips():
    q = gilfree.Queue()
    q.put(0)
    q.get()
    before = live_blocks()
    for size in (10, 100000, 5 << 20):
        q.put(b"x" * size)
        q.put(pickle.PickleBuffer(bytearray(size)))
        q.put_many([b"y" * size, "z" * size])
        assert len(q.get()) == size
        mv = q.get()
        assert len(mv) == size
        del mv
        assert [len(x) for x in q.get_many(2)] == [size, size]
    assert live_blocks() == before


@pytest.mark.timeout(10)
def test_blockview_survives_queue_and_is_picklable():
    q = gilfree.Queue()
    q.put(pickle.PickleBuffer(bytearray(b"a" * (1 << 17))))
    mv = q.get()
    del q
    assert bytes(mv[:3]) == b"aaa"
    copy = pickle.loads(pickle.dumps(mv.obj))
    assert isinstance(copy, bytearray) and len(copy) == 1 << 17


@pytest.mark.timeout(30)
def test_arena_buffer_travels_by_reference():
    """A buffer that already is an arena block (received out of band) is sent on by reference:
    no new block, the same memory on both sides, freed once when the last holder lets go."""
    q = gilfree.Queue()
    q.put(0)
    q.get()
    q2 = gilfree.Queue(maxsize=1)
    q2.put(0)
    before = live_blocks()
    q.put(pickle.PickleBuffer(bytearray(b"abc" * 100000)))
    mv = q.get()  # a view of the block it came in
    assert bytes(mv[:3]) == b"abc"
    st = live_blocks()
    q.put(pickle.PickleBuffer(mv))  # travels by reference: no new block
    assert live_blocks() == st
    mv2 = q.get()
    assert bytes(mv2) == bytes(mv)
    mv2[0] = ord("X")  # shared memory: both see it
    assert bytes(mv[:1]) == b"X"
    del mv
    assert bytes(mv2[:3]) == b"Xbc"  # still alive: one holder left
    # A message never sent gives its share back.
    with pytest.raises(Exception):
        q2.put(pickle.PickleBuffer(mv2), timeout=0.05)
    assert bytes(mv2[:3]) == b"Xbc"
    del mv2
    assert live_blocks() == before


def _identity(x):
    return x


@pytest.mark.timeout(60)
def test_numpy_round_trip_returns_by_reference():
    np = pytest.importorskip("numpy")
    arr = np.arange(1 << 20, dtype=np.float64)
    with gilfree.Pool(1) as pool:
        pool.apply(_identity, (0,))
        before = live_blocks()
        for _ in range(3):
            out = pool.apply(_identity, (arr,))
            assert out.dtype == arr.dtype and (out == arr).all()
            out2 = pool.apply(_identity, (out,))  # already in the arena: by reference
            assert (out2 == arr).all()
            del out, out2
        pool.apply(_identity, (0,))
        assert live_blocks() == before
