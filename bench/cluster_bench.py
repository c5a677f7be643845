#!/usr/bin/env python3
"""gilfree's cluster Pool on a local 2-worker Dask cluster, side by side with plain
``distributed.Client.map`` / ``submit`` and Ray's ``ray.util.multiprocessing.Pool`` (issue 10).

    pip install -r requirements/bench-cluster.txt    # dask, distributed, ray (pinned)
    python bench/cluster_bench.py [--quick] [--repeat R] [--groups a,b] [--tiny N]

Groups (targets from the issue; every figure is reported, misses included):

* **map_tiny**: N tiny items (``square``): ``gilfree.Pool(cluster=client).map`` (adaptive
  chunks) vs ``client.map`` item by item (one Dask task per item) -- target >= 10x faster;
  Ray's Pool.map (its own default chunking) beside them.
* **tasks_100ms**: 40 calls of ``time.sleep(0.1)`` on 2 workers (2 s of work per worker at
  best): ``Pool.map`` vs ``client.submit`` of each call -- target: no slower.
* **apply_async**: 400 no-op calls then every result: ``Pool.apply_async`` unbatched (each
  call its own Dask task, as ``retries=``/``timeout=`` calls are) vs a bare ``client.submit``
  -- target: within 1.2x; the default, batched ``apply_async`` (up to 256 calls per task) and
  Ray's ``apply_async`` beside them.

Every (group, variant) runs in a fresh process with its own ``LocalCluster(n_workers=2,
threads_per_worker=1, processes=True)`` (or Ray instance), started before the timing; rounds
are interleaved (the VM drifts) and medians reported. Writes bench/results/cluster.{json,md}.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
WORKERS = 2


def square(x):
    return x * x


def noop(x=None):
    return x


def nap(x):
    time.sleep(0.1)
    return x


# ----------------------------------------------------------------------------- set-ups

def _dask():
    import dask
    import distributed
    from gilfree.cluster.dask import LOCAL_CONFIG

    with dask.config.set(LOCAL_CONFIG):  # the cluster gilfree's cluster="local" starts
        cluster = distributed.LocalCluster(n_workers=WORKERS, threads_per_worker=1,
                                           processes=True, dashboard_address=None,
                                           scheduler_kwargs={"dashboard_address":
                                                             "127.0.0.1:0"})
    client = distributed.Client(cluster, set_as_default=False)
    client.wait_for_workers(WORKERS)
    return cluster, client


def _ray():
    try:
        import ray
        from ray.util.multiprocessing import Pool
    except Exception as e:
        raise RuntimeError("ray unavailable: %s: %s" % (type(e).__name__, e))
    ray.init(num_cpus=WORKERS, include_dashboard=False, log_to_driver=False)
    return ray, Pool(WORKERS)


def _timed(fn, check):
    t0 = time.perf_counter()
    value = fn()
    dt = time.perf_counter() - t0
    if not check(value):
        raise RuntimeError("wrong result")
    return dt


# ----------------------------------------------------------------------------- bodies

def run_one(group, variant, n):
    """One timed run of (group, variant) with n items; returns seconds."""
    if variant == "ray":
        ray, pool = _ray()
        try:
            return _ray_body(group, pool, n)
        finally:
            pool.terminate()
            ray.shutdown()
    import gilfree
    cluster, client = _dask()
    try:
        if variant.startswith("gilfree"):
            with gilfree.Pool(cluster=client) as pool:
                pool.map(square, range(100))  # connected and warm, like the others
                return _gilfree_body(group, variant, pool, n)
        client.gather(client.map(square, range(100), pure=False))
        return _dask_body(group, client, n)
    finally:
        client.close()
        cluster.close()


def _gilfree_body(group, variant, pool, n):
    if group == "map_tiny":
        return _timed(lambda: pool.map(square, range(n)), lambda v: v[-1] == (n - 1) ** 2)
    if group == "tasks_100ms":
        return _timed(lambda: pool.map(nap, range(n)), lambda v: v == list(range(n)))
    if variant == "gilfree-unbatched":  # retries= calls are never batched: one task each
        return _timed(lambda: [r.get() for r in [pool.apply_async(noop, (i,), retries=1)
                                                 for i in range(n)]],
                      lambda v: v == list(range(n)))
    return _timed(lambda: [r.get() for r in [pool.apply_async(noop, (i,)) for i in range(n)]],
                  lambda v: v == list(range(n)))


def _dask_body(group, client, n):
    if group == "map_tiny":
        return _timed(lambda: client.gather(client.map(square, range(n), pure=False)),
                      lambda v: v[-1] == (n - 1) ** 2)
    fn = nap if group == "tasks_100ms" else noop
    return _timed(lambda: client.gather([client.submit(fn, i, pure=False) for i in range(n)]),
                  lambda v: v == list(range(n)))


def _ray_body(group, pool, n):
    pool.map(square, range(100))
    if group == "map_tiny":
        return _timed(lambda: pool.map(square, range(n)), lambda v: v[-1] == (n - 1) ** 2)
    if group == "tasks_100ms":
        return _timed(lambda: pool.map(nap, range(n)), lambda v: v == list(range(n)))
    return _timed(lambda: [r.get() for r in [pool.apply_async(noop, (i,)) for i in range(n)]],
                  lambda v: v == list(range(n)))


GROUPS = {
    "map_tiny": {"variants": ["gilfree", "client.map", "ray"], "base": "client.map",
                 "unit": "items/s", "target": ("gilfree", 10.0, "at least 10x client.map")},
    "tasks_100ms": {"variants": ["gilfree", "client.submit", "ray"], "base": "client.submit",
                    "n": 40, "unit": "s", "target": ("gilfree", 1.0, "no slower than "
                                                     "client.submit")},
    "apply_async": {"variants": ["gilfree-unbatched", "client.submit", "gilfree", "ray"],
                    "base": "client.submit", "n": 400, "unit": "us/call",
                    "target": ("gilfree-unbatched", 1 / 1.2,
                               "overhead within 1.2x of a bare client.submit")},
}


def _figure(group, n, seconds):
    unit = GROUPS[group]["unit"]
    if unit == "items/s":
        return n / seconds
    if unit == "us/call":
        return seconds / n * 1e6
    return seconds


def _speed(group, fig, base):
    """> 1: faster than the base variant."""
    if GROUPS[group]["unit"] == "items/s":
        return fig / base
    return base / fig


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="10,000 tiny items, 1 round")
    p.add_argument("--repeat", type=int, default=None, help="rounds (default 3; quick 1)")
    p.add_argument("--tiny", type=int, default=None, help="items of map_tiny (100,000)")
    p.add_argument("--tiny-rounds", type=int, default=1,
                   help="rounds of map_tiny (default 1: client.map of 100,000 tasks takes "
                        "minutes)")
    p.add_argument("--groups", default=",".join(GROUPS))
    p.add_argument("--name", default="cluster")
    p.add_argument("--one", nargs=3, metavar=("GROUP", "VARIANT", "N"), help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.one:
        try:
            print(json.dumps({"seconds": run_one(a.one[0], a.one[1], int(a.one[2]))}))
        except Exception as e:
            print(json.dumps({"error": "%s: %s" % (type(e).__name__, e)}))
        return 0
    rounds = a.repeat or (1 if a.quick else 3)
    tiny = a.tiny or (10_000 if a.quick else 100_000)
    groups = a.groups.split(",")
    load0 = os.getloadavg()
    runs = {}
    for rnd in range(rounds):
        for g in groups:
            if g == "map_tiny" and rnd >= a.tiny_rounds:
                continue
            n = GROUPS[g].get("n", tiny)
            for v in GROUPS[g]["variants"]:
                out = subprocess.run([sys.executable, os.path.abspath(__file__), "--one", g,
                                      v, str(n)], capture_output=True, text=True,
                                     timeout=3600)
                lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
                res = json.loads(lines[-1]) if lines else {
                    "error": "no result (exit %d): %s" % (out.returncode, out.stderr[-400:])}
                runs.setdefault((g, v), []).append(res)
                print("round %d %-12s %-18s %s" % (rnd + 1, g, v, res), flush=True)
    load1 = os.getloadavg()
    rows = []
    for g in groups:
        n = GROUPS[g].get("n", tiny)
        figs = {}
        for v in GROUPS[g]["variants"]:
            secs = [r["seconds"] for r in runs[(g, v)] if "seconds" in r]
            errs = [r["error"] for r in runs[(g, v)] if "error" in r]
            row = {"group": g, "variant": v, "n": n, "runs": secs, "error": errs[0] if errs
                   else None}
            if secs:
                row["seconds"] = statistics.median(secs)
                row["figure"] = figs[v] = _figure(g, n, row["seconds"])
            rows.append(row)
        base = figs.get(GROUPS[g]["base"])
        tv, tmin, tdesc = GROUPS[g]["target"]
        for row in rows:
            if row["group"] == g and "figure" in row and base:
                row["x_base"] = _speed(g, row["figure"], base)
                if row["variant"] == tv:
                    row["target"] = tdesc
                    row["met"] = row["x_base"] >= tmin
    meta = {"machine": "%d CPUs, Python %s, %s" % (os.cpu_count(), platform.python_version(),
                                                   platform.machine()),
            "load_average_before": load0, "load_average_after": load1, "rounds": rounds,
            "tiny_rounds": min(rounds, a.tiny_rounds),
            "note": ("measured while other jobs ran (load average above 1)"
                     if max(load0[0], load1[0]) > 1.0 else "measured on a quiet machine")}
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", a.name + ".json"), "w") as f:
        json.dump({"meta": meta, "rows": rows}, f, indent=1)
    md = _markdown(meta, rows)
    with open(os.path.join(HERE, "results", a.name + ".md"), "w") as f:
        f.write(md)
    print(md)
    return 0


def _markdown(meta, rows):
    out = ["# gilfree cluster Pool vs Dask and Ray (bench/cluster_bench.py)", "",
           "%s; local Dask cluster of 2 single-threaded worker processes; %d round(s) "
           "(map_tiny: %d), median shown; load average %.2f before, %.2f after. %s." % (
               meta["machine"], meta["rounds"], meta["tiny_rounds"],
               meta["load_average_before"][0],
               meta["load_average_after"][0], meta["note"]), "",
           "| group | variant | N | median | figure | x base | target |",
           "|---|---|---:|---:|---:|---:|---|"]
    for r in rows:
        unit = GROUPS[r["group"]]["unit"]
        if "seconds" not in r:
            out.append("| %s | %s | %d | - | - | - | did not run: %s |" % (
                r["group"], r["variant"], r["n"], r["error"]))
            continue
        tgt = ""
        if "target" in r:
            tgt = "%s: %s" % (r["target"], "met" if r["met"] else "MISSED")
        out.append("| %s | %s | %d | %.3f s | %.4g %s | %s | %s |" % (
            r["group"], r["variant"], r["n"], r["seconds"], r["figure"], unit,
            ("%.2fx" % r["x_base"]) if "x_base" in r else "-", tgt))
    out += ["", "x base > 1: faster than the group's base variant (client.map / "
            "client.submit). map_tiny's items are range(N) squared; tasks_100ms sleeps 0.1 s "
            "per call (scheduling, not compute); apply_async calls a no-op.", ""]
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
