"""The tutorial's ``gif_frames`` module (seed 000): read the frames of an animated GIF and
write frames back as an animated GIF."""

from PIL import ImageSequence


def read_frames(img):
    """Every frame of an open PIL image, as independent RGB images (a list)."""
    return [frame.convert("RGB") for frame in ImageSequence.Iterator(img)]


def write_frames(handle, frames, duration=80):
    """Write frames to a binary file handle as a looping animated GIF."""
    frames = list(frames)
    frames[0].save(handle, format="GIF", save_all=True, append_images=frames[1:],
                   duration=duration, loop=0)
