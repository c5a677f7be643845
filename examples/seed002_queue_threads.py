"""Seed 002, "Queues to share data" ... "Wait for threads": queue.Queue (Python 2's Queue.Queue)
with a bound, Full / Empty, and worker threads that call task_done() while the main thread
join()s the queue."""
import queue
import threading

jobs = queue.Queue(5)  # max
for item in range(5):
    jobs.put(item)  # Blocks! (when full)
try:
    jobs.put(5, block=False)
except queue.Full:
    print("queue.Full")
for _ in range(5):
    jobs.get()  # Blocks! (when empty)
try:
    jobs.get(block=False)
except queue.Empty:
    print("queue.Empty")

jobs = queue.Queue(-1)  # unbounded
results = []
lock = threading.Lock()


def worker():
    while True:
        item = jobs.get()
        if item is None:
            jobs.task_done()
            break
        with lock:
            results.append(item * item)
        jobs.task_done()  # this item is done


threads = [threading.Thread(target=worker) for _ in range(3)]
for t in threads:
    t.start()
for item in range(10):
    jobs.put(item)
for t in threads:
    jobs.put(None)
jobs.join()  # until every item was marked done
for t in threads:
    t.join()
print(sorted(results))
