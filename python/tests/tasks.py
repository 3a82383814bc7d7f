"""Task functions for the tests, importable by reference (the workers import this module)."""

import os
import signal
import time


def square(x):
    return x * x


def add(a, b):
    return a + b


def pid(_=None):
    return os.getpid()


def fail_on(x, bad=3):
    if x == bad:
        raise ValueError("bad input %d" % x)
    return x


def kill_worker_on(x, bad=3):
    """Kills its own worker (an OOM kill's stand-in) for `bad`."""
    if x == bad:
        os.kill(os.getpid(), signal.SIGKILL)
    return x


def kill_once_on(x, folder, bad=3):
    """Kills its worker the first time it sees `bad` (a marker file in `folder` remembers)."""
    marker = os.path.join(folder, "killed")
    if x == bad and not os.path.exists(marker):
        open(marker, "w").close()
        os.kill(os.getpid(), signal.SIGKILL)
    return x


def sleep_on(x, bad=3, seconds=30):
    if x == bad:
        time.sleep(seconds)
    return x


def unpicklable_result_on(x, bad=3):
    if x == bad:
        return lambda: None
    return x


class Unpicklable(Exception):
    def __init__(self, what, extra):
        super().__init__(what)
        self.extra = extra

    def __reduce__(self):
        raise TypeError("not today")


def raise_unpicklable(x):
    raise Unpicklable("odd", x)


def write_pid_then_sleep(folder, seconds=60):
    """Records its worker's pid in `folder`, then sleeps (a task that would run on)."""
    path = os.path.join(folder, "pid-%d" % os.getpid())
    with open(path, "w") as file:
        file.write(str(os.getpid()))
    time.sleep(seconds)
    return os.getpid()


def failing_initializer():
    raise RuntimeError("no database here")


_state = {}


def remember(value):
    _state["value"] = value


def recall(_):
    return _state.get("value")


def journaled(x, folder):
    """Notes each run of `x` in `folder`/runs; with `folder`/slow present, x >= 10 sleeps
    (a task the caller's kill interrupts)."""
    with open(os.path.join(folder, "runs"), "a") as file:
        file.write("%d\n" % x)
    if x >= 10 and os.path.exists(os.path.join(folder, "slow")):
        time.sleep(60)
    return x * 10
