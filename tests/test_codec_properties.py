"""Property tests for the message codec: round trips and fuzzing.

Round trip: random instances of a few rich message classes survive
``decode(encode(m)) == m``. Fuzz: whatever bytes a peer sends, ``decode``
returns a registered message or raises DecodeError - nothing else escapes.

Tags use the "codecprop." prefix (the registry is process-global).
"""

from __future__ import annotations

import enum
from typing import Any, Literal

import attrs
import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from transport.codec import DecodeError, decode, encode, encode_value, is_message, message

ROUND_TRIP = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --------------------------------------------------------------------------
# Message classes
# --------------------------------------------------------------------------


class Kind(enum.Enum):
    A = "a"
    B = 2
    C = "ç-unicode"


class Level(enum.IntEnum):
    LOW = 0
    MID = 5
    HIGH = -7


@message("codecprop.Point")
class Point:
    x: float
    y: float
    label: str | None = None


@message("codecprop.Blob")
class Blob:
    data: bytes
    tags: list[str] = attrs.field(factory=list)


@message("codecprop.Inventory")
class Inventory:
    counts: dict[str, int]
    names: dict[int, str]
    kinds: list[Kind]
    level: Level
    mode: Literal["on", "off"]


@message("codecprop.Record")
class Record:
    id: int
    name: str
    flag: bool
    point: Point | None
    points: list[Point]
    shape: Point | Blob
    items: tuple[int, ...]
    pair: tuple[int, str]
    inventory: Inventory
    extra: Any
    ratio: float = 0.5
    notes: list[str] = attrs.field(factory=list)


@message("codecprop.Batch")
class Batch:
    records: list[Record]
    by_key: dict[str, Record]
    latest: Record | None
    raw: bytes = b""


# --------------------------------------------------------------------------
# Strategies
# --------------------------------------------------------------------------

ints = st.integers(min_value=-(2**63), max_value=2**64 - 1)  # msgpack's int64 / uint64
floats = st.floats(allow_nan=False)  # NaN != NaN; infinities and -0.0 are fine
text = st.text(max_size=20)  # unicode, no surrogates
small = dict(max_size=3)

points = st.builds(Point, x=floats, y=floats, label=st.none() | text)
blobs = st.builds(Blob, data=st.binary(max_size=40), tags=st.lists(text, **small))
inventories = st.builds(
    Inventory,
    counts=st.dictionaries(text, ints, **small),
    names=st.dictionaries(ints, text, **small),
    kinds=st.lists(st.sampled_from(Kind), **small),
    level=st.sampled_from(Level),
    mode=st.sampled_from(["on", "off"]),
)

# Any: msgpack-native data (lists, not tuples; no "@" key in plain maps, since a
# map carrying "@" is by design read back as a message) and messages.
any_data = st.recursive(
    st.none() | st.booleans() | ints | floats | text | st.binary(max_size=10) | points,
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(text.filter(lambda k: k != "@") | st.integers(-5, 5), inner, max_size=3),
    max_leaves=10,
)

records = st.builds(
    Record,
    id=ints,
    name=text,
    flag=st.booleans(),
    point=st.none() | points,
    points=st.lists(points, **small),
    shape=points | blobs,
    items=st.lists(ints, max_size=5).map(tuple),
    pair=st.tuples(ints, text),
    inventory=inventories,
    extra=any_data,
    ratio=floats,
    notes=st.lists(text, **small),
)
batches = st.builds(
    Batch,
    records=st.lists(records, **small),
    by_key=st.dictionaries(text, records, max_size=2),
    latest=st.none() | records,
    raw=st.binary(max_size=30),
)
messages = points | blobs | inventories | records | batches


# --------------------------------------------------------------------------
# Round trip
# --------------------------------------------------------------------------


@ROUND_TRIP
@given(messages)
def test_decode_of_encode_is_identity(m):
    data = encode(m)
    out = decode(data)
    assert out == m
    assert type(out) is type(m)
    assert encode(out) == data  # and the bytes are stable


@ROUND_TRIP
@given(records)
def test_round_trip_keeps_container_and_enum_types(r):
    out = decode(encode(r))
    assert type(out.items) is tuple and type(out.pair) is tuple
    assert type(out.points) is list
    assert all(type(k) is Kind for k in out.inventory.kinds)
    assert type(out.inventory.level) is Level
    assert type(out.ratio) is float
    assert type(out.shape) is type(r.shape)


# --------------------------------------------------------------------------
# Fuzz: only DecodeError escapes decode
# --------------------------------------------------------------------------


def decode_or_decode_error(data: bytes) -> Any:
    """Decode ``data``; fail the test if anything but DecodeError escapes."""
    try:
        out = decode(data)
    except DecodeError:
        return None
    except BaseException as e:  # noqa: BLE001 - that is the point
        pytest.fail(f"decode({data[:200]!r}{'...' if len(data) > 200 else ''}) raised {type(e).__name__}: {e}")
    assert is_message(out), f"decode({data[:200]!r}) returned a non-message {out!r:.200}"
    return out


@FUZZ
@given(st.binary(max_size=300))
def test_arbitrary_bytes_decode_or_raise_decode_error(data):
    decode_or_decode_error(data)


@FUZZ
@given(st.binary(max_size=64).map(lambda b: b"\x82\xa1@" + b))
def test_bytes_after_a_map_header_with_tag_key_decode_or_raise(data):
    decode_or_decode_error(data)


@settings(max_examples=40, deadline=None)
@given(messages)
def test_every_truncation_of_a_valid_frame_raises_decode_error(m):
    data = encode(m)
    for cut in range(len(data)):
        try:
            decode(data[:cut])
        except DecodeError:
            continue
        except BaseException as e:  # noqa: BLE001
            pytest.fail(f"decode of {cut}/{len(data)} bytes of {data!r:.300} raised {type(e).__name__}: {e}")
        pytest.fail(f"decode of a strict prefix ({cut}/{len(data)} bytes) of {data!r:.300} returned a message")


mutation = st.tuples(
    st.sampled_from(["flip", "insert", "delete", "set"]),
    st.integers(min_value=0, max_value=10_000),
    st.integers(min_value=0, max_value=255),
)


def mutate(data: bytes, ops: list[tuple[str, int, int]]) -> bytes:
    buf = bytearray(data)
    for op, pos, byte in ops:
        if not buf and op != "insert":
            continue
        i = pos % (len(buf) + (op == "insert"))
        if op == "flip":
            buf[i] ^= byte or 1
        elif op == "set":
            buf[i] = byte
        elif op == "insert":
            buf.insert(i, byte)
        else:
            del buf[i]
    return bytes(buf)


@FUZZ
@given(messages, st.lists(mutation, min_size=1, max_size=6))
def test_mutated_valid_frames_decode_or_raise_decode_error(m, ops):
    decode_or_decode_error(mutate(encode(m), ops))


# Hand-built msgpack structures: maps with "@" keys holding known and unknown
# tags, fields of known messages with arbitrary values, ext types, timestamps.

KNOWN_TAGS = ["codecprop.Point", "codecprop.Blob", "codecprop.Inventory", "codecprop.Record", "codecprop.Batch"]
FIELD_NAMES = sorted({f.name for cls in (Point, Blob, Inventory, Record, Batch) for f in attrs.fields(cls)})

tags = st.sampled_from(KNOWN_TAGS) | st.sampled_from(["codecprop.Nope", "", "@", "codecprop"]) | text | ints | st.none() | st.binary(max_size=8)
keys = st.sampled_from(FIELD_NAMES) | text | st.integers(-3, 3) | st.none() | st.booleans()
scalars = (
    st.none()
    | st.booleans()
    | ints
    | st.floats()  # NaN included: the decoder must cope
    | text
    | st.binary(max_size=16)
    | st.builds(msgpack.ExtType, st.integers(0, 127), st.binary(max_size=8))
    | st.builds(msgpack.Timestamp, st.integers(-(2**40), 2**40), st.integers(0, 999_999_999))
    | st.sampled_from(["on", "off", "a", "ç-unicode", 2, 5, -7])  # enum / literal values
)


def with_tag(children):
    return st.builds(
        lambda tag, fields: {"@": tag, **fields},
        tags,
        st.dictionaries(keys, children, max_size=6),
    )


structures = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=4) | with_tag(children),
    max_leaves=30,
)


def valid_map(m: Any, replace: dict) -> dict:
    d = encode_value(m)
    d.update(replace)
    return d


@FUZZ
@given(structures)
def test_hand_built_msgpack_structures_decode_or_raise_decode_error(obj):
    decode_or_decode_error(msgpack.packb(obj, use_bin_type=True))


@FUZZ
@given(with_tag(structures))
def test_hand_built_tagged_maps_decode_or_raise_decode_error(obj):
    decode_or_decode_error(msgpack.packb(obj, use_bin_type=True))


@FUZZ
@given(records, st.dictionaries(st.sampled_from(FIELD_NAMES), structures, min_size=1, max_size=3))
def test_valid_records_with_fields_replaced_by_junk_decode_or_raise(r, replace):
    decode_or_decode_error(msgpack.packb(valid_map(r, replace), use_bin_type=True))


def record_frame_open_at_extra() -> bytes:
    """A valid Record frame whose last key is "extra", with its value left off."""
    r = Record(1, "n", False, None, [], Point(0.0, 0.0), (), (1, "a"), Inventory({}, {}, [], Level.LOW, "on"), None)
    body = encode_value(r)
    del body["extra"]
    data = msgpack.packb(body, use_bin_type=True)
    assert data[0] & 0xF0 == 0x80 and data[0] < 0x8F  # a fixmap with room for one more pair
    return bytes([data[0] + 1]) + data[1:] + msgpack.packb("extra")


@settings(max_examples=30, deadline=None)
@given(st.integers(min_value=1, max_value=5000), st.sampled_from([b"\x91", b"\x81\xa1k", b"\x81\xa1@"]))
def test_deeply_nested_values_decode_or_raise_decode_error(depth, opener):
    # Record.extra (Any) = [[[...nil...]]] (or maps of maps) nested `depth` deep,
    # written by hand since msgpack.packb refuses deep nesting.
    decode_or_decode_error(record_frame_open_at_extra() + opener * depth + b"\xc0")


@settings(max_examples=30, deadline=None)
@given(st.integers(min_value=1, max_value=3000))
def test_deeply_nested_messages_in_any_decode_or_raise_decode_error(depth):
    # Record.extra (Any) holding a Record whose extra holds a Record ...
    decode_or_decode_error(record_frame_open_at_extra() * depth + b"\xc0")
