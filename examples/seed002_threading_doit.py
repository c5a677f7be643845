"""Seed 002, "Using threading": a Thread subclass with run(), started three times."""
import threading


class DoIt(threading.Thread):
    def run(self):
        print("In the thread")


DoIt().start()
DoIt().start()
DoIt().start()
