"""Make the seed 000 inputs when they are missing: requests.log (JSON request log, one request
per line), kitten.gif (an animated GIF) and clementine.jpg (a picture).  The tutorial had its
own files; these are generated, deterministically, in the current directory.

Sizes: 1,000,000 log lines and 48 frames as in the tutorial; with EXAMPLES_FAST=1 100,000 lines
and 24 frames.
"""

import json
import math
import os
import random

from _mp import FAST

LOG_LINES = 100_000 if FAST else 1_000_000
GIF_FRAMES = 24 if FAST else 48


def ensure_log(path="requests.log", lines=LOG_LINES, distinct=3000, seed=1):
    if os.path.exists(path):
        return path
    rng = random.Random(seed)
    ips = sorted({"%d.%d.%d.%d" % (rng.randint(1, 223), rng.randint(0, 255),
                                   rng.randint(0, 255), rng.randint(1, 254))
                  for _ in range(distinct)})
    rng.shuffle(ips)
    weights = [1.0 / (rank ** 1.1) for rank in range(1, len(ips) + 1)]  # Zipf-like
    paths = ["/", "/index.html", "/api/items", "/login", "/static/app.js", "/cart"]
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        done = 0
        while done < lines:
            n = min(10_000, lines - done)
            out = [json.dumps({"IP": ip, "time": 1_700_000_000 + done + i,
                               "method": "GET", "path": rng.choice(paths),
                               "status": 200, "bytes": rng.randrange(200, 50_000)})
                   for i, ip in enumerate(rng.choices(ips, weights=weights, k=n))]
            f.write("\n".join(out) + "\n")
            done += n
    os.replace(tmp, path)
    return path


def _scene(t, size):
    from PIL import Image, ImageDraw

    w, h = size
    img = Image.new("RGB", size, (20, 20, 50))
    d = ImageDraw.Draw(img)
    for y in range(0, h, 8):
        s = int(50 + 50 * math.sin(y / h * 6.28 + t / 5))
        d.rectangle([0, y, w, y + 8], fill=(s // 3, s // 2, s))
    # a cat-ish face moving across
    cx = (w * 0.2 + t * w / 40) % w
    cy = h * 0.55 + math.sin(t / 4) * h * 0.1
    r = min(w, h) * 0.25
    d.polygon([(cx - r, cy - r * 0.3), (cx - r * 0.7, cy - r * 1.3), (cx - r * 0.2, cy - r * 0.8)],
              fill=(230, 150, 60))
    d.polygon([(cx + r, cy - r * 0.3), (cx + r * 0.7, cy - r * 1.3), (cx + r * 0.2, cy - r * 0.8)],
              fill=(230, 150, 60))
    d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=(240, 160, 70))
    for ex in (-0.4, 0.4):
        d.ellipse([cx + ex * r - r * 0.15, cy - r * 0.35, cx + ex * r + r * 0.15, cy - r * 0.05],
                  fill=(40, 160, 60))
    d.ellipse([cx - r * 0.1, cy + r * 0.05, cx + r * 0.1, cy + r * 0.2], fill=(250, 120, 150))
    return img


def ensure_gif(path="kitten.gif", frames=GIF_FRAMES, size=(320, 240)):
    if os.path.exists(path):
        return path
    from gif_frames import write_frames

    with open(path + ".tmp", "wb") as handle:
        write_frames(handle, [_scene(t, size) for t in range(frames)])
    os.replace(path + ".tmp", path)
    return path


def ensure_jpg(path="clementine.jpg", size=(640, 480)):
    if os.path.exists(path):
        return path
    _scene(10, size).save(path + ".tmp", format="JPEG", quality=90)
    os.replace(path + ".tmp", path)
    return path
