"""Property tests for the record codec the pool and its workers share."""

import pickle
import struct

from hypothesis import given, settings, strategies as st

from muster import _wire
from muster._worker import Worker

values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text() | st.binary(),
    lambda inner: st.lists(inner, max_size=5) | st.tuples(inner, inner) | st.dictionaries(st.text(max_size=5), inner, max_size=5),
    max_leaves=20,
)


@given(st.sampled_from([_wire.ONE, _wire.STAR, _wire.FULL]), st.integers(0, 2**32 - 1), st.binary())
def test_a_call_header_parses_back(mode, function_id, body):
    record = _wire.call_header(mode, function_id) + body
    got_mode, got_id, got_body = _wire.parse_call(record)
    assert (got_mode, got_id, bytes(got_body)) == (mode, function_id, body)


@given(st.floats(min_value=0, max_value=1e9), st.binary())
def test_a_reply_header_parses_back(elapsed, body):
    got_elapsed, got_body = _wire.parse_reply(_wire.reply_header(elapsed) + body)
    assert (got_elapsed, bytes(got_body)) == (elapsed, body)


def _identity(x):
    return x


class _Worker(Worker):
    """A worker whose one function is the identity, without its folder."""

    def __init__(self):
        super().__init__("/nonexistent")
        self.functions[0] = _identity


@settings(max_examples=200, deadline=None)
@given(st.lists(values, max_size=20))
def test_a_worker_answers_every_item_of_a_record_in_order(items):
    record = _wire.call_header(_wire.ONE, 0) + pickle.dumps(items, protocol=_wire.PROTOCOL)
    _, body = _wire.parse_reply(_Worker().run(record))
    got, errors = pickle.loads(body)
    assert errors == {} and got == items


@given(st.binary(min_size=1, max_size=64))
def test_a_garbled_record_is_an_error_reply_not_a_crash(garbage):
    record = _wire.call_header(_wire.ONE, 0) + garbage
    try:
        pickle.loads(garbage)
    except Exception:
        _, body = _wire.parse_reply(_Worker().run(record))
        values, errors = pickle.loads(body)
        assert values == [None] and 0 in errors


def test_frames_are_length_prefixed_little_endian():
    # The engine's Framing::LengthPrefixed: 4 bytes of length, then the record.
    assert struct.pack("<I", 5) == b"\x05\x00\x00\x00"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(), st.booleans()), max_size=30), st.sampled_from([_wire.ONE, _wire.STAR]))
def test_apply_calls_each_item_once_and_places_each_error_at_its_item(items, mode):
    from muster._worker import apply

    calls = []

    def function(value, fails):
        calls.append(value)
        if fails:
            raise ValueError(value)
        return value * 2

    if mode == _wire.ONE:
        values, errors = apply(lambda pair: function(*pair), mode, items)
    else:
        values, errors = apply(function, mode, items)
    assert calls == [value for value, _ in items]
    assert sorted(errors) == [i for i, (_, fails) in enumerate(items) if fails]
    assert values == [None if fails else value * 2 for value, fails in items]
