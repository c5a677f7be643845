"""The tutorial's ``filters`` module (seed 000): ``ascii(img)`` turns a PIL image into ASCII
art rendered back into an image of the same size, one coloured character per 4x8 cell.

Pure Python per cell, so it is CPU-bound and holds the GIL, which is the tutorial's point.
(The demo, gilfree.demo.workloads.ascii, is the same function; this copy keeps the examples
runnable without gilfree installed.)
"""

from PIL import Image, ImageDraw, ImageFont

RAMP = " .'`^,:;Il!i><~+_-?][}{1)(|tfjrxnuvczXYUJCLQ0OZmwqpdbkhao*#MW&8%B@$"
CELL = (4, 8)
_font = None


def _get_font():
    global _font
    if _font is None:
        try:
            _font = ImageFont.load_default(size=8)
        except TypeError:  # Pillow < 10.1
            _font = ImageFont.load_default()
    return _font


def ascii(img):
    img = img.convert("RGB")
    w, h = img.size
    cw, ch = CELL
    cols, rows = max(1, w // cw), max(1, h // ch)
    small = img.resize((cols, rows), Image.BOX)
    flat = getattr(small, "get_flattened_data", None)  # Pillow >= 12.1; getdata deprecated
    pixels = list(flat() if flat is not None else small.getdata())
    out = Image.new("RGB", (cols * cw, rows * ch), (0, 0, 0))
    draw = ImageDraw.Draw(out)
    font = _get_font()
    top = len(RAMP) - 1
    for row in range(rows):
        for col in range(cols):
            r, g, b = pixels[row * cols + col]
            c = RAMP[((299 * r + 587 * g + 114 * b) // 1000) * top // 255]
            if c != " ":
                draw.text((col * cw, row * ch), c, fill=(r, g, b), font=font)
    if out.size != (w, h):
        out = out.resize((w, h), Image.NEAREST)
    return out
