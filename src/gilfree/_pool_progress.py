"""Progress bars of gilfree.Pool's map / imap (progress=True): tqdm when it is installed, else
a plain bar on stderr. Private: gilfree.pool re-exports these names."""

import sys
import time


class _Bar:
    def __init__(self, total):
        self.total = total
        self.n = 0
        self._last = 0.0
        self._closed = False

    def update(self, k):
        self.n += k
        now = time.monotonic()
        if now - self._last > 0.1:
            self._last = now
            self._draw()

    def _draw(self):
        if self.total:
            frac = min(1.0, self.n / self.total)
            bar = "#" * int(frac * 30)
            sys.stderr.write("\r[%-30s] %d/%d" % (bar, self.n, self.total))
        else:
            sys.stderr.write("\r%d done" % self.n)
        sys.stderr.flush()

    def close(self):
        if not self._closed:
            self._closed = True
            self._draw()
            sys.stderr.write("\n")
            sys.stderr.flush()


def _make_progress(progress, total):
    if not progress:
        return None
    try:
        import tqdm
        return tqdm.tqdm(total=total)
    except ImportError:
        return _Bar(total)
