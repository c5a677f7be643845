"""Seed 004: the countdown re-written with a Pool.

Fixed from the tutorial: ``with multiprocessing.Pool as pool`` lacked the call parentheses
(a TypeError), and COUNT/2 was Python 2 integer division."""
import _mp  # noqa: F401  (GILFREE_EXAMPLES_STDLIB=1 runs this on the standard library)
import gilfree as multiprocessing  # was: import multiprocessing
import time


def countdown(n):
    while n > 0:
        n -= 1


COUNT = 10000000

if __name__ == '__main__':
    start = time.time()
    with multiprocessing.Pool() as pool:
        pool.map(countdown, [COUNT//2, COUNT//2])
        pool.close()
        pool.join()
    end = time.time()
    print(end-start)
