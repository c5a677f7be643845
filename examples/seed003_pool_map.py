"""Seed 003: Pool(2).map over [5, 2, 1, 3], results printed in order."""
import _mp  # noqa: F401  (GILFREE_EXAMPLES_STDLIB=1 runs this on the standard library)
import gilfree as multiprocessing  # was: import multiprocessing


def worker_function(number):
    """A function that takes a long time to run."""
    return number * 2


if __name__ == "__main__":
    # Create a pool of processes
    with multiprocessing.Pool(processes=2) as pool:

        # Execute the worker_function with multiple inputs
        results = pool.map(worker_function, [5, 2, 1, 3])

    # Print the results
    for result in results:
        print(f"Result: {result}")
