"""Seed 000, "Shared state": a global appended to inside Pool workers stays empty in the
parent (each worker is a separate process with its own copy).  Prints the list, then []."""
import _mp  # noqa: F401  (GILFREE_EXAMPLES_STDLIB=1 runs this on the standard library)
from gilfree import Pool  # was: from multiprocessing import Pool

foo = []


def add_to_foo(i):
    foo.append(i)


bar = []


def add_to_bar(i):
    bar.append(i)


if __name__ == '__main__':
    list(map(add_to_foo, range(0, 10)))
    print(foo)

    with Pool(4) as mp:
        list(mp.map(add_to_bar, range(0, 10)))
    print(bar)
