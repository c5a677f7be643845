"""Seed 002, "Locking/mutexes": threading.Lock acquire / release / locked."""
import threading

mutex = threading.Lock()

mutex.acquire()  # grab the mutex
print(mutex.locked())  # check the state
mutex.release()  # release the mutex
print(mutex.locked())
