"""The same job as seed000_gif_celery.py written with ``gilfree.Pool(cluster=...)``: the
tutorial's ``Pool(4).map(filters.ascii, frames)`` with one more argument, on a Dask cluster
(``GILFREE_CLUSTER``: a scheduler address, or ``local`` -- the default here -- for a
``distributed.LocalCluster`` of 4 worker processes started and stopped with the pool)."""
import hashlib
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from PIL import Image  # noqa: E402

import gilfree  # noqa: E402

import filters  # noqa: E402
from gif_frames import read_frames, write_frames  # noqa: E402
from _inputs import ensure_gif  # noqa: E402

if __name__ == '__main__':
    ensure_gif('./kitten.gif')
    cluster = os.environ.get("GILFREE_CLUSTER") or "local"
    with Image.open('./kitten.gif') as img:
        with gilfree.Pool(4, cluster=cluster) as mp:
            t0 = time.perf_counter()                          # %time
            ascii_frames = mp.map(filters.ascii, read_frames(img))
            print(f"Wall time: {time.perf_counter() - t0:.2f} s")

    with open('./ascii_kitten4.gif', 'wb') as handle:
        write_frames(handle, ascii_frames)
    print("wrote ascii_kitten4.gif:", len(ascii_frames), "frames, digest",
          hashlib.sha1(b"".join(f.tobytes() for f in ascii_frames)).hexdigest()[:16])
