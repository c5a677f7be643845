"""The seed workloads: pure functions and data generators.

Nothing here knows how it is run (serially, by threads, by a process pool, on a cluster):
that is runners.py's job.  Every function that is mapped over items is a plain module-level
function so that every runner can ship it to a worker by reference.

Workloads (from the tutorials in shared/seeds):
  * log analytics (seed 000): parse one JSON request per line, count the top IPs;
  * ASCII-art GIF (seed 000): turn every frame of an animated GIF into ASCII art rendered back
    into an image;
  * countdown (seeds 002 and 004, David Beazley's GIL demo): ``while n > 0: n -= 1``.
"""

import collections
import json
import math
import os
import random

# --------------------------------------------------------------------------- log analytics


def _ip_pool(distinct, rng):
    seen = set()
    out = []
    while len(out) < distinct:
        ip = "%d.%d.%d.%d" % (rng.randint(1, 223), rng.randint(0, 255),
                              rng.randint(0, 255), rng.randint(1, 254))
        if ip not in seen:
            seen.add(ip)
            out.append(ip)
    return out


_PATHS = ["/", "/index.html", "/api/v1/items", "/api/v1/items/42", "/login", "/static/app.js",
          "/static/style.css", "/search?q=cats", "/cart", "/checkout", "/img/kitten.gif"]
_AGENTS = ["Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
           "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Safari/605.1.15",
           "curl/8.5.0", "python-requests/2.32.3"]
_METHODS = ["GET"] * 8 + ["POST", "PUT"]
_STATUS = [200] * 17 + [301, 404, 500]


def generate_log(path, lines=1_000_000, distinct=3000, seed=1):
    """Write ``lines`` JSON request records (one per line) to ``path``; returns ``path``.

    IPs follow a Zipf-like law (weight 1/rank**1.1) over ``distinct`` addresses, so a few
    addresses dominate, as in a real access log.  Deterministic for a given seed.
    """
    rng = random.Random(seed)
    ips = _ip_pool(distinct, rng)
    weights = [1.0 / (rank ** 1.1) for rank in range(1, distinct + 1)]
    cum = list(_accumulate(weights))
    t0 = 1_700_000_000
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        block = 10_000
        done = 0
        while done < lines:
            n = min(block, lines - done)
            chosen = rng.choices(ips, cum_weights=cum, k=n)
            out = []
            for i, ip in enumerate(chosen):
                rec = {"IP": ip,
                       "time": t0 + done + i,
                       "method": _METHODS[rng.randrange(len(_METHODS))],
                       "path": _PATHS[rng.randrange(len(_PATHS))],
                       "status": _STATUS[rng.randrange(len(_STATUS))],
                       "bytes": rng.randrange(200, 50_000),
                       "agent": _AGENTS[rng.randrange(len(_AGENTS))]}
                out.append(json.dumps(rec))
            out.append("")
            f.write("\n".join(out))
            done += n
    os.replace(tmp, path)
    return path


def _accumulate(xs):
    total = 0.0
    for x in xs:
        total += x
        yield total


def get_ip(line):
    """The tutorial's function: the IP of one JSON log line."""
    item = json.loads(line)
    return item["IP"]


def count_ips(ips):
    """A Counter of an iterable of IPs."""
    return collections.Counter(ips)


def read_lines(path):
    """The tutorial's ``handle.readlines()``."""
    with open(path) as handle:
        return handle.readlines()


def log_line_count(path):
    with open(path, "rb") as f:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))


# --------------------------------------------------------------------------- ASCII-art GIF

ASCII_RAMP = " .'`^,:;Il!i><~+_-?][}{1)(|tfjrxnuvczXYUJCLQ0OZmwqpdbkhao*#MW&8%B@$"


def generate_gif(path, frames=48, size=(320, 240), seed=2):
    """Write an animated GIF of moving shapes to ``path``; returns ``path``."""
    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    w, h = size
    shapes = []
    for _ in range(7):
        shapes.append({
            "kind": rng.choice(["ellipse", "rectangle"]),
            "r": rng.randint(min(w, h) // 12, min(w, h) // 4),
            "x": rng.uniform(0, w), "y": rng.uniform(0, h),
            "dx": rng.uniform(-1, 1) * w / 16, "dy": rng.uniform(-1, 1) * h / 16,
            "colour": (rng.randint(60, 255), rng.randint(60, 255), rng.randint(60, 255)),
        })
    images = []
    for t in range(frames):
        img = Image.new("RGB", size, (12, 12, 40))
        draw = ImageDraw.Draw(img)
        # a slowly changing gradient background
        for y in range(0, h, 8):
            shade = int(40 + 60 * (0.5 + 0.5 * math.sin(y / h * 6.28 + t / 6)))
            draw.rectangle([0, y, w, y + 8], fill=(shade // 3, shade // 2, shade))
        for s in shapes:
            x = (s["x"] + s["dx"] * t) % w
            y = (s["y"] + s["dy"] * t) % h
            r = s["r"]
            box = [x - r, y - r, x + r, y + r]
            getattr(draw, s["kind"])(box, fill=s["colour"])
        images.append(img)
    with open(path, "wb") as handle:
        write_frames(handle, images)
    return path


def read_frames(img):
    """Every frame of an (animated) PIL image, as independent RGB images."""
    from PIL import ImageSequence

    return [frame.convert("RGB") for frame in ImageSequence.Iterator(img)]


def load_frames(path):
    from PIL import Image

    with Image.open(path) as img:
        return read_frames(img)


def write_frames(handle, frames, duration=80):
    """Write RGB frames as an animated, looping GIF to a binary file handle."""
    frames = list(frames)
    frames[0].save(handle, format="GIF", save_all=True, append_images=frames[1:],
                   duration=duration, loop=0)


def ascii(img, cell=(4, 8)):
    """The tutorial's ``filters.ascii``: ``img`` as ASCII art, rendered back into an image of
    the same size (one coloured character per ``cell`` of pixels).

    Pure Python per cell (brightness -> character, one draw call per character): CPU-bound
    work that holds the GIL, which is the point of the tutorial.
    """
    from PIL import Image, ImageDraw

    img = img.convert("RGB")
    w, h = img.size
    cw, ch = cell
    cols, rows = max(1, w // cw), max(1, h // ch)
    small = img.resize((cols, rows), Image.BOX)
    flat = getattr(small, "get_flattened_data", None)  # Pillow >= 12.1; getdata deprecated
    pixels = list(flat() if flat is not None else small.getdata())
    out = Image.new("RGB", (cols * cw, rows * ch), (0, 0, 0))
    draw = ImageDraw.Draw(out)
    font = _font()
    ramp = ASCII_RAMP
    top = len(ramp) - 1
    for row in range(rows):
        y = row * ch
        base = row * cols
        for col in range(cols):
            r, g, b = pixels[base + col]
            lum = (299 * r + 587 * g + 114 * b) // 1000
            c = ramp[lum * top // 255]
            if c != " ":
                draw.text((col * cw, y), c, fill=(r, g, b), font=font)
    if out.size != (w, h):
        out = out.resize((w, h), Image.NEAREST)
    return out


_FONT = None


def _font():
    global _FONT
    if _FONT is None:
        from PIL import ImageFont
        try:
            _FONT = ImageFont.load_default(size=8)
        except TypeError:  # Pillow < 10.1
            _FONT = ImageFont.load_default()
    return _FONT


def frames_to_array(frames, alloc):
    """Copy RGB frames (same size) into one uint8 array ``(n, h, w, 3)`` made by
    ``alloc(shape, dtype)`` (``gilfree.shared_array``: the frames then live in shared memory
    and travel to workers by reference, never as pickled bytes)."""
    import numpy as np

    w, h = frames[0].size
    arr = alloc((len(frames), h, w, 3), np.uint8)
    for i, f in enumerate(frames):
        arr[i] = np.asarray(f.convert("RGB"))
    return arr


def ascii_into(job):
    """``ascii()`` of one frame held in an array, written into another array: ``job`` is
    ``(src, dst)``, two ``(h, w, 3)`` uint8 arrays (views of shared frame arrays).  Returns
    None: the result travels back through ``dst``, not through the result channel."""
    import numpy as np
    from PIL import Image

    src, dst = job
    out = ascii(Image.fromarray(np.asarray(src), "RGB"))
    dst[...] = np.asarray(out)


def array_to_frames(arr):
    """The frames of an ``(n, h, w, 3)`` uint8 array as PIL RGB images (copies)."""
    import numpy as np
    from PIL import Image

    return [Image.fromarray(np.array(arr[i]), "RGB") for i in range(len(arr))]


def frame_digest(img):
    """A short hash of a frame's pixels, to compare results of different runners."""
    import hashlib

    return hashlib.sha1(img.tobytes()).hexdigest()[:16]


# --------------------------------------------------------------------------- countdown


def countdown(n):
    """David Beazley's GIL demo: a pure-Python busy loop.  Returns n (0 at the end)."""
    while n > 0:
        n -= 1
    return n


def split_count(count, parts):
    """``count`` split into ``parts`` near-equal integers (the seeds' COUNT/2, COUNT/2)."""
    q, r = divmod(count, parts)
    return [q + (1 if i < r else 0) for i in range(parts)]
