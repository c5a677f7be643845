"""Seed 003, "Futures": ProcessPoolExecutor.submit + concurrent.futures.wait.

gilfree.ProcessPoolExecutor is a real concurrent.futures.Executor: its futures work with
concurrent.futures.wait / as_completed."""
import _mp  # noqa: F401  (GILFREE_EXAMPLES_STDLIB=1 runs this on the standard library)
from _mp import fast
import concurrent.futures
import time

import gilfree  # was: concurrent.futures.ProcessPoolExecutor


def worker_function(number):
    """A function that takes a long time to run."""
    print(f"worker_function({number}) starting", flush=True)
    time.sleep(fast(number))
    print(f"worker_function({number}) finished", flush=True)
    return number


if __name__ == "__main__":
    # Create a list of input values
    inputs = [5, 2, 1, 3]

    # Use the ProcessPoolExecutor to execute the worker_function asynchronously using multiple processes
    with gilfree.ProcessPoolExecutor() as executor:
        # Submit the worker_function to be executed with each of the input values
        futures = [executor.submit(worker_function, number) for number in inputs]

        # Wait for all futures to finish
        concurrent.futures.wait(futures)

    # Print the results
    for future in futures:
        result = future.result()
        print(f"Result: {result}")
