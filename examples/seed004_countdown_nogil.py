"""Seed 004, "Cython nogil": the countdown on two threads, compiled by Cython with its loop
run without the GIL (seed004_countdown_nogil.pyx), so the threads run at the same time.

The module is built first (Cython from PyPI, pinned in requirements/demo.txt, and the C
compiler Python was built with; cached, not timed), then the tutorial's code runs as written
with the compiled countdown.  No processes: this is the tutorial's threads-only row; the
demo (``python -m gilfree demo``) puts it beside the process pools.  gilfree is used only for
its builder (gilfree.demo.nogil), so this runs the same with GILFREE_EXAMPLES_STDLIB=1."""
import os
import sys
from threading import Thread
import time

from gilfree.demo import nogil

here = os.path.dirname(os.path.abspath(__file__))
try:
    countdown = nogil.build(os.path.join(here, "seed004_countdown_nogil.pyx")).countdown
except RuntimeError as e:
    sys.exit("cannot build the Cython module: %s" % e)

COUNT = 10000000
t1 = Thread(target=countdown, args=(COUNT//2,))
t2 = Thread(target=countdown, args=(COUNT//2,))
start = time.time()
t1.start(); t2.start()
t1.join(); t2.join()
end = time.time()
print(end-start)
