# cython: language_level=3
"""Seed 004, "Cython nogil": David Beazley's countdown compiled by Cython, its loop run
without the GIL, so that two threads count down at the same time.

Fixed from the tutorial: ``with nogil:`` cannot wrap the creation of Python threads (the
block must not touch Python objects: Cython refuses to compile it); it goes inside
countdown, around the loop, which touches only a C integer. The counter is ``volatile`` so
that the C compiler keeps one decrement per iteration, as Python does (it would otherwise
replace the loop by ``n = 0``). Built by seed004_countdown_nogil.py (gilfree.demo.nogil).
"""


def countdown(long n):
    """Count n down to 0 with the GIL released; returns 0 (n if n <= 0)."""
    cdef volatile long v = n
    with nogil:
        while v > 0:
            v -= 1
    return v
