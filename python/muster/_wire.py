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


# -- Records through a broker -------------------------------------------------------------
#
# Tasks on a Redis queue go to workers started elsewhere as
# `muster worker --persistent --framed -- python -m muster._worker MODULE:FUNCTION`. The queue
# carries data, never code: a worker runs only the function its command line names, and a
# record says which function it is for (a worker refuses records for another). Arguments and
# results travel as JSON; as pickles only when both sides hold the same key (MUSTER_KEY on
# the workers, `key=` on the pool), each record then signed with HMAC-SHA256 over its bytes and
# refused unread when the signature does not match — a compromised Redis cannot make a
# worker (or the pool) unpickle anything.
#
#     task:  b"N" | JSON {"f": "module:name", "m": mode, "i": items}
#            b"S" | HMAC (32 bytes) | pickle({"f": ..., "m": ..., "i": items})
#     reply: b"n" | JSON {"t": elapsed, "v": values, "e": {index: [type, message, traceback]}}
#            b"s" | HMAC (32 bytes) | pickle((elapsed, values, errors))

# json, hmac and hashlib cost a local pool's workers 10 ms of start-up: imported on first use.
import pickle as _pickle

_SIGNATURE = 32


class Refused(Exception):
    """A record that is not to be read: a bad signature, no key, another function's."""


def _sign(key, body):
    import hashlib
    import hmac

    return hmac.new(key, body, hashlib.sha256).digest()


def _verify(key, record):
    if key is None:
        raise Refused("a signed record, and no key here to check it with (set MUSTER_KEY)")
    signature, body = record[1 : 1 + _SIGNATURE], record[1 + _SIGNATURE :]
    import hmac

    if not hmac.compare_digest(signature, _sign(key, body)):
        raise Refused("the record's signature does not match this key: refused unread")
    return body


def remote_call(function_name, mode, items, key):
    import json

    task = {"f": function_name, "m": mode, "i": items}
    if key is None:
        return b"N" + json.dumps(task, separators=(",", ":")).encode()
    body = _pickle.dumps(task, protocol=PROTOCOL)
    return b"S" + _sign(key, body) + body


def parse_remote_call(record, key):
    """(function name, mode, items, signed) of a task record from a queue."""
    import json

    kind = record[:1]
    if kind == b"N":
        task = json.loads(record[1:])
        signed = False
    elif kind == b"S":
        task = _pickle.loads(_verify(key, record))
        signed = True
    else:
        raise Refused("not a task record of a pool: %r" % bytes(record[:16]))
    return task["f"], task["m"], task["i"], signed


def remote_reply(elapsed, values, errors, key, signed):
    if not signed:
        import json

        described = {str(i): [e[1], e[2], e[3]] for i, e in errors.items()}
        return b"n" + json.dumps({"t": elapsed, "v": values, "e": described}, separators=(",", ":")).encode()
    body = _pickle.dumps((elapsed, values, errors), protocol=PROTOCOL)
    return b"s" + _sign(key, body) + body


def parse_any_reply(record, key):
    """(elapsed, values, errors) of any reply record; errors as (exception or None, type,
    message, traceback) by index."""
    kind = record[:1]
    if kind == b"R":
        elapsed, body = parse_reply(record)
        values, errors = _pickle.loads(body)
        return elapsed, values, errors
    if kind == b"n":
        import json

        reply = json.loads(record[1:])
        errors = {int(i): (None, e[0], e[1], e[2]) for i, e in reply["e"].items()}
        return reply["t"], reply["v"], errors
    if kind == b"s":
        return _pickle.loads(_verify(key, record))
    raise Refused("not a reply record: %r" % bytes(record[:16]))
