"""Seed 004: David Beazley's countdown on two threads (slower than serial: the GIL)."""
from threading import Thread
import time


def countdown(n):
    while n > 0:
        n -= 1


COUNT = 10000000
t1 = Thread(target=countdown, args=(COUNT//2,))  # Python 2's COUNT/2 was an integer
t2 = Thread(target=countdown, args=(COUNT//2,))
start = time.time()
t1.start(); t2.start()
t1.join(); t2.join()
end = time.time()
print(end-start)
