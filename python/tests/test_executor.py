"""muster.Executor: the concurrent.futures surface."""

import concurrent.futures as futures

import pytest

import muster
import tasks


def test_submit_and_map():
    with muster.Executor(2) as executor:
        assert executor.submit(tasks.add, 2, b=5).result(timeout=30) == 7
        assert list(executor.map(tasks.add, range(5), range(5))) == [0, 2, 4, 6, 8]
        many = [executor.submit(tasks.square, x) for x in range(2000)]
        assert [f.result(timeout=30) for f in many] == [x * x for x in range(2000)]
        assert isinstance(executor, futures.Executor)


def test_a_killed_worker_fails_only_its_future_and_the_executor_stays_usable():
    with muster.Executor(2) as executor:
        submitted = [executor.submit(tasks.kill_worker_on, x) for x in range(8)]
        done, _ = futures.wait(submitted, timeout=30)
        assert len(done) == 8
        for x, future in enumerate(submitted):
            if x == 3:
                error = future.exception()
                assert isinstance(error, muster.WorkerLost) and error.signal == 9
            else:
                assert future.result() == x
        assert executor.submit(tasks.square, 9).result(timeout=30) == 81


def test_a_task_exception_is_its_futures():
    with muster.Executor(2) as executor:
        future = executor.submit(tasks.fail_on, 3)
        with pytest.raises(ValueError, match="bad input 3"):
            future.result(timeout=30)
        assert isinstance(future.exception().__cause__, muster.RemoteTraceback)


def test_no_submissions_after_shutdown():
    executor = muster.Executor(1)
    future = executor.submit(tasks.square, 3)
    executor.shutdown(wait=True)
    assert future.result(timeout=0) == 9
    with pytest.raises(RuntimeError):
        executor.submit(tasks.square, 1)
