"""The records a pool and its workers exchange, framed by muster's engine (a 4-byte
little-endian length, then the record).

A task record is one call or a batch of calls of one function::

    b"C" | mode (1 byte) | function id (u32 LE) | pickle(items)

``mode`` says how each item is applied: ``ONE`` calls ``f(item)``, ``STAR`` calls ``f(*item)``,
``FULL`` calls ``f(*args, **kwargs)`` for ``item == (args, kwargs)``. Functions are not in the
record: the pool writes each one once (cloudpickled) into its folder as ``f<id>``, and a
worker loads it the first time a record names it.

A reply record is::

    b"R" | elapsed seconds (f64 LE, the worker's time on the whole record) | pickle((values, errors))

``values`` holds one result per item (``None`` where the item failed) and ``errors`` maps an
item's index to ``(exception or None, type name, message, traceback text)``: the exception
itself when it pickles, its description always. Both sides pickle with protocol 5.
"""

import struct

ONE = 0
STAR = 1
FULL = 2

_CALL = struct.Struct("<cBI")
_REPLY = struct.Struct("<cd")
PROTOCOL = 5

#: A worker whose initializer raised exits with this status after writing why into
#: FOLDER/init-error (the pool raises it for the tasks it held).
INIT_FAILED = 3


def call_header(mode, function_id):
    return _CALL.pack(b"C", mode, function_id)


def parse_call(record):
    """(mode, function id, pickled items) of a task record."""
    kind, mode, function_id = _CALL.unpack_from(record)
    if kind != b"C":
        raise ValueError("not a task record: %r" % record[:16])
    return mode, function_id, memoryview(record)[_CALL.size:]


def reply_header(elapsed):
    return _REPLY.pack(b"R", elapsed)


def parse_reply(record):
    """(elapsed seconds, pickled (values, errors)) of a reply record."""
    kind, elapsed = _REPLY.unpack_from(record)
    if kind != b"R":
        raise ValueError("not a reply record: %r" % record[:16])
    return elapsed, memoryview(record)[_REPLY.size:]


def function_file(folder, function_id):
    return "%s/f%d" % (folder, function_id)
