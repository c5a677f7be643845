"""Seed 000, "MP Basics": count the top IPs of a JSON request log, serially and with a Pool.

Run from a scratch directory: requests.log is generated there if missing.
"""
import _mp  # noqa: F401  (GILFREE_EXAMPLES_STDLIB=1 runs this on the standard library)
import collections
import json
import time

from gilfree import Pool  # was: from multiprocessing import Pool

from _inputs import ensure_log


def get_ip(line):
    item = json.loads(line)
    return item['IP']


if __name__ == '__main__':
    ensure_log('requests.log')

    counter = collections.Counter()
    with open('requests.log') as handle:
        t0 = time.perf_counter()                              # %time
        ips = list(map(get_ip, handle.readlines()))
        print(f"Wall time: {time.perf_counter() - t0:.2f} s")
        counter.update(ips)

    print(counter.most_common(5))

    counter = collections.Counter()
    with open('requests.log') as handle:
        with Pool(4) as mp:
            t0 = time.perf_counter()                          # %time
            ips = list(mp.map(get_ip, handle.readlines()))
            print(f"Wall time: {time.perf_counter() - t0:.2f} s")
            counter.update(ips)

    print(counter.most_common(5))
