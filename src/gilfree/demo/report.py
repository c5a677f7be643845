"""Progress indicator, the results table and the PNG chart of the demo."""

import os
import sys
import threading
import time


class Progress:
    """What the user sees on stderr while one variant runs (TTY only; nothing otherwise),
    then the caller prints one summary line on stdout.

    Three modes, chosen by the runner once it knows how the work is run:
      * ``bar(total)``: a real bar driven by completed items (``update(k)``): tqdm when it is
        installed, else a plain one (serial and thread runners count results as they arrive);
      * ``hand_over()``: the runner's own bar (gilfree's ``Pool.map(progress=True)``) draws it;
        this one only prints the label above it;
      * neither: a spinner with the elapsed time and the reason no bar is possible (the
        standard library's ``Pool.map`` reports nothing until it returns).
    The spinner is a thread of the parent that wakes ten times a second; bars redraw at most
    ten times a second, so neither disturbs what is measured."""

    FRAMES = "|/-\\"

    def __init__(self, label, stream=None):
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.why = "preparing"
        self.mode = "spinner"
        self._stop = threading.Event()
        self._thread = None
        self._bar = None
        self.total = None
        self.n = 0
        self._last = 0.0
        self.t0 = None

    # -- used by _case
    def __enter__(self):
        self.t0 = time.perf_counter()
        if self.tty:
            self._thread = threading.Thread(target=self._spin, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop_spinner()
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self.mode == "bar" and self.tty:
            self.stream.write("\r" + " " * 78 + "\r")
            self.stream.flush()
        return False

    # -- used by runners
    def spinner(self, why):
        """No measurable progress: keep the spinner, saying why."""
        self.why = why

    def bar(self, total, unit="it"):
        """Switch to a bar of ``total`` items; returns self (call ``update(k)``)."""
        self._stop_spinner()
        self.mode = "bar"
        self.total = total
        self.n = 0
        if not self.tty:
            return self
        try:
            import tqdm
        except ImportError:
            self._draw()
            return self
        try:
            cols = os.get_terminal_size(self.stream.fileno()).columns
        except (AttributeError, OSError, ValueError):
            cols = 0
        # a terminal that reports 0 columns (some ptys) would get an empty tqdm bar
        self._bar = tqdm.tqdm(total=total, desc="  " + self.label, unit=unit, leave=False,
                              file=self.stream, mininterval=0.1,
                              dynamic_ncols=cols > 0, ncols=None if cols > 0 else 100)
        return self

    def update(self, k=1):
        self.n += k
        if self._bar is not None:
            self._bar.update(k)
        elif self.tty and self.mode == "bar":
            now = time.perf_counter()
            if now - self._last >= 0.1 or self.n >= (self.total or 0):
                self._last = now
                self._draw()

    def hand_over(self):
        """The runner draws its own bar: stop the spinner, print the label on a line of its
        own; returns True if a bar should be drawn at all (stderr is a terminal)."""
        self._stop_spinner()
        self.mode = "external"
        if self.tty:
            self.stream.write("  %s\n" % self.label)
            self.stream.flush()
        return self.tty

    # -- internals
    def _stop_spinner(self):
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
            self.stream.write("\r" + " " * 78 + "\r")
            self.stream.flush()

    def _draw(self):
        el = time.perf_counter() - self.t0
        frac = min(1.0, self.n / self.total) if self.total else 0.0
        self.stream.write("\r  %-40.40s [%-24s] %d/%d %5.1f s" % (
            self.label, "#" * int(frac * 24), self.n, self.total or 0, el))
        self.stream.flush()

    def _spin(self):
        i = 0
        while not self._stop.wait(0.1):
            el = time.perf_counter() - self.t0
            self.stream.write("\r  %-40.40s %s %6.1f s  (%s)" % (
                self.label, self.FRAMES[i % 4], el, self.why))
            self.stream.flush()
            i += 1


class Quiet(Progress):
    """A Progress that shows nothing (for library use and tests)."""

    def __init__(self, label=""):
        super().__init__(label, stream=_Null())


class _Null:
    def write(self, s):
        pass

    def flush(self):
        pass

    def isatty(self):
        return False


def _fmt_time(s):
    return "-" if s is None else "%.3f" % s


def table(results):
    """The results as a fixed-width text table (times in seconds, speedup vs serial)."""
    head = ("workload", "variant", "time (s)", "vs serial", "check")
    rows = []
    for r in results:
        sp = r.get("speedup")
        rows.append((r["workload"], r["variant"], _fmt_time(r.get("seconds")),
                     "-" if sp is None else "%.2fx" % sp,
                     r["status"] if not r.get("note") else "%s: %s" % (r["status"], r["note"])))
    widths = [max(len(str(x[i])) for x in rows + [head]) for i in range(4)]
    out = []
    line = "  ".join(str(h).ljust(w) for h, w in zip(head[:4], widths)) + "  " + head[4]
    out.append(line)
    out.append("-" * len(line))
    last = None
    for row in rows:
        wl = row[0] if row[0] != last else ""
        last = row[0]
        cells = [wl.ljust(widths[0]), row[1].ljust(widths[1]),
                 row[2].rjust(widths[2]), row[3].rjust(widths[3])]
        out.append("  ".join(cells) + "  " + row[4])
    return "\n".join(out)


def markdown(results):
    out = ["| workload | variant | time (s) | vs serial | check |", "|---|---|---:|---:|---|"]
    for r in results:
        sp = r.get("speedup")
        out.append("| %s | %s | %s | %s | %s |" % (
            r["workload"], r["variant"], _fmt_time(r.get("seconds")),
            "-" if sp is None else "%.2fx" % sp,
            r["status"] + (": " + r["note"] if r.get("note") else "")))
    return "\n".join(out)


def chart(results, path, title):
    """A PNG bar chart of speedup vs serial per workload; returns path, or None without
    matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    workloads = []
    for r in results:
        if r["workload"] not in workloads:
            workloads.append(r["workload"])
    fig, axes = plt.subplots(1, len(workloads), figsize=(4.2 * len(workloads), 4.2),
                             squeeze=False)
    palette = {"serial": "#9e9e9e", "threads": "#e57373", "stdlib": "#64b5f6",
               "gilfree": "#43a047"}
    for ax, wl in zip(axes[0], workloads):
        rs = [r for r in results if r["workload"] == wl]
        names = [r["variant"] for r in rs]
        vals = [r.get("speedup") or 0.0 for r in rs]
        colours = [next((c for k, c in palette.items() if k in n), "#7e57c2")
                   for n in names]
        bars = ax.bar(range(len(rs)), vals, color=colours)
        for b, r in zip(bars, rs):
            txt = ("%.2fx\n%.2f s" % (r["speedup"], r["seconds"])
                   if r.get("speedup") else "n/a")
            ax.text(b.get_x() + b.get_width() / 2, max(b.get_height(), 0.02), txt,
                    ha="center", va="bottom", fontsize=7)
        ax.axhline(1.0, color="black", lw=0.8, ls="--")
        ax.set_xticks(range(len(rs)))
        ax.set_xticklabels(names, rotation=30, ha="right", fontsize=8)
        ax.set_title(wl, fontsize=9)
        ax.set_ylabel("speedup vs serial (higher is better)", fontsize=8)
        ax.set_ylim(0, max([v for v in vals] + [1.0]) * 1.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
