import os
import time

import pytest


def alive(pid):
    """True while `pid` runs (a zombie counts as gone)."""
    try:
        with open("/proc/%d/stat" % pid) as file:
            return file.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_for(condition, seconds, what):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    pytest.fail("still not %s after %s s" % (what, seconds))


def worker_pids(folder, count, seconds=30):
    """The pids tasks wrote into `folder` (see tasks.write_pid_then_sleep), once there are `count`."""
    wait_for(lambda: len([n for n in os.listdir(folder) if n.startswith("pid-")]) >= count, seconds,
             "%d workers running" % count)
    return [int(n[4:]) for n in os.listdir(folder) if n.startswith("pid-")]


def assert_gone(pids, seconds=10):
    wait_for(lambda: not any(alive(pid) for pid in pids), seconds, "gone: %s" % pids)
