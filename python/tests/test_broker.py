"""Pool(broker=..., queue=...): the same tasks through Redis to `muster worker --persistent
--framed -- python -m muster._worker MODULE:FUNCTION`, against a real redis-server and the
muster binary (both started here, stopped after). JSON by default; pickles only with a
shared key, and a record signed with another key is refused unread."""

import os
import shutil
import socket
import subprocess
import sys
import time

import pytest
from fractions import Fraction

import muster
import tasks

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))


def muster_binary():
    for profile in ("debug", "release"):
        path = os.path.join(ROOT, "target", profile, "muster")
        if os.access(path, os.X_OK):
            return path
    return None


@pytest.fixture
def redis_url(tmp_path):
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("redis-server is not installed (Debian package redis-server; .ci/run installs it)")
    if muster_binary() is None:
        pytest.skip("no muster binary under target/ (scripts/test builds it with cargo test first)")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen([server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                                "--dir", str(tmp_path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    pytest.fail("redis-server did not start")
                time.sleep(0.05)
        yield "redis://127.0.0.1:%d" % port
    finally:
        process.kill()
        process.wait()


class Worker:
    """`muster worker` serving a queue with Python workers running `function`."""

    def __init__(self, url, queue, function, key=None, jobs=2):
        env = dict(os.environ)
        env.pop("MUSTER_KEY", None)
        if key is not None:
            env["MUSTER_KEY"] = key
        command = [muster_binary(), "worker", "--broker", url, "--queue", queue, "-j", str(jobs), "--persistent",
                   "--framed", "--", sys.executable, "-m", "muster._worker", function]
        self.process = subprocess.Popen(command, cwd=HERE, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def test_tasks_go_through_the_queue_as_json(redis_url):
    with Worker(redis_url, "q", "tasks:square"):
        with muster.Pool(4, broker=redis_url, queue="q") as pool:
            assert pool.map(tasks.square, range(500)) == [x * x for x in range(500)]
            assert pool.apply(tasks.square, (12,)) == 144
            with pytest.raises(TypeError, match="not JSON"):
                pool.apply(tasks.square, (object(),))


def test_a_task_exception_comes_back_with_its_traceback(redis_url):
    with Worker(redis_url, "qe", "tasks:fail_on"):
        with muster.Pool(2, broker=redis_url, queue="qe") as pool:
            assert pool.apply(tasks.fail_on, (1,)) == 1
            with pytest.raises(muster.TaskError, match="ValueError: bad input 3") as raised:
                pool.apply(tasks.fail_on, (3,))
            assert "fail_on" in str(raised.value.__cause__)


def test_a_worker_runs_only_the_function_its_command_line_names(redis_url):
    with Worker(redis_url, "qf", "tasks:square"):
        with muster.Pool(2, broker=redis_url, queue="qf") as pool:
            with pytest.raises(muster.TaskError, match="runs tasks:square, not tasks:add"):
                pool.apply(tasks.add, (1, 2))


def test_pickles_travel_only_with_a_shared_key_and_a_wrong_key_is_refused(redis_url, tmp_path):
    with Worker(redis_url, "qk", "tasks:square", key="s3cret"):
        with muster.Pool(2, broker=redis_url, queue="qk", key="s3cret") as pool:
            # Pickles: what JSON cannot carry (a Fraction) goes through.
            assert pool.apply(tasks.square, (3,)) == 9
            assert pool.map(tasks.square, [Fraction(1, 3), 3]) == [Fraction(1, 9), 9]
        with muster.Pool(2, broker=redis_url, queue="qk", key="forged") as pool:
            with pytest.raises(muster.TaskError, match="signature does not match"):
                pool.apply(tasks.square, (3,))


def test_functions_that_cannot_be_named_are_refused_before_anything_is_sent(redis_url):
    with muster.Pool(2, broker=redis_url, queue="qn") as pool:
        with pytest.raises(ValueError, match="not importable by name"):
            pool.map(lambda x: x, range(3))
    with pytest.raises(ValueError, match="workers' business"):
        muster.Pool(2, broker=redis_url, queue="qn", timeout=3)


def test_an_unreachable_broker_is_each_waiting_tasks_error_not_a_hang():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Nothing listens there.
    with muster.Pool(2, broker="redis://127.0.0.1:%d" % port, queue="q") as pool:
        with pytest.raises(RuntimeError, match="cannot reach Redis"):
            pool.map(tasks.square, range(3))
