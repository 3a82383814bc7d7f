"""The seed programs in Python (examples/python/), run as a user would, with what breaks them
in the standard library done to them here."""

import os
import re
import signal
import subprocess
import sys
import time

from conftest import assert_gone

EXAMPLES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "examples", "python")


def start(name, *args):
    return subprocess.Popen([sys.executable, os.path.join(EXAMPLES, name), *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd="/")


def test_master_worker_delivers_every_message_even_when_its_worker_is_killed(tmp_path):
    master = start("master_worker.py", 4)
    try:
        first = master.stdout.readline().decode()
        pid = int(re.search(r"pid (\d+)", first).group(1))
        os.kill(pid, signal.SIGKILL)  # the worker dies mid-run
        out, err = master.communicate(timeout=30)
    finally:
        if master.poll() is None:
            master.kill()
    lines = [first] + out.decode().splitlines()
    received = [line for line in lines if "received something" in line]
    assert master.returncode == 0, err.decode()
    assert len(received) == 4 and lines[-1] == "Bye byes!", lines
    assert len({re.search(r"pid (\d+)", line).group(1) for line in received}) == 2


def test_worker_processes_are_stopped_properly_and_none_is_left():
    master = start("worker_processes.py", 1.5)
    out, err = master.communicate(timeout=30)
    assert master.returncode == 0
    assert out.decode().splitlines() == ["Entered main...", "All slaves stopped."]
    pids = {int(p) for p in re.findall(r"\(pid (\d+)\)", err.decode())}
    assert len(pids) == 4, err.decode()
    assert_gone(pids)


def test_worker_processes_leave_nothing_when_the_master_is_killed():
    master = start("worker_processes.py", 60)
    try:
        seen = set()
        deadline = time.monotonic() + 30
        while len(seen) < 4 and time.monotonic() < deadline:
            line = master.stderr.readline().decode()
            seen.update(int(p) for p in re.findall(r"\(pid (\d+)\)", line))
        assert len(seen) == 4
        master.kill()  # what leaves multiprocessing's loops running for good
        master.wait()
        assert_gone(seen)
    finally:
        if master.poll() is None:
            master.kill()
            master.wait()


def test_producer_consumer_sums_and_times():
    master = start("producer_consumer.py", 1000)
    out, err = master.communicate(timeout=60)
    assert master.returncode == 0, err.decode()
    lines = out.decode().splitlines()
    assert lines[0].startswith("the sum is :") and 1000 <= int(lines[0].split(":")[1]) <= 11000
    assert lines[1] == "Program is done!"
    assert lines[2].startswith("Execution time in seconds: ")


def test_every_example_is_tested():
    tested = {"master_worker.py", "worker_processes.py", "producer_consumer.py"}
    assert set(n for n in os.listdir(EXAMPLES) if n.endswith(".py")) == tested


