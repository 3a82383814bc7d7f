"""A pool's worker: `python -m muster._worker` with MUSTER_POOL=FOLDER (a local pool's), or
`python -m muster._worker MODULE:FUNCTION` (a queue's, under `muster worker --persistent
--framed`; see `muster._wire`), started (exec'd, never forked) by
muster's engine and fed task records on stdin; it answers each with one reply record on
stdout, in order (see `muster._wire`). Its stdin closing is the seed's 'quit'.

The worker's own stdout is kept for records alone: print() and C code writing to fd 1 go to
stderr, which muster passes on line by line.
"""

import itertools
import os
import pickle
import struct
import sys
import time

from muster import _wire

_LENGTH = struct.Struct("<I")
# Functions a worker keeps loaded (a pool given a new lambda per call must not grow a worker).
_FUNCTIONS_KEPT = 64


def _describe(exc):
    """(exception or None, type name, message, traceback text) for a reply."""
    import traceback

    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    try:
        pickle.loads(pickle.dumps(exc, protocol=_wire.PROTOCOL))
        kept = exc
    except Exception:
        kept = None
    exc.__traceback__ = None
    return kept, type(exc).__qualname__, str(exc), text


def _reply(values, errors, elapsed):
    try:
        body = pickle.dumps((values, errors), protocol=_wire.PROTOCOL)
    except Exception:
        # One result that does not pickle is that item's error, never a lost record.
        kept = []
        for index, value in enumerate(values):
            try:
                pickle.dumps(value, protocol=_wire.PROTOCOL)
                kept.append(value)
            except Exception as exc:
                kept.append(None)
                if index not in errors:
                    problem = TypeError("the result could not be pickled: %s: %s" % (type(exc).__name__, exc))
                    errors[index] = _describe(problem)
        body = pickle.dumps((kept, errors), protocol=_wire.PROTOCOL)
    return _wire.reply_header(elapsed) + body


def apply(function, mode, items):
    """Calls `function` on each item as `mode` says: (values, errors by index)."""
    values = []
    errors = {}
    if mode == _wire.FULL:
        for index, (args, kwargs) in enumerate(items):
            try:
                values.append(function(*args, **(kwargs or {})))
            except Exception as exc:
                values.append(None)
                errors[index] = _describe(exc)
        return values, errors
    runner = map if mode == _wire.ONE else itertools.starmap
    remaining = iter(items)
    while True:
        try:
            # At C speed; an exception leaves the values before it in place and the
            # iterator just past the item that raised.
            values.extend(runner(function, remaining))
            return values, errors
        except Exception as exc:
            errors[len(values)] = _describe(exc)
            values.append(None)


class Worker:
    """A local pool's worker: functions by id from the pool's folder, pickles both ways."""

    def __init__(self, folder):
        self.folder = folder
        self.functions = {}

    def function(self, function_id):
        function = self.functions.get(function_id)
        if function is None:
            with open(_wire.function_file(self.folder, function_id), "rb") as file:
                function = pickle.load(file)
            if len(self.functions) >= _FUNCTIONS_KEPT:
                # The oldest loaded goes (its file stays: loaded again if named again).
                del self.functions[next(iter(self.functions))]
            self.functions[function_id] = function
        return function

    def run(self, record):
        mode, function_id, body = _wire.parse_call(record)
        try:
            # Loaded once per worker (an import, maybe): not the items' time, which the pool
            # sizes its records by.
            function = self.function(function_id)
            started = time.perf_counter()
            items = pickle.loads(body)
        except Exception as exc:
            # Nothing of the record can run: one error stands for it.
            return _reply([None], {0: _describe(exc)}, 0.0)
        values, errors = apply(function, mode, items)
        return _reply(values, errors, time.perf_counter() - started)


class RemoteWorker:
    """A queue's worker: runs only the function its command line names, on records that
    carry JSON, or pickles signed with the key it shares with the pool (see `_wire`)."""

    def __init__(self, name, key):
        import importlib

        module, _, qualname = name.partition(":")
        if not module or not qualname:
            raise SystemExit("muster._worker: name the function as MODULE:FUNCTION, not %r" % name)
        function = importlib.import_module(module)
        for part in qualname.split("."):
            function = getattr(function, part)
        self.name = name
        self.function = function
        self.key = key

    def run(self, record):
        started = time.perf_counter()
        try:
            name, mode, items, signed = _wire.parse_remote_call(record, self.key)
            if name != self.name:
                raise _wire.Refused("this worker runs %s, not %s" % (self.name, name))
        except Exception as exc:
            # Never signed: a refused record gets nothing a forger could use.
            return _wire.remote_reply(time.perf_counter() - started, [None], {0: _describe(exc)}, None, False)
        values, errors = apply(self.function, mode, items)
        if not signed:
            import json

            for index, value in enumerate(values):
                try:
                    json.dumps(value)
                except (TypeError, ValueError) as exc:
                    values[index] = None
                    problem = TypeError("the result is not JSON (give the pool and workers a key for pickles): %s" % exc)
                    errors.setdefault(index, _describe(problem))
        return _wire.remote_reply(time.perf_counter() - started, values, errors, self.key, signed)


def _initialize(folder):
    path = os.path.join(folder, "init")
    if not os.path.exists(path):
        return
    try:
        with open(path, "rb") as file:
            initializer, initargs = pickle.load(file)
        initializer(*initargs)
    except BaseException as exc:
        import traceback

        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        temporary = os.path.join(folder, "init-error.%d" % os.getpid())
        with open(temporary, "w") as file:
            file.write(text)
        os.replace(temporary, os.path.join(folder, "init-error"))
        sys.stderr.write(text)
        sys.stderr.flush()
        os._exit(_wire.INIT_FAILED)


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def main(argv):
    # Records own fd 1; everything else written to stdout goes to stderr.
    records_out = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    if argv:
        # A queue's worker: `python -m muster._worker MODULE:FUNCTION`.
        key = os.environ.get("MUSTER_KEY")
        worker = RemoteWorker(argv[0], key.encode() if key else None)
    else:
        folder = os.environ["MUSTER_POOL"]
        with open(os.path.join(folder, "path"), "rb") as file:
            sys.path[:] = pickle.load(file)
        _initialize(folder)
        worker = Worker(folder)
    pending = bytearray()
    out = bytearray()
    while True:
        chunk = os.read(0, 1 << 20)
        if not chunk:
            return
        pending += chunk
        start = 0
        flushed_at = time.perf_counter()
        while len(pending) - start >= 4:
            (length,) = _LENGTH.unpack_from(pending, start)
            end = start + 4 + length
            if end > len(pending):
                break
            reply = worker.run(bytes(pending[start + 4 : end]))
            out += _LENGTH.pack(len(reply))
            out += reply
            start = end
            now = time.perf_counter()
            if now - flushed_at > 0.001:
                # Slow tasks: each reply goes as soon as it is ready (muster times them).
                _write_all(records_out, out)
                out.clear()
                flushed_at = now
        del pending[:start]
        if out:
            _write_all(records_out, out)
            out.clear()


if __name__ == "__main__":
    main(sys.argv[1:])
