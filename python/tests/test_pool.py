"""muster.Pool's multiprocessing surface, with real worker interpreters."""

import os
import pickle

import pytest

import muster
import tasks


@pytest.fixture
def pool():
    with muster.Pool(2) as pool:
        yield pool


def test_map_imap_and_starmap_keep_input_order(pool):
    assert pool.map(tasks.square, range(1000)) == [x * x for x in range(1000)]
    assert list(pool.imap(tasks.square, range(1000))) == [x * x for x in range(1000)]
    assert pool.starmap(tasks.add, [(1, 2), (3, 4)]) == [3, 7]
    assert sorted(pool.imap_unordered(tasks.square, range(1000))) == [x * x for x in range(1000)]
    assert pool.map(tasks.square, []) == []


def test_many_small_tasks_come_back_once_each(pool):
    # Batched by measured speed: a large input still yields each result once, in order.
    n = 200_000
    assert pool.map(tasks.square, range(n)) == [x * x for x in range(n)]
    assert sum(pool.imap(tasks.square, range(n), chunksize=7)) == sum(x * x for x in range(n))


def test_imap_reads_its_input_lazily(pool):
    # An endless input: the pool takes only what it can keep in flight.
    def naturals():
        x = 0
        while True:
            yield x
            x += 1

    results = pool.imap(tasks.square, naturals())
    assert [next(results) for _ in range(5000)] == [x * x for x in range(5000)]


def test_apply_and_apply_async_with_callbacks(pool):
    assert pool.apply(tasks.add, (2, 3)) == 5
    seen = []
    result = pool.apply_async(tasks.add, (1,), {"b": 9}, callback=seen.append)
    assert result.get(timeout=30) == 10
    assert result.successful() and seen == [10]
    errors = []
    failing = pool.apply_async(tasks.fail_on, (3,), error_callback=errors.append)
    with pytest.raises(ValueError):
        failing.get(timeout=30)
    assert isinstance(errors[0], ValueError)
    assert pool.map_async(tasks.square, range(5)).get(timeout=30) == [0, 1, 4, 9, 16]


def test_lambdas_closures_and_main_functions_travel_by_value(pool):
    offset = 10
    assert pool.map(lambda x: x + offset, range(3)) == [10, 11, 12]

    def local(x):
        return x * offset

    assert pool.map(local, [1, 2]) == [10, 20]


def test_a_new_function_per_call_does_not_accumulate_in_the_pool(pool):
    import gc

    for i in range(100):
        assert pool.map(lambda x, i=i: x + i, range(3)) == [i, i + 1, i + 2]
    gc.collect()
    # Each lambda was kept while its map ran, and let go after: none stays for the pool's life.
    assert len(pool._runner.functions) <= 1, len(pool._runner.functions)
    # A function still alive keeps its id, so it is written and loaded once.
    kept = lambda x: -x  # noqa: E731
    first = pool._runner.function_id(kept)
    assert pool.map(kept, [1, 2]) == [-1, -2]
    assert pool._runner.function_id(kept) == first
    assert pool.map(abs, [-3]) == [3], "a builtin without a weak reference is held"


def test_a_task_exception_is_raised_with_the_workers_traceback(pool):
    with pytest.raises(ValueError, match="bad input 3") as raised:
        pool.map(tasks.fail_on, range(6))
    cause = raised.value.__cause__
    assert isinstance(cause, muster.RemoteTraceback)
    assert "fail_on" in str(cause) and "tasks.py" in str(cause)
    # The pool is still usable.
    assert pool.map(tasks.square, range(3)) == [0, 1, 4]


def test_an_exception_that_does_not_pickle_keeps_its_type_and_message(pool):
    with pytest.raises(muster.TaskError, match="Unpicklable: odd") as raised:
        pool.apply(tasks.raise_unpicklable, (1,))
    assert "raise_unpicklable" in str(raised.value.__cause__)


def test_an_unpicklable_result_fails_that_task_only(pool):
    got = outcomes([pool.apply_async(tasks.unpicklable_result_on, (x,)) for x in range(6)])
    assert isinstance(got[3], TypeError) and "could not be pickled" in str(got[3]), got
    assert got[:3] + got[4:] == [0, 1, 2, 4, 5]
    # In a batch, too: only the one item fails.
    with pytest.raises(TypeError, match="could not be pickled"):
        pool.map(tasks.unpicklable_result_on, range(100))


def test_an_unpicklable_argument_fails_that_task_and_never_hangs(pool):
    import threading

    with pytest.raises(TypeError, match="could not be pickled"):
        pool.apply(tasks.square, (threading.Lock(),))
    assert pool.apply(tasks.square, (4,)) == 16


def outcomes(results):
    """Each AsyncResult's value, or its exception."""
    out = []
    for result in results:
        try:
            out.append(result.get(timeout=60))
        except Exception as exc:  # noqa: BLE001 - the error is what is tested
            out.append(exc)
    return out


def test_a_killed_worker_fails_only_its_task_and_the_pool_goes_on():
    with muster.Pool(2, retries=1) as pool:
        got = outcomes([pool.apply_async(tasks.kill_worker_on, (x,)) for x in range(8)])
        lost = got[3]
        assert isinstance(lost, muster.WorkerLost), got
        assert lost.signal == 9 and "signal 9" in str(lost)
        assert got[:3] + got[4:] == [0, 1, 2, 4, 5, 6, 7]
        with pytest.raises(muster.WorkerLost):
            pool.map(tasks.kill_worker_on, range(8))
        assert pool.map(tasks.square, range(4)) == [0, 1, 4, 9]
        assert pool.stats() is None


def test_a_task_whose_worker_died_once_is_retried_and_succeeds(tmp_path):
    import functools

    kill_once = functools.partial(tasks.kill_once_on, folder=str(tmp_path), bad=3)
    with muster.Pool(2, retries=1) as pool:
        assert outcomes([pool.apply_async(kill_once, (x,)) for x in range(6)]) == list(range(6))
        assert pool.stats() is None
        pool.close()
        pool.join()
        stats = pool.stats()
    assert stats["worker_crashes"] == 1 and stats["done"] == 6, stats
    assert os.path.exists(tmp_path / "killed")


def test_a_batch_whose_worker_died_runs_again_item_by_item(tmp_path):
    import functools

    # No retries: the batch that held the killer is split, and its items run again uncharged.
    with muster.Pool(2) as pool:
        # Measured speed first, so the map below goes in batches of many items.
        pool.map(tasks.square, range(20_000))
        kill_once = functools.partial(tasks.kill_once_on, folder=str(tmp_path), bad=1500)
        assert pool.map(kill_once, range(3000)) == list(range(3000))
    assert os.path.exists(tmp_path / "killed")


def test_a_task_past_its_timeout_stops_only_its_worker():
    with muster.Pool(2, timeout=0.5) as pool:
        got = outcomes([pool.apply_async(tasks.sleep_on, (x,)) for x in range(6)])
    assert isinstance(got[3], TimeoutError), got
    assert got[:3] + got[4:] == [0, 1, 2, 4, 5]


def test_a_failing_initializer_is_an_error_at_once_not_a_hang():
    with muster.Pool(2, initializer=tasks.failing_initializer) as pool:
        with pytest.raises(muster.InitializerError) as raised:
            pool.apply_async(tasks.square, (3,)).get(timeout=30)
    assert "no database here" in str(raised.value.__cause__)


def test_initializer_runs_in_each_worker():
    with muster.Pool(2, initializer=tasks.remember, initargs=("ready",)) as pool:
        assert set(pool.map(tasks.recall, range(50))) == {"ready"}


def test_maxtasksperchild_replaces_workers():
    with muster.Pool(1, maxtasksperchild=2) as pool:
        pids = [pool.apply(tasks.pid) for _ in range(6)]
    assert len(set(pids)) == 3, pids


def test_close_then_join_finishes_every_task_and_reports():
    pool = muster.Pool(2)
    results = [pool.apply_async(tasks.square, (x,)) for x in range(100)]
    pool.close()
    with pytest.raises(ValueError):
        pool.apply_async(tasks.square, (1,))
    pool.join()
    assert [r.get(timeout=0) for r in results] == [x * x for x in range(100)]
    stats = pool.stats()
    assert stats["done"] == 100 and stats["failed"] == 0 and stats["workers_started"] == 2


def test_leaving_the_with_block_stops_running_workers(tmp_path):
    with muster.Pool(2) as pool:
        for _ in range(2):
            pool.apply_async(tasks.write_pid_then_sleep, (str(tmp_path),))
        pids = conftest_worker_pids(tmp_path, 2)
    conftest_assert_gone(pids)


def test_a_pool_garbage_collected_stops_its_workers(tmp_path):
    import gc

    pool = muster.Pool(2)
    for _ in range(2):
        pool.apply_async(tasks.write_pid_then_sleep, (str(tmp_path),))
    pids = conftest_worker_pids(tmp_path, 2)
    del pool
    gc.collect()
    conftest_assert_gone(pids)


def test_workers_are_fresh_interpreters_in_their_own_process_groups(pool):
    pids = set(pool.map(tasks.pid, range(20)))
    assert os.getpid() not in pids
    for worker in pids:
        assert os.getpgid(worker) == worker


def conftest_worker_pids(folder, count):
    from conftest import worker_pids

    return worker_pids(str(folder), count)


def conftest_assert_gone(pids):
    from conftest import assert_gone

    assert_gone(pids)


def test_results_survive_pickle_protocol_5_buffers(pool):
    data = [bytes(range(256)) * 100, bytearray(b"x" * 10_000)]
    assert pool.map(pickle.loads, [pickle.dumps(d, protocol=5) for d in data]) == data


def test_progress_calls_back_with_done_and_total_ending_at_the_total():
    seen = []
    with muster.Pool(2, progress=lambda done, total: seen.append((done, total))) as pool:
        assert pool.map(tasks.square, range(5000)) == [x * x for x in range(5000)]
    assert seen[-1] == (5000, 5000)
    assert all(a[0] <= b[0] for a, b in zip(seen, seen[1:]))
    assert all(total == 5000 for _, total in seen)


def test_a_pool_that_cannot_start_leaves_no_folder(tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with pytest.raises(ValueError):
        muster.Pool(2, grace=-1)
    assert os.listdir(tmp_path) == []
    with muster.Pool(1) as pool:
        assert pool.apply(tasks.square, (3,)) == 9
        assert len(os.listdir(tmp_path)) == 1
    assert os.listdir(tmp_path) == []
