"""Seed 000: the GIF frames through a JoinableQueue to 4 Processes, results in a Manager list.

As in the tutorial, the workers append in completion order, so the frames of ascii_kitten2.gif
may come out shuffled; the digest printed is therefore taken over the sorted frame hashes.
Note: with the standard library, ``q.get_nowait()`` can raise ``queue.Empty`` while the Queue's
feeder thread is still writing frames into the pipe, so a worker may quit early (never all of
them while frames remain, in practice: the ones that keep working drain the queue).
"""
import _mp  # noqa: F401  (GILFREE_EXAMPLES_STDLIB=1 runs this on the standard library)
import hashlib
import queue
import time

from PIL import Image

from gilfree import Manager, Process, JoinableQueue  # was: from multiprocessing import ...

import filters
from gif_frames import read_frames, write_frames
from _inputs import ensure_gif


def runner(q, l):
    while True:
        try:
            frame = q.get_nowait()
            l.append(filters.ascii(frame))
            q.task_done()
        except queue.Empty:
            break


def convert_mp(frames):
    with Manager() as manager:
        q = JoinableQueue()
        l = manager.list()

        for frame in frames:
            q.put(frame)

        pool = [Process(target=runner, args=(q, l))
                for x in range(4)]
        for p in pool:
            p.start()

        q.join()

        return list(l)


if __name__ == '__main__':
    ensure_gif('./kitten.gif')
    with Image.open('./kitten.gif') as img:
        t0 = time.perf_counter()                              # %time
        ascii_frames = convert_mp(read_frames(img))
        print(f"Wall time: {time.perf_counter() - t0:.2f} s")

    with open('./ascii_kitten2.gif', 'wb') as handle:
        write_frames(handle, ascii_frames)
    hashes = sorted(hashlib.sha1(f.tobytes()).hexdigest() for f in ascii_frames)
    print("wrote ascii_kitten2.gif:", len(ascii_frames), "frames, order-free digest",
          hashlib.sha1("".join(hashes).encode()).hexdigest()[:16])
