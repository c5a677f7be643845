"""Seeded mutation fuzz of what a receiving process parses: transport frames (Queue.get,
Connection.recv / recv_bytes / recv_bytes_into) and the pool's packed result chunks
(_core.Pool.unpack / unpack_into when present).

    python fuzz_decode.py SEED ITERATIONS

Every input must decode or raise an ordinary exception; a crash (signal) is the bug. Prints
'ok N' at the end. Deterministic for a seed (out-of-band buffer offsets that would name a live
arena block are replaced by {0, 0}, so that a mutated frame never takes a real block over)."""

import pickle
import random
import struct
import sys

import gilfree
from gilfree import _core
from gilfree.connection import Connection

MAGIC = 0x4647
HDR = struct.Struct("<HBBIQ")
BUF = struct.Struct("<QQ")
RAW, BYTES, STR, INT, FLOAT, PICKLE, NONE, BYTEARRAY, ERROR = range(9)


def frame(kind, body, bufs=(), flags=0):
    return HDR.pack(MAGIC, kind, flags, len(bufs), len(body)) + body + b"".join(
        BUF.pack(o, n) for o, n in bufs)


def seeds():
    objs = [None, 0, -1, 2 ** 62, 1.5, "x", "é" * 10, "\U0001F600", b"", b"abc" * 40,
            bytearray(b"q"), [1, "a", (2, 3)], {"k": [1.0, None]}, {1, 2}, ValueError("boom"),
            list(range(100)), ("s" * 300,)]
    out = [frame(NONE, b""), frame(INT, struct.pack("<q", -5)), frame(FLOAT, struct.pack("<d", 2.5)),
           frame(BYTES, b"hello"), frame(STR, "héllo".encode()), frame(BYTEARRAY, b"ba"),
           frame(RAW, pickle.dumps([1, 2])), frame(RAW, b"\x00\xff"),
           frame(PICKLE, pickle.dumps(b"x", 5), [(0, 0)]),
           frame(PICKLE, pickle.dumps(pickle.PickleBuffer(b""), 5), [(0, 0)]),
           frame(ERROR, pickle.dumps((ValueError("e"), "tb"), 5))]
    for o in objs:
        out.append(frame(PICKLE, pickle.dumps(o, 5)))
    return out


def packed_seeds():
    """Packed chunks in pool.c's layout (pk_hdr: u32 magic "GFPL", u8 type, 3 pad, u64 count;
    INT64: count x i64; STR: count x u32 (nchars << 2 | kind code), pad to 8, code units each
    aligned to its size; BYTES: count x u32 length, then the bytes)."""
    magic = 0x4C504647
    hdr = struct.Struct("<IB3xQ")
    out = [hdr.pack(magic, 1, 3) + struct.pack("<3q", 1, -2, 2 ** 63 - 1),
           hdr.pack(magic, 1, 0)]
    strs = [("abc", 0, 1), ("\xe9t\xe9", 1, 1), ("\u20ac", 2, 2), ("\U0001F600x", 3, 4)]
    meta = b"".join(struct.pack("<I", len(t) << 2 | kc) for t, kc, _ in strs)
    body = b""
    for t, kc, k in strs:
        body += b"\0" * (-len(body) % k)
        body += t.encode({1: "latin-1", 2: "utf-16-le", 4: "utf-32-le"}[k])
    tab = meta + b"\0" * (-(16 + len(meta)) % 8)
    out.append(hdr.pack(magic, 2, len(strs)) + tab + body)
    items = [b"", b"xy", b"\0" * 9]
    out.append(hdr.pack(magic, 3, 3) + b"".join(struct.pack("<I", len(x)) for x in items)
               + b"".join(items))
    return out


def mutate(rng, data):
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(8)
        if op == 0 and b:  # flip a bit
            i = rng.randrange(len(b)); b[i] ^= 1 << rng.randrange(8)
        elif op == 1 and b:  # random byte
            b[rng.randrange(len(b))] = rng.randrange(256)
        elif op == 2:  # truncate
            del b[rng.randrange(len(b) + 1):]
        elif op == 3:  # append junk
            b += bytes(rng.randrange(256) for _ in range(rng.randrange(1, 24)))
        elif op == 4 and len(b) >= 16:  # header field: kind / nbufs / body_len
            f = rng.randrange(3)
            if f == 0:
                b[2] = rng.randrange(12)
            elif f == 1:
                b[4:8] = struct.pack("<I", rng.choice([0, 1, 2, 3, 65536, 65537, 2 ** 32 - 1]))
            else:
                b[8:16] = struct.pack("<Q", rng.choice(
                    [0, 1, len(b), len(b) - 16, 2 ** 31, 2 ** 63, 2 ** 64 - 1,
                     rng.randrange(2 ** 64)]))
        elif op == 5 and b:  # insert bytes
            i = rng.randrange(len(b)); b[i:i] = bytes(rng.randrange(256) for _ in range(4))
        elif op == 6:  # append a buffer entry and bump nbufs
            if len(b) >= 16:
                n = struct.unpack_from("<I", b, 4)[0]
                struct.pack_into("<I", b, 4, (n + 1) & 0xFFFFFFFF)
            b += BUF.pack(rng.choice([0, 1, 64, 2 ** 40, 2 ** 64 - 64, rng.randrange(2 ** 64)]),
                          rng.choice([0, 1, 8, 2 ** 63]))
        elif op == 7 and b:  # duplicate a slice
            i = rng.randrange(len(b)); j = rng.randrange(i, len(b) + 1); b[j:j] = b[i:j]
    return bytes(b)


def sanitize(b, top):
    """Replace buffer entries naming an offset inside the used arena by {0, 0}."""
    if len(b) < 16:
        return b
    _, kind, _, nbufs, blen = HDR.unpack_from(b)
    if 16 + blen + 16 * nbufs != len(b) or not nbufs:
        return b
    b = bytearray(b)
    for i in range(nbufs):
        pos = 16 + blen + 16 * i
        off, _ = BUF.unpack_from(b, pos)
        if off and off < top:
            BUF.pack_into(b, pos, 0, 0)
    return bytes(b)


def main():
    seed, iters = int(sys.argv[1]), int(sys.argv[2])
    rng = random.Random(seed)
    corpus = seeds()
    q = gilfree.Queue()
    a, b = _core._pipe(Connection, True)
    sink = bytearray(1 << 16)
    unpack = getattr(_core.Pool, "unpack", None)
    pk = packed_seeds()
    if unpack is not None:  # the seeds must decode as written
        assert unpack(pk[0]) == [1, -2, 2 ** 63 - 1], unpack(pk[0])
        assert unpack(pk[2]) == ["abc", "\xe9t\xe9", "\u20ac", "\U0001F600x"], unpack(pk[2])
        assert unpack(pk[3]) == [b"", b"xy", b"\0" * 9]
    n = 0
    for it in range(iters):
        top = _core.arena_stats()["top"] + (1 << 20)
        data = sanitize(mutate(rng, rng.choice(corpus)), top)
        which = it % 4
        try:
            if which == 0:
                q._put_raw(data)
                q.get(timeout=5)
            elif which == 1:
                a._put_raw(data)
                b.recv()
            elif which == 2:
                a._put_raw(data)
                b.recv_bytes()
            else:
                a._put_raw(data)
                b.recv_bytes_into(sink)
        except Exception:
            pass
        n += 1
        if unpack is not None and pk:
            blob = mutate(rng, rng.choice(pk))
            try:
                unpack(blob)
            except Exception:
                pass
            try:
                _core.Pool.unpack_into([None] * rng.randrange(0, 8), rng.randrange(-1, 4), blob)
            except Exception:
                pass
    # Nothing may be left behind in the rings, and they must still work.
    q.put("end"); assert q.get(timeout=5) == "end"
    a.send({"end": 1}); assert b.recv() == {"end": 1}
    print("ok", n)


if __name__ == "__main__":
    main()
