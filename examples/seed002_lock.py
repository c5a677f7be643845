"""Seed 002, "Synchronization": 10 processes print under a shared Lock (not joined explicitly:
the children are joined when the parent exits, as with the standard library)."""
import _mp  # noqa: F401  (GILFREE_EXAMPLES_STDLIB=1 runs this on the standard library)
from gilfree import Process, Lock  # was: from multiprocessing import Process, Lock


def f(l, i):
    l.acquire()
    print('hello world', i, flush=True)
    l.release()


if __name__ == '__main__':
    lock = Lock()

    for num in range(10):
        Process(target=f, args=(lock, num)).start()
