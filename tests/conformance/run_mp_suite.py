"""The conformance gate: CPython's own multiprocessing test suite run against gilfree.

    python run_mp_suite.py [--target gilfree|stdlib] [--start fork|spawn] [--only TYPE]
                           [--jobs N] [--timeout S] [--classes GLOB] [--check | --update]

Loads ``test._test_multiprocessing`` through :mod:`mp_suite` (every tested object from
gilfree, or the standard library itself for the denominator), runs each test class in its own
process (its own session: a class that outlives its timeout is killed with everything it
started, and counts as a hang), and prints pass/fail/error/skip per test.

``baseline.json`` (next to this file) holds, per start method, each test's status on the
standard library and on gilfree, and the tests excluded from the count (each with a reason).
``--check`` fails (exit 1) on a regression -- a test that passes on gilfree in the baseline and
not now (a failing class is run once more, alone, before that is decided; tests that pass only
then are reported as flaky) --, on any hang, and on any /dev/shm entry left by the run (one
that a live process still maps once the run's processes are gone is another program's).
``--update`` writes the statuses of this run into the baseline.
"""

import argparse
import fnmatch
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BASELINE = os.path.join(HERE, "baseline.json")
MODULES = {"gilfree": "mp_suite_gilfree", "stdlib": "mp_suite_stdlib"}
PASS = "pass"


# ---------------------------------------------------------------- worker side (one class)

def _worker_list(target):
    """Print {"classes": {class name: [test ids]}, "stand_ins": [names gilfree lacks]}."""
    import importlib
    import unittest

    import mp_suite
    mod = importlib.import_module(MODULES[target])
    loader = unittest.TestLoader()
    out = {}
    for name, obj in sorted(vars(mod).items()):
        if (isinstance(obj, type) and issubclass(obj, unittest.TestCase)
                and obj.__module__ == mod.__name__):
            out[name] = [name + "." + m for m in loader.getTestCaseNames(obj)]
    json.dump({"classes": out, "stand_ins": ["%s.%s" % x for x in mp_suite.STAND_INS]},
              sys.stdout)


def _worker_run(target, classname, out_path, timeout):
    """Run one test class; append one JSON line per test start and end to out_path. Shortly
    before the runner's timeout, every thread's stack is dumped to the class's log."""
    import faulthandler
    import importlib
    import traceback
    import unittest
    mod = importlib.import_module(MODULES[target])
    cls = getattr(mod, classname)
    out = open(out_path, "a", buffering=1, encoding="utf-8")

    def emit(**rec):
        out.write(json.dumps(rec) + "\n")

    def short(err):
        lines = traceback.format_exception(*err)
        last = "".join(lines).strip().splitlines()[-1] if lines else ""
        return last[:300]

    class Recorder(unittest.TestResult):
        def _tid(self, test):
            return test.id().split(".", 1)[1] if test.id().startswith(mod.__name__ + ".") \
                else test.id()

        def startTest(self, test):
            super().startTest(test)
            self._status, self._detail = None, ""
            emit(event="start", test=self._tid(test), t=time.time())

        def stopTest(self, test):
            super().stopTest(test)
            emit(event="end", test=self._tid(test), status=self._status or "error",
                 detail=self._detail, t=time.time())

        def _set(self, status, detail=""):
            if self._status in (None, PASS):
                self._status, self._detail = status, detail

        def addSuccess(self, test):
            super().addSuccess(test)
            self._set(PASS)

        def addFailure(self, test, err):
            super().addFailure(test, err)
            self._set("fail", short(err))

        def addError(self, test, err):
            super().addError(test, err)
            if isinstance(test, unittest.TestCase):
                self._set("error", short(err))
            else:  # a class or module fixture: the tests it covers did not run
                emit(event="fixture", test=str(test), detail=short(err))

        def addSkip(self, test, reason):
            super().addSkip(test, reason)
            if isinstance(test, unittest.TestCase):
                self._set("skip", str(reason)[:300])
            else:
                emit(event="fixture_skip", test=str(test), detail=str(reason)[:300])

        def addExpectedFailure(self, test, err):
            super().addExpectedFailure(test, err)
            self._set("xfail", short(err))

        def addUnexpectedSuccess(self, test):
            super().addUnexpectedSuccess(test)
            self._set("xpass")

        def addSubTest(self, test, subtest, err):
            super().addSubTest(test, subtest, err)
            if err is not None:
                kind = "fail" if issubclass(err[0], test.failureException) else "error"
                self._status, self._detail = kind, short(err)

    faulthandler.dump_traceback_later(max(timeout - 5, 1), exit=False)
    excluded = load_baseline()["excluded"]
    suite = unittest.TestSuite()
    for test in unittest.defaultTestLoader.loadTestsFromTestCase(cls):
        tid = classname + "." + test._testMethodName
        reason = _excluded(tid, excluded)
        if reason is None:
            suite.addTest(test)
        else:  # not run: an excluded test may hang by design (e.g. it needs a socket pipe)
            emit(event="end", test=tid, status="excluded", detail=reason, t=time.time())
    suite.run(Recorder())
    faulthandler.cancel_dump_traceback_later()
    out.close()


# ---------------------------------------------------------------- runner side

def _env(start_method):
    env = dict(os.environ)
    env["GF_SUITE_START_METHOD"] = start_method
    env["PYTHONPATH"] = HERE + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("PYTHONSTARTUP", None)
    return env


def list_tests(target, start_method):
    """{class name: [test ids]} of the suite loaded for `target`, and the names it imports
    that gilfree lacks (see mp_suite.STAND_INS)."""
    out = subprocess.run([sys.executable, __file__, "--worker-list", "--target", target],
                         env=_env(start_method), capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        sys.exit("cannot load the suite for %s:\n%s" % (target, out.stderr))
    listing = json.loads(out.stdout)
    return listing["classes"], listing["stand_ins"]


def run_class(target, start_method, classname, tests, timeout, logdir):
    """Run one class in its own session; returns {test id: (status, detail)} and seconds."""
    workdir = tempfile.mkdtemp(prefix=classname + ".", dir=logdir)
    out_path = os.path.join(workdir, "results.jsonl")
    log = open(os.path.join(workdir, "output.log"), "wb")
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, __file__, "--worker-run", classname,
                             "--target", target, "--out", out_path,
                             "--timeout", str(timeout)],
                            cwd=workdir, env=_env(start_method), stdin=subprocess.DEVNULL,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    hung = False
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        hung = True
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the class's leftovers (or all of it, if hung)
    except ProcessLookupError:
        pass
    proc.wait()
    log.close()
    elapsed = time.monotonic() - t0
    results, running, fixture = {}, None, None
    if os.path.exists(out_path):
        with open(out_path, encoding="utf-8") as f:
            for line in f:
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if rec["event"] == "start":
                    running = rec["test"]
                elif rec["event"] == "end":
                    results[rec["test"]] = (rec["status"], rec["detail"])
                    running = None
                elif rec["event"] == "fixture":
                    fixture = ("error", "%s: %s" % (rec["test"], rec["detail"]))
                elif rec["event"] == "fixture_skip":
                    fixture = ("skip", rec["detail"])
    if running is not None:
        why = "hang (class timeout %ds)" % timeout if hung else \
            "crash (exit code %s)" % proc.returncode
        results[running] = ("hang" if hung else "crash", why)
    if hung and running is None:
        results[classname + ".(teardown)"] = (
            "hang", "all tests ended; the class did not exit within %ds" % timeout)
    for t in tests:
        if t not in results:
            results[t] = fixture or ("notrun", "hang" if hung else
                                     "worker exit code %s" % proc.returncode)
    return results, elapsed, hung


def run_all(target, start_method, classes, jobs, timeout, logdir, order=None):
    """Run the classes, `jobs` at a time, longest (per `order`) first. Returns
    ({test id: (status, detail)}, {class: seconds}, [hung classes])."""
    names = sorted(classes, key=lambda c: -(order or {}).get(c, 0))
    results, times, hangs = {}, {}, []
    lock = threading.Lock()

    def loop():
        while True:
            with lock:
                if not names:
                    return
                name = names.pop(0)
            res, secs, hung = run_class(target, start_method, name, classes[name],
                                        timeout, logdir)
            with lock:
                results.update(res)
                times[name] = round(secs, 1)
                if hung:
                    hangs.append(name)
                bad = sum(1 for s, _ in res.values() if s not in (PASS, "skip", "excluded"))
                print("  %-52s %5.1fs %3d tests %s" % (name, secs, len(res),
                      ("HANG" if hung else "%d not passing" % bad if bad else "ok")),
                      flush=True)

    threads = [threading.Thread(target=loop) for _ in range(max(1, jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results, times, hangs


def _shm():
    try:
        return set(os.listdir("/dev/shm"))
    except FileNotFoundError:
        return set()


def _mapped_elsewhere(names):
    """The /dev/shm entries among `names` that a live process maps right now. Called when
    every process of the run is gone: such an entry belongs to another program running on
    the machine (other engineers' tests share /dev/shm), not to a leak of ours."""
    names, held = set(names), set()
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/maps" % pid, encoding="utf-8", errors="replace") as f:
                for line in f:
                    i = line.find("/dev/shm/")
                    if i >= 0:
                        held.add(line[i + 9:].split(" (deleted)")[0].strip())
        except OSError:
            continue
    return names & held


def _excluded(test, excluded):
    for pattern, reason in excluded.items():
        if fnmatch.fnmatchcase(test, pattern):
            return reason
    return None


def load_baseline():
    """The committed baseline (an empty one if there is none yet)."""
    if os.path.exists(BASELINE):
        with open(BASELINE, encoding="utf-8") as f:
            return json.load(f)
    return {"excluded": {}, "runs": {}}


def summarize(run, excluded):
    """Counts of one run key ('fork' / 'spawn-processes') of the baseline."""
    tests = run["tests"]
    counted = [t for t in tests if not _excluded(t, excluded)]
    std_pass = [t for t in counted if tests[t].get("stdlib") == PASS]
    gf_pass = [t for t in std_pass if tests[t].get("gilfree") == PASS]
    return len(std_pass), len(gf_pass), sorted(set(std_pass) - set(gf_pass))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--target", choices=sorted(MODULES), default="gilfree")
    ap.add_argument("--start", choices=["fork", "spawn"], default="fork")
    ap.add_argument("--only", choices=["processes", "threads", "manager"],
                    help="only the With<Type>Test* classes of this type")
    ap.add_argument("--classes", default="*", help="glob over class names")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--timeout", type=int, default=180, help="seconds per class")
    ap.add_argument("--check", action="store_true", help="fail on regressions from baseline")
    ap.add_argument("--update", action="store_true", help="write this run into the baseline")
    ap.add_argument("--logdir", help="keep each class's output here")
    ap.add_argument("--worker-list", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--worker-run", metavar="CLASS", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker_list:
        return _worker_list(args.target)
    if args.worker_run:
        return _worker_run(args.target, args.worker_run, args.out, args.timeout)

    key = args.start + ("-" + args.only if args.only else "")
    baseline = load_baseline()
    brun = baseline["runs"].setdefault(key, {"tests": {}, "seconds": {}})
    classes, stand_ins = list_tests(args.target, args.start)
    prefix = "With" + args.only.capitalize() + "Test" if args.only else ""
    classes = {c: t for c, t in classes.items()
               if c.startswith(prefix) and fnmatch.fnmatchcase(c, args.classes)}
    logdir = args.logdir or tempfile.mkdtemp(prefix="mp_suite.")
    os.makedirs(logdir, exist_ok=True)
    print("== %s suite, start method %s: %d classes, %d tests, %d at a time (logs: %s)"
          % (args.target, args.start, len(classes), sum(map(len, classes.values())),
             args.jobs, logdir), flush=True)
    if stand_ins:
        print("== not in gilfree (stand-ins that raise NotImplementedError when used): "
              + ", ".join(stand_ins), flush=True)
    shm_before = _shm()
    t0 = time.monotonic()
    results, times, hangs = run_all(args.target, args.start, classes, args.jobs,
                                    args.timeout, logdir, brun.get("seconds"))
    flaky = []
    if args.check and args.target == "gilfree":
        flaky = _rerun_regressions(args, classes, results, brun, baseline, logdir)
    wall = time.monotonic() - t0
    time.sleep(0.5)  # let the last children's exit handlers finish
    new = _shm() - shm_before
    shm_left = sorted(new - _mapped_elsewhere(new))
    rc = _report(args, key, baseline, brun, results, times, hangs, flaky, shm_left, wall)
    bad = rc or hangs or any(s not in (PASS, "skip", "excluded") for s, _ in results.values())
    if args.logdir is None and not bad:
        shutil.rmtree(logdir, ignore_errors=True)  # all passed: nothing to look at
    return rc


def _regressions(results, brun, excluded):
    return sorted(t for t, (s, _) in results.items()
                  if s != PASS and brun["tests"].get(t, {}).get("gilfree") == PASS
                  and not _excluded(t, excluded))


def _rerun_regressions(args, classes, results, brun, baseline, logdir):
    """Run each class with a regression once more, alone; returns the tests that passed then."""
    regs = _regressions(results, brun, baseline["excluded"])
    again = sorted({t.split(".")[0] for t in regs})
    if not again:
        return []
    print("== running %d class(es) with regressions once more, alone" % len(again), flush=True)
    res, _, _ = run_all(args.target, args.start, {c: classes[c] for c in again}, 1,
                        args.timeout, logdir)
    flaky = [t for t in regs if res.get(t, ("",))[0] == PASS]
    for t in flaky:
        results[t] = (PASS, "flaky: failed in the first run")
    return flaky


def _report(args, key, baseline, brun, results, times, hangs, flaky, shm_left, wall):
    excluded = baseline["excluded"]
    counts = {}
    for t, (s, _) in results.items():
        counts[s] = counts.get(s, 0) + 1
    print("== %d tests in %.0f s: %s" % (len(results), wall, ", ".join(
        "%s %d" % kv for kv in sorted(counts.items()))))
    failing = sorted(t for t, (s, _) in results.items()
                     if s not in (PASS, "skip", "excluded"))
    for t in failing:
        print("   %-8s %s: %s" % (results[t][0], t, results[t][1]))
    regs = _regressions(results, brun, excluded) if args.target == "gilfree" else []
    if args.update:
        for t, (s, _) in results.items():
            brun["tests"].setdefault(t, {})[args.target] = s
        brun["seconds"].update(times)
        brun["tests"] = dict(sorted(brun["tests"].items()))
        brun["seconds"] = dict(sorted(brun["seconds"].items()))
        with open(BASELINE, "w", encoding="utf-8") as f:
            json.dump(baseline, f, indent=1, sort_keys=False)
            f.write("\n")
        print("== baseline %s updated (%s)" % (key, args.target))
    if brun["tests"]:
        std, gf, missing = summarize(
            {"tests": {t: dict(brun["tests"].get(t, {}),
                               **({args.target: results[t][0]} if t in results else {}))
                       for t in set(brun["tests"]) | set(results)}}, excluded)
        print("== %s: %d of the %d tests that pass on the standard library (excluded: %d "
              "patterns) pass on gilfree" % (key, gf, std, len(excluded)))
    print("== hangs: %d%s" % (len(hangs), (" (" + ", ".join(hangs) + ")") if hangs else ""))
    print("== /dev/shm entries left: %d%s" % (len(shm_left), (" " + " ".join(shm_left))
                                              if shm_left else ""))
    if flaky:
        print("== flaky (failed, then passed when run alone): " + ", ".join(flaky))
    if regs:
        print("== REGRESSIONS (pass in the baseline, not now): " + ", ".join(regs))
    if not args.check:
        return 0
    ok = not regs and not hangs and not (args.target == "gilfree" and shm_left)
    print("== conformance gate: %s" % ("PASS" if ok else "FAIL"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
