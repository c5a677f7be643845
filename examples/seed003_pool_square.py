"""Seed 003, "The pool function": Pool(4).map squares [1..5]."""
import _mp  # noqa: F401  (GILFREE_EXAMPLES_STDLIB=1 runs this on the standard library)
import gilfree as multiprocessing  # was: import multiprocessing


def worker(x):
    """A function that takes a number and squares it."""
    return x ** 2


if __name__ == '__main__':
    with multiprocessing.Pool(processes=4) as pool:
        # Use the map function to apply the worker function to each element of the list
        result = pool.map(worker, [1, 2, 3, 4, 5])

    print(result)
