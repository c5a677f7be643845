"""Seed 003, "Locks": two processes increment a shared Value 10 times each under a Lock."""
import _mp  # noqa: F401  (GILFREE_EXAMPLES_STDLIB=1 runs this on the standard library)
from _mp import fast
import gilfree as multiprocessing  # was: import multiprocessing
import time


def worker(worker_id, lock, resource):
    """A function that runs in a separate process."""
    for i in range(10):
        with lock:
            print(f"Worker {worker_id} is accessing the resource", flush=True)
            time.sleep(fast(0.1))
            resource.value = resource.value + 1
            print(f"Worker {worker_id} has updated the resource to {resource.value}", flush=True)


if __name__ == "__main__":
    # Create a shared resource
    resource = multiprocessing.Value("i", 0)

    # Create a lock to synchronize access to the shared resource
    lock = multiprocessing.Lock()

    # Start the worker processes
    processes = [multiprocessing.Process(target=worker, args=(i, lock, resource)) for i in range(2)]
    for process in processes:
        process.start()

    # Wait for the worker processes to finish
    for process in processes:
        process.join()
