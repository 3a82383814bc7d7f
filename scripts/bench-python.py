"""muster's Python pool beside the pools a Python programmer would otherwise pick, in one run:
a speed table (trivial tasks, 2 workers, rounds interleaved, medians) and a failure table
(a worker SIGKILLed, the caller kill -9'd, Ctrl-C), each measured, nothing quoted.

    python scripts/bench-python.py [N] [ROUNDS]      # N trivial tasks (default 1,000,000)

Needs `pip install ./python`; loky, mpire and pebble are measured when installed. Slow
configurations run a fraction of N (shown) and are reported as rates. Each rate is timed
from creating the pool to its last result (start-up included).
"""

import concurrent.futures as futures
import multiprocessing
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time

WORKERS = 2


def square(x):
    return x * x


def available(name):
    try:
        __import__(name)
        return True
    except ImportError:
        return False


# -- speed ----------------------------------------------------------------------------------


def timed(run, n):
    start = time.perf_counter()
    total = run(n)
    elapsed = time.perf_counter() - start
    assert total == sum(x * x for x in range(n)), "wrong results"
    return n / elapsed


def speed_cases(n):
    import muster

    cases = [
        ("muster.Pool.imap (no chunksize)", n, lambda k: _with(muster.Pool(WORKERS), lambda p: sum(p.imap(square, range(k))))),
        ("muster.Pool.map", n, lambda k: _with(muster.Pool(WORKERS), lambda p: sum(p.map(square, range(k))))),
        ("muster.Pool.imap_unordered", n, lambda k: _with(muster.Pool(WORKERS), lambda p: sum(p.imap_unordered(square, range(k))))),
        ("muster.Executor.submit", n // 10, lambda k: _with(muster.Executor(WORKERS), lambda e: sum(f.result() for f in [e.submit(square, x) for x in range(k)]))),
        ("multiprocessing.Pool.imap chunksize=1", n // 20, lambda k: _with(multiprocessing.Pool(WORKERS), lambda p: sum(p.imap(square, range(k), chunksize=1)))),
        ("multiprocessing.Pool.imap chunksize=100", n, lambda k: _with(multiprocessing.Pool(WORKERS), lambda p: sum(p.imap(square, range(k), chunksize=100)))),
        ("multiprocessing.Pool.imap chunksize=1000", n, lambda k: _with(multiprocessing.Pool(WORKERS), lambda p: sum(p.imap(square, range(k), chunksize=1000)))),
        ("multiprocessing.Pool.map (auto chunks)", n, lambda k: _with(multiprocessing.Pool(WORKERS), lambda p: sum(p.map(square, range(k))))),
        ("ProcessPoolExecutor.submit", n // 100, lambda k: _with(futures.ProcessPoolExecutor(WORKERS), lambda e: sum(f.result() for f in [e.submit(square, x) for x in range(k)]))),
        ("ProcessPoolExecutor.map chunksize=1000", n, lambda k: _with(futures.ProcessPoolExecutor(WORKERS), lambda e: sum(e.map(square, range(k), chunksize=1000)))),
    ]
    if available("loky"):
        import loky

        cases.append(("loky submit", n // 100, lambda k: _loky_submit(loky, k)))
    if available("mpire"):
        import mpire

        cases.append(("mpire map (auto chunks)", n, lambda k: _with(mpire.WorkerPool(WORKERS), lambda p: sum(p.map(square, range(k))))))
    if available("pebble"):
        import pebble

        cases.append(("pebble schedule", n // 100, lambda k: _with(pebble.ProcessPool(WORKERS), lambda p: sum(f.result() for f in [p.schedule(square, (x,)) for x in range(k)]))))
    return cases


def _with(pool, use):
    with pool as p:
        return use(p)


def _loky_submit(loky, k):
    executor = loky.get_reusable_executor(max_workers=WORKERS)
    try:
        return sum(f.result() for f in [executor.submit(square, x) for x in range(k)])
    finally:
        executor.shutdown(wait=True, kill_workers=True)


def first_result_latency(rounds):
    import muster

    out = {}
    for name, make in [("muster.Pool", lambda: muster.Pool(WORKERS)), ("multiprocessing.Pool", lambda: multiprocessing.Pool(WORKERS))]:
        samples = []
        for _ in range(rounds):
            start = time.perf_counter()
            with make() as pool:
                pool.apply(square, (3,))
                samples.append(time.perf_counter() - start)
        out[name] = statistics.median(samples)
    return out


# -- failures -------------------------------------------------------------------------------

PROBE = textwrap.dedent(
    """
    import os, signal, sys, time

    def kill_self(x):
        if x == 3:
            os.kill(os.getpid(), signal.SIGKILL)
        return x

    def sleepy(x):
        with open(os.path.join({folder!r}, "pid-%d" % os.getpid()), "w") as f:
            f.write("x")
        time.sleep(60)
        return x

    lib, probe = {lib!r}, {probe!r}
    def pool():
        if lib == "muster":
            import muster; return muster.Pool(2)
        if lib == "multiprocessing.Pool":
            import multiprocessing; return multiprocessing.Pool(2)
        if lib == "ProcessPoolExecutor":
            import concurrent.futures; return concurrent.futures.ProcessPoolExecutor(2)
        if lib == "loky":
            import loky; return loky.get_reusable_executor(max_workers=2)
        if lib == "mpire":
            import mpire; return mpire.WorkerPool(2)
        if lib == "pebble":
            import pebble; return pebble.ProcessPool(2)

    def run_map(p, fn, items):
        if lib == "pebble":
            return list(p.map(fn, items).result())
        return list(p.map(fn, items))

    if __name__ == "__main__":
        p = pool()
        start = time.perf_counter()
        if probe == "kill":
            try:
                if lib in ("muster", "pebble"):
                    got = []
                    for x in range(8):
                        f = p.apply_async(kill_self, (x,)) if lib == "muster" else p.schedule(kill_self, (x,))
                        got.append(f)
                    out = []
                    for f in got:
                        try:
                            out.append(f.get() if lib == "muster" else f.result())
                        except Exception as e:
                            out.append(type(e).__name__)
                    print("RESULT|only task 3 fails (%s), %d others returned|%.2f" % (out[3], sum(1 for v in out if isinstance(v, int)), time.perf_counter() - start))
                else:
                    run_map(p, kill_self, range(8))
                    print("RESULT|returned|%.2f" % (time.perf_counter() - start))
            except Exception as e:
                print("RESULT|%s for the whole map|%.2f" % (type(e).__name__, time.perf_counter() - start))
            sys.stdout.flush()
            os._exit(0)
        else:
            run_map(p, sleepy, range(2))
    """
)


def probe_kill(lib, limit=10):
    with tempfile.TemporaryDirectory() as folder:
        script = PROBE.format(folder=folder, lib=lib, probe="kill")
        caller = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                  start_new_session=True, cwd=folder)
        try:
            out, _ = caller.communicate(timeout=limit)
        except subprocess.TimeoutExpired:
            _kill_group(caller)
            return "hangs (> %d s)" % limit
        finally:
            _kill_group(caller)
        for line in out.decode().splitlines():
            if line.startswith("RESULT|"):
                _, what, seconds = line.split("|")
                return "%s, %s s" % (what, seconds)
        return "exited without a result"


def _kill_group(process):
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except OSError:
        pass
    process.wait()


def _alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def probe_stop(lib, how, limit=10):
    """Starts a caller with 2 sleeping tasks, then kill -9 (how='kill') or Ctrl-C to its group
    (how='int'); reports how long the caller took to exit and what is left after 1 s."""
    with tempfile.TemporaryDirectory() as folder:
        script = PROBE.format(folder=folder, lib=lib, probe="stop")
        caller = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  start_new_session=True, cwd=folder)
        deadline = time.monotonic() + limit
        pids = []
        while time.monotonic() < deadline and len(pids) < 2:
            pids = [int(n[4:]) for n in os.listdir(folder) if n.startswith("pid-")]
            time.sleep(0.02)
        if len(pids) < 2:
            _kill_group(caller)
            return "tasks never started"
        start = time.monotonic()
        if how == "kill":
            caller.kill()
        else:
            os.killpg(caller.pid, signal.SIGINT)
        try:
            caller.wait(timeout=limit)
            exited = "exits in %.1f s" % (time.monotonic() - start)
        except subprocess.TimeoutExpired:
            exited = "still running after %d s" % limit
        time.sleep(max(0, 1 - (time.monotonic() - start)))
        left = sum(1 for pid in pids if _alive(pid))
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        _kill_group(caller)
        workers = "no worker left" if left == 0 else "%d of 2 workers alive" % left
        return workers if how == "kill" else "%s, %s" % (exited, workers)


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    cases = speed_cases(n)
    rates = {name: [] for name, _, _ in cases}
    for round_no in range(rounds):
        for name, count, run in cases:
            rates[name].append(timed(run, count))
        print("round %d of %d done" % (round_no + 1, rounds), file=sys.stderr)
    print("\n## Speed: trivial tasks (x*x), %d workers, median of %d interleaved rounds\n" % (WORKERS, rounds))
    print("| pool | tasks | tasks/s | vs multiprocessing.Pool.imap chunksize=1 |")
    print("|---|---|---|---|")
    floor = statistics.median(rates["multiprocessing.Pool.imap chunksize=1"])
    for name, count, _ in cases:
        rate = statistics.median(rates[name])
        print("| %s | %d | %.0f | %.1f× |" % (name, count, rate, rate / floor))
    latency = first_result_latency(rounds * 2)
    print("\nFirst result after creating the pool: " + ", ".join("%s %.0f ms" % (k, v * 1000) for k, v in latency.items()))

    libs = ["muster", "multiprocessing.Pool", "ProcessPoolExecutor"] + [lib for lib in ("loky", "mpire", "pebble") if available(lib)]
    print("\n## Failures, measured (2 workers)\n")
    print("| pool | a worker is SIGKILLed (task 3 of 8) | caller kill -9, 1 s later | Ctrl-C to the caller's group |")
    print("|---|---|---|---|")
    for lib in libs:
        print("| %s | %s | %s | %s |" % (lib, probe_kill(lib), probe_stop(lib, "kill"), probe_stop(lib, "int")))


if __name__ == "__main__":
    main()
