"""Seed 000, "Something more fun": one picture to ASCII art (serial; the baseline for the GIF
examples).  clementine.jpg is generated in the current directory if missing."""
import time

from PIL import Image

import filters
from _inputs import ensure_jpg

if __name__ == '__main__':
    ensure_jpg('./clementine.jpg')
    with Image.open('./clementine.jpg') as img:
        t0 = time.perf_counter()                              # %time
        img = filters.ascii(img)
        print(f"Wall time: {time.perf_counter() - t0:.2f} s")
        img.save('./ascii_clementine.jpg')
    print("wrote ascii_clementine.jpg", img.size)
