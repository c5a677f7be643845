"""Seed 002, "Process pooling": apply_async and map on a Pool of 4 (never closed explicitly,
as in the tutorial: the pool is cleaned up at exit)."""
import _mp  # noqa: F401  (GILFREE_EXAMPLES_STDLIB=1 runs this on the standard library)
from gilfree import Pool  # was: from multiprocessing import Pool


def f(x):
    return x*x


if __name__ == '__main__':
    pool = Pool(processes=4)           # start 4 workers
    result = pool.apply_async(f, [10])  # run "f(10)"
    print(result.get(timeout=1))        # print "100"
    print(pool.map(f, range(10)))      # prints numbers
