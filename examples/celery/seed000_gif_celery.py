"""Seed 000's Celery cell: the GIF frames to ASCII art with
``celery_tasks.ascii_filter.map(read_frames(img)).apply_async().get()`` -- on a running
``redis-server`` and ``celery -A celery_tasks worker`` (see README.md). Celery's ``map`` is
one task that converts the frames one after the other in one worker process, as in the
tutorial."""
import hashlib
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from PIL import Image  # noqa: E402

import celery_tasks  # noqa: E402
from gif_frames import read_frames, write_frames  # noqa: E402
from _inputs import ensure_gif  # noqa: E402

if __name__ == '__main__':
    ensure_gif('./kitten.gif')
    with Image.open('./kitten.gif') as img:
        t0 = time.perf_counter()                              # %time
        ascii_frames = celery_tasks.ascii_filter.map(read_frames(img)).apply_async().get(
            timeout=600)
        print(f"Wall time: {time.perf_counter() - t0:.2f} s")

    with open('./ascii_kitten3.gif', 'wb') as handle:
        write_frames(handle, ascii_frames)
    print("wrote ascii_kitten3.gif:", len(ascii_frames), "frames, digest",
          hashlib.sha1(b"".join(f.tobytes() for f in ascii_frames)).hexdigest()[:16])
