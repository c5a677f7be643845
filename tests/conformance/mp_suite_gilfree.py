"""CPython's multiprocessing test suite with every tested object from gilfree (see mp_suite)."""
import mp_suite

mp_suite.load(globals(), "gilfree")
