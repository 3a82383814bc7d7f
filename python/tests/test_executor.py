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


def test_futures_keep_the_standard_contract():
    with muster.Executor(2) as executor:
        slow = executor.submit(tasks.sleep_on, 3, seconds=2)
        quick = [executor.submit(tasks.square, x) for x in range(200)]
        # Another future settling is no reason for a wait with a timeout to end early.
        with pytest.raises(futures.TimeoutError):
            slow.result(timeout=0.3)
        done = []
        quick[0].add_done_callback(lambda f: done.append(f.result()))
        assert [f.result(timeout=30) for f in futures.as_completed(quick, timeout=30)]
        finished, pending = futures.wait(quick + [slow], timeout=30, return_when=futures.ALL_COMPLETED)
        assert not pending and len(finished) == 201
        assert done == [0] and slow.result() == 3 and slow.exception() is None
        assert all(f.done() and not f.cancelled() for f in quick)
        failing = executor.submit(tasks.fail_on, 3)
        assert isinstance(failing.exception(timeout=30), ValueError)


def test_a_pending_future_can_be_cancelled_and_its_result_is_dropped():
    with muster.Executor(1) as executor:
        blocker = executor.submit(tasks.sleep_on, 3, seconds=1)
        later = executor.submit(tasks.square, 5)
        assert later.cancel() and later.cancelled()
        with pytest.raises(futures.CancelledError):
            later.result(timeout=5)
        assert blocker.result(timeout=30) == 3
        assert executor.submit(tasks.square, 6).result(timeout=30) == 36
