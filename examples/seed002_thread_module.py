"""Seed 002, "Using thread": the low-level ``_thread`` module (Python 2's ``thread``).

Starts a thread per line read from standard input; quits on a line "q".
"""
import _thread
import time


def child(tid):
    print('Hello from thread', tid)


def parent():
    i = 0
    while True:
        i += 1
        _thread.start_new_thread(child, (i,))
        if input() == 'q':
            break


parent()
time.sleep(0.2)  # _thread threads die with the process: give the last one time to print
