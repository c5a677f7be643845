"""Seed 000: every frame of an animated GIF to ASCII art, serially (a generator)."""
import hashlib
import time

from PIL import Image

import filters
from gif_frames import read_frames, write_frames
from _inputs import ensure_gif


def convert(frames):
    for frame in frames:
        yield filters.ascii(frame)


if __name__ == '__main__':
    ensure_gif('./kitten.gif')
    with Image.open('./kitten.gif') as img:
        t0 = time.perf_counter()                              # %time
        ascii_frames = list(convert(read_frames(img)))
        print(f"Wall time: {time.perf_counter() - t0:.2f} s")

    with open('./ascii_kitten.gif', 'wb') as handle:
        write_frames(handle, ascii_frames)
    print("wrote ascii_kitten.gif:", len(ascii_frames), "frames, digest",
          hashlib.sha1(b"".join(f.tobytes() for f in ascii_frames)).hexdigest()[:16])
