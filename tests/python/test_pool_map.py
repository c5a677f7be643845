"""Pool.map: adaptive chunking (chunksize=None) and the packed transport of map chunks
(lists of str / bytes / int64 travel without pickle, both ways)."""

import struct
import time

import pytest

import gilfree
from gilfree import _core
from gilfree.pool import _Chunker


def sq(x):
    return x * x


def ident(x):
    return x


def nap(x):
    time.sleep(0.1)
    return x


def fail_on_7(x):
    if x == 7:
        raise ValueError("seven")
    return x


def to_str(x):
    return str(x)


def add(a, b):
    return a + b


class S(str):
    pass


@pytest.fixture
def pool():
    with gilfree.Pool(2) as p:
        yield p


# ------------------------------------------------------------------ adaptive chunking

@pytest.mark.timeout(60)
def test_adaptive_slow_items_balance(pool):
    # 8 slow items on 2 workers: at least one chunk per worker (in fact one item per chunk),
    # so both workers share them instead of one worker taking a big chunk
    res = pool.map_async(nap, range(8))
    assert res.get(30) == list(range(8))
    assert res._nchunks >= 2
    assert res._nchunks == 8


@pytest.mark.timeout(60)
def test_adaptive_tiny_items_use_few_chunks(pool):
    n = 300_000
    res = pool.map_async(sq, range(n))
    assert res.get(60) == [x * x for x in range(n)]
    assert res._nchunks < n // 100


@pytest.mark.timeout(60)
@pytest.mark.parametrize("make", [list, tuple, iter, lambda r: (x for x in r)])
def test_adaptive_input_kinds(pool, make):
    n = 5000
    assert pool.map(sq, make(range(n))) == [x * x for x in range(n)]


@pytest.mark.timeout(60)
def test_adaptive_small_and_empty(pool):
    assert pool.map(sq, []) == []
    assert pool.map(sq, [3]) == [9]
    assert pool.map(sq, range(2)) == [0, 1]


@pytest.mark.timeout(60)
def test_adaptive_error_then_pool_still_works(pool):
    with pytest.raises(ValueError, match="seven"):
        pool.map(fail_on_7, range(1000))
    assert pool.map(sq, range(1000)) == [x * x for x in range(1000)]


@pytest.mark.timeout(60)
def test_adaptive_map_async_callback_without_waiter(pool):
    got = []
    res = pool.map_async(sq, range(20000), callback=got.append)
    deadline = time.monotonic() + 30
    while not got and time.monotonic() < deadline:
        time.sleep(0.01)
    assert got and got[0] == [x * x for x in range(20000)]
    assert res.successful()


@pytest.mark.timeout(60)
def test_adaptive_starmap_and_timeout_arg(pool):
    pairs = [(i, i) for i in range(3000)]
    assert pool.starmap(add, pairs) == [2 * i for i in range(3000)]
    assert pool.map(sq, range(3000), timeout=30) == [x * x for x in range(3000)]


@pytest.mark.timeout(60)
def test_adaptive_concurrent_maps(pool):
    a = pool.map_async(sq, range(50000))
    b = pool.map_async(to_str, range(50000))
    assert b.get(30) == [str(x) for x in range(50000)]
    assert a.get(30) == [x * x for x in range(50000)]


def test_chunker_sizes():
    c = _Chunker(range(10**6), 10**6, 2)
    assert c.size() == 1  # probe first
    c.observe(1, 50_000)  # a slow-looking probe: grow at most 16-fold
    assert c.size() == 16
    for _ in range(10):
        c.observe(10_000, 1_000_000)  # 100 ns per item
    assert abs(c.size() - _Chunker.TARGET_NS // 100) <= 1
    c.next = c.n - 100  # near the end: not below MIN_NS worth of items, not above what is left
    assert c.size() == 100
    c.next = c.n - 10**5  # a 1/(2 x workers) share of what is left
    assert c.size() == 25_000
    # short chunks: more of them queued per worker (the parent may be off the CPU a while)
    assert c.max_inflight > 2 * _Chunker.INFLIGHT
    assert c.max_inflight <= 2 * _Chunker.MAX_INFLIGHT
    slow = _Chunker(range(8), 8, 2)
    slow.observe(1, 200_000_000)
    assert slow.size() == 1
    assert slow.max_inflight == 2 * _Chunker.INFLIGHT  # slow items: one running, one queued


# ------------------------------------------------------------------ packed transport

STRS = ["", "a", "", "plain ascii", "caf\xe9", "\u65e5\u672c\u8a9e", "\U0001f600 emoji",
        "\ud800", "x\udfffy", "\ud83d\ude00", "\x00nul\x00", "\xff" * 3, "b" * 100_000, ""]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("chunksize", [None, 1, 3, 1000])
def test_str_round_trip_exact(pool, chunksize):
    items = STRS * 7
    out = pool.map(ident, items, chunksize=chunksize)
    assert out == items
    assert all(type(x) is str for x in out)
    # lone surrogates survive exactly (no UTF-8 transcoding)
    assert out[7] == "\ud800" and out[8] == "x\udfffy"


@pytest.mark.timeout(60)
def test_bytes_round_trip(pool):
    items = [b"", b"x", b"\x00\xff" * 9, bytes(range(256)), b"", b"z" * 70_000] * 5
    out = pool.map(ident, items)
    assert out == items and all(type(x) is bytes for x in out)


@pytest.mark.timeout(60)
def test_mixed_items_fall_back_to_pickle(pool):
    items = ["a", 1, b"x", None, 2.5, "z", (1, "t"), ["l"]] * 20
    assert pool.map(ident, items) == items
    # an int that does not fit int64, a bool, a str subclass: exact values and types
    odd = [1, 2, 2 ** 70, -(2 ** 63), 2 ** 63 - 1, True]
    out = pool.map(ident, odd)
    assert out == odd and type(out[-1]) is bool and type(out[0]) is int
    out = pool.map(ident, ["a", S("b")])
    assert out == ["a", "b"]
    out = pool.map(ident, [b"a", bytearray(b"b")])
    assert out == [b"a", bytearray(b"b")] and type(out[1]) is bytearray


@pytest.mark.timeout(60)
def test_results_packed_when_items_are_not(pool):
    assert pool.map(to_str, range(10000)) == [str(x) for x in range(10000)]
    assert pool.map(len, STRS) == [len(s) for s in STRS]


@pytest.mark.timeout(60)
def test_imap_and_executor_see_packed_chunks(pool):
    items = STRS * 3
    assert list(pool.imap(ident, items, chunksize=4)) == items
    assert sorted(pool.imap_unordered(ident, items, chunksize=5)) == sorted(items)
    with gilfree.ProcessPoolExecutor(2) as ex:
        assert list(ex.map(ident, items, chunksize=4)) == items


def _pk(type_, count, body):
    return struct.pack("<IB3xQ", 0x4C504647, type_, count) + body


def test_unpack_codec_and_malformed_input():
    assert _core.Pool.unpack(_pk(1, 2, struct.pack("<qq", -5, 7))) == [-5, 7]
    assert _core.Pool.count(_pk(1, 2, struct.pack("<qq", -5, 7))) == 2
    assert _core.Pool.unpack(_pk(3, 2, struct.pack("<II", 1, 2) + b"abc")) == [b"a", b"bc"]
    lst = [None] * 4
    assert _core.Pool.unpack_into(lst, 1, _pk(1, 2, struct.pack("<qq", 1, 2))) == 2
    assert lst == [None, 1, 2, None]
    bad = [b"", b"xxxx", _pk(9, 1, b"\0" * 8), _pk(1, 3, b"\0" * 16),
           _pk(3, 2, struct.pack("<II", 1, 5) + b"abc"),  # lengths run past the end
           _pk(2, 1, struct.pack("<I", (10 << 2) | 0) + b"\0" * 4 + b"short"),
           _pk(1, 1 << 60, b"")]
    for b in bad:
        with pytest.raises(RuntimeError):
            _core.Pool.unpack(b)
    def one_str(units, n, kc):
        tab = struct.pack("<I", n << 2 | kc) + b"\0" * 4
        return _pk(2, 1, tab + units)

    for units, n, kc in ((b"\xe9", 1, 0), (struct.pack("<I", 0x110000), 1, 3)):
        with pytest.raises(RuntimeError):
            _core.Pool.unpack(one_str(units, n, kc))
    # code units of a needlessly wide kind decode to the canonical str
    s = _core.Pool.unpack(one_str("\xe9a".encode("utf-16-le"), 2, 2))[0]
    assert s == "\xe9a" and s.encode("latin-1") == b"\xe9a"
    assert _core.Pool.unpack(one_str("ab".encode("utf-32-le"), 2, 3)) == ["ab"]
    assert _core.Pool.unpack(one_str(b"\xe9", 1, 1)) == ["\xe9"]
    with pytest.raises(IndexError):
        _core.Pool.unpack_into([None], 0, _pk(1, 2, struct.pack("<qq", 1, 2)))


# ints around every digit-count and small-int-cache boundary (the fast int paths, fastint.h)
EDGES = sorted({s * v for v in (0, 1, 5, 6, 255, 256, 257, 2 ** 30 - 1, 2 ** 30, 2 ** 30 + 1,
                                 2 ** 60 - 1, 2 ** 60, 2 ** 60 + 1, 2 ** 63 - 1)
                for s in (1, -1)} | {-(2 ** 63)})


def test_unpack_int_edges_exact():
    n = 5000
    vals = (EDGES * (n // len(EDGES) + 1))[:n]
    out = _core.Pool.unpack(_pk(1, n, struct.pack("<%dq" % n, *vals)))
    assert out == vals and all(type(x) is int for x in out)
    assert [str(x) for x in out[:len(EDGES)]] == [str(x) for x in EDGES]
    assert [hash(x) for x in out[:len(EDGES)]] == [hash(x) for x in EDGES]


def plus(x):
    return x + 3


_SEEN = []


def keep_arg(x):
    _SEEN.append(x)  # the worker keeps every item: none may change afterwards
    return tuple(_SEEN)


@pytest.mark.timeout(60)
def test_map_int_edges_and_ranges(pool):
    assert pool.map(ident, EDGES * 50) == EDGES * 50
    lo = 2 ** 30 - 300
    for r in (range(lo, lo + 600), range(-lo, -lo - 600, -1), range(2 ** 60 - 9, 2 ** 60 + 9),
              range(-5, 300), range(10 ** 5), range(0, 3 * 10 ** 5, 7)):
        assert pool.map(plus, r) == [x + 3 for x in r], r
        assert pool.map(ident, r) == list(r), r
    r = range(2 ** 30 - 50, 2 ** 30 + 50)  # (one chunk: one worker sees them all, in order)
    assert pool.map(keep_arg, r, chunksize=100) == [tuple(r[:i + 1]) for i in range(100)]


@pytest.mark.timeout(60)
def test_adaptive_map_async_then_close_join_runs_everything():
    p = gilfree.Pool(2)
    res = p.map_async(sq, range(200_000))
    slow = p.map_async(nap, range(6))
    p.close()
    p.join()
    assert res.get(10) == [x * x for x in range(200_000)]
    assert slow.get(10) == list(range(6))
