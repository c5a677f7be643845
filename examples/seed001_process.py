"""Seed 001: start a process that prints its pid (the notebook cell and mptest.py)."""
import _mp  # noqa: F401  (GILFREE_EXAMPLES_STDLIB=1 runs this on the standard library)
import gilfree as multiprocessing  # was: import multiprocessing
import os


def print_mp():
    print('I am process', os.getpid())


if __name__ == '__main__':  # needed to prevent errors from multiple loads
    print('Process', os.getpid(), 'spawning a new process', flush=True)
    p = multiprocessing.Process(target=print_mp)
    p.start()
