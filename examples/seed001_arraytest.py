"""Seed 001 (arraytest.py): a shared Array filled by a child process."""
import _mp  # noqa: F401  (GILFREE_EXAMPLES_STDLIB=1 runs this on the standard library)
import gilfree as multiprocessing  # was: import multiprocessing


def fill_array(arr):
    arr[:] = [5, 6, 7]


if __name__ == '__main__':
    dat = multiprocessing.Array('i', [1, 2, 3])
    p = multiprocessing.Process(target=fill_array, args=(dat,))
    p.start()
    p.join()
    print(dat[:])
