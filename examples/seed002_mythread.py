"""Seed 002, "Example with threading": Mythread(2) prints 2**32, plus the "Threading
information" and "Daemon threads" calls."""
import threading


class Mythread(threading.Thread):
    def __init__(self, i):
        self.i = i
        threading.Thread.__init__(self)

    def run(self):
        print(self.i ** 32)


t = Mythread(2)
t.start()
t.join()

print(threading.current_thread().name)
print(threading.active_count())
print([th.name for th in threading.enumerate()])

d = Mythread(3)
d.daemon = True  # set before start(): the program does not wait for it at exit
d.start()
d.join()
