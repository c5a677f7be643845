"""Seed 000: the GIF frames with ``Pool(4).map(filters.ascii, frames)``."""
import _mp  # noqa: F401  (GILFREE_EXAMPLES_STDLIB=1 runs this on the standard library)
import hashlib
import time

from PIL import Image

from gilfree import Pool  # was: from multiprocessing import Pool

import filters
from gif_frames import read_frames, write_frames
from _inputs import ensure_gif

if __name__ == '__main__':
    ensure_gif('./kitten.gif')
    with Image.open('./kitten.gif') as img:
        with Pool(4) as mp:
            t0 = time.perf_counter()                          # %time
            ascii_frames = mp.map(filters.ascii, read_frames(img))
            print(f"Wall time: {time.perf_counter() - t0:.2f} s")

    with open('./ascii_kitten4.gif', 'wb') as handle:
        write_frames(handle, ascii_frames)
    print("wrote ascii_kitten4.gif:", len(ascii_frames), "frames, digest",
          hashlib.sha1(b"".join(f.tobytes() for f in ascii_frames)).hexdigest()[:16])
