"""CPython's multiprocessing test suite on the standard library itself (the denominator)."""
import mp_suite

mp_suite.load(globals(), "stdlib")
