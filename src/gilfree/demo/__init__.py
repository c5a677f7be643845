"""``python -m gilfree demo``: the seed workloads, run serially, with threads, with the
standard library's Pool and with gilfree, side by side (issue 5).

    python -m gilfree demo [--quick] [--out DIR] [--workers N] [--lines N] [--count N]
                           [--frames N] [--input-log PATH] [--input-gif PATH]
                           [--cluster local|ADDRESS]

Writes to --out: the generated inputs (unless given), ascii_kitten.gif, demo.png (chart),
results.json and results.md.  Exit status 0 when every variant that ran gave the same answer
as the serial run, 1 otherwise.

The workloads (pure functions, data generators) are in ``workloads``; how they are run is in
``runners`` (one class per way of running, a cluster backend being one more), the progress
bar, table and chart in ``report``.  The standard-library variants run the tutorials' code
as written; gilfree runs the same code (import swapped), plus the file-aware ``map_lines``
for the log and, for the GIF, frames in shared memory (``gilfree.shared_array``: workers get
views by reference and write their ASCII frames into a second shared array; no pixels are
pickled).  The countdown also gets seed 004's Cython row: threads running a countdown
compiled by Cython with its loop outside the GIL (``nogil``: built once with Cython from PyPI,
skipped with the reason when there is no Cython or no C compiler).  ``--cluster`` adds rows
for gilfree's Pool on a Dask cluster (gilfree.cluster).
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time

from . import report, runners, workloads

__all__ = ["main", "add_arguments", "run"]

FULL = {"lines": 1_000_000, "frames": 48, "size": (320, 240), "count": 50_000_000}
QUICK = {"lines": 200_000, "frames": 24, "size": (320, 240), "count": 10_000_000}


def add_arguments(p):
    p.add_argument("--input-log", metavar="PATH",
                   help="JSON-lines request log (default: generate one in --out)")
    p.add_argument("--input-gif", metavar="PATH",
                   help="animated GIF (default: generate one in --out)")
    p.add_argument("--out", metavar="DIR", default="demo-out",
                   help="output directory (default: ./demo-out)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 2,
                   help="worker processes / threads (default: CPU count, %(default)s here)")
    p.add_argument("--lines", type=int, help="log lines to generate (default 1,000,000)")
    p.add_argument("--frames", type=int, help="GIF frames to generate (default 48)")
    p.add_argument("--count", type=int, help="countdown total (default 50,000,000)")
    p.add_argument("--quick", action="store_true",
                   help="small sizes (finishes in well under 30 s)")
    p.add_argument("--repeat", type=int, default=1, metavar="R",
                   help="R rounds, each running every variant once (interleaved: timings "
                        "drift); report each variant's median (default 1)")
    p.add_argument("--only", metavar="W[,W]",
                   help="run only these workloads: log, gif, countdown")
    p.add_argument("--cluster", metavar="local|ADDRESS",
                   help="also run every workload with gilfree.Pool(cluster=...) on Dask: "
                        "'local' starts a LocalCluster of --workers processes, an address "
                        "(tcp://host:8786) uses an existing scheduler")
    return p


def _inputs(args):
    sizes = dict(QUICK if args.quick else FULL)
    for k in ("lines", "frames", "count"):
        if getattr(args, k) is not None:
            sizes[k] = getattr(args, k)
    return sizes


REPEAT = [1]  # set by run(): rounds per workload (the median of each variant is reported)
BACKENDS = []  # set by run(): the cluster runners (runners.backends), one more row each


def _run_cases(results, workload, cases, check):
    """Run a workload's variants: ``cases`` is a list of (variant, runner, fn, workers), the
    serial one first.  Each round runs every variant once, in order (rounds interleave
    variants, because timings on a shared VM drift); each run is ``fn(session)`` inside a
    fresh session of its runner (pool start not timed) and ``check(value)`` -> (ok, note)
    judges it.  Appends one result dict per variant (median time of its rounds)."""
    rounds = max(1, REPEAT[0])
    todo = []
    for variant, runner, fn, workers in cases:
        res = {"workload": workload, "variant": variant, "runner": runner.name,
               "seconds": None, "status": "skipped", "note": ""}
        results.append(res)
        ok, why = runner.available()
        label = workload + " / " + variant
        if not ok:
            res["note"] = why
            print("  %-52s skipped: %s" % (label, why), flush=True)
            continue
        todo.append([res, label, runner, fn, workers, []])
    for rnd in range(rounds):
        for item in todo:
            res, label, runner, fn, workers, times = item
            if res["status"] in ("failed", "WRONG") or res["note"].startswith("unsupported"):
                continue
            try:
                with runner.session(workers) as s:
                    with report.Progress(label) as bar:
                        s.progress = bar
                        t0 = time.perf_counter()
                        value = fn(s)
                        dt = time.perf_counter() - t0
            except runners.Unsupported as e:
                res["note"] = "unsupported: %s" % e
                print("  %-52s skipped: %s" % (label, e), flush=True)
                continue
            except Exception as e:  # report, keep going with the other variants
                res["status"] = "failed"
                res["note"] = "%s: %s" % (type(e).__name__, e)
                print("  %-52s FAILED: %s" % (label, res["note"]), flush=True)
                continue
            times.append(dt)
            good, note = check(value)
            if not good:  # wrong in any round: wrong
                res["status"], res["note"] = "WRONG", note
            elif len(times) == 1:
                res["status"], res["note"] = "ok", note
            res["seconds"] = statistics.median(times)
            if rounds > 1:
                res["runs"] = times
            print("  %-52s %8.3f s  %s%s%s" % (
                label, dt, "ok" if good else "WRONG",
                (" (" + res["note"] + ")") if res["note"] else "",
                ("  [round %d/%d]" % (rnd + 1, rounds)) if rounds > 1 else ""), flush=True)


def _speedups(results):
    serial = {r["workload"]: r["seconds"] for r in results
              if r["runner"] == "serial" and r["seconds"]}
    for r in results:
        base = serial.get(r["workload"])
        r["speedup"] = (base / r["seconds"]) if (base and r["seconds"]) else None


def _log_workload(args, sizes, results):
    out = args.out
    path = args.input_log
    if not path:
        path = os.path.join(out, "requests-%d.log" % sizes["lines"])
        if not os.path.exists(path):
            print("generating %s (%d lines)..." % (path, sizes["lines"]), flush=True)
            workloads.generate_log(path, sizes["lines"])
    n = workloads.log_line_count(path)
    wl = "log analytics (%s lines)" % format(n, ",")
    print("%s: %s" % (wl, path), flush=True)
    expected = {}

    def tutorial(s):  # the tutorial's code: readlines() then map(get_ip, lines)
        return workloads.count_ips(s.map(workloads.get_ip, workloads.read_lines(path)))

    def by_file(s):  # file-aware map: workers read their own byte ranges
        return workloads.count_ips(s.map_lines(workloads.get_ip, path))

    def check(counter):
        if "serial" not in expected:
            expected["serial"] = counter
            top = counter.most_common(1)[0] if counter else ("-", 0)
            return True, "top IP %s x%d, %d distinct" % (top[0], top[1], len(counter))
        return (counter == expected["serial"],
                "counts equal" if counter == expected["serial"] else "counts DIFFER")

    w = args.workers
    cases = []
    cases.append(("serial", runners.SerialRunner(), tutorial, w))
    cases.append(("stdlib Pool.map", runners.PoolRunner(), tutorial, w))
    cases.append(("gilfree Pool.map", runners.GilfreePoolRunner(), tutorial, w))
    cases.append(("gilfree map_lines", runners.GilfreePoolRunner(), by_file, w))
    for b in BACKENDS:
        cases.append((b.label + " map", b, tutorial, w))
    _run_cases(results, wl, cases, check)
    return expected.get("serial")


def _gif_workload(args, sizes, results):
    out = args.out
    path = args.input_gif
    if not path:
        path = os.path.join(out, "kitten-%d.gif" % sizes["frames"])
        if not os.path.exists(path):
            print("generating %s (%d frames)..." % (path, sizes["frames"]), flush=True)
            workloads.generate_gif(path, sizes["frames"], sizes["size"])
    frames = workloads.load_frames(path)
    try:  # imported before any pool forks (as Pillow is by load_frames), not while timed
        import numpy  # noqa: F401
    except ImportError:
        pass  # the shared-frames variant then fails with the reason; the others run
    wl = "ASCII GIF (%d frames %dx%d)" % ((len(frames),) + frames[0].size)
    print("%s: %s" % (wl, path), flush=True)
    expected = {}

    def convert(s):  # the tutorial's code: pool.map(filters.ascii, frames)
        return s.map(workloads.ascii, frames)

    def shared(s):
        # frames in shared memory: one (n, h, w, 3) array in, one out; each task is a pair of
        # views (sent by reference: an arena offset), never the pixels themselves.  One frame
        # per task (a task costs microseconds here), so both workers finish together.
        src = workloads.frames_to_array(frames, s.shared_array)
        dst = s.shared_array(src.shape, src.dtype)
        s.map(workloads.ascii_into, [(src[i], dst[i]) for i in range(len(src))], 1)
        return workloads.array_to_frames(dst)

    def check(ascii_frames):
        digests = [workloads.frame_digest(f) for f in ascii_frames]
        if "serial" not in expected:
            expected["serial"] = digests
            expected["frames"] = ascii_frames
            return True, "%d frames" % len(digests)
        same = digests == expected["serial"]
        return same, "frames equal" if same else "frames DIFFER"

    w = args.workers
    cases = []
    cases.append(("serial", runners.SerialRunner(), convert, w))
    cases.append(("stdlib Pool.map", runners.PoolRunner(), convert, w))
    cases.append(("gilfree Pool.map", runners.GilfreePoolRunner(), convert, w))  # import swapped
    cases.append(("gilfree Pool.map, shared frames", runners.GilfreePoolRunner(), shared, w))
    for b in BACKENDS:
        cases.append((b.label + " map", b, convert, w))
    _run_cases(results, wl, cases, check)
    if expected.get("frames"):
        dest = os.path.join(out, "ascii_kitten.gif")
        with open(dest, "wb") as handle:
            workloads.write_frames(handle, expected["frames"])
        print("  wrote %s" % dest, flush=True)


def _countdown_workload(args, sizes, results):
    count = sizes["count"]
    w = args.workers
    parts = workloads.split_count(count, max(2, w))
    wl = "countdown %s" % format(count, ",")
    print("%s: split %s" % (wl, parts), flush=True)

    def run(s):  # serial: the parts one after the other; same total work
        return s.map(workloads.countdown, parts)

    def run_nogil(s):  # seed 004's Cython version: the same split, the loop without the GIL
        return s.map(s.nogil_countdown, parts)

    def check(v):
        return all(x == 0 for x in v), ""

    cases = []
    cases.append(("serial", runners.SerialRunner(), run, w))
    cases.append(("%d threads" % len(parts), runners.ThreadRunner(), run, len(parts)))
    cases.append(("%d threads, Cython nogil" % len(parts), runners.NogilThreadRunner(),
                  run_nogil, len(parts)))
    cases.append(("stdlib Pool.map", runners.PoolRunner(), run, w))
    cases.append(("gilfree Pool.map", runners.GilfreePoolRunner(), run, w))
    for b in BACKENDS:
        cases.append((b.label + " map", b, run, w))
    _run_cases(results, wl, cases, check)


WORKLOADS = {"log": _log_workload, "gif": _gif_workload, "countdown": _countdown_workload}


def run(args):
    """Run the demo for parsed ``args``; returns the exit status."""
    os.makedirs(args.out, exist_ok=True)
    REPEAT[0] = args.repeat
    sizes = _inputs(args)
    only = args.only.split(",") if args.only else list(WORKLOADS)
    for name in only:
        if name not in WORKLOADS:
            print("unknown workload %r (choose from %s)" % (name, ", ".join(WORKLOADS)),
                  file=sys.stderr)
            return 2
    machine = "%d CPUs, Python %s, %s" % (os.cpu_count() or 0, platform.python_version(),
                                          platform.platform(terse=True))
    print("gilfree demo: %d workers; %s" % (args.workers, machine), flush=True)
    ok, why = runners.GilfreePoolRunner().available()
    if not ok:
        print("note: %s -- its rows are skipped" % why, flush=True)
    results = []
    t0 = time.perf_counter()
    BACKENDS[:] = runners.backends(getattr(args, "cluster", None))
    try:
        for name in only:
            print(flush=True)
            WORKLOADS[name](args, sizes, results)
    finally:
        runners.close_all(BACKENDS)
        BACKENDS[:] = []
    _speedups(results)
    print()
    print(report.table(results))
    title = "gilfree demo -- %s, %d workers" % (machine, args.workers)
    png = report.chart(results, os.path.join(args.out, "demo.png"), title)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump({"machine": machine, "workers": args.workers, "sizes": sizes,
                   "results": results}, f, indent=1, default=str)
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write("%s\n\n%s\n" % (title, report.markdown(results)))
    print()
    if png:
        print("chart: %s" % png)
    print("results: %s (%.1f s in all)" % (os.path.join(args.out, "results.json"),
                                          time.perf_counter() - t0))
    bad = [r for r in results if r["status"] in ("WRONG", "failed")]
    if bad:
        print("%d variant(s) gave a wrong answer or failed" % len(bad), file=sys.stderr)
        return 1
    return 0


def main(argv=None):
    """Entry point: ``gilfree.demo.main(["--quick"])``; returns the exit status."""
    p = add_arguments(argparse.ArgumentParser(prog="python -m gilfree demo",
                                              description=__doc__.split("\n\n")[0]))
    return run(p.parse_args(argv))
