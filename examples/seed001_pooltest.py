"""Seed 001 (pooltest.py): Pool.starmap_async writing into a Manager list."""
import _mp  # noqa: F401  (GILFREE_EXAMPLES_STDLIB=1 runs this on the standard library)
from gilfree import Pool, Manager  # was: from multiprocessing import Pool, Manager


def fill_array(index, arr):
    arr[index] = index**2


if __name__ == '__main__':
    with Manager() as manager:
        arr = manager.list(range(10))

        with Pool(processes=2) as pool:
            dat = [(i, arr) for i in range(10)]
            res = pool.starmap_async(fill_array, dat)
            res.get(timeout=1)
            print(arr)
