"""Ctrl-C and kill -9 of the caller: nothing is left behind. The caller is a real Python
process running a pool; the tests read its workers' pids from files its tasks write."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from conftest import alive, assert_gone, wait_for, worker_pids

HERE = os.path.dirname(os.path.abspath(__file__))

CALLER = textwrap.dedent(
    """
    import signal, sys
    # Ctrl-C raises KeyboardInterrupt, as in a terminal: a suite started as a background job
    # (`scripts/test &` in a script) passes SIGINT on ignored, and Python keeps it so.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.path.insert(0, {here!r})
    import muster, tasks
    folder = {folder!r}
    with muster.Pool(2) as pool:
        try:
            pool.map(tasks.write_pid_then_sleep, [folder] * 4)
        except KeyboardInterrupt:
            print("KeyboardInterrupt", flush=True)
            raise
    """
)


def start_caller(folder):
    script = CALLER.format(here=HERE, folder=str(folder))
    # A session of its own: the signals go to the caller's group as a terminal's would.
    return subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=None, cwd=str(folder),
                            start_new_session=True)


def test_ctrl_c_raises_keyboard_interrupt_promptly_and_stops_every_worker(tmp_path):
    caller = start_caller(tmp_path)
    try:
        pids = worker_pids(str(tmp_path), 2)
        sent = time.monotonic()
        # What a terminal's Ctrl-C does: SIGINT to the foreground process group.
        os.killpg(caller.pid, signal.SIGINT)
        out, _ = caller.communicate(timeout=20)
        took = time.monotonic() - sent
        assert b"KeyboardInterrupt" in out
        assert caller.returncode != 0
        assert took < 5, "KeyboardInterrupt took %.1f s" % took
        assert_gone(pids, 10)
    finally:
        if caller.poll() is None:
            caller.kill()
            caller.wait()


def test_kill_9_of_the_caller_leaves_no_worker(tmp_path):
    caller = start_caller(tmp_path)
    try:
        pids = worker_pids(str(tmp_path), 2)
        assert all(alive(pid) for pid in pids)
        caller.kill()
        caller.wait()
        # muster's watchdog stops the workers' groups once the caller is gone.
        assert_gone(pids, 10)
    finally:
        if caller.poll() is None:
            caller.kill()
            caller.wait()
        for name in os.listdir(tmp_path):
            if name.startswith("pid-"):
                try:
                    os.kill(int(name[4:]), signal.SIGKILL)
                except OSError:
                    pass
