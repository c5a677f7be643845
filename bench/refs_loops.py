"""Fixed loops for callgrind instruction counts of reference taking from Python
(bench/callgrind_refs.sh runs each with N and 2N iterations; the difference / N is the cost
of one iteration, start-up cancels out).

    python bench/refs_loops.py queue_handle|dict_pass|dict_set N

queue_handle  a Queue handle sent through a Queue and dropped (its __reduce__ takes a
              reference, the receiver's rebuild adopts it, the drop releases it)
dict_pass     the same with a SharedDict handle
dict_set      d[i % 1000] = i on a SharedDict (replaces)
"""

import sys

import gilfree


def main():
    mode, n = sys.argv[1], int(sys.argv[2])
    q = gilfree.Queue()
    if mode in ("queue_handle", "dict_pass"):
        obj = gilfree.Queue() if mode == "queue_handle" else gilfree.SharedDict()
        for _ in range(n):
            q.put(obj)
            got = q.get()
            del got
    elif mode == "dict_set":
        d = gilfree.SharedDict()
        for i in range(1000):
            d[i] = i
        for i in range(n):
            d[i % 1000] = i
    else:
        raise SystemExit("unknown mode %r" % mode)


if __name__ == "__main__":
    main()
