"""Seed 003, "The process function": 5 processes that sleep 1 s each."""
import _mp  # noqa: F401  (GILFREE_EXAMPLES_STDLIB=1 runs this on the standard library)
from _mp import fast
import gilfree as multiprocessing  # was: import multiprocessing
import time


def worker(number):
    """A function that runs in a separate process."""
    print(f"Worker {number} started", flush=True)
    time.sleep(fast(1))
    print(f"Worker {number} finished", flush=True)


if __name__ == '__main__':
    # Create a process for each worker
    processes = [multiprocessing.Process(target=worker, args=(i,)) for i in range(5)]

    # Start the processes
    for process in processes:
        process.start()

    # Wait for all processes to finish
    for process in processes:
        process.join()
