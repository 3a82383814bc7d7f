"""muster: a Python process pool that never hangs, leaves nothing behind and needs no
chunksize, on muster's Rust engine.

`muster.Pool` has `multiprocessing.Pool`'s surface and `muster.Executor` is a
`concurrent.futures.Executor`; both run tasks in fresh interpreters (`python -m
muster._worker`, exec'd, never forked), each in its own process group under muster's
watchdog. A worker that dies fails only its task (`WorkerLost`, after `retries`); a task past
`timeout` stops only its worker (`TimeoutError`); Ctrl-C, `terminate()` or the end of the
caller — even by `kill -9` — leave no worker behind.

The extension (`muster._core`) declares that it needs the GIL: on a free-threaded Python,
importing it turns the GIL back on (untested there).
"""

# The pool is imported on first use: a worker (`python -m muster._worker`) imports this
# package too, and needs none of it.
_EXPORTS = (
    "ApplyResult",
    "AsyncResult",
    "Executor",
    "InitializerError",
    "MapResult",
    "Pool",
    "RemoteTraceback",
    "TaskError",
    "WorkerLost",
)

__all__ = list(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        from muster import _pool

        return getattr(_pool, name)
    raise AttributeError("module 'muster' has no attribute %r" % name)


def __dir__():
    return sorted(list(globals()) + list(_EXPORTS))
