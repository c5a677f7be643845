"""Seed 003: three processes take messages from one Queue until each gets "close"."""
import _mp  # noqa: F401  (GILFREE_EXAMPLES_STDLIB=1 runs this on the standard library)
from _mp import fast
import gilfree as multiprocessing  # was: import multiprocessing
import time
import random


def worker(worker_id, queue):
    """A function that runs in a separate process."""
    while True:
        message = queue.get()
        if message == "close":
            break
        time.sleep(fast(random.randint(0, 4)))
        print(f"Processed by worker {worker_id}: {message}", flush=True)
    print(f"Worker {worker_id} closing", flush=True)


queue = multiprocessing.Queue()

if __name__ == "__main__":
    # Start the worker processes
    processes = [multiprocessing.Process(target=worker, args=(i, queue)) for i in range(3)]
    for process in processes:
        process.start()

    # Send messages to the worker processes
    for message in ["hello", "world", "close", "close", "close"]:
        queue.put(message)

    # Wait for the worker processes to finish
    for process in processes:
        process.join()
