"""muster.Pool and muster.Executor: the `multiprocessing.Pool` and `concurrent.futures`
surfaces over one muster engine (`muster._core.Engine`) and its exec'd worker interpreters.

One `_Runner` per pool owns the engine, the folder its workers load functions from, and a
collector thread that takes the engine's results in batches and hands each record's items to
whoever waits for them (a stream of `map`/`imap`, an `AsyncResult`, a `Future`).

Small tasks are batched into records by measured speed (about 2 ms of the worker's time per
record; none when a per-task timeout or a journal is set). A record whose worker was lost is
split and its items run again one per record, so only the item that kills a worker fails.
"""

import collections
import hashlib
import itertools
import os
import pickle
import shutil
import sys
import tempfile
import threading
import time
import traceback
import weakref
import concurrent.futures as futures

import cloudpickle

from muster import _core, _wire

#: The worker time a batched record aims at, in seconds.
RECORD_TIME = 0.002
#: The most items one record carries.
MAX_BATCH = 16384
# How much an earlier record's measurement still counts at the next.
FADE = 0.7


class WorkerLost(Exception):
    """A task's worker died on it (a signal, or an exit) on every attempt it was given."""

    def __init__(self, message, exitcode=None, signal=None):
        super().__init__(message)
        self.exitcode = exitcode
        self.signal = signal


class InitializerError(Exception):
    """A worker's initializer raised: no worker of the pool can start."""


class TaskError(Exception):
    """A task raised an exception that could not be sent back as itself (it does not pickle);
    its type, message and traceback are kept."""


class RemoteTraceback(Exception):
    """The traceback of an exception raised in a worker (the cause of the re-raised one)."""

    def __init__(self, text):
        super().__init__(text)
        self.text = text

    def __str__(self):
        return self.text


def _rebuild(error):
    """The exception an item's error stands for, with the worker's traceback as its cause."""
    exc, type_name, message, text = error
    if exc is None:
        exc = TaskError("%s: %s" % (type_name, message))
    exc.__cause__ = RemoteTraceback('\n"""\n%s"""' % text)
    return exc


class _Record:
    """What the collector needs to know of a record in flight."""

    __slots__ = ("sink", "first", "items", "mode", "function_id")

    def __init__(self, sink, first, items, mode, function_id):
        self.sink = sink
        self.first = first
        self.items = items
        self.mode = mode
        self.function_id = function_id


class _Runner:
    def __init__(self, processes, initializer, initargs, maxtasksperchild, retries, timeout, grace, journal=None,
                 broker=None, queue=None, key=None):
        if processes is None:
            processes = os.cpu_count() or 1
        if processes < 1:
            raise ValueError("Number of processes must be at least 1")
        if queue is not None and broker is None:
            # As muster's command line: the URL (and its password) may come from the environment.
            broker = os.environ.get("MUSTER_BROKER")
        self.remote = broker is not None or queue is not None
        if self.remote:
            if broker is None or queue is None:
                raise ValueError("a broker needs a queue, and a queue a broker (broker= or MUSTER_BROKER)")
            for name, value in (("initializer", initializer), ("maxtasksperchild", maxtasksperchild), ("timeout", timeout)):
                if value is not None:
                    raise ValueError("%s is the workers' business with a broker (muster worker's flags)" % name)
        self.key = key.encode() if isinstance(key, str) else key
        self.folder = tempfile.mkdtemp(prefix="muster-pool-")
        with open(os.path.join(self.folder, "path"), "wb") as file:
            pickle.dump([os.path.abspath(p) if p else os.getcwd() for p in sys.path], file)
        if initializer is not None:
            with open(os.path.join(self.folder, "init"), "wb") as file:
                cloudpickle.dump((initializer, tuple(initargs)), file)
        self.timeout = timeout
        self.journal = os.fspath(journal) if journal is not None else None
        try:
            self.engine = self._engine(processes, retries, timeout, grace, maxtasksperchild, broker, queue)
        except BaseException:
            shutil.rmtree(self.folder, ignore_errors=True)
            raise
        self.processes = processes
        self.lock = threading.Lock()
        self.records = {}
        # Single calls (apply_async, submit) waiting for a record: sent together once the
        # records in flight come back (see `call`).
        self.calls = collections.deque()
        self.function_lock = threading.Lock()
        self.functions = {}
        self.next_function = 0
        self.failure = None
        # Seconds a worker spends per item, measured: recent records' time over their items,
        # each record weighted by its items (a one-item record's overhead must not make the
        # next records small), older records fading.
        self.per_item = None
        self.measured_time = 0.0
        self.measured_items = 0.0
        self.collector = threading.Thread(target=self._collect, name="muster-collector", daemon=True)
        self.collector.start()

    def _engine(self, processes, retries, timeout, grace, maxtasksperchild, broker, queue):
        return _core.Engine(
            sys.executable,
            # The folder goes by the environment: the command line is what a journal's resume
            # checks, and must be the same on the next run. -S: no site module (half of an
            # interpreter's start-up); the worker finds muster by PYTHONPATH, then takes the
            # caller's whole sys.path before it loads any function.
            ["-S", "-m", "muster._worker"],
            processes,
            window=64,
            retries=retries,
            timeout=timeout,
            grace=grace,
            max_tasks_per_worker=maxtasksperchild,
            # The watchdog removes the folder too, once this process is gone (even killed).
            watchdog=[sys.executable, "-m", "muster._watchdog", self.folder],
            env=[("MUSTER_POOL", self.folder), ("PYTHONPATH", _worker_pythonpath())],
            journal=self.journal,
            broker=broker,
            queue=queue,
        )

    # -- sending -------------------------------------------------------------------------

    def function_id(self, function):
        """The function's id, its file written (once) before any record can name it; with a
        broker, its name (MODULE:FUNCTION), which the queue's workers must be running."""
        if self.remote:
            return _importable_name(function)
        known = self.functions.get(id(function))
        if known is not None and known[0]() is function:
            return known[1]
        with self.function_lock:
            known = self.functions.get(id(function))
            if known is not None and known[0]() is function:
                return known[1]
            function_id = self.next_function
            path = _wire.function_file(self.folder, function_id)
            temporary = path + ".tmp"
            with open(temporary, "wb") as file:
                cloudpickle.dump(function, file, protocol=_wire.PROTOCOL)
            os.replace(temporary, path)
            self.next_function += 1
            self.functions[id(function)] = (_held_weakly(function, self.functions), function_id)
            return function_id

    def call(self, sink, function_id, args, kwargs):
        """One call (`apply_async`, `submit`): sent at once while few records are in flight,
        else queued and sent with the others in batches as records come back, so a burst of
        submissions costs a record per batch, not per call."""
        with self.lock:
            if self.failure is not None:
                raise self.failure
            if (self.calls or len(self.records) >= self.processes * 4) and self.journal is None:
                self.calls.append((function_id, (args, kwargs), sink))
                return
        self.send(_Calls([sink]), 0, [(args, kwargs)], _wire.FULL, function_id)

    def flush_calls(self, everything=False):
        """Sends queued calls, in records of one function each, as many per record as the
        measured speed allows; all of them when `everything` (the pool is closing)."""
        while True:
            with self.lock:
                if not self.calls or (len(self.records) >= self.processes * 4 and not everything):
                    return
                size = self.batch_size()
                calls = self.calls
                function_id = calls[0][0]
                batch = []
                while calls and len(batch) < size and calls[0][0] == function_id:
                    batch.append(calls.popleft())
            sinks = _Calls([sink for _, _, sink in batch])
            try:
                self.send(sinks, 0, [item for _, item, _ in batch], _wire.FULL, function_id)
            except BaseException as exc:
                sinks.failed(0, len(batch), exc)

    def send(self, sink, first, items, mode, function_id):
        """Sends items (numbered from `first` for their sink) as one record."""
        try:
            if self.remote:
                record = _wire.remote_call(function_id, mode, items, self.key)
            else:
                record = _wire.call_header(mode, function_id) + pickle.dumps(items, protocol=_wire.PROTOCOL)
        except Exception as exc:
            if len(items) > 1:
                # Find the argument that does not pickle: it fails alone.
                for offset, item in enumerate(items):
                    self.send(sink, first + offset, [item], mode, function_id)
                return
            how = "are not JSON (give the pool and its workers a key for pickles)" if self.remote and self.key is None \
                else "could not be pickled"
            problem = TypeError("the task's arguments %s: %s: %s" % (how, type(exc).__name__, exc))
            problem.__cause__ = exc
            sink.failed(first, 1, problem)
            return
        # With a journal, a record is known by its bytes: a rerun finds its result by them.
        keys = None if self.journal is None else [hashlib.blake2b(record, digest_size=16).digest()]
        with self.lock:
            if self.failure is not None:
                raise self.failure
            try:
                record_id = self.engine.submit([record], keys)
            except RuntimeError:
                record_id = None
            else:
                self.records[record_id] = _Record(sink, first, items if len(items) > 1 else None, mode, function_id)
        if record_id is None:
            raise self._engine_failure()

    def _engine_failure(self):
        """Why the engine stopped taking records: its own error when it failed (Redis
        unreachable, say), which the collector may not have recorded yet."""
        self._record_engine_error()
        return self.failure or RuntimeError("the pool's engine has stopped")

    def _record_engine_error(self):
        """Waits for the engine to end and keeps its error, if it failed, as the pool's."""
        try:
            self.engine.join(5)
        except Exception as exc:
            with self.lock:
                if self.failure is None:
                    self.failure = exc

    def batch_size(self):
        """How many items the next record of a stream carries."""
        if self.timeout is not None or self.per_item is None or self.journal is not None:
            # A timeout is per task; a journal records tasks, not batches.
            return 1
        return max(1, min(MAX_BATCH, int(RECORD_TIME / max(self.per_item, 1e-7))))

    # -- collecting ----------------------------------------------------------------------

    def _collect(self):
        engine = self.engine
        while True:
            try:
                batch = engine.results(0.2)
            except BaseException:
                continue
            if batch is None:
                break
            if not batch:
                continue
            with self.lock:
                taken = [(self.records.pop(record_id, None), kind, reply, message, code, signal)
                         for record_id, kind, reply, message, code, signal in batch]
            if self.calls:
                self.flush_calls()
            for record, kind, reply, message, code, signal in taken:
                if record is not None:
                    try:
                        self._settle(record, kind, reply, message, code, signal)
                    except Exception:
                        # A user's callback raised: say so, and keep collecting.
                        traceback.print_exc()
        # The engine ended: if it failed (Redis unreachable, say), that is what the tasks
        # still waiting get, not a vague "terminated".
        self._record_engine_error()
        with self.lock:
            left = list(self.records.values())
            self.records.clear()
            calls, self.calls = self.calls, collections.deque()
        for record in left:
            record.sink.failed(record.first, self._count(record), self._stopped())
        for _, _, sink in calls:
            sink(False, self._stopped())

    def _count(self, record):
        return len(record.items) if record.items is not None else 1

    def _stopped(self):
        return self.failure or RuntimeError("the pool was terminated before this task ran")

    def _settle(self, record, kind, reply, message, code, signal):
        sink = record.sink
        if kind == _core.DONE:
            try:
                elapsed, values, errors = _wire.parse_any_reply(reply, self.key)
            except Exception as exc:
                sink.failed(record.first, self._count(record), exc)
                return
            count = len(values)
            if count:
                self.measured_time = self.measured_time * FADE + elapsed
                self.measured_items = self.measured_items * FADE + count
                self.per_item = self.measured_time / self.measured_items
            sink.delivered(record.first, values, {i: _rebuild(e) for i, e in errors.items()})
            return
        if kind in (_core.FAILED, _core.TIMED_OUT) and record.items is not None:
            # A batch whose worker was lost: its items run again one by one, so only the one
            # that kills a worker fails.
            for offset, item in enumerate(record.items):
                try:
                    self.send(sink, record.first + offset, [item], record.mode, record.function_id)
                except BaseException as exc:
                    sink.failed(record.first + offset, 1, exc)
            return
        if kind == _core.FAILED:
            error = self._initializer_error(code)
            if error is not None:
                self._fail_everything(error)
                sink.failed(record.first, 1, error)
                return
            sink.failed(record.first, 1, WorkerLost(message or "its worker was lost", code, signal))
        elif kind == _core.TIMED_OUT:
            sink.failed(record.first, 1, TimeoutError(message or "the task timed out"))
        else:
            sink.failed(record.first, self._count(record), self._stopped())

    def _initializer_error(self, code):
        if code != _wire.INIT_FAILED:
            return None
        try:
            with open(os.path.join(self.folder, "init-error")) as file:
                text = file.read()
        except OSError:
            return None
        error = InitializerError("the pool's initializer raised; no worker can start")
        error.__cause__ = RemoteTraceback('\n"""\n%s"""' % text)
        return error

    def _fail_everything(self, error):
        with self.lock:
            if self.failure is None:
                self.failure = error
        self.engine.terminate()

    # -- ending --------------------------------------------------------------------------

    def close(self):
        self.flush_calls(everything=True)
        self.engine.close()

    def terminate(self):
        self.engine.terminate()

    def join(self, timeout=None):
        try:
            finished = self.engine.join(timeout)
        except RuntimeError as exc:
            # The engine failed (Redis unreachable, say): the tasks waiting got this error;
            # ending the pool is not another failure.
            with self.lock:
                if self.failure is None:
                    self.failure = exc
            finished = True
        if finished:
            self.collector.join(timeout)
            shutil.rmtree(self.folder, ignore_errors=True)
        return finished


def _held_weakly(function, functions):
    """A reference to `function` that lets it go: once it is collected its entry leaves
    `functions` (a lambda made per call must not stay for the pool's life), so its id, if
    reused, names the new function. Objects without weak references are held."""
    key = id(function)

    def forget(reference):
        # At collection, maybe inside function_id on this thread: no lock here (a dict
        # operation is atomic), and only this reference's own entry goes.
        entry = functions.get(key)
        if entry is not None and entry[0] is reference:
            functions.pop(key, None)

    try:
        return weakref.ref(function, forget)
    except TypeError:
        return lambda: function


def _finalize(runner):
    runner.terminate()
    try:
        runner.join(5)
    except BaseException:
        pass


def _worker_pythonpath():
    """Where a worker started without `site` finds muster (and whatever PYTHONPATH had)."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    inherited = os.environ.get("PYTHONPATH")
    return here if not inherited else here + os.pathsep + inherited


def _importable_name(function):
    """MODULE:QUALNAME of a function a queue's worker can import by name."""
    module = getattr(function, "__module__", None)
    qualname = getattr(function, "__qualname__", None)
    if not module or not qualname or module == "__main__" or "<" in qualname:
        raise ValueError(
            "with a broker, a task's function is run by name on the queue's workers "
            "(python -m muster._worker MODULE:FUNCTION): %r is not importable by name" % (function,)
        )
    return "%s:%s" % (module, qualname)


class _Progress:
    """A map's progress: `progress=True` draws a tqdm bar when tqdm is installed, else a line
    on stderr (on a terminal); a callable is called with (done, total or None), at most ten
    times a second and once at the end."""

    def __init__(self, how, total):
        self.total = total
        self.done = 0
        self.shown = 0.0
        self.bar = None
        self.callback = None
        self.line = False
        if callable(how):
            self.callback = how
        elif how:
            try:
                import tqdm

                self.bar = tqdm.tqdm(total=total, unit="task")
            except ImportError:
                self.line = sys.stderr.isatty()

    def advance(self, count, final=False):
        self.done += count
        now = time.monotonic()
        if not final and now - self.shown < 0.1:
            return
        self.shown = now
        if self.bar is not None:
            self.bar.update(self.done - self.bar.n)
        if self.callback is not None:
            self.callback(self.done, self.total)
        if self.line:
            of = "/%d" % self.total if self.total is not None else ""
            sys.stderr.write("\rmuster: %d%s tasks done" % (self.done, of) + ("\n" if final else ""))
            sys.stderr.flush()

    def close(self):
        self.advance(0, final=True)
        if self.bar is not None:
            self.bar.close()


class _Stream:
    """The results of one map/imap call as records bring them back, a block per record (its
    values, and its errors by offset): in input order, or as they finish."""

    def __init__(self, ordered):
        self.ordered = ordered
        self.cond = threading.Condition(threading.Lock())
        self.ready = {} if ordered else collections.deque()

    def delivered(self, first, values, errors):
        with self.cond:
            if self.ordered:
                self.ready[first] = (values, errors)
            else:
                self.ready.append((values, errors))
            self.cond.notify()

    def failed(self, first, count, error):
        self.delivered(first, [None] * count, dict.fromkeys(range(count), error))


class _Calls:
    """The sinks of a record of single calls, one per item: each a callable taking
    (success, value or exception)."""

    __slots__ = ("sinks",)

    def __init__(self, sinks):
        self.sinks = sinks

    def delivered(self, first, values, errors):
        sinks = self.sinks
        if not errors:
            for offset, value in enumerate(values):
                sinks[first + offset](True, value)
            return
        for offset, value in enumerate(values):
            error = errors.get(offset)
            if error is None:
                sinks[first + offset](True, value)
            else:
                sinks[first + offset](False, error)

    def failed(self, first, count, error):
        for offset in range(count):
            self.sinks[first + offset](False, error)


class ApplyResult:
    """The result of `Pool.apply_async`, as multiprocessing's AsyncResult."""

    def __init__(self, callback=None, error_callback=None):
        self._event = threading.Event()
        self._callback = callback
        self._error_callback = error_callback
        self._value = None
        self._success = None

    def _set(self, success, value):
        self._success, self._value = success, value
        try:
            if success and self._callback is not None:
                self._callback(value)
            if not success and self._error_callback is not None:
                self._error_callback(value)
        finally:
            self._event.set()

    def ready(self):
        return self._event.is_set()

    def successful(self):
        if not self.ready():
            raise ValueError("%r not ready" % self)
        return self._success

    def wait(self, timeout=None):
        self._event.wait(timeout)

    def get(self, timeout=None):
        if not self._event.wait(timeout):
            raise futures.TimeoutError
        if self._success:
            return self._value
        raise self._value


AsyncResult = ApplyResult


class MapResult(ApplyResult):
    """The result of `Pool.map_async`: a list once every item is back."""


class Pool:
    """A process pool with `multiprocessing.Pool`'s surface, on muster's engine.

    Workers are fresh interpreters (`python -m muster._worker`), each in its own process group
    under muster's watchdog: a worker that dies fails (after `retries` more attempts) only its
    task, with `WorkerLost`; `timeout` (seconds) limits each task, stopping only the worker
    holding it (`TimeoutError` for that task); Ctrl-C, `terminate()`, leaving the `with` block
    or losing the pool stops every worker. Functions may be lambdas, closures or defined in
    `__main__` (they travel by cloudpickle). No chunksize to tune: small tasks are batched by
    measured speed.
    """

    def __init__(self, processes=None, initializer=None, initargs=(), maxtasksperchild=None,
                 context=None, *, retries=0, timeout=None, grace=2.0, journal=None,
                 broker=None, queue=None, key=None, progress=None):
        if maxtasksperchild is not None and maxtasksperchild < 1:
            raise ValueError("maxtasksperchild must be a positive int or None")
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        self._runner = _Runner(processes, initializer, initargs, maxtasksperchild, retries, timeout, grace, journal,
                               broker, queue, key)
        self._progress = progress
        self._state = "RUN"
        self._finalizer = weakref.finalize(self, _finalize, self._runner)

    @property
    def _processes(self):
        return self._runner.processes

    def _check_running(self):
        if self._state != "RUN":
            raise ValueError("Pool not running")

    # -- one task --------------------------------------------------------------------------

    def apply_async(self, func, args=(), kwds={}, callback=None, error_callback=None):
        self._check_running()
        result = ApplyResult(callback, error_callback)
        runner = self._runner
        runner.call(result._set, runner.function_id(func), tuple(args), dict(kwds) or None)
        return result

    def apply(self, func, args=(), kwds={}):
        return self.apply_async(func, args, kwds).get()

    # -- many tasks ------------------------------------------------------------------------

    def _stream(self, func, iterable, mode, ordered, chunksize=None):
        """Yields blocks of results, (values, errors by offset), in input order when
        `ordered`; sends the input lazily, a bounded number of items ahead."""
        self._check_running()
        runner = self._runner
        function_id = runner.function_id(func)
        progress = None
        if self._progress:
            progress = _Progress(self._progress, len(iterable) if hasattr(iterable, "__len__") else None)
        items = iter(iterable)
        stream = _Stream(ordered)
        sent = 0
        handed = 0
        exhausted = False
        ahead = max(256, runner.processes * 256)
        ready = stream.ready
        try:
            while True:
                while not exhausted:
                    size = chunksize or runner.batch_size()
                    # A few records per worker in flight, whatever their size; before any
                    # is measured, two single items per worker (the first reply sizes the rest,
                    # and hundreds of one-item records would only queue behind it).
                    window = max(ahead, size * runner.processes * 4)
                    if runner.per_item is None and chunksize is None:
                        window = runner.processes * 2
                    if sent - handed >= window:
                        break
                    batch = list(itertools.islice(items, size))
                    if not batch:
                        exhausted = True
                        break
                    runner.send(stream, sent, batch, mode, function_id)
                    sent += len(batch)
                if exhausted and handed == sent:
                    if progress is not None:
                        progress.close()
                    return
                with stream.cond:
                    if ordered:
                        while handed not in ready:
                            stream.cond.wait(0.5)
                        taken = []
                        while handed in ready:
                            block = ready.pop(handed)
                            handed += len(block[0])
                            taken.append(block)
                    else:
                        while not ready:
                            stream.cond.wait(0.5)
                        taken = list(ready)
                        ready.clear()
                        handed += sum(len(values) for values, _ in taken)
                if progress is not None:
                    progress.advance(sum(len(values) for values, _ in taken))
                yield from taken
        except KeyboardInterrupt:
            self.terminate()
            raise

    def _items(self, func, iterable, mode, ordered, chunksize):
        for values, errors in self._stream(func, iterable, mode, ordered, chunksize):
            if not errors:
                yield from values
                continue
            for offset, value in enumerate(values):
                if offset in errors:
                    raise errors[offset]
                yield value

    def imap(self, func, iterable, chunksize=None):
        return self._items(func, iterable, _wire.ONE, True, chunksize)

    def imap_unordered(self, func, iterable, chunksize=None):
        return self._items(func, iterable, _wire.ONE, False, chunksize)

    def map(self, func, iterable, chunksize=None):
        return self._gather(func, iterable, _wire.ONE, chunksize)

    def starmap(self, func, iterable, chunksize=None):
        return self._gather(func, iterable, _wire.STAR, chunksize)

    def _gather(self, func, iterable, mode, chunksize):
        """Every result in input order; the first error (in input order) raised once all are back."""
        results = []
        first_error = None
        for values, errors in self._stream(func, iterable, mode, True, chunksize):
            if errors and first_error is None:
                first_error = errors[min(errors)]
            results += values
        if first_error is not None:
            raise first_error
        return results

    def map_async(self, func, iterable, chunksize=None, callback=None, error_callback=None):
        return self._async(self.map, func, iterable, chunksize, callback, error_callback)

    def starmap_async(self, func, iterable, chunksize=None, callback=None, error_callback=None):
        return self._async(self.starmap, func, iterable, chunksize, callback, error_callback)

    def _async(self, method, func, iterable, chunksize, callback, error_callback):
        self._check_running()
        result = MapResult(callback, error_callback)
        items = list(iterable)

        def run():
            try:
                value = method(func, items, chunksize)
            except BaseException as exc:
                result._set(False, exc)
            else:
                result._set(True, value)

        threading.Thread(target=run, daemon=True).start()
        return result

    # -- ending ----------------------------------------------------------------------------

    def close(self):
        if self._state == "RUN":
            self._state = "CLOSE"
            self._runner.close()

    def terminate(self):
        self._state = "TERMINATE"
        self._runner.terminate()
        self._runner.join()
        self._finalizer.detach()

    def join(self):
        if self._state == "RUN":
            raise ValueError("Pool is still running")
        while not self._runner.join(0.1):
            pass
        self._finalizer.detach()

    def stats(self):
        """What the pool's run did, once joined (a dict of counts), else None."""
        return self._runner.engine.summary()

    def __enter__(self):
        self._check_running()
        return self

    def __exit__(self, *exc_info):
        # As multiprocessing.Pool: leaving the block terminates the workers.
        self.terminate()

    def __repr__(self):
        return "<muster.Pool state=%s processes=%d>" % (self._state, self._runner.processes)


_PENDING = futures._base.PENDING
_FINISHED = futures._base.FINISHED
_CANCELLED = (futures._base.CANCELLED, futures._base.CANCELLED_AND_NOTIFIED)


class _Future(futures.Future):
    """A `concurrent.futures.Future` made and settled cheaply, for 100,000 submissions a
    second: the standard one builds a `threading.Condition` of its own (a third of a submit's
    time) and settles through four Python-level lock and notify calls. These share their
    executor's condition, wait in a loop for their own state (so a wake-up meant for another
    future is not a timeout), and notify only when someone waits. States, waiters (`wait`,
    `as_completed`) and callbacks are the standard ones; every other method is Future's."""

    def __init__(self, condition):
        self._condition = condition
        self._state = _PENDING
        self._result = None
        self._exception = None
        self._waiters = []
        self._done_callbacks = []

    def _settle(self, success, value):
        condition = self._condition
        with condition._lock:
            if self._state in _CANCELLED or self._state == _FINISHED:
                return  # cancelled meanwhile: its result is dropped
            if success:
                self._result = value
                for waiter in self._waiters:
                    waiter.add_result(self)
            else:
                self._exception = value
                for waiter in self._waiters:
                    waiter.add_exception(self)
            self._state = _FINISHED
            if condition._waiters:
                condition.notify_all()
        if self._done_callbacks:
            self._invoke_callbacks()

    def _wait_done(self, timeout):
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self._state in _CANCELLED:
                raise futures.CancelledError()
            if self._state == _FINISHED:
                return
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise futures.TimeoutError()
            self._condition.wait(remaining)

    def result(self, timeout=None):
        with self._condition:
            self._wait_done(timeout)
            if self._exception is not None:
                raise self._exception
            return self._result

    def exception(self, timeout=None):
        with self._condition:
            self._wait_done(timeout)
            return self._exception


def _fast_futures_fit():
    """True when `_Future` matches this Python's Future (checked once; CPython 3.9 to 3.14)."""
    try:
        standard = futures.Future()
        probe = _Future(threading.Condition())
        if set(vars(standard)) != set(vars(probe)):
            return False
        probe._condition._lock, probe._condition._waiters  # noqa: B018 - the parts it relies on
        probe._settle(True, 1)
        return probe.result(0) == 1 and probe.done()
    except Exception:
        return False


_FAST_FUTURES = _fast_futures_fit()


class _FutureSink:
    """Settles a Future with a call's result."""

    __slots__ = ("future",)

    def __init__(self, future):
        self.future = future

    def __call__(self, success, value):
        if _FAST_FUTURES:
            self.future._settle(success, value)
            return
        try:
            if success:
                self.future.set_result(value)
            else:
                self.future.set_exception(value)
        except futures.InvalidStateError:
            pass  # cancelled meanwhile: its result is dropped


class Executor(futures.Executor):
    """A `concurrent.futures.Executor` on muster's engine; see `Pool` for the workers.

    A dead worker fails only its task's future (`WorkerLost`, after `retries`); the executor
    stays usable.
    """

    def __init__(self, max_workers=None, mp_context=None, initializer=None, initargs=(),
                 max_tasks_per_child=None, *, retries=0, timeout=None, grace=2.0, journal=None,
                 broker=None, queue=None, key=None, progress=None):
        self._pool = Pool(max_workers, initializer, initargs, max_tasks_per_child,
                          retries=retries, timeout=timeout, grace=grace, journal=journal,
                          broker=broker, queue=queue, key=key, progress=progress)
        self._shutdown = False
        # Shared by this executor's futures (see _Future).
        self._condition = threading.Condition()

    def submit(self, fn, /, *args, **kwargs):
        if self._shutdown:
            raise RuntimeError("cannot schedule new futures after shutdown")
        # Left pending (cheaper than marking it running): cancel() then succeeds until the
        # result arrives, and the result of a cancelled future is dropped.
        future = _Future(self._condition) if _FAST_FUTURES else futures.Future()
        runner = self._pool._runner
        runner.call(_FutureSink(future), runner.function_id(fn), args, kwargs or None)
        return future

    def map(self, fn, *iterables, timeout=None, chunksize=None):
        deadline = None if timeout is None else time.monotonic() + timeout
        items = self._pool._items(fn, zip(*iterables), _wire.STAR, True, None)

        def results():
            for value in items:
                if deadline is not None and time.monotonic() > deadline:
                    raise futures.TimeoutError
                yield value

        return results()

    def shutdown(self, wait=True, *, cancel_futures=False):
        self._shutdown = True
        if cancel_futures:
            self._pool.terminate()
            return
        self._pool.close()
        if wait:
            self._pool.join()
